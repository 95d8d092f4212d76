// Two-factor authentication in the app: the code step of a login, and the Security panel
// (state from GET /me, enrol → confirm → recovery codes shown once, disable).
//
// Nothing of it is stored: the login challenge stays in api.js's memory, the secret and the
// recovery codes only in the page while they are shown, and they are removed from it when the
// user moves on or signs out.

import { api, ApiError, cancelMfa, current, enrolOnly, logout, pendingMfa, verifyMfa } from './api.js';
import { $, fill, h } from './dom.js';
import qrcode from './vendor/qrcode.js';

const errText = (e) => (e instanceof ApiError ? `${e.message} (${e.code})` : String(e?.message || e));

function say(id, text, kind = '') {
  $(id).textContent = text;
  $(id).className = `msg ${kind}`;
}

// ---------------------------------------------------------------- the login's code step

let recovery = false; // the code step takes a recovery code instead of a TOTP code

function codeMode(useRecovery) {
  recovery = useRecovery;
  const input = $('mfa-code');
  input.value = '';
  input.setAttribute('aria-invalid', 'false');
  if (useRecovery) {
    input.removeAttribute('pattern');
    input.setAttribute('inputmode', 'text');
    input.setAttribute('autocomplete', 'off');
    input.setAttribute('autocapitalize', 'characters');
    input.setAttribute('spellcheck', 'false');
    input.maxLength = 19;
    $('mfa-code-label').textContent = 'Recovery code';
    fill($('mfa-form-help'), 'Enter one of your unused recovery codes (XXXX-XXXX-XXXX-XXXX). Each works once.');
    $('mfa-use-recovery').textContent = 'Use the authenticator app instead';
  } else {
    input.setAttribute('pattern', '[0-9]{6}');
    input.setAttribute('inputmode', 'numeric');
    input.setAttribute('autocomplete', 'one-time-code');
    input.removeAttribute('autocapitalize');
    input.maxLength = 6;
    $('mfa-code-label').textContent = 'Authentication code';
    fill($('mfa-form-help'), 'Enter the 6-digit code from your authenticator app for ', h('strong', { id: 'mfa-user' }, pendingMfa() || ''), '.');
    $('mfa-use-recovery').textContent = 'Use a recovery code instead';
  }
}

/** After a correct password of a user with MFA: shows the code step instead of the password. */
export function showCodeStep() {
  $('auth-form').hidden = true;
  $('mfa-form').hidden = false;
  codeMode(false);
  say('mfa-msg', '');
  $('mfa-code').focus();
}

function backToPassword(message) {
  cancelMfa();
  $('mfa-form').hidden = true;
  $('auth-form').hidden = false;
  $('mfa-code').value = '';
  $('auth-pass').value = '';
  say('auth-msg', message || '', message ? 'error' : '');
  $('auth-pass').focus();
}

async function submitCode() {
  const code = $('mfa-code').value.replace(/\s+/g, '');
  if (!recovery && !/^\d{6}$/.test(code)) {
    say('mfa-msg', 'Enter the 6 digits your authenticator app shows.', 'error');
    $('mfa-code').setAttribute('aria-invalid', 'true');
    $('mfa-code').focus();
    return;
  }
  if (recovery && !code) {
    say('mfa-msg', 'Enter a recovery code.', 'error');
    $('mfa-code').focus();
    return;
  }
  $('mfa-verify').disabled = true;
  try {
    await verifyMfa(code);
    $('mfa-form').hidden = true;
    $('auth-form').hidden = false;
    $('mfa-code').value = '';
    $('auth-pass').value = '';
    say('mfa-msg', '');
  } catch (e) {
    if (e instanceof ApiError && e.code === 'mfa_challenge_invalid') {
      backToPassword(`${e.message} (${e.code}): sign in again.`);
    } else {
      say('mfa-msg', errText(e), 'error');
      $('mfa-code').setAttribute('aria-invalid', 'true');
      $('mfa-code').select();
    }
  } finally {
    $('mfa-verify').disabled = false;
  }
}

$('mfa-form').addEventListener('submit', (e) => {
  e.preventDefault();
  submitCode();
});
$('mfa-cancel').addEventListener('click', () => backToPassword(''));
$('mfa-use-recovery').addEventListener('click', () => {
  codeMode(!recovery);
  say('mfa-msg', '');
  $('mfa-code').focus();
});

// ---------------------------------------------------------------- the Security panel

const panel = { me: null, enrolling: false, codes: false, unavailable: false };

function render() {
  const on = !!panel.me?.mfa?.enabled;
  const state = $('sec-state');
  state.dataset.mfa = panel.me ? (on ? 'on' : 'off') : '';
  state.textContent = !panel.me
    ? 'Two-factor authentication: …'
    : on
      ? `Two-factor authentication is on (${panel.me.mfa.recovery_codes_left} recovery codes left).`
      : 'Two-factor authentication is off: the password alone signs in to this account.';
  $('sec-required').hidden = !enrolOnly();
  $('sec-unavailable').hidden = !panel.unavailable;
  $('sec-enable').hidden = !panel.me || on || panel.enrolling || panel.codes || panel.unavailable;
  $('sec-enroll').hidden = !panel.enrolling;
  $('sec-recovery').hidden = !panel.codes;
  $('sec-disable').hidden = !on || panel.codes || enrolOnly();
  $('sec-recovery-done').textContent = enrolOnly() ? 'I have saved them: sign in again' : 'I have saved them';
}

function forgetSecrets() {
  $('sec-secret').textContent = '';
  $('sec-uri').textContent = '';
  $('sec-confirm-code').value = '';
  $('sec-disable-code').value = '';
  fill($('sec-codes'));
  const qr = $('sec-qr');
  qr.getContext('2d').clearRect(0, 0, qr.width, qr.height);
}

/** Signed out: removes every trace of an enrolment from the page. */
export function resetSecurity() {
  Object.assign(panel, { me: null, enrolling: false, codes: false, unavailable: false });
  forgetSecrets();
  say('sec-msg', '');
  render();
}

/** Fetches the MFA state of the signed-in user (`GET /me`) and shows it. */
export async function loadSecurity() {
  if (!current()) return;
  try {
    panel.me = await api('GET', '/me');
  } catch (e) {
    say('sec-msg', errText(e), 'error');
  }
  render();
}

/** Draws the otpauth URI as a QR code (dark modules on white, with a quiet zone). */
function drawQr(text) {
  const qr = qrcode(0, 'M');
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const canvas = $('sec-qr');
  const cell = Math.max(2, Math.floor(canvas.width / (n + 8)));
  const offset = Math.floor((canvas.width - cell * n) / 2);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#000000';
  for (let r = 0; r < n; r += 1) {
    for (let c = 0; c < n; c += 1) if (qr.isDark(r, c)) ctx.fillRect(offset + c * cell, offset + r * cell, cell, cell);
  }
  canvas.dataset.modules = String(n);
}

function unavailable(e) {
  if (e instanceof ApiError && e.code === 'mfa_unavailable') {
    panel.unavailable = true;
    panel.enrolling = false;
    say('sec-msg', '');
    render();
    return true;
  }
  return false;
}

$('sec-enable').addEventListener('click', async () => {
  say('sec-msg', '');
  try {
    const e = await api('POST', '/auth/mfa/enroll');
    panel.enrolling = true;
    $('sec-secret').textContent = e.secret;
    $('sec-uri').textContent = e.otpauth_uri;
    try {
      drawQr(e.otpauth_uri);
    } catch {
      $('sec-qr').hidden = true; // the secret and the link are shown anyway
    }
    render();
    $('sec-confirm-code').focus();
  } catch (e) {
    if (unavailable(e)) return;
    say('sec-msg', errText(e), 'error');
    if (e instanceof ApiError && e.code === 'mfa_already_enabled') loadSecurity();
  }
});

$('sec-enroll-cancel').addEventListener('click', () => {
  panel.enrolling = false;
  forgetSecrets();
  say('sec-msg', 'Not enabled: the pending enrolment is not active (enabling again makes a new secret).');
  render();
});

$('sec-confirm').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const code = $('sec-confirm-code').value.replace(/\s+/g, '');
  if (!/^\d{6}$/.test(code)) {
    say('sec-msg', 'Enter the 6 digits your authenticator app shows.', 'error');
    $('sec-confirm-code').focus();
    return;
  }
  try {
    const done = await api('POST', '/auth/mfa/confirm', { code });
    panel.enrolling = false;
    panel.codes = true;
    forgetSecrets();
    fill($('sec-codes'), done.recovery_codes.map((c) => h('li', {}, h('code', {}, c))));
    say('sec-msg', 'Two-factor authentication is on.', 'ok');
    await loadSecurity();
    $('sec-recovery-done').focus();
  } catch (e) {
    if (unavailable(e)) return;
    say('sec-msg', errText(e), 'error');
    $('sec-confirm-code').select();
  }
});

$('sec-recovery-done').addEventListener('click', () => {
  panel.codes = false;
  fill($('sec-codes'));
  say('sec-msg', '');
  // Enrol-only tokens stay enrol-only: a new login gives full tokens (and asks for a code).
  if (enrolOnly()) {
    logout();
    return;
  }
  render();
});

$('sec-disable').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const code = $('sec-disable-code').value.replace(/\s+/g, '');
  if (!code) {
    say('sec-msg', 'Enter a current code or a recovery code.', 'error');
    $('sec-disable-code').focus();
    return;
  }
  try {
    await api('POST', '/auth/mfa/disable', { code });
    $('sec-disable-code').value = '';
    say('sec-msg', 'Two-factor authentication is off.', 'ok');
    await loadSecurity();
  } catch (e) {
    if (unavailable(e)) return;
    say('sec-msg', errText(e), 'error');
    $('sec-disable-code').select();
  }
});
