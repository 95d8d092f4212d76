// Hand-drawn canvas charts: candlesticks with volume, and the book's depth. Prices are drawn
// from the exact decimals converted to numbers for pixel positions only; every label shown is
// formatted from the decimal strings.

import { format, parse, toNumber } from './decimal.js';

function colors() {
  const css = getComputedStyle(document.documentElement);
  const v = (n) => css.getPropertyValue(n).trim();
  return { up: v('--up'), down: v('--down'), grid: v('--grid'), text: v('--muted'), bg: v('--panel') };
}

/** Sizes the canvas to its box at the device's pixel ratio; returns the 2D context and size. */
function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const { width, height } = canvas.getBoundingClientRect();
  const w = Math.max(1, Math.round(width * ratio));
  const hgt = Math.max(1, Math.round(height * ratio));
  if (canvas.width !== w || canvas.height !== hgt) {
    canvas.width = w;
    canvas.height = hgt;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = '11px system-ui, sans-serif';
  return { ctx, width, height };
}

/** Candles (oldest first, decimal strings) with a volume strip; `decimals` for the price axis. */
export function drawCandles(canvas, candles, decimals, intervalSecs) {
  const { ctx, width, height } = prepare(canvas);
  const c = colors();
  const axis = 64;
  const volH = Math.round(height * 0.2);
  const plotW = width - axis;
  const plotH = height - volH - 16;
  if (!candles.length) {
    ctx.fillStyle = c.text;
    ctx.fillText('No trades in this window yet', 12, height / 2);
    return;
  }
  if (plotW < 20 || plotH < 20) return; // not laid out yet
  const slot = Math.max(3, Math.min(14, plotW / Math.max(candles.length, 40)));
  const shown = candles.slice(-Math.max(1, Math.floor(plotW / slot)));
  let lo = null;
  let hi = null;
  let vmax = 0n;
  for (const k of shown) {
    const l = parse(k.low);
    const hh = parse(k.high);
    const v = parse(k.volume);
    if (lo === null || l < lo) lo = l;
    if (hi === null || hh > hi) hi = hh;
    if (v > vmax) vmax = v;
  }
  if (hi === null || lo === null) return;
  if (hi === lo) {
    hi += 1n;
    lo -= 1n;
  }
  const y = (raw) => 8 + ((toNumber(hi) - toNumber(raw)) / (toNumber(hi) - toNumber(lo))) * (plotH - 8);
  // Grid and price labels: five steps between low and high, labels from exact decimals.
  ctx.strokeStyle = c.grid;
  ctx.fillStyle = c.text;
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const raw = lo + ((hi - lo) * BigInt(i)) / 4n;
    const yy = Math.round(y(raw)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(0, yy);
    ctx.lineTo(plotW, yy);
    ctx.stroke();
    ctx.fillText(format(raw - (raw % 10n ** BigInt(8 - Math.min(decimals, 8))), decimals), plotW + 6, yy + 4);
  }
  const bodyW = Math.max(1, slot * 0.7);
  const t0 = Date.parse(shown[0].start);
  shown.forEach((k, i) => {
    const x = Math.round(plotW - (shown.length - i) * slot + slot / 2);
    const o = parse(k.open);
    const cl = parse(k.close);
    const up = cl >= o;
    ctx.strokeStyle = ctx.fillStyle = up ? c.up : c.down;
    ctx.beginPath();
    ctx.moveTo(x + 0.5, y(parse(k.high)));
    ctx.lineTo(x + 0.5, y(parse(k.low)));
    ctx.stroke();
    const top = y(up ? cl : o);
    const bot = y(up ? o : cl);
    ctx.fillRect(x - bodyW / 2 + 0.5, top, bodyW, Math.max(1, bot - top));
    const v = vmax > 0n ? toNumber(parse(k.volume)) / toNumber(vmax) : 0;
    ctx.globalAlpha = 0.45;
    ctx.fillRect(x - bodyW / 2 + 0.5, height - 14 - v * (volH - 4), bodyW, v * (volH - 4));
    ctx.globalAlpha = 1;
  });
  ctx.fillStyle = c.text;
  const t1 = Date.parse(shown[shown.length - 1].start) + intervalSecs * 1000;
  ctx.fillText(new Date(t0).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }), 2, height - 2);
  const end = new Date(t1).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  ctx.fillText(end, plotW - ctx.measureText(end).width, height - 2);
}

/** Cumulative depth: bids stepping down to the left of the mid, asks up to the right. */
export function drawDepth(canvas, bids, asks) {
  const { ctx, width, height } = prepare(canvas);
  const c = colors();
  if (!bids.length && !asks.length) {
    ctx.fillStyle = c.text;
    ctx.fillText('Empty book', 12, height / 2);
    return;
  }
  const prices = [...bids, ...asks].map((l) => toNumber(l.raw));
  const lo = Math.min(...prices);
  const hi = Math.max(...prices);
  const span = hi - lo || 1;
  const maxTotal = Math.max(
    toNumber(bids.length ? bids[bids.length - 1].total : 0n),
    toNumber(asks.length ? asks[asks.length - 1].total : 0n),
  );
  const x = (p) => 4 + ((p - lo) / span) * (width - 8);
  const y = (t) => height - 4 - (t / (maxTotal || 1)) * (height - 12);
  for (const [levels, color] of [
    [bids, c.up],
    [asks, c.down],
  ]) {
    if (!levels.length) continue;
    ctx.beginPath();
    ctx.moveTo(x(toNumber(levels[0].raw)), height - 4);
    for (const l of levels) {
      ctx.lineTo(x(toNumber(l.raw)), y(toNumber(l.total - l.rawQty)));
      ctx.lineTo(x(toNumber(l.raw)), y(toNumber(l.total)));
    }
    const last = levels[levels.length - 1];
    ctx.lineTo(x(toNumber(last.raw)), height - 4);
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.globalAlpha = 0.25;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.stroke();
  }
}
