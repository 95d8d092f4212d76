// The market view and trading app at `/`.
//
// Public: instruments with last price and 24 h change, and for the selected symbol the ticker,
// candles (REST, with the live candle built here from WebSocket trades), depth chart, order
// book ladder and trade tape, all kept live from the WebSocket feed. Signed in: the order
// ticket (checked against the instrument's tick, lot, limits and band before sending), open
// orders with cancel, fills and the portfolio. Admins: halt/resume and the audit trail.
// Two-factor authentication (the login's code step and the Security panel) is in mfa.js, the
// admins' Approvals panel (four-eyes approval of large orders) in approvals.js.

import { api, ApiError, current, enrolOnly, login, logout, register, sessionEvents } from './api.js';
import { Book } from './book.js';
import { drawCandles, drawDepth } from './charts.js';
import { format, mul, parse, percent, places, show } from './decimal.js';
import { $, clock, fill, h, setupTheme, throttleFrame } from './dom.js';
import { Feed } from './feed.js';
import { loadApprovals, resetApprovals } from './approvals.js';
import { loadSecurity, resetSecurity, showCodeStep } from './mfa.js';

const ROWS = 10; // book levels shown per side (fixed, so nothing jumps)
const TAPE = 30;
const INTERVALS = { '1m': 60, '5m': 300, '1h': 3600 };

const state = {
  instruments: new Map(),
  tickers: new Map(),
  symbol: null,
  interval: '1m',
  candles: [],
  trades: [],
  book: new Book(),
  gapTimer: null,
};

const feed = new Feed();
window.tradeplane = { state, feed }; // for the browser tests and the curious

const inst = () => state.instruments.get(state.symbol);
const priceDp = () => places(inst()?.tickSize || '1');
const qtyDp = () => places(inst()?.lotSize || '1');

// ---------------------------------------------------------------- market data

async function loadInstruments() {
  const list = await api('GET', '/instruments');
  for (const i of list) state.instruments.set(i.symbol, i);
  const body = $('instruments').tBodies[0];
  fill(
    body,
    list.map((i) =>
      h(
        'tr',
        { dataset: { symbol: i.symbol } },
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => select(i.symbol) }, i.symbol)),
        h('td', { class: 'num last' }, '—'),
        h('td', { class: 'num change' }, '—'),
      ),
    ),
  );
}

async function loadTickers() {
  await Promise.all(
    [...state.instruments.keys()].map(async (s) => {
      try {
        state.tickers.set(s, await api('GET', `/markets/${encodeURIComponent(s)}/ticker`));
      } catch {
        /* shown as before; the next poll retries */
      }
    }),
  );
  renderInstruments();
  renderTicker();
}

function changeText(t) {
  if (!t || t.change_24h === null || t.open_24h === null) return { text: '—', cls: '' };
  const ch = parse(t.change_24h);
  return {
    text: percent(ch, parse(t.open_24h)),
    cls: ch > 0n ? 'up' : ch < 0n ? 'down' : '',
  };
}

function renderInstruments() {
  for (const row of $('instruments').tBodies[0].rows) {
    const s = row.dataset.symbol;
    const t = state.tickers.get(s);
    const dp = places(state.instruments.get(s).tickSize);
    row.querySelector('.last').textContent = t?.last ? show(t.last, dp) : '—';
    const c = changeText(t);
    const cell = row.querySelector('.change');
    cell.textContent = c.text;
    cell.className = `num change ${c.cls}`;
    row.classList.toggle('selected', s === state.symbol);
    row.querySelector('button').setAttribute('aria-current', s === state.symbol ? 'true' : 'false');
  }
}

function renderTicker() {
  const t = state.tickers.get(state.symbol);
  const i = inst();
  if (!i) return;
  $('symbol').textContent = i.symbol;
  const status = t?.status || i.status;
  $('status').textContent = status;
  $('status').className = `pill ${status === 'halted' ? 'down' : 'up'}`;
  const dp = priceDp();
  $('t-last').textContent = t?.last ? show(t.last, dp) : '—';
  const c = changeText(t);
  $('t-change').textContent =
    t?.change_24h != null ? `${parse(t.change_24h) > 0n ? '+' : ''}${show(t.change_24h, dp)} (${c.text})` : '—';
  $('t-change').className = c.cls;
  $('t-high').textContent = t?.high_24h ? show(t.high_24h, dp) : '—';
  $('t-low').textContent = t?.low_24h ? show(t.low_24h, dp) : '—';
  $('t-volume').textContent = t ? show(t.volume_24h, qtyDp()) : '—';
  const bid = state.book.best('buy');
  const ask = state.book.best('sell');
  $('t-bidask').textContent = `${bid ? show(bid.price, dp) : '—'} / ${ask ? show(ask.price, dp) : '—'}`;
  document.querySelectorAll('.admin-symbol').forEach((e) => (e.textContent = i.symbol));
}

function bookRows(tbody) {
  while (tbody.rows.length < ROWS) {
    tbody.append(h('tr', {}, h('td', { class: 'num price' }), h('td', { class: 'num qty' }), h('td', { class: 'num total' })));
  }
  return [...tbody.rows];
}

const renderBook = throttleFrame(() => {
  const bids = state.book.sorted('buy', ROWS);
  const asks = state.book.sorted('sell', ROWS);
  const maxTotal = [bids.at(-1)?.total || 0n, asks.at(-1)?.total || 0n].reduce((a, b) => (a > b ? a : b));
  const dp = priceDp();
  const qdp = qtyDp();
  const paint = (rows, levels, side) =>
    rows.forEach((row, i) => {
      const l = levels[i];
      row.className = l ? side : 'empty';
      row.dataset.price = l ? l.price : '';
      row.cells[0].textContent = l ? show(l.price, dp) : '\u00a0';
      row.cells[1].textContent = l ? show(l.qty, qdp) : '';
      row.cells[2].textContent = l ? format(l.total, qdp) : '';
      const pct = l && maxTotal > 0n ? Number((l.total * 1000n) / maxTotal) / 10 : 0;
      row.style.setProperty('--depth', `${pct}%`);
    });
  // Asks above the spread, best (lowest) at the bottom.
  paint(bookRows($('asks')).reverse(), asks, 'ask');
  paint(bookRows($('bids')), bids, 'bid');
  const bid = bids[0];
  const ask = asks[0];
  $('spread').textContent = bid && ask ? `spread ${format(ask.raw - bid.raw, dp)}` : '—';
  drawDepth($('depth'), bids, asks);
  renderTicker();
});

async function loadTrades() {
  const symbol = state.symbol;
  const trades = await api('GET', `/markets/${encodeURIComponent(symbol)}/trades?limit=${TAPE}`);
  if (symbol !== state.symbol) return;
  state.trades = trades.map((t) => ({ price: t.price, qty: t.qty, side: t.taker_side, at: t.created_at }));
  renderTape();
}

const renderTape = throttleFrame(() => {
  const body = $('tape').tBodies[0];
  while (body.rows.length < TAPE) body.append(h('tr', {}, h('td', { class: 'num' }), h('td', { class: 'num' }), h('td')));
  [...body.rows].forEach((row, i) => {
    const t = state.trades[i];
    row.className = t ? (t.side === 'buy' ? 'up' : 'down') : 'empty';
    row.cells[0].textContent = t ? show(t.price, priceDp()) : '\u00a0';
    row.cells[1].textContent = t ? show(t.qty, qtyDp()) : '';
    row.cells[2].textContent = t ? clock(t.at) : '';
  });
});

let candleTimer = null;
async function loadCandles() {
  const symbol = state.symbol;
  const interval = state.interval;
  const data = await api('GET', `/markets/${encodeURIComponent(symbol)}/candles?interval=${interval}&limit=120`);
  if (symbol !== state.symbol || interval !== state.interval) return;
  state.candles = data.candles;
  renderCandles();
  // Fetch again just after the current interval closes, to replace the locally built candle.
  clearTimeout(candleTimer);
  const ms = INTERVALS[interval] * 1000;
  candleTimer = setTimeout(() => loadCandles().catch(() => {}), ms - (Date.now() % ms) + 1500);
}

const renderCandles = throttleFrame(() => drawCandles($('candles'), state.candles, priceDp(), INTERVALS[state.interval]));

/** The live candle: a trade updates the current interval's candle or opens the next one. */
function candleTrade(price, qty) {
  const secs = INTERVALS[state.interval];
  const start = new Date(Math.floor(Date.now() / 1000 / secs) * secs * 1000).toISOString().replace('.000Z', 'Z');
  const last = state.candles.at(-1);
  const p = parse(price);
  if (last && Date.parse(last.start) === Date.parse(start)) {
    if (p > parse(last.high)) last.high = price;
    if (p < parse(last.low)) last.low = price;
    last.close = price;
    last.volume = format(parse(last.volume) + parse(qty)).replaceAll(',', '');
    last.trades += 1;
  } else {
    state.candles.push({ start, open: price, high: price, low: price, close: price, volume: qty, trades: 1 });
  }
  renderCandles();
}

function select(symbol) {
  if (!state.instruments.has(symbol) || symbol === state.symbol) return;
  if (state.symbol) feed.unsubscribe(state.symbol);
  state.symbol = symbol;
  state.book.clear();
  state.trades = [];
  state.candles = [];
  history.replaceState(null, '', `#${symbol}`);
  feed.subscribe(symbol);
  renderInstruments();
  renderTicker();
  renderBook();
  renderTape();
  updateHints();
  loadTrades().catch(showError);
  loadCandles().catch(showError);
}

function banner(text, kind = 'warn') {
  const b = $('banner');
  b.textContent = text;
  b.className = `banner ${kind}`;
  b.hidden = !text;
}

function showError(e) {
  banner(e instanceof ApiError ? `${e.message} (${e.code})` : String(e.message || e), 'error');
}

feed.addEventListener('connection', (e) => {
  $('feed-status').textContent = e.detail === 'live' ? 'live' : 'reconnecting…';
  $('feed-status').className = `pill ${e.detail === 'live' ? 'up' : 'down'}`;
});
feed.addEventListener('snapshot', (e) => {
  if (e.detail.symbol !== state.symbol) return;
  state.book.snapshot(e.detail);
  renderBook();
  if (state.gapTimer !== null) {
    clearTimeout(state.gapTimer);
    state.gapTimer = setTimeout(() => {
      state.gapTimer = null;
      banner('');
    }, 1500);
  }
});
feed.addEventListener('gap', (e) => {
  const { symbol, expected, got } = e.detail;
  clearTimeout(state.gapTimer);
  state.gapTimer = 0;
  document.body.dataset.resubscribed = String(Number(document.body.dataset.resubscribed || 0) + 1);
  banner(`Missed market data for ${symbol} (expected #${expected}, got #${got}): resubscribing for a fresh snapshot…`);
});
feed.addEventListener('book', (e) => {
  if (e.detail.symbol !== state.symbol) return;
  state.book.apply(e.detail.data);
  renderBook();
});
feed.addEventListener('trade', (e) => {
  const { symbol, data } = e.detail;
  const t = state.tickers.get(symbol);
  if (t) {
    t.last = data.price;
    const p = parse(data.price);
    if (!t.high_24h || p > parse(t.high_24h)) t.high_24h = data.price;
    if (!t.low_24h || p < parse(t.low_24h)) t.low_24h = data.price;
    if (t.open_24h) t.change_24h = format(parse(data.price) - parse(t.open_24h)).replaceAll(',', '');
    else t.open_24h = data.price;
  }
  if (symbol === state.symbol) {
    state.trades.unshift({ price: data.price, qty: data.qty, side: data.takerSide, at: new Date() });
    state.trades.length = Math.min(state.trades.length, TAPE);
    renderTape();
    candleTrade(data.price, data.qty);
  }
  renderInstruments();
  renderTicker();
  privateSoon();
});
feed.addEventListener('status', (e) => {
  const t = state.tickers.get(e.detail.symbol);
  if (t) t.status = e.detail.data.status;
  renderTicker();
});

$('intervals').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-interval]');
  if (!b) return;
  state.interval = b.dataset.interval;
  for (const x of $('intervals').querySelectorAll('button')) x.setAttribute('aria-pressed', String(x === b));
  state.candles = [];
  renderCandles();
  loadCandles().catch(showError);
});

// ---------------------------------------------------------------- signing in

let wasEnrolOnly = false;
function renderSession() {
  const s = current();
  // Enrol-only tokens (REQUIRE_ADMIN_MFA, admin without MFA): only the Security panel works.
  const only = !!s && enrolOnly();
  $('signed-out').hidden = !!s;
  $('signed-in').hidden = !s || only;
  $('enrol-only').hidden = !only;
  $('logout').hidden = !s;
  $('who').textContent = s ? `${s.username} · account ${s.account_id}${s.role === 'admin' ? ' · admin' : ''}` : '';
  document.querySelectorAll('[data-private]').forEach((e) => (e.hidden = !s || only));
  $('admin').hidden = !(s && s.role === 'admin') || only;
  $('approvals').hidden = $('admin').hidden;
  $('security').hidden = !s;
  if (s && !only) loadPrivate();
  if (s?.role === 'admin' && !only) {
    loadAudit();
    loadApprovals();
  } else resetApprovals();
  const sendToEnrolment = only && !wasEnrolOnly;
  if (sendToEnrolment) {
    banner('Two-factor authentication is required for this account: enable it in the Security panel, then sign in again.');
  } else if (!only && wasEnrolOnly) {
    banner('');
  }
  wasEnrolOnly = only;
  if (!s) resetSecurity();
  else {
    loadSecurity().then(() => {
      if (!sendToEnrolment) return;
      $('security').scrollIntoView({ block: 'start' });
      $('sec-enable').focus();
    });
  }
}

async function authenticate(action) {
  const form = $('auth-form');
  if (!form.reportValidity()) return;
  $('auth-msg').textContent = '';
  try {
    const done = await action($('auth-user').value.trim(), $('auth-pass').value);
    $('auth-pass').value = '';
    if (done?.mfaRequired) showCodeStep();
  } catch (e) {
    $('auth-msg').textContent = e instanceof ApiError ? `${e.message} (${e.code})` : String(e);
    $('auth-msg').className = 'msg error';
  }
}

$('auth-form').addEventListener('submit', (e) => {
  e.preventDefault();
  authenticate(login);
});
$('register').addEventListener('click', () => authenticate(register));
$('logout').addEventListener('click', () => logout());
$('go-security').addEventListener('click', () => {
  $('security').scrollIntoView({ block: 'start' });
  $('sec-enable').focus();
});
sessionEvents.addEventListener('change', renderSession);

// ---------------------------------------------------------------- order ticket

function ticket() {
  const f = $('ticket');
  return {
    side: f.querySelector('input[name=side]:checked').value,
    type: $('o-type').value,
    tif: $('o-tif').value,
    price: $('o-price').value.trim(),
    qty: $('o-qty').value.trim(),
  };
}

/** Checks the ticket against the instrument; returns { price, qty } problems (null when fine). */
function check(t) {
  const i = inst();
  const out = { price: null, qty: null };
  if (!i) return out;
  const tick = parse(i.tickSize);
  const lot = parse(i.lotSize);
  const q = parse(t.qty);
  if (q === null || q <= 0n) out.qty = 'Enter a positive quantity, at most 8 decimals.';
  else if (q % lot !== 0n) out.qty = `Quantity must be a multiple of the lot size ${i.lotSize}.`;
  else if (q < parse(i.minQty)) out.qty = `Quantity must be at least ${i.minQty}.`;
  else if (q > parse(i.maxQty)) out.qty = `Quantity must be at most ${i.maxQty}.`;
  if (t.type === 'limit') {
    const p = parse(t.price);
    const last = state.tickers.get(i.symbol)?.last;
    const bps = BigInt(i.priceBandBps || 0);
    if (p === null || p <= 0n) out.price = 'Enter a positive price, at most 8 decimals.';
    else if (p % tick !== 0n) out.price = `Price must be on the tick size ${i.tickSize}.`;
    else if (last && bps > 0n) {
      const l = parse(last);
      if (p * 10000n > l * (10000n + bps) || p * 10000n < l * (10000n - bps)) {
        const lo = (l * (10000n - bps) + 9999n) / 10000n;
        const hi = (l * (10000n + bps)) / 10000n;
        out.price = `Price must be within ${bps} bps of the last trade: ${format(lo, priceDp())} to ${format(hi, priceDp())}.`;
      }
    }
    if (!out.price && !out.qty && mul(p, q) > parse(i.maxNotional)) {
      out.qty = `Price × quantity must be at most ${i.maxNotional}.`;
    }
  }
  return out;
}

function updateHints() {
  const i = inst();
  if (!i) return;
  const t = ticket();
  const market = t.type === 'market';
  $('o-price').disabled = market;
  const gtc = $('o-tif').querySelector('option[value=GTC], option:first-child');
  gtc.disabled = market;
  if (market && $('o-tif').value === 'GTC') $('o-tif').value = 'IOC';
  const problems = check(t);
  $('o-price-hint').textContent = market ? 'Market order: no price.' : problems.price && t.price ? problems.price : `Tick ${i.tickSize}`;
  $('o-price-hint').className = `hint ${problems.price && t.price && !market ? 'error' : ''}`;
  $('o-qty-hint').textContent =
    problems.qty && t.qty ? problems.qty : `Lot ${i.lotSize}, min ${i.minQty}, max ${i.maxQty}`;
  $('o-qty-hint').className = `hint ${problems.qty && t.qty ? 'error' : ''}`;
  $('o-price').setAttribute('aria-invalid', String(!!(problems.price && t.price && !market)));
  $('o-qty').setAttribute('aria-invalid', String(!!(problems.qty && t.qty)));
  $('o-submit').textContent = `${t.side === 'buy' ? 'Buy' : 'Sell'} ${i.symbol}`;
  $('o-submit').className = t.side;
}

$('ticket').addEventListener('input', updateHints);
$('ticket').addEventListener('change', updateHints);
$('ticket').addEventListener('submit', async (e) => {
  e.preventDefault();
  const t = ticket();
  const problems = check(t);
  const msg = $('o-msg');
  if (problems.price || problems.qty) {
    msg.textContent = problems.price || problems.qty;
    msg.className = 'msg error';
    (problems.price ? $('o-price') : $('o-qty')).focus();
    return;
  }
  const body = { symbol: state.symbol, side: t.side, type: t.type, qty: t.qty, tif: t.tif };
  if (t.type === 'limit') body.price = t.price;
  $('o-submit').disabled = true;
  try {
    const o = await api('POST', '/orders', body);
    msg.textContent = `Order ${o.id}: ${statusText(o.status)}, filled ${o.filled} of ${o.qty}${o.cancel_reason ? ` (${o.cancel_reason})` : ''}.`;
    msg.className = 'msg ok';
    loadPrivate();
  } catch (err) {
    msg.textContent = err instanceof ApiError ? `Rejected: ${err.message} (${err.code})` : String(err);
    msg.className = 'msg error';
  } finally {
    $('o-submit').disabled = false;
  }
});

// ---------------------------------------------------------------- private data

let privateTimer = null;
let privateQueued = false;
function privateSoon() {
  if (!current() || privateQueued) return;
  privateQueued = true;
  setTimeout(() => {
    privateQueued = false;
    loadPrivate();
  }, 1000);
}

async function loadPrivate() {
  clearTimeout(privateTimer);
  if (!current() || enrolOnly()) return;
  try {
    const [held, fresh, partial, fills, pf] = await Promise.all([
      api('GET', '/orders?status=pending_approval&limit=100'),
      api('GET', '/orders?status=new&limit=100'),
      api('GET', '/orders?status=partially_filled&limit=100'),
      api('GET', '/fills?limit=50'),
      api('GET', '/portfolio'),
    ]);
    renderOrders([...held, ...partial, ...fresh].sort((a, b) => b.id - a.id));
    renderFills(fills);
    renderPortfolio(pf);
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 401 || e.code === 'mfa_enrollment_required'))) showError(e);
  }
  privateTimer = setTimeout(loadPrivate, 5000);
}

/** An order status for people: `pending_approval` (four-eyes approval) reads "awaiting approval". */
const statusText = (status) => (status === 'pending_approval' ? 'awaiting approval' : status.replaceAll('_', ' '));

const dpOf = (symbol) => places(state.instruments.get(symbol)?.tickSize || '1');
const qdpOf = (symbol) => places(state.instruments.get(symbol)?.lotSize || '1');

function renderOrders(orders) {
  fill(
    $('open-orders').tBodies[0],
    orders.length
      ? orders.map((o) =>
          h(
            'tr',
            { dataset: { order: o.id } },
            h('td', {}, o.id),
            h('td', {}, o.symbol),
            h('td', { class: o.side === 'buy' ? 'up' : 'down' }, o.side),
            h('td', { class: 'num' }, o.price ? show(o.price, dpOf(o.symbol)) : 'market'),
            h('td', { class: 'num' }, show(o.qty, qdpOf(o.symbol))),
            h('td', { class: 'num' }, show(o.filled, qdpOf(o.symbol))),
            h('td', { class: o.status === 'pending_approval' ? 'status held' : 'status', dataset: { status: o.status } }, statusText(o.status)),
            h(
              'td',
              {},
              h('button', { type: 'button', class: 'small', 'aria-label': `Cancel order ${o.id}`, onclick: () => cancel(o.id) }, 'Cancel'),
            ),
          ),
        )
      : h('tr', { class: 'none' }, h('td', { colspan: 8, class: 'muted' }, 'No open orders')),
  );
}

async function cancel(id) {
  try {
    await api('DELETE', `/orders/${id}`);
    $('o-msg').textContent = `Order ${id} cancelled.`;
    $('o-msg').className = 'msg ok';
  } catch (e) {
    $('o-msg').textContent = e instanceof ApiError ? `${e.message} (${e.code})` : String(e);
    $('o-msg').className = 'msg error';
  }
  loadPrivate();
}

function renderFills(fills) {
  fill(
    $('fills').tBodies[0],
    fills.length
      ? fills.map((f) =>
          h(
            'tr',
            { dataset: { trade: f.trade_id } },
            h('td', {}, clock(f.created_at)),
            h('td', {}, f.symbol),
            h('td', { class: f.side === 'buy' ? 'up' : 'down' }, f.side),
            h('td', { class: 'num' }, show(f.price, dpOf(f.symbol))),
            h('td', { class: 'num' }, show(f.qty, qdpOf(f.symbol))),
            h('td', {}, f.liquidity),
          ),
        )
      : h('tr', { class: 'none' }, h('td', { colspan: 6, class: 'muted' }, 'No fills yet')),
  );
}

function signed(s, dp) {
  if (s === null || s === undefined) return { text: '—', cls: '' };
  const raw = parse(s);
  return { text: show(s, dp), cls: raw > 0n ? 'up' : raw < 0n ? 'down' : '' };
}

function renderPortfolio(pf) {
  $('p-cash').textContent = show(pf.cash, 2);
  $('p-available').textContent = show(pf.cash_available, 2);
  for (const [id, v] of [
    ['p-realized', pf.realized_pnl],
    ['p-unrealized', pf.unrealized_pnl],
  ]) {
    const s = signed(v, 2);
    $(id).textContent = s.text;
    $(id).className = s.cls;
  }
  const rows = pf.positions.filter((p) => parse(p.qty) !== 0n || parse(p.realized_pnl) !== 0n);
  fill(
    $('positions').tBodies[0],
    rows.length
      ? rows.map((p) => {
          const r = signed(p.realized_pnl, 2);
          const u = signed(p.unrealized_pnl, 2);
          return h(
            'tr',
            { dataset: { symbol: p.symbol } },
            h('td', {}, p.symbol),
            h('td', { class: 'num' }, show(p.qty, qdpOf(p.symbol))),
            h('td', { class: 'num' }, p.avg_cost ? show(p.avg_cost, dpOf(p.symbol)) : '—'),
            h('td', { class: 'num' }, p.mark_price ? show(p.mark_price, dpOf(p.symbol)) : '—'),
            h('td', { class: `num ${r.cls}` }, r.text),
            h('td', { class: `num ${u.cls}` }, u.text),
          );
        })
      : h('tr', { class: 'none' }, h('td', { colspan: 6, class: 'muted' }, 'No positions')),
  );
}

// ---------------------------------------------------------------- admin

async function adminAction(fn, okText) {
  try {
    await fn();
    $('admin-msg').textContent = okText;
    $('admin-msg').className = 'msg ok';
  } catch (e) {
    $('admin-msg').textContent = e instanceof ApiError ? `${e.message} (${e.code})` : String(e);
    $('admin-msg').className = 'msg error';
  }
  loadTickers();
  loadAudit();
}

$('halt').addEventListener('click', () =>
  adminAction(() => api('POST', `/admin/markets/${encodeURIComponent(state.symbol)}/halt`), `${state.symbol} halted.`),
);
$('resume').addEventListener('click', () =>
  adminAction(() => api('POST', `/admin/markets/${encodeURIComponent(state.symbol)}/resume`), `${state.symbol} resumed.`),
);
$('deposit').addEventListener('submit', (e) => {
  e.preventDefault();
  const account = $('d-account').value.trim();
  const body = { amount: $('d-amount').value.trim() };
  if ($('d-symbol').value.trim()) body.symbol = $('d-symbol').value.trim();
  adminAction(
    () => api('POST', `/admin/accounts/${encodeURIComponent(account)}/deposits`, body),
    `Deposited ${body.amount}${body.symbol ? ' ' + body.symbol : ''} to account ${account}.`,
  );
});
$('audit-refresh').addEventListener('click', () => loadAudit());
$('audit-filter').addEventListener('change', () => loadAudit());

async function loadAudit() {
  if (current()?.role !== 'admin') return;
  try {
    const events = await api('GET', '/admin/audit?limit=500');
    const want = $('audit-filter').value.trim();
    const shown = events.filter((a) => !want || a.action.includes(want) || a.actor.includes(want)).slice(0, 100);
    fill(
      $('audit').tBodies[0],
      shown.map((a) =>
        h(
          'tr',
          {},
          h('td', {}, a.id),
          h('td', {}, clock(a.occurred_at)),
          h('td', {}, a.actor),
          h('td', {}, a.action),
          // Scored and tagged since migration 0060 (older events: no score, no tags).
          h('td', {}, a.risk_score ?? ''),
          h('td', {}, (a.tags || []).join(' ')),
          h('td', {}, a.subject || ''),
          h('td', { class: 'details' }, JSON.stringify(a.details)),
        ),
      ),
    );
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------- start

setupTheme($('theme'));
window.addEventListener('resize', () => {
  renderCandles();
  renderBook();
});
window.addEventListener('themechange', () => {
  renderCandles();
  renderBook();
});

(async () => {
  try {
    await loadInstruments();
    const wanted = decodeURIComponent(location.hash.slice(1));
    select(state.instruments.has(wanted) ? wanted : [...state.instruments.keys()][0]);
    await loadTickers();
    setInterval(() => loadTickers().catch(() => {}), 5000);
  } catch (e) {
    showError(e);
  }
  renderSession();
})();
