//! `/api/v1/auth/*`: registration, login, token refresh (rotating) and logout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, AuthUser, RequestId};
use crate::auth::{self, REFRESH_TOKEN_TTL_SECONDS, Role};
use crate::error::ApiError;
use crate::input::{self, Validate};
use crate::resilience::{self, ratelimit::LimitKind};
use crate::state::AppState;
use crate::store::{NewAuditEvent, RotateOutcome, UserRecord};

/// Body of `POST /auth/login` (and, read with the registration rules, `POST /auth/register`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "password": "correct horse battery"}))]
pub struct Credentials {
    /// The login name: the exact name, or one that is the same under case folding and
    /// look-alike characters (`Alice` logs in as `alice`).
    #[schema(value_type = super::openapi::Text)]
    pub username: String,
    /// The password.
    #[schema(value_type = super::openapi::Text)]
    pub password: String,
}

/// Body of `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "q3Zl0u9Yb1k2eXo4VxG8Qm7rT5sN6wHc0aJdLfPiUyE"}))]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    #[schema(value_type = super::openapi::Text)]
    pub refresh_token: String,
}

/// Tokens returned by login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "token_type": "Bearer", "expires_in": 900, "refresh_token": "q3Zl0u9Yb1k2eXo4VxG8Qm7rT5sN6wHc0aJdLfPiUyE"}))]
pub struct TokenPair {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single-use token for `POST /auth/refresh`; rotated on every use.
    pub refresh_token: String,
}

/// A user as shown to themselves.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = User, example = json!({"user_id": 1, "account_id": 1, "username": "alice", "role": "trader"}))]
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

/// Login checks only what is unsafe to look up, store or log (the registration rules are
/// applied by [`crate::accounts::create`]), so names created under older rules still log in.
impl Validate for Credentials {
    fn validate(&self) -> Result<(), ApiError> {
        input::text("username", &self.username)?;
        input::text("password", &self.password)?;
        Ok(())
    }
}

impl Validate for RefreshRequest {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(input::text("refresh_token", &self.refresh_token)?)
    }
}

/// `POST /api/v1/auth/register`: creates a trader with an empty account.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    operation_id = "register",
    summary = "Create a trader account",
    description = "Creates a user with the `trader` role and an empty brokerage account. 409 when the name, or one that is the same under case folding and look-alike characters, exists.",
    request_body = super::openapi::Registration,
    responses(
        (status = 201, description = "The new user.", body = UserView),
        (status = 409, description = "`conflict`: the username is taken.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_username` or `invalid_password`.", body = crate::error::ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let user = crate::accounts::create(
        &state.store,
        &state.passwords,
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

/// A token pair of session `family`; `refresh_token` is stored as the family's first token when
/// `store_refresh` (a login), and is already stored by the rotation otherwise.
async fn issue_pair(
    state: &AppState,
    user: &UserRecord,
    family: &str,
    refresh_token: String,
    store_refresh: bool,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let access_token = state
        .keys
        .issue(user.id, user.account_id, user.role, family, now.timestamp())
        .map_err(|e| ApiError::Internal(e.into()))?;
    if store_refresh {
        let expires = now + chrono::Duration::seconds(REFRESH_TOKEN_TTL_SECONDS);
        state
            .store
            .insert_refresh_token(
                user.id,
                family,
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

/// `POST /api/v1/auth/login`: checks the password and returns an access and a refresh token.
///
/// Besides the per-IP login limit (in the rate limit middleware), attempts are limited per
/// username (`LOGIN_RATE_LIMIT_PER_MINUTE`, against credential stuffing from many addresses) and
/// failed logins per username are capped per hour (`FAILED_LOGIN_LIMIT_PER_HOUR`): the failure
/// that uses the cap up is audited as `login.locked`, and until the hour refills every login of
/// that username, even with the right password, is refused with 429 `login_locked`.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    operation_id = "login",
    summary = "Log in",
    description = "Checks the password and returns a short-lived access token and a single-use refresh token; the pair is a new session. Failed attempts are audited.",
    request_body = Credentials,
    responses(
        (status = 200, description = "A token pair.", body = TokenPair),
        (status = 401, description = "`unauthorized`: wrong username or password.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_text`: a control character or more than 256 characters.", body = crate::error::ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<TokenPair>, ApiError> {
    let limiter = &state.resilience.limiter;
    // The same key as uniqueness: `ADMIN` and `admin` share one lock.
    let user_key = input::username_key(&body.username);
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
    let ok = state
        .passwords
        .verify(body.password.clone(), stored)
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        let failures = limiter.check(LimitKind::FailedLogin, &user_key).await;
        if failures.allowed && failures.remaining == 0 {
            tracing::warn!(username = %input::bounded(&body.username, 64), "failed-login cap reached; logins locked");
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
    let refresh_token = auth::new_refresh_token();
    Ok(Json(
        issue_pair(&state, &user, &family, refresh_token, true).await?,
    ))
}

/// `POST /api/v1/auth/refresh`: spends the refresh token and returns a new pair. A token that
/// was already spent revokes its whole family (the client must log in again).
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    summary = "Rotate the refresh token",
    description = "Spends the refresh token and returns a new pair of the same session. Presenting a spent token again ends the session: every refresh and access token of that login is refused (401) and the client must log in again.",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair.", body = TokenPair),
        (status = 401, description = "`unauthorized`: unknown, expired, revoked or reused refresh token.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_text`.", body = crate::error::ErrorBody),
    )
)]
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
        RotateOutcome::Rotated { user, family } => Ok(Json(
            issue_pair(&state, &user, &family, new_token, false).await?,
        )),
        RotateOutcome::Reused { family } => {
            crate::sessions::revoke(&state, &family).await;
            Err(ApiError::Unauthorized(
                "refresh token already used; every token of this login is revoked, log in again"
                    .into(),
            ))
        }
        RotateOutcome::Invalid => Err(ApiError::Unauthorized(
            "invalid or expired refresh token".into(),
        )),
    }
}

/// `POST /api/v1/auth/logout`: ends the refresh token's session: its refresh tokens and every
/// access token of the login stop working.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    operation_id = "logout",
    summary = "Log out",
    description = "Ends the session of the refresh token: its refresh tokens and every access token of the login are refused from now on. Succeeds for unknown tokens too.",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "The session has ended."),
        (status = 422, description = "`invalid_text`.", body = crate::error::ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    if let Some(family) = state
        .store
        .revoke_refresh_family(&auth::refresh_token_hash(&body.refresh_token))
        .await?
    {
        crate::sessions::revoke(&state, &family).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller, as `GET /me` shows them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": 1, "account_id": 1, "role": "trader"}))]
pub struct Me {
    /// User id.
    pub user_id: i64,
    /// Brokerage account id.
    pub account_id: i64,
    /// Role.
    pub role: Role,
}

/// `GET /api/v1/me`: who the token belongs to.
#[utoipa::path(
    get,
    path = "/me",
    tag = "auth",
    operation_id = "me",
    summary = "Who the access token belongs to",
    security(("bearerAuth" = [])),
    responses((status = 200, description = "The caller.", body = Me))
)]
pub async fn me(AuthUser(claims): AuthUser) -> Json<Me> {
    Json(Me {
        user_id: claims.uid,
        account_id: claims.acct,
        role: claims.role,
    })
}
