//! Authentication primitives: argon2 password hashes, short-lived JWT access tokens, and opaque
//! refresh tokens (only their SHA-256 is stored; they are rotated on every use).

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL_SECONDS: i64 = 15 * 60;
/// How long a refresh token is valid.
pub const REFRESH_TOKEN_TTL_SECONDS: i64 = 7 * 24 * 3600;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Trades on their own account.
    Trader,
    /// Also halts symbols, credits accounts and reads the audit trail.
    Admin,
}

impl Role {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trader => "trader",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "trader" => Some(Role::Trader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Claims carried by an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Subject: the user id as a string, as the JWT spec requires.
    pub sub: String,
    /// User id.
    pub uid: i64,
    /// Brokerage account id.
    pub acct: i64,
    /// Role.
    pub role: Role,
    /// Session id: the login's refresh-token family. Logging out, presenting a spent refresh
    /// token or deleting the user ends the session, and with it every access token that carries
    /// this id (see [`crate::sessions`]).
    pub sid: String,
    /// The token only allows enrolling in MFA (`REQUIRE_ADMIN_MFA`, an admin who has not
    /// enrolled): every other authenticated route answers 403 `mfa_enrollment_required`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enrol_only: bool,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
}

/// Signs and verifies access tokens with the `JWT_SECRET` (HS256), and remembers which sessions
/// this process confirmed live in the last [`crate::sessions::RECHECK`] (the verifier's cache,
/// so a token costs one database look-up per session and interval, not one per request).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Session ids confirmed live recently; entries expire after [`crate::sessions::RECHECK`].
    pub(crate) live_sessions: moka::future::Cache<String, ()>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys from the shared secret.
    pub fn new(secret: &[u8]) -> TokenKeys {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            live_sessions: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(crate::sessions::RECHECK)
                .build(),
        }
    }

    /// Issues an access token of session `sid` for the user, valid for
    /// [`ACCESS_TOKEN_TTL_SECONDS`].
    pub fn issue(
        &self,
        user_id: i64,
        account_id: i64,
        role: Role,
        sid: &str,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_with(user_id, account_id, role, sid, now, false)
    }

    /// [`TokenKeys::issue`], restricted to MFA enrolment when `enrol_only`.
    pub fn issue_with(
        &self,
        user_id: i64,
        account_id: i64,
        role: Role,
        sid: &str,
        now: i64,
        enrol_only: bool,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            enrol_only,
            sub: user_id.to_string(),
            uid: user_id,
            acct: account_id,
            role,
            sid: sid.to_owned(),
            iat: now,
            exp: now + ACCESS_TOKEN_TTL_SECONDS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies signature and expiry and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|d| d.claims)
    }
}

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored PHC hash; a malformed hash never verifies.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random refresh token (256 bits, URL-safe base64) — shown to the client once.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores for a refresh token: its SHA-256, hex encoded.
pub fn refresh_token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsf", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(
            hash,
            hash_password("correct horse").expect("hash"),
            "salted"
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering_and_expiry() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let now = chrono::Utc::now().timestamp();
        let token = keys.issue(7, 9, Role::Admin, "s1", now).expect("issue");
        let claims = keys.verify(&token).expect("verify");
        assert_eq!((claims.uid, claims.acct, claims.role), (7, 9, Role::Admin));
        assert_eq!(claims.sid, "s1");
        assert_eq!(claims.sub, "7");

        let other = TokenKeys::new(b"another-secret-another-secret-xx");
        assert!(other.verify(&token).is_err(), "wrong key");
        let expired = keys
            .issue(7, 9, Role::Trader, "s1", now - 2 * ACCESS_TOKEN_TTL_SECONDS)
            .expect("issue");
        assert!(keys.verify(&expired).is_err(), "expired");
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(keys.verify(&tampered).is_err(), "tampered");
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(refresh_token_hash(&a).len(), 64);
        assert_eq!(refresh_token_hash(&a), refresh_token_hash(&a));
        assert_ne!(refresh_token_hash(&a), refresh_token_hash(&b));
    }
}
