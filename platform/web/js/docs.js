// The API explorer at /docs: every operation of /api/v1/openapi.json with its parameters,
// request and response schemas, and a "try it" form that calls the API from the page (with the
// signed-in user's token from the shared session). Everything is built from the document here;
// nothing is fetched from elsewhere.

import { api, current, sessionEvents } from './api.js';
import { $, fill, h, setupTheme } from './dom.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
let doc = null;

/** Follows a local `$ref` ("#/components/…"). */
function deref(node) {
  let n = node;
  for (let i = 0; n && n.$ref && i < 20; i++) {
    n = n.$ref
      .replace(/^#\//, '')
      .split('/')
      .reduce((o, k) => (o ? o[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
  }
  return n || {};
}

const refName = (node) => (node && node.$ref ? node.$ref.split('/').pop() : null);

/** Text with `code` spans and **bold**, as DOM nodes (never as HTML). */
function rich(text) {
  const out = [];
  for (const part of String(text || '').split(/(`[^`]+`|\*\*[^*]+\*\*)/)) {
    if (part.startsWith('`') && part.endsWith('`') && part.length > 1) out.push(h('code', {}, part.slice(1, -1)));
    else if (part.startsWith('**') && part.endsWith('**') && part.length > 3) out.push(h('strong', {}, part.slice(2, -2)));
    else if (part) out.push(part);
  }
  return out;
}

function typeLabel(s) {
  const name = refName(s);
  if (name) return h('a', { href: `#schema-${name}`, class: 'type' }, name);
  const t = deref(s);
  if (t.oneOf || t.anyOf) {
    const alts = (t.oneOf || t.anyOf).map(typeLabel);
    return h('span', {}, ...alts.flatMap((a, i) => (i ? [' | ', a] : [a])));
  }
  if (t.const !== undefined) return h('span', { class: 'type' }, JSON.stringify(t.const));
  if (t.enum) return h('span', { class: 'type' }, t.enum.map((e) => JSON.stringify(e)).join(' | '));
  if (t.type === 'array') return h('span', {}, typeLabel(t.items || {}), '[]');
  const type = Array.isArray(t.type) ? t.type.join(' | ') : t.type || 'any';
  return h('span', { class: 'type' }, type + (t.format ? ` (${t.format})` : ''));
}

/** A schema as a tree of properties (one level; referenced schemas link to their section). */
function schemaView(s) {
  const t = deref(s);
  const box = h('div', { class: 'schema' });
  if (refName(s)) box.append(h('div', {}, typeLabel(s)));
  if (t.description && !refName(s)) box.append(h('div', { class: 'schema-desc muted' }, ...rich(t.description)));
  if (t.properties) {
    const req = new Set(t.required || []);
    for (const [name, p] of Object.entries(t.properties)) {
      box.append(
        h(
          'span',
          { class: 'prop' },
          h('strong', {}, name),
          req.has(name) ? h('span', { class: 'req' }, '*') : '',
          ': ',
          typeLabel(p),
          p.description ? h('span', { class: 'muted' }, ' — ', ...rich(p.description)) : '',
        ),
      );
    }
  } else if (!refName(s)) {
    box.append(h('div', {}, typeLabel(s)));
  }
  return box;
}

/** An example value from a schema (examples first, then a value of the right type). */
function example(s, depth = 0) {
  const t = deref(s);
  if (depth > 6) return null;
  if (t.example !== undefined) return t.example;
  if (t.examples?.length) return t.examples[0];
  if (t.const !== undefined) return t.const;
  if (t.enum) return t.enum[0];
  if (t.oneOf) return example(t.oneOf[0], depth + 1);
  if (t.type === 'object' || t.properties) {
    const o = {};
    const req = new Set(t.required || []);
    for (const [k, p] of Object.entries(t.properties || {})) if (req.has(k)) o[k] = example(p, depth + 1);
    return o;
  }
  if (t.type === 'array') return [example(t.items || {}, depth + 1)];
  if (t.type === 'integer' || t.type === 'number') return t.minimum ?? 1;
  if (t.type === 'boolean') return true;
  return 'string';
}

function operations() {
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      if (item[m]) ops.push({ path, method: m, op: item[m], params: [...(item.parameters || []), ...(item[m].parameters || [])].map(deref) });
    }
  }
  return ops;
}

const opId = (o) => `op-${o.op.operationId || `${o.method}-${o.path}`.replace(/[^a-zA-Z0-9]+/g, '-')}`;

function tryIt(o) {
  const form = h('form', { class: 'try form', 'aria-label': `Try ${o.method.toUpperCase()} ${o.path}` });
  const inputs = o.params.map((p) => {
    const input = h('input', {
      name: p.name,
      'data-in': p.in,
      required: p.required ? true : undefined,
      placeholder: p.schema?.default !== undefined ? String(p.schema.default) : '',
    });
    form.append(h('label', {}, `${p.name} (${p.in}${p.required ? ', required' : ''})`, input));
    return input;
  });
  const jsonBody = o.op.requestBody?.content?.['application/json'];
  let body = null;
  if (jsonBody) {
    body = h('textarea', { name: 'body', spellcheck: 'false' });
    body.value = JSON.stringify(jsonBody.example ?? example(jsonBody.schema), null, 2);
    form.append(h('label', {}, 'Request body (JSON)', body));
  }
  const out = h('pre', { class: 'response', 'aria-live': 'polite', hidden: true });
  const send = h('button', { type: 'submit' }, 'Send');
  const isWs = o.path === '/ws';
  form.append(
    h('div', { class: 'row' }, isWs ? h('span', { class: 'muted' }, 'A WebSocket: see the description; the market page uses it.') : send),
    out,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (isWs || !form.reportValidity()) return;
    let path = o.path;
    const query = new URLSearchParams();
    for (const i of inputs) {
      const v = i.value.trim();
      if (!v) continue;
      if (i.dataset.in === 'path') path = path.replace(`{${i.name}}`, encodeURIComponent(v));
      else if (i.dataset.in === 'query') query.set(i.name, v);
    }
    const url = `/api/v1${path}${query.size ? `?${query}` : ''}`;
    const headers = { accept: 'application/json' };
    const s = current();
    if (s) {
      await api('GET', '/me').catch(() => {}); // refreshes the token first when it is about to expire
      headers.authorization = `Bearer ${current()?.access_token || s.access_token}`;
    }
    let payload;
    if (body) {
      headers['content-type'] = 'application/json';
      payload = body.value;
    }
    out.hidden = false;
    out.textContent = `${o.method.toUpperCase()} ${url} …`;
    try {
      const r = await fetch(url, { method: o.method.toUpperCase(), headers, body: payload });
      const text = await r.text();
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        /* not JSON: shown as is */
      }
      out.dataset.status = String(r.status);
      out.textContent = `${o.method.toUpperCase()} ${url}\n${r.status} ${r.statusText}  x-request-id: ${r.headers.get('x-request-id') || '-'}\n\n${shown}`;
    } catch (err) {
      out.textContent = `Request failed: ${err.message}`;
    }
  });
  return form;
}

function operationView(o) {
  const { op } = o;
  const sec = h(
    'section',
    { class: 'panel op', id: opId(o), 'aria-labelledby': `${opId(o)}-h`, dataset: { method: o.method, path: o.path } },
    h('h3', { id: `${opId(o)}-h` }, h('span', { class: `method ${o.method}` }, o.method), h('code', {}, o.path), h('span', {}, op.summary || '')),
  );
  const secured = op.security ? op.security.length > 0 : (doc.security || []).length > 0;
  sec.append(h('p', { class: 'muted small' }, `Tag: ${(op.tags || []).join(', ') || '—'} · ${secured ? 'needs a bearer token' : 'no authentication'} · operationId ${op.operationId || '—'}`));
  if (op.description) sec.append(h('p', { class: 'desc' }, ...rich(op.description)));
  if (o.params.length) {
    sec.append(
      h('h4', {}, 'Parameters'),
      h(
        'table',
        { class: 'grid' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'In'), h('th', {}, 'Type'), h('th', {}, 'Description'))),
        h(
          'tbody',
          {},
          o.params.map((p) =>
            h(
              'tr',
              {},
              h('td', {}, h('code', {}, p.name), p.required ? h('span', { class: 'req' }, '*') : ''),
              h('td', {}, p.in),
              h('td', {}, typeLabel(p.schema || {})),
              h('td', { class: 'details' }, ...rich(p.description)),
            ),
          ),
        ),
      ),
    );
  }
  const reqBody = op.requestBody?.content?.['application/json'];
  if (reqBody) sec.append(h('h4', {}, 'Request body'), schemaView(reqBody.schema));
  sec.append(h('h4', {}, 'Responses'));
  for (const [status, resp0] of Object.entries(op.responses || {})) {
    const resp = deref(resp0);
    const schema = resp.content?.['application/json']?.schema;
    sec.append(
      h(
        'div',
        { class: 'schema' },
        h('strong', {}, status),
        ' ',
        ...rich(resp.description),
        schema ? schemaView(schema) : '',
      ),
    );
  }
  sec.append(tryIt(o));
  return sec;
}

function render() {
  $('doc-title').textContent = `${doc.info.title} ${doc.info.version}`;
  fill($('doc-desc'), ...rich(doc.info.description));
  const ops = operations();
  const byTag = new Map();
  for (const o of ops) {
    const tag = (o.op.tags || ['other'])[0];
    if (!byTag.has(tag)) byTag.set(tag, []);
    byTag.get(tag).push(o);
  }
  fill(
    $('toc'),
    [...byTag].map(([tag, list]) => [
      h('h2', {}, tag),
      h(
        'ul',
        {},
        list.map((o) =>
          h('li', {}, h('a', { href: `#${opId(o)}` }, h('span', { class: `method ${o.method}` }, o.method), h('code', {}, o.path))),
        ),
      ),
    ]),
    h('h2', {}, h('a', { href: '#schemas' }, 'Schemas')),
  );
  fill($('operations'), ops.map(operationView));
  fill(
    $('schema-list'),
    Object.entries(doc.components?.schemas || {}).map(([name, s]) =>
      h('div', { id: `schema-${name}`, class: 'op' }, h('h3', {}, name), s.description ? h('p', { class: 'desc' }, ...rich(s.description)) : '', schemaView(s)),
    ),
  );
  document.body.dataset.operations = String(ops.length);
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

function renderWho() {
  const s = current();
  $('who').textContent = s ? `signed in as ${s.username}` : 'not signed in';
}

setupTheme($('theme'));
sessionEvents.addEventListener('change', renderWho);
renderWho();
api('GET', '/openapi.json')
  .then((d) => {
    doc = d;
    render();
  })
  .catch((e) => {
    $('banner').hidden = false;
    $('banner').textContent = `Could not load the API document: ${e.message}`;
  });
