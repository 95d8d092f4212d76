// The API client: JSON requests, the signed-in session, silent token refresh, logout.
//
// The session (token pair, user name, role, account) lives in localStorage so the app and the
// API explorer at /docs share it. The access token is refreshed shortly before it expires
// (and once more if a request still gets a 401); a refresh that fails ends the session.
//
// With MFA, a correct password gives a challenge instead of tokens: it is kept in this module's
// memory only (never in localStorage) until `verifyMfa` completes the login with a code. A
// session whose tokens are marked `mfa_enrollment_required` (REQUIRE_ADMIN_MFA, admin not yet
// enrolled) may only enrol; `enrolOnly()` tells the app so.

const KEY = 'tradeplane.session';
const EARLY_MS = 30_000;

/** An error answer of the API: its HTTP status, stable `code` and human `message`. */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

/** Fires `change` when the user signs in or out. */
export const sessionEvents = new EventTarget();

let session = load();
let pending = null; // { username, challenge, expiresAt } of a login waiting for its MFA code
let refreshing = null;
let timer = null;

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  if (next) localStorage.setItem(KEY, JSON.stringify(next));
  else localStorage.removeItem(KEY);
  schedule();
  sessionEvents.dispatchEvent(new Event('change'));
}

function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const wait = Math.max(1_000, session.expires_at - Date.now() - EARLY_MS);
  timer = setTimeout(() => refresh().catch(() => {}), wait);
}

/** The current session, or null. */
export function current() {
  return session;
}

function withTokens(base, tokens) {
  return {
    ...base,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    expires_at: Date.now() + tokens.expires_in * 1000,
  };
}

/** Spends the refresh token for a new pair (one at a time); false when the session ended. */
export function refresh() {
  if (!session) return Promise.resolve(false);
  if (!refreshing) {
    const spent = session.refresh_token;
    refreshing = request('POST', '/auth/refresh', { refresh_token: spent }, { anonymous: true })
      .then((tokens) => {
        if (session && session.refresh_token === spent) save(withTokens(session, tokens));
        return true;
      })
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) save(null);
        return false;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

async function request(method, path, body, { anonymous = false } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (!anonymous && session) headers.authorization = `Bearer ${session.access_token}`;
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 403 && data?.code === 'mfa_enrollment_required' && session && !session.mfa_enrollment_required) {
      // The server says this session may only enrol: tell the app instead of failing each call.
      save({ ...session, mfa_enrollment_required: true });
    }
    throw new ApiError(
      resp.status,
      data?.code || 'http_' + resp.status,
      data?.message || resp.statusText || 'request failed',
      data?.request_id || resp.headers.get('x-request-id'),
    );
  }
  return data;
}

/** Calls the API as the signed-in user (if any), refreshing the token when needed. */
export async function api(method, path, body) {
  if (session && session.expires_at - Date.now() < EARLY_MS) await refresh();
  try {
    return await request(method, path, body);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && session && (await refresh())) {
      return request(method, path, body);
    }
    throw e;
  }
}

/** True when the session may only enrol in MFA (then log in again). */
export function enrolOnly() {
  return !!session?.mfa_enrollment_required;
}

async function start(username, tokens) {
  const base = withTokens({ username, mfa_enrollment_required: !!tokens.mfa_enrollment_required }, tokens);
  session = base;
  const me = await request('GET', '/me');
  save({
    ...base,
    role: me.role,
    account_id: me.account_id,
    user_id: me.user_id,
    mfa_enrollment_required: base.mfa_enrollment_required || !!me.mfa?.enrollment_required,
  });
}

/**
 * Signs in; the session then carries the user's role and account. Resolves to
 * `{ mfaRequired: true }` (and no session yet) when the user has MFA: call `verifyMfa`.
 */
export async function login(username, password) {
  pending = null;
  const answer = await request('POST', '/auth/login', { username, password }, { anonymous: true });
  if (answer?.mfa_required) {
    pending = { username, challenge: answer.challenge, expiresAt: Date.now() + answer.expires_in * 1000 };
    return { mfaRequired: true, expiresIn: answer.expires_in };
  }
  await start(username, answer);
  return { mfaRequired: false };
}

/** The user name of the login waiting for its MFA code, or null. */
export function pendingMfa() {
  return pending ? pending.username : null;
}

/** Forgets the login waiting for its MFA code. */
export function cancelMfa() {
  pending = null;
}

/**
 * Completes a login that answered `mfa_required` with a TOTP or recovery code. A challenge the
 * server no longer accepts (expired, used, too many wrong codes) is forgotten: the error's
 * `code` is then `mfa_challenge_invalid` and the user must enter the password again.
 */
export async function verifyMfa(code) {
  if (!pending || Date.now() > pending.expiresAt) {
    pending = null;
    throw new ApiError(401, 'mfa_challenge_invalid', 'the sign-in has expired');
  }
  const { username, challenge } = pending;
  try {
    const tokens = await request('POST', '/auth/mfa/verify', { challenge, code }, { anonymous: true });
    pending = null;
    await start(username, tokens);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'mfa_challenge_invalid') pending = null;
    throw e;
  }
}

/** Creates a trader account, then signs in. */
export async function register(username, password) {
  await request('POST', '/auth/register', { username, password }, { anonymous: true });
  return login(username, password);
}

/** Revokes the refresh token's family on the server and forgets the session. */
export async function logout() {
  pending = null;
  const s = session;
  save(null);
  if (s) {
    await request('POST', '/auth/logout', { refresh_token: s.refresh_token }, { anonymous: true }).catch(
      () => {},
    );
  }
}

window.addEventListener('storage', (e) => {
  if (e.key === KEY) {
    session = load();
    schedule();
    sessionEvents.dispatchEvent(new Event('change'));
  }
});
schedule();
