// Browser tests of the web app: Debian's Chromium, driven by playwright-core, against a real
// platform started here in --demo mode on a spare loopback port with a temporary SQLite file.
//
//   TRADEPLANE_BIN  the platform binary (default: target/debug/tradeplane-platform)
//   CHROMIUM        the browser (default: /usr/bin/chromium)
// Screenshots of every page at desktop and phone width go to target/e2e-screenshots/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TRADEPLANE_BIN || join(ROOT, 'target/debug/tradeplane-platform');
const SHOTS = join(ROOT, 'target/e2e-screenshots');
const ADMIN = { username: 'admin', password: 'e2e-admin-password' };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let server;
let serverLog = '';
let dir;
let base;
let browser;
const problems = []; // console errors, page errors and CSP violations of every page

async function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function waitReady(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      if ((await fetch(`${url}/health/ready`)).ok) return;
    } catch {
      /* not listening yet */
    }
    if (server.exitCode !== null) throw new Error(`the platform exited:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the platform did not become ready in ${ms} ms:\n${serverLog}`);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'tradeplane-e2e-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ['--demo'], {
    env: {
      ...process.env,
      DATABASE_URL: `sqlite://${join(dir, 'e2e.db')}?mode=rwc`,
      LISTEN_ADDR: `127.0.0.1:${port}`,
      ADMIN_USERNAME: ADMIN.username,
      ADMIN_PASSWORD: ADMIN.password,
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout.on('data', (d) => (serverLog += d));
  server.stderr.on('data', (d) => (serverLog += d));
  await waitReady(base, 60_000);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu'],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function newPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, baseURL: base });
  const page = await context.newPage();
  page.on('console', (m) => {
    // Chromium logs every non-2xx fetch; the rejections the tests provoke are expected.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`${page.url()}: console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.stack || e.message}`));
  return page;
}

/** Desktop and phone-width screenshots; `fullPage` false for pages taller than a few screens. */
async function shot(page, name, fullPage = true) {
  await page.screenshot({ path: join(SHOTS, `${name}-desktop.png`), fullPage });
  const size = page.viewportSize();
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, `${name}-phone.png`), fullPage });
  await page.setViewportSize(size);
}

/** Text of the book ladder and of the tape's first rows. */
async function marketText(page) {
  return page.evaluate(() => ({
    book: document.getElementById('book').innerText,
    tape: [...document.querySelectorAll('#tape tbody tr')].slice(0, 5).map((r) => r.innerText).join('\n'),
  }));
}

async function signIn(page, { username, password }, action = '#sign-in') {
  await page.fill('#auth-user', username);
  await page.fill('#auth-pass', password);
  await page.click(action);
  await page.waitForSelector('#ticket', { state: 'visible' });
}

async function order(page, { side, type, tif, price, qty }) {
  await page.check(`#ticket input[name=side][value=${side}]`);
  await page.selectOption('#o-type', type);
  if (tif) await page.selectOption('#o-tif', tif);
  if (price !== undefined) await page.fill('#o-price', price);
  await page.fill('#o-qty', qty);
  await page.evaluate(() => (document.getElementById('o-msg').textContent = ''));
  await page.click('#o-submit');
  await page.waitForFunction(() => document.getElementById('o-msg').textContent.length > 0);
  return page.textContent('#o-msg');
}

test('the market view fills and changes by itself with the demo running', async () => {
  const page = await newPage();
  await page.goto('/#AAPL');
  await page.waitForSelector('#bids tr.bid');
  await page.waitForSelector('#tape tbody tr.up, #tape tbody tr.down');
  assert.equal(await page.textContent('#feed-status'), 'live');
  assert.match(await page.textContent('#symbol'), /AAPL/);
  const first = await marketText(page);
  await page.waitForFunction(
    (before) => {
      const book = document.getElementById('book').innerText;
      const tape = [...document.querySelectorAll('#tape tbody tr')].slice(0, 5).map((r) => r.innerText).join('\n');
      return book !== before.book && tape !== before.tape;
    },
    first,
    { timeout: 20_000 },
  );
  // Every instrument shows a last price; the ticker has the 24 h change.
  await page.waitForFunction(() => [...document.querySelectorAll('#instruments .last')].every((c) => c.textContent !== '—'));
  assert.notEqual(await page.textContent('#t-change'), '—');
  // The ladder keeps ten rows a side whatever the book holds: no layout jump.
  assert.equal(await page.locator('#bids tr').count(), 10);
  assert.equal(await page.locator('#asks tr').count(), 10);
  // Candle intervals switch and load.
  for (const i of ['5m', '1h', '1m']) {
    const loaded = page.waitForResponse((r) => r.url().includes(`/candles?interval=${i}`) && r.ok());
    await page.click(`#intervals button[data-interval="${i}"]`);
    await loaded;
  }
  await page.waitForTimeout(500);
  await shot(page, 'market');
  await page.screenshot({ path: join(SHOTS, 'market-view.png') });
  // Dark theme.
  await page.click('#theme');
  assert.equal(await page.getAttribute('html', 'data-theme'), 'dark');
  await shot(page, 'market-dark');
  await page.context().close();
});

test('a gap in md_seq is shown and answered with a fresh subscription', async () => {
  const page = await newPage();
  let dropped = false;
  await page.routeWebSocket(/\/api\/v1\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    let events = 0;
    upstream.onMessage((m) => {
      const msg = JSON.parse(String(m));
      // Lose the fifth event after the snapshot, once: the client must notice the jump.
      if (msg.md_seq && msg.type !== 'snapshot' && ++events === 5 && !dropped) {
        dropped = true;
        return;
      }
      ws.send(m);
    });
    ws.onMessage((m) => upstream.send(m));
  });
  const subscribes = [];
  page.on('websocket', (ws) => ws.on('framesent', (f) => String(f.payload).includes('subscribe') && subscribes.push(f.payload)));
  await page.goto('/#AAPL');
  await page.waitForFunction(() => document.body.dataset.resubscribed === '1', null, { timeout: 20_000 });
  assert.match(await page.textContent('#banner'), /Missed market data for AAPL .*resubscribing/);
  await shot(page, 'market-gap');
  // The fresh snapshot clears the notice.
  await page.waitForSelector('#banner', { state: 'hidden', timeout: 10_000 });
  assert.ok(dropped);
  await page.context().close();
});

test('register, get funded by the admin, trade, see fills and P&L, refresh and log out', async () => {
  const trader = { username: `e2e_${Date.now() % 1e8}`, password: 'e2e-password-1' };
  const page = await newPage();
  await page.goto('/#AAPL');
  await page.waitForSelector('#bids tr.bid');
  await signIn(page, trader, '#register');
  const who = await page.textContent('#who');
  const account = /account (\d+)/.exec(who)?.[1];
  assert.ok(account, who);

  // The admin funds the new account from the admin panel, halts and resumes, reads the audit.
  const admin = await newPage();
  await admin.goto('/#AAPL');
  await signIn(admin, ADMIN);
  await admin.waitForSelector('#admin', { state: 'visible' });
  await admin.fill('#d-account', account);
  await admin.fill('#d-amount', '100000');
  await admin.click('#deposit button[type=submit]');
  await admin.waitForFunction(() => /Deposited/.test(document.getElementById('admin-msg').textContent));
  await admin.click('#halt');
  await admin.waitForFunction(() => document.getElementById('status').textContent === 'halted');
  assert.match(await order(page, { side: 'buy', type: 'market', tif: 'IOC', qty: '1' }), /halted.*\(symbolHalted\)/i);
  await admin.click('#resume');
  await admin.waitForFunction(() => document.getElementById('status').textContent === 'open');
  await admin.fill('#audit-filter', 'market.');
  await admin.press('#audit-filter', 'Enter');
  await admin.waitForFunction(() => {
    const text = document.getElementById('audit').innerText;
    return /market\.halted/.test(text) && /market\.resumed/.test(text) && !/order\.placed/.test(text);
  });
  await shot(admin, 'admin');
  await admin.context().close();

  // A limit buy one tick under the best bid rests: it is in open orders and in the book.
  await page.waitForFunction(() => document.getElementById('p-cash').textContent === '100,000.00');
  // (The best bid as the API has it: a decimal string such as "190" or "189.97".)
  // Under the fifth bid level: the bots' market orders (at most three lots) never reach it.
  const priceText = await page.evaluate(() => {
    const fifth = window.tradeplane.state.book.sorted('buy', 10)[4].raw - 1_000_000n; // one tick (0.01) under
    return `${fifth / 100_000_000n}.${(fifth % 100_000_000n).toString().padStart(8, '0').slice(0, 2)}`.replace(/\.?0+$/, '');
  });
  const placed = await order(page, { side: 'buy', type: 'limit', tif: 'GTC', price: priceText, qty: '2' });
  const id = /Order (\d+): new/.exec(placed)?.[1];
  assert.ok(id, placed);
  await page.waitForSelector(`#open-orders tr[data-order="${id}"]`);
  const mine = await page.evaluate(
    ([id]) => [...document.querySelectorAll('#open-orders tr')].find((r) => r.dataset.order === id)?.cells[3].textContent,
    [id],
  );
  assert.equal(mine.replace(/\.?0+$/, ''), priceText.replace(/\.?0+$/, ''));
  try {
    await page.waitForSelector(`#bids tr[data-price="${priceText}"]`, { timeout: 10_000 });
  } catch (e) {
    const rows = await page.$$eval('#bids tr', (r) => r.map((x) => `${x.dataset.price} ${x.innerText}`));
    throw new Error(`${e.message}\nbids: ${rows.join(' | ')}\nfeed: ${await page.textContent('#feed-status')}`);
  }
  await shot(page, 'trading');

  // Cancel it.
  await page.click(`#open-orders button[aria-label="Cancel order ${id}"]`);
  await page.waitForSelector(`#open-orders tr[data-order="${id}"]`, { state: 'detached' });
  assert.match(await page.textContent('#o-msg'), new RegExp(`Order ${id} cancelled`));

  // Checked before sending: a price off the tick never reaches the server.
  const sent = [];
  page.on('request', (r) => r.url().endsWith('/api/v1/orders') && r.method() === 'POST' && sent.push(r));
  assert.match(await order(page, { side: 'buy', type: 'limit', tif: 'GTC', price: '190.001', qty: '1' }), /tick size 0\.01/);
  assert.equal(sent.length, 0);

  // A crossing market buy fills; it shows in fills and in the portfolio with its P&L.
  assert.match(await order(page, { side: 'buy', type: 'market', tif: 'IOC', qty: '3' }), /filled, filled 3 of 3/);
  await page.waitForSelector('#fills tbody tr[data-trade]');
  await page.waitForSelector('#positions tr[data-symbol=AAPL]');
  const position = await page.locator('#positions tr[data-symbol=AAPL] td').allTextContents();
  const bought = (await page.$$eval('#fills tbody tr[data-trade]', (r) => r.map((x) => Number(x.cells[4].textContent)))).reduce((a, b) => a + b, 0);
  assert.equal(Number(position[1]), bought, 'the position is the sum of the fills');
  assert.ok(bought >= 3);
  assert.notEqual(position[2], '—', 'average cost');
  assert.notEqual(position[5], '—', 'unrealised P&L');
  assert.notEqual(await page.textContent('#p-unrealized'), '—');

  // A rejected order shows the server's message and code.
  const rejected = await order(page, { side: 'sell', type: 'market', tif: 'IOC', qty: '50' });
  assert.match(rejected, /^Rejected: .+ \(insufficientPosition\)$/);
  await shot(page, 'portfolio');

  // Tokens refresh silently: an expiring session is renewed before the next call.
  const old = await page.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('tradeplane.session'));
    s.expires_at = Date.now() + 5_000;
    s.access_token = 'expired';
    localStorage.setItem('tradeplane.session', JSON.stringify(s));
    return s.refresh_token;
  });
  await page.reload();
  await page.waitForSelector('#positions tr[data-symbol=AAPL]');
  const renewed = await page.evaluate(() => JSON.parse(localStorage.getItem('tradeplane.session')).refresh_token);
  assert.notEqual(renewed, old);

  // The API explorer lists every operation, and "try it" calls the API with this user's token.
  const openapi = await (await fetch(`${base}/api/v1/openapi.json`)).json();
  const operations = Object.entries(openapi.paths).flatMap(([path, item]) =>
    ['get', 'post', 'put', 'patch', 'delete'].filter((m) => item[m]).map((m) => `${m} ${path}`),
  );
  await page.goto('/docs');
  await page.waitForFunction((n) => document.body.dataset.operations === String(n), operations.length);
  const listed = await page.$$eval('section.op[data-method]', (s) => s.map((e) => `${e.dataset.method} ${e.dataset.path}`));
  assert.deepEqual(listed.sort(), operations.sort());
  assert.match(await page.textContent('#who'), new RegExp(trader.username));
  const portfolio = page.locator('section.op[data-method=get][data-path="/portfolio"]');
  await portfolio.locator('button[type=submit]').click();
  await portfolio.locator('pre[data-status="200"]').waitFor();
  assert.match(await portfolio.locator('pre').textContent(), new RegExp(`"account_id": ${account}`));
  const candles = page.locator('section.op[data-path="/markets/{symbol}/candles"]');
  await candles.locator('input[name=symbol]').fill('AAPL');
  await candles.locator('button[type=submit]').click();
  await candles.locator('pre[data-status="200"]').waitFor();
  await candles.scrollIntoViewIfNeeded();
  await shot(page, 'docs', false);

  // Logout revokes the refresh token on the server.
  await page.goto('/');
  const refresh = await page.evaluate(() => JSON.parse(localStorage.getItem('tradeplane.session')).refresh_token);
  const revoked = page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/logout'));
  await page.click('#logout');
  assert.equal((await revoked).status(), 204);
  await page.waitForSelector('#auth-form', { state: 'visible' });
  const reuse = await fetch(`${base}/api/v1/auth/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  assert.equal(reuse.status, 401);
  await page.context().close();
});

test('pages are served with a strict policy and load nothing from elsewhere', async () => {
  for (const path of ['/', '/docs', '/assets/js/app.js', '/assets/app.css']) {
    const r = await fetch(`${base}${path}`);
    assert.equal(r.status, 200, path);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /script-src 'self'/, path);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/, path);
  }
  const api = await fetch(`${base}/api/v1/instruments`);
  assert.equal(api.headers.get('content-security-policy'), "default-src 'none'; frame-ancestors 'none'");
  assert.deepEqual(problems, [], 'no console errors, page errors or CSP violations');
});
