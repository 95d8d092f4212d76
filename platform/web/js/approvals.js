// Four-eyes approval in the app (admins): the Approvals panel lists the orders held for
// approval (GET /admin/orders/pending), with the time left until each expires, and approves or
// rejects them (a reason is required). An admin cannot approve their own order: the API's 403
// `self_approval_forbidden` message is shown, as is 409 `order_not_pending` when someone else
// decided first. The list refreshes after each decision, on its button, and every 5 s while
// the panel is shown and the page visible.

import { api, ApiError, current, enrolOnly } from './api.js';
import { show } from './decimal.js';
import { $, clock, fill, h } from './dom.js';

const POLL_MS = 5000;
let timer = null;
let rejecting = null; // id of the order whose reject form is open

const errText = (e) => (e instanceof ApiError ? `${e.message} (${e.code})` : String(e?.message || e));

function say(text, kind = '') {
  $('ap-msg').textContent = text;
  $('ap-msg').className = `msg ${kind}`;
}

const isAdmin = () => current()?.role === 'admin' && !enrolOnly();

/** "4m 05s" until `ts`, or "expired". */
function left(ts, now = Date.now()) {
  const s = Math.floor((Date.parse(ts) - now) / 1000);
  if (!(s > 0)) return 'expired';
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m` : `${m}m ${String(s % 60).padStart(2, '0')}s`;
}

function row(o) {
  const cells = [
    h('td', {}, o.id),
    h('td', {}, o.symbol),
    h('td', { class: o.side === 'buy' ? 'up' : 'down' }, o.side),
    h('td', { class: 'num' }, show(o.qty)),
    h('td', { class: 'num' }, o.price ? show(o.price) : 'market'),
    h('td', { class: 'num' }, show(o.notional, 2)),
    h('td', {}, o.trader ?? o.account),
    h('td', { class: 'left', title: `expires ${clock(o.expires_at)}`, dataset: { expires: o.expires_at } }, left(o.expires_at)),
  ];
  const actions =
    rejecting === o.id
      ? h(
          'form',
          { class: 'row', 'aria-label': `Reject order ${o.id}`, onsubmit: (e) => submitReject(e, o.id) },
          h('input', { name: 'reason', class: 'ap-reason', required: true, maxlength: 256, placeholder: 'Reason', 'aria-label': `Reason for rejecting order ${o.id}` }),
          h('button', { type: 'submit', class: 'small' }, 'Confirm reject'),
          h('button', { type: 'button', class: 'small', onclick: () => openReject(null) }, 'Cancel'),
        )
      : [
          h('button', { type: 'button', class: 'small', 'aria-label': `Approve order ${o.id}`, onclick: () => approve(o.id) }, 'Approve'),
          ' ',
          h('button', { type: 'button', class: 'small', 'aria-label': `Reject order ${o.id}`, onclick: () => openReject(o.id) }, 'Reject'),
        ];
  return h('tr', { dataset: { order: o.id } }, cells, h('td', {}, actions));
}

let last = [];
function render() {
  fill(
    $('approvals-list').tBodies[0],
    last.length ? last.map(row) : h('tr', { class: 'none' }, h('td', { colspan: 9, class: 'muted' }, 'No orders waiting for approval')),
  );
}

function openReject(id) {
  rejecting = id;
  render();
  if (id !== null) $('approvals-list').querySelector(`tr[data-order="${id}"] .ap-reason`)?.focus();
}

/** Fetches the held orders (admins only) and shows them; polls while the panel is visible. */
export async function loadApprovals() {
  clearTimeout(timer);
  if (!isAdmin()) return;
  // Do not redraw under an open reject form: the reason being typed would be lost.
  if (rejecting === null) {
    try {
      last = await api('GET', '/admin/orders/pending?limit=100');
      render();
    } catch (e) {
      say(errText(e), 'error');
    }
  } else {
    tick();
  }
  timer = setTimeout(poll, POLL_MS);
}

function poll() {
  if (!isAdmin()) return;
  if (document.visibilityState === 'visible' && !$('approvals').hidden) loadApprovals();
  else timer = setTimeout(poll, POLL_MS);
}

/** Updates the "time left" cells without a request. */
function tick() {
  for (const c of $('approvals-list').querySelectorAll('td.left')) c.textContent = left(c.dataset.expires);
}

/** Signed out: stops polling and empties the panel. */
export function resetApprovals() {
  clearTimeout(timer);
  last = [];
  rejecting = null;
  say('');
  fill($('approvals-list').tBodies[0]);
}

async function decide(fn, okText) {
  try {
    const o = await fn();
    say(okText(o), 'ok');
  } catch (e) {
    say(errText(e), 'error');
  }
  rejecting = null;
  await loadApprovals();
}

function approve(id) {
  return decide(
    () => api('POST', `/admin/orders/${encodeURIComponent(id)}/approve`),
    (o) => `Order ${id} approved: ${o.status.replaceAll('_', ' ')}, filled ${o.filled} of ${o.qty}.`,
  );
}

function submitReject(e, id) {
  e.preventDefault();
  const input = e.target.querySelector('.ap-reason');
  const reason = input.value.trim();
  if (!reason) {
    say('Enter a reason for the rejection.', 'error');
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  decide(() => api('POST', `/admin/orders/${encodeURIComponent(id)}/reject`, { reason }), () => `Order ${id} rejected.`);
}

$('ap-refresh').addEventListener('click', () => loadApprovals());
setInterval(() => isAdmin() && tick(), 1000);
