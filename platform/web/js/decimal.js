// Exact decimals for display and checks. Every amount the API sends is a decimal string with at
// most 8 places; here it becomes a BigInt count of 10^-8 units, so prices and quantities are
// never rounded through floating point. (Numbers are used only for pixel geometry in charts.)

export const PLACES = 8;
const ONE = 10n ** 8n;

/** Parses a decimal string into raw 10^-8 units, or null when it is not one. */
export function parse(s) {
  if (typeof s !== 'string') return null;
  const m = /^(-)?(\d+)(?:\.(\d{1,8}))?$/.exec(s.trim());
  if (!m) return null;
  const raw = BigInt(m[2]) * ONE + BigInt((m[3] || '').padEnd(PLACES, '0'));
  return m[1] ? -raw : raw;
}

/** Formats raw units as a decimal string with at least `min` decimals (never fewer digits than exact). */
export function format(raw, min = 0) {
  const neg = raw < 0n;
  const abs = neg ? -raw : raw;
  const int = (abs / ONE).toString();
  let frac = (abs % ONE).toString().padStart(PLACES, '0').replace(/0+$/, '');
  if (frac.length < min) frac = frac.padEnd(min, '0');
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return (neg ? '-' : '') + grouped + (frac ? '.' + frac : '');
}

/** Number of decimals of a decimal string ("0.01" → 2, "5" → 0). */
export function places(s) {
  const i = typeof s === 'string' ? s.indexOf('.') : -1;
  return i < 0 ? 0 : s.replace(/0+$/, '').length - i - 1;
}

/** A decimal string shown with `min` decimals, grouped; "—" for null. */
export function show(s, min = 0) {
  const raw = parse(s);
  return raw === null ? '—' : format(raw, min);
}

/** Product of two raw amounts, truncated to 8 places. */
export function mul(a, b) {
  return (a * b) / ONE;
}

/** Signed percentage `num / den` with two decimals, truncated toward zero ("1.25%"). */
export function percent(num, den) {
  if (den === 0n) return '—';
  const bp = (num * 10000n) / den; // hundredths of a percent
  const neg = bp < 0n;
  const abs = neg ? -bp : bp;
  return `${neg ? '-' : '+'}${abs / 100n}.${(abs % 100n).toString().padStart(2, '0')}%`;
}

/** The number for drawing only (pixel positions), never for display. */
export function toNumber(raw) {
  return Number(raw) / 1e8;
}
