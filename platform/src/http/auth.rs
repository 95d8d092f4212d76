//! `/api/v1/auth/*`: registration, login, token refresh (rotating) and logout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, AuthUser, RequestId};
use crate::auth::{self, REFRESH_TOKEN_TTL_SECONDS, Role};
use crate::error::ApiError;
use crate::resilience::{self, ratelimit::LimitKind};
use crate::state::AppState;
use crate::store::{CreateUserError, NewAuditEvent, RotateOutcome, UserRecord};

/// Body of `POST /auth/register` and `POST /auth/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3 to 32 characters: letters, digits, `_`, `.`, `-`.
    pub username: String,
    /// 8 to 128 characters.
    pub password: String,
}

/// Body of `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// Tokens returned by login and refresh.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenPair {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single-use token for `POST /auth/refresh`; rotated on every use.
    pub refresh_token: String,
}

/// A user as shown to themselves.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    /// User id.
    pub user_id: i64,
    /// Brokerage account id.
    pub account_id: i64,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
}

fn validate(c: &Credentials) -> Result<(), ApiError> {
    let name_ok = (3..=32).contains(&c.username.len())
        && c.username
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
    if !name_ok {
        return Err(ApiError::Unprocessable {
            code: "invalid_username",
            message: "username must be 3 to 32 characters of letters, digits, '_', '.', '-'".into(),
        });
    }
    if !(8..=128).contains(&c.password.chars().count()) {
        return Err(ApiError::Unprocessable {
            code: "invalid_password",
            message: "password must be 8 to 128 characters".into(),
        });
    }
    Ok(())
}

/// Hashing is deliberately slow; keep it off the async workers.
async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing password: {e}")))
}

/// Creates a user or admin (used by registration, the admin bootstrap and the demo).
pub async fn create_user(
    state: &AppState,
    username: &str,
    password: &str,
    role: Role,
    request_id: Option<&str>,
) -> Result<UserRecord, ApiError> {
    let hash = hash(password.to_owned()).await?;
    state
        .store
        .create_user(username, &hash, role, request_id)
        .await
        .map_err(|e| match e {
            CreateUserError::Taken => ApiError::Conflict(format!("username {username:?} is taken")),
            CreateUserError::Db(e) => e.into(),
        })
}

/// `POST /api/v1/auth/register`: creates a trader with an empty account.
pub async fn register(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    validate(&body)?;
    let user = create_user(
        &state,
        &body.username,
        &body.password,
        Role::Trader,
        request_id.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&user))))
}

fn view(user: &UserRecord) -> UserView {
    UserView {
        user_id: user.id,
        account_id: user.account_id,
        username: user.username.clone(),
        role: user.role,
    }
}

async fn issue_pair(
    state: &AppState,
    user: &UserRecord,
    family: Option<String>,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let access_token = state
        .keys
        .issue(user.id, user.account_id, user.role, now.timestamp())
        .map_err(|e| ApiError::Internal(e.into()))?;
    let refresh_token = auth::new_refresh_token();
    if let Some(family) = family {
        let expires = now + chrono::Duration::seconds(REFRESH_TOKEN_TTL_SECONDS);
        state
            .store
            .insert_refresh_token(
                user.id,
                &family,
                &auth::refresh_token_hash(&refresh_token),
                expires,
            )
            .await?;
    }
    Ok(TokenPair {
        access_token,
        token_type: "Bearer".into(),
        expires_in: auth::ACCESS_TOKEN_TTL_SECONDS,
        refresh_token,
    })
}

/// A valid argon2 hash of a random password, verified against when the username is unknown so
/// that a failed login takes the same time whether or not the user exists.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::hash_password(&auth::new_refresh_token()).unwrap_or_default()
});

/// `POST /api/v1/auth/login`: checks the password and returns an access and a refresh token.
///
/// Besides the per-IP login limit (in the rate limit middleware), attempts are limited per
/// username (`LOGIN_RATE_LIMIT_PER_MINUTE`, against credential stuffing from many addresses) and
/// failed logins per username are capped per hour (`FAILED_LOGIN_LIMIT_PER_HOUR`): the failure
/// that uses the cap up is audited as `login.locked`, and until the hour refills every login of
/// that username, even with the right password, is refused with 429 `login_locked`.
pub async fn login(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<TokenPair>, ApiError> {
    let limiter = &state.resilience.limiter;
    let user_key = body.username.to_lowercase();
    let attempt = limiter.check(LimitKind::LoginUser, &user_key).await;
    if !attempt.allowed {
        return Err(resilience::limit_error(&attempt));
    }
    let lock = limiter.peek(LimitKind::FailedLogin, &user_key).await;
    if !lock.allowed {
        return Err(resilience::limit_error(&lock));
    }
    let user = state.store.find_user(&body.username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = body.password.clone();
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => auth::verify_password(&password, &hash),
        None => {
            auth::verify_password(&password, &DUMMY_HASH);
            false
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(user) = user.filter(|_| ok) else {
        let failures = limiter.check(LimitKind::FailedLogin, &user_key).await;
        if failures.allowed && failures.remaining == 0 {
            tracing::warn!(username = %body.username, "failed-login cap reached; logins locked");
            state
                .store
                .append_audit(&NewAuditEvent {
                    actor: "anonymous".into(),
                    action: "login.locked".into(),
                    subject: Some(format!("username:{}", body.username)),
                    request_id: request_id.clone(),
                    details: serde_json::json!({
                        "failed_logins_per_hour": failures.quota.burst,
                        "locked_for_seconds": failures.quota.interval.as_secs(),
                    }),
                })
                .await?;
        }
        state
            .store
            .append_audit(&NewAuditEvent {
                actor: "anonymous".into(),
                action: "login.failed".into(),
                subject: Some(format!("username:{}", body.username)),
                request_id,
                details: serde_json::json!({}),
            })
            .await?;
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    };
    state
        .store
        .append_audit(&NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "login".into(),
            subject: None,
            request_id,
            details: serde_json::json!({}),
        })
        .await?;
    let family = uuid::Uuid::new_v4().simple().to_string();
    Ok(Json(issue_pair(&state, &user, Some(family)).await?))
}

/// `POST /api/v1/auth/refresh`: spends the refresh token and returns a new pair. A token that
/// was already spent revokes its whole family (the client must log in again).
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let new_token = auth::new_refresh_token();
    let expires = Utc::now() + chrono::Duration::seconds(REFRESH_TOKEN_TTL_SECONDS);
    let outcome = state
        .store
        .rotate_refresh_token(
            &auth::refresh_token_hash(&body.refresh_token),
            &auth::refresh_token_hash(&new_token),
            expires,
        )
        .await?;
    match outcome {
        RotateOutcome::Rotated(user) => {
            let mut pair = issue_pair(&state, &user, None).await?;
            pair.refresh_token = new_token;
            Ok(Json(pair))
        }
        RotateOutcome::Reused => Err(ApiError::Unauthorized(
            "refresh token already used; every token of this login is revoked, log in again".into(),
        )),
        RotateOutcome::Invalid => Err(ApiError::Unauthorized(
            "invalid or expired refresh token".into(),
        )),
    }
}

/// `POST /api/v1/auth/logout`: revokes the refresh token's family.
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .revoke_refresh_family(&auth::refresh_token_hash(&body.refresh_token))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/me`: who the token belongs to.
pub async fn me(AuthUser(claims): AuthUser) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({ "user_id": claims.uid, "account_id": claims.acct, "role": claims.role }),
    )
}
