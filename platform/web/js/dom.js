// Small DOM helpers: elements are built with textContent only (no HTML strings from data).

/** Creates an element: h('td', {class: 'num'}, 'text', child…). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c);
}

/** `document.getElementById`. */
export const $ = (id) => document.getElementById(id);

/** Local time of an RFC 3339 timestamp, HH:MM:SS. */
export function clock(ts) {
  const d = ts instanceof Date ? ts : new Date(ts);
  return d.toLocaleTimeString([], { hour12: false });
}

/** Runs `fn` at most once per animation frame. */
export function throttleFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

/** Light/dark: follows the system until the user picks, then remembers the choice. */
export function setupTheme(button) {
  const saved = localStorage.getItem('tradeplane.theme');
  if (saved) document.documentElement.dataset.theme = saved;
  const current = () =>
    document.documentElement.dataset.theme ||
    (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  const label = () => {
    button.textContent = current() === 'dark' ? 'Light theme' : 'Dark theme';
  };
  label();
  button.addEventListener('click', () => {
    const next = current() === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = next;
    localStorage.setItem('tradeplane.theme', next);
    label();
    window.dispatchEvent(new Event('themechange'));
  });
}
