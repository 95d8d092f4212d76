//! Multi-factor authentication with time-based one-time passwords (TOTP, RFC 6238): the
//! domain rules (secrets, codes, recovery codes, challenges) here, the flows that use the
//! store and the limiter in [`service`], the encryption of secrets at rest in [`crypto`].
//!
//! Codes are 6 digits, SHA-1, 30-second steps: what every authenticator app implements (the
//! `totp-rs` crate computes them). One step either side of now is accepted (clock drift,
//! typing time), and each step at most once per user: the last step used is stored and only
//! later steps are accepted (RFC 6238 §5.2), so a code seen over a shoulder or in a log
//! cannot be replayed.
//!
//! Recovery codes carry 80 random bits (16 base32 characters, shown as `XXXX-XXXX-XXXX-XXXX`)
//! and are stored as SHA-256 of the user id and the code, like refresh tokens: with 80 bits of
//! entropy a fast hash is out of reach of offline guessing, a lookup is one indexed equality
//! query, and no argon2 run (19 MiB, tens of milliseconds) is spent per code — ten per attempt
//! would let a stolen password buy CPU on demand. A key from `MFA_ENCRYPTION_KEY` (HMAC) would
//! add little and tie the codes to the key that rotates.

pub mod crypto;
pub mod rotate;
pub mod service;

use rand::Rng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Totp};

pub use crypto::{CryptoError, MfaKeyring};
pub use service::{LoginStep, Mfa, MfaStatus};

/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Tradeplane";
/// Seconds per TOTP step.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a TOTP code.
pub const DIGITS: usize = 6;
/// How long a login challenge may be completed.
pub const CHALLENGE_TTL_SECONDS: i64 = 300;
/// Wrong codes one challenge survives; the next one needs a new password login.
pub const CHALLENGE_MAX_ATTEMPTS: i32 = 5;
/// Recovery codes issued on confirmation.
pub const RECOVERY_CODES: usize = 10;
/// Length of a secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random TOTP secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8], account: &str) -> Result<Totp, totp_rs::TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
}

/// The secret as authenticator apps take it by hand (base32, no padding).
pub fn secret_base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret.to_vec()).to_base32()
}

/// The `otpauth://totp/Tradeplane:<name>?secret=…&issuer=Tradeplane…` URI (the QR code's text).
/// A name the URI format cannot carry (a `:`) is replaced by `user-<id>`.
pub fn otpauth_uri(secret: &[u8], username: &str, user_id: i64) -> anyhow::Result<String> {
    let uri = totp(secret, username).and_then(|t| t.to_url());
    match uri {
        Ok(uri) => Ok(uri),
        Err(_) => Ok(totp(secret, &format!("user-{user_id}"))?.to_url()?),
    }
}

/// The step a `code` is valid for at `now` (Unix seconds), one step either side, or `None`.
pub fn check_code(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let now = u64::try_from(now).ok()?;
    let code = code.trim();
    if !is_totp_code(code) {
        return None;
    }
    let totp = totp(secret, "x").ok()?;
    totp.check(code, now).and_then(|s| i64::try_from(s).ok())
}

/// The code of `secret` at `now`: what an authenticator app shows (tests and tools).
pub fn code_at(secret: &[u8], now: i64) -> String {
    totp(secret, "x")
        .map(|t| t.generate(u64::try_from(now).unwrap_or(0)).to_string())
        .unwrap_or_default()
}

/// Whether `input` looks like a TOTP code (six ASCII digits) rather than a recovery code.
pub fn is_totp_code(input: &str) -> bool {
    let input = input.trim();
    input.len() == DIGITS && input.bytes().all(|b| b.is_ascii_digit())
}

/// Ten new recovery codes, `XXXX-XXXX-XXXX-XXXX`.
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..16)
                .map(|_| char::from(BASE32[rng.gen_range(0..32)]))
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, with or without dashes and spaces) in its canonical
/// form, or `None` when it cannot be one.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == 16 && code.bytes().all(|b| BASE32.contains(&b))).then_some(code)
}

/// What the database stores for a (normalized) recovery code of `user_id`.
pub fn recovery_code_hash(user_id: i64, normalized: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("tradeplane-recovery:{user_id}:{normalized}"));
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_6238_and_tolerate_one_step() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890" at T = 59: 94287082 (8
        // digits); its last six digits are the 6-digit code.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59), "287082");
        assert_eq!(check_code(secret, "287082", 59), Some(1));
        assert_eq!(check_code(secret, "287082", 89), Some(1), "one step late");
        assert_eq!(check_code(secret, "287082", 0), Some(1), "one step early");
        assert_eq!(check_code(secret, "287082", 120), None, "two steps late");
        assert_eq!(check_code(secret, "28708", 59), None);
        assert_eq!(check_code(secret, "abcdef", 59), None);
    }

    #[test]
    fn the_uri_carries_the_secret_and_issuer() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "alice", 1).expect("uri");
        assert!(uri.starts_with("otpauth://totp/Tradeplane:alice?"), "{uri}");
        assert!(
            uri.contains(&format!("secret={}", secret_base32(&secret))),
            "{uri}"
        );
        let odd = otpauth_uri(&secret, "a:b", 9).expect("uri");
        assert!(odd.contains("user-9"), "{odd}");
    }

    #[test]
    fn recovery_codes_are_random_and_normalize() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), 10);
        let code = &codes[0];
        assert_eq!(code.len(), 19);
        let canonical = normalize_recovery_code(code).expect("valid");
        assert_eq!(
            normalize_recovery_code(&code.to_lowercase().replace('-', " ")),
            Some(canonical.clone())
        );
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_ne!(
            recovery_code_hash(1, &canonical),
            recovery_code_hash(2, &canonical)
        );
    }
}
