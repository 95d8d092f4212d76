-- Multi-factor authentication (TOTP, RFC 6238). Only adds tables (an `expand` migration).
--
-- user_mfa: one row per user who started enrolment; `enabled_at` is set when a valid code
-- confirmed it. The secret is AES-256-GCM ciphertext (never the plain secret) sealed with the
-- key whose id is `key_id` (MFA_ENCRYPTION_KEY; see docs/security.md). `last_used_step` is the
-- last TOTP step accepted: only later steps are, so each code works once.
CREATE TABLE user_mfa (
    user_id           BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    key_id            TEXT NOT NULL,
    secret_ciphertext TEXT NOT NULL,
    last_used_step    BIGINT,
    enabled_at        TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX user_mfa_key_id ON user_mfa (key_id);

-- One-time recovery codes, by SHA-256 (see platform/src/mfa/mod.rs); `used_at` when spent.
CREATE TABLE mfa_recovery_codes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL UNIQUE,
    used_at    TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

-- Login challenges: a correct password of an MFA user yields one (by SHA-256 here), completed
-- once with a code within `expires_at`; `attempts` counts wrong codes.
CREATE TABLE mfa_challenges (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    challenge_hash TEXT NOT NULL UNIQUE,
    attempts       INTEGER NOT NULL DEFAULT 0,
    expires_at     TEXT NOT NULL,
    used_at        TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);
