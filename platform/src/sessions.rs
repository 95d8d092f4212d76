//! Sessions: making an access token stop working before it expires.
//!
//! A session is one login: its refresh-token family, whose id every access token of the login
//! carries as `sid`. A session ends when the user logs out, when a spent refresh token is
//! presented again (possible theft: the whole family is revoked), or when the user is deleted.
//!
//! Two checks, so that an ended session is refused everywhere within a bounded delay:
//! - **The revocation set**, in [`crate::cache::Cache`]: ending a session writes
//!   `session:revoked:<sid>` for as long as an access token can live. With Redis every replica
//!   sees it on its next request; without Redis (or while it is down) the entry lives in this
//!   process's memory and the next check bounds the delay on the other replicas.
//! - **The database**: a session is confirmed live (its family has an unrevoked, unexpired
//!   refresh token, and its user and account exist) at most once per [`RECHECK`] per process.
//!   So a session ended anywhere — by another replica while Redis is down, or by deleting the user
//!   in the database — is refused by every replica at most [`RECHECK`] later.

use std::time::Duration;

use crate::auth::{ACCESS_TOKEN_TTL_SECONDS, Claims};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest time a replica keeps accepting a session that ended elsewhere without Redis, or
/// whose user was deleted.
pub const RECHECK: Duration = Duration::from_secs(5);

/// How long a revocation is remembered: as long as an access token can live, plus the leeway
/// the verifier allows on expiry.
const REVOCATION_TTL: Duration = Duration::from_secs(ACCESS_TOKEN_TTL_SECONDS as u64 + 60);

fn revoked_key(sid: &str) -> String {
    format!("session:revoked:{sid}")
}

/// Ends session `sid` for every access token that carries it (the caller has already revoked its
/// refresh tokens in the database).
pub async fn revoke(state: &AppState, sid: &str) {
    state
        .cache
        .set(&revoked_key(sid), b"1", REVOCATION_TTL)
        .await;
    state.keys.live_sessions.invalidate(sid).await;
}

/// Refuses (401) an access token whose session has ended.
pub async fn ensure_active(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let ended = || {
        ApiError::Unauthorized(
            "this session has ended (logged out, revoked or the user was deleted); log in again"
                .into(),
        )
    };
    if state.cache.get(&revoked_key(&claims.sid)).await.is_some() {
        return Err(ended());
    }
    if state.keys.live_sessions.contains_key(&claims.sid) {
        return Ok(());
    }
    let live = state
        .store
        .session_live(claims.uid, claims.acct, &claims.sid)
        .await?;
    if !live {
        return Err(ended());
    }
    state
        .keys
        .live_sessions
        .insert(claims.sid.clone(), ())
        .await;
    Ok(())
}
