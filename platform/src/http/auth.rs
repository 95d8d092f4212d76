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
    /// Present (`true`) when `REQUIRE_ADMIN_MFA` applies and the admin has not enrolled: these
    /// tokens only allow `POST /auth/mfa/enroll`, `POST /auth/mfa/confirm` and `GET /me`
    /// (elsewhere 403 `mfa_enrollment_required`); log in again after confirming.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa_enrollment_required: bool,
}

/// The answer to a correct password of a user with MFA: no tokens yet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"mfa_required": true, "challenge": "c2VjcmV0LWNoYWxsZW5nZS1mcm9tLWxvZ2luLXJlc3BvbnNl", "expires_in": 300, "methods": ["totp", "recovery_code"]}))]
pub struct MfaChallenge {
    /// Always `true`.
    pub mfa_required: bool,
    /// Single-use challenge for `POST /auth/mfa/verify`.
    pub challenge: String,
    /// Seconds the challenge stays valid.
    pub expires_in: i64,
    /// What `POST /auth/mfa/verify` accepts: `totp` and `recovery_code`.
    pub methods: Vec<String>,
}

/// What `POST /auth/login` returns: tokens, or an MFA challenge.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(example = json!({"mfa_required": true, "challenge": "c2VjcmV0LWNoYWxsZW5nZS1mcm9tLWxvZ2luLXJlc3BvbnNl", "expires_in": 300, "methods": ["totp", "recovery_code"]}))]
pub enum LoginResponse {
    /// The user has no MFA: a token pair.
    Tokens(TokenPair),
    /// The user has MFA: complete the login with `POST /auth/mfa/verify`.
    MfaRequired(MfaChallenge),
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
    let enrol_only = crate::mfa::service::enrol_only(state, user).await?;
    let access_token = state
        .keys
        .issue_with(
            user.id,
            user.account_id,
            user.role,
            family,
            now.timestamp(),
            enrol_only,
        )
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
        mfa_enrollment_required: enrol_only,
    })
}

/// The details of a successful login's audit record: `extra`, plus, when the client address is
/// known, `ip` and whether it is new for this user (`new_ip`: the user logged in before, never
/// from it), which feeds its risk score (docs/security.md).
pub(crate) async fn login_details(
    state: &AppState,
    user: &UserRecord,
    ip: Option<std::net::IpAddr>,
    mut extra: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    if let Some(ip) = ip {
        let ip = ip.to_string();
        let (seen, any) = state
            .store
            .login_ip_seen(&format!("user:{}", user.id), &ip)
            .await?;
        extra["new_ip"] = (any && !seen).into();
        extra["ip"] = ip.into();
    }
    Ok(extra)
}

/// The token pair of a new session (a login) for `user`.
pub(super) async fn new_session(
    state: &AppState,
    user: &UserRecord,
) -> Result<TokenPair, ApiError> {
    let family = uuid::Uuid::new_v4().simple().to_string();
    let refresh_token = auth::new_refresh_token();
    issue_pair(state, user, &family, refresh_token, true).await
}

/// `POST /api/v1/auth/login`: checks the password and returns an access and a refresh token.
///
/// Besides the per-IP login limit (in the rate limit middleware), attempts are limited per
/// username (`LOGIN_RATE_LIMIT_PER_MINUTE`, against credential stuffing from many addresses) and
/// failed logins per username are capped per hour (`FAILED_LOGIN_LIMIT_PER_HOUR`): the failure
/// that uses the cap up is audited as `login.locked`, and until the hour refills every login of
/// that username, even with the right password, is refused with 429 `login_locked`.
///
/// A user with MFA gets 200 with `{"mfa_required": true, "challenge": …}` and no tokens, as
/// Stripe's and exchanges' APIs answer a correct password that needs a second step: the
/// password was right, so it is not an error, and a client that does not know MFA fails on the
/// missing `access_token` rather than retrying a 401 that it takes for a wrong password.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    operation_id = "login",
    summary = "Log in",
    description = "Checks the password and returns a short-lived access token and a single-use refresh token; the pair is a new session. Failed attempts are audited. For a user with MFA the answer is instead `{\"mfa_required\": true, \"challenge\": …}`: complete the login with `POST /auth/mfa/verify`. With `REQUIRE_ADMIN_MFA`, an admin without MFA gets tokens marked `mfa_enrollment_required` that only allow enrolling.",
    request_body = Credentials,
    responses(
        (status = 200, description = "A token pair, or an MFA challenge.", body = LoginResponse),
        (status = 401, description = "`unauthorized`: wrong username or password.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_text`: a control character or more than 256 characters.", body = crate::error::ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    super::extract::ClientIp(ip): super::extract::ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<LoginResponse>, ApiError> {
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
        let mut details = serde_json::json!({
            "failed_logins": failures.quota.burst.saturating_sub(failures.remaining),
        });
        if let Some(ip) = ip {
            details["ip"] = ip.to_string().into();
        }
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
                        "failed_logins": details["failed_logins"],
                        "ip": details.get("ip"),
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
                details,
            })
            .await?;
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    };
    if let crate::mfa::LoginStep::Challenge {
        challenge,
        expires_in,
    } = crate::mfa::service::after_password(&state, &user).await?
    {
        // The login is audited when the code completes it.
        return Ok(Json(LoginResponse::MfaRequired(MfaChallenge {
            mfa_required: true,
            challenge,
            expires_in,
            methods: vec!["totp".into(), "recovery_code".into()],
        })));
    }
    state
        .store
        .append_audit(&NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "login".into(),
            subject: None,
            request_id,
            details: login_details(&state, &user, ip, serde_json::json!({})).await?,
        })
        .await?;
    Ok(Json(LoginResponse::Tokens(
        new_session(&state, &user).await?,
    )))
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
#[schema(example = json!({"user_id": 1, "account_id": 1, "role": "trader", "mfa_enabled": true, "mfa": {"enabled": true, "recovery_codes_left": 9, "enrollment_required": false}, "quotas": {"requests": {"limit": 10000, "remaining": 9874, "reset": 3600, "reset_at": "2026-01-03T00:00:00Z"}, "orders": {"limit": null, "remaining": null, "reset": 3600, "reset_at": "2026-01-03T00:00:00Z"}}}))]
pub struct Me {
    /// User id.
    pub user_id: i64,
    /// Brokerage account id.
    pub account_id: i64,
    /// Role.
    pub role: Role,
    /// Whether MFA is on (the same as `mfa.enabled`).
    pub mfa_enabled: bool,
    /// The caller's MFA state.
    pub mfa: MeMfa,
    /// What is left of the daily quotas.
    pub quotas: MeQuotas,
}

/// The MFA part of `GET /me`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeMfa {
    /// MFA is on.
    pub enabled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// `REQUIRE_ADMIN_MFA` applies and MFA is off: enrol, then log in again.
    pub enrollment_required: bool,
}

/// The daily quotas of `GET /me`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeQuotas {
    /// Authenticated API requests per UTC day (`QUOTA_REQUESTS_PER_DAY`).
    pub requests: QuotaView,
    /// Order submissions per UTC day (`QUOTA_ORDERS_PER_DAY`).
    pub orders: QuotaView,
}

/// One daily quota.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    /// Per UTC day; `null` when unlimited.
    pub limit: Option<u64>,
    /// Left today; `null` when unlimited.
    pub remaining: Option<u64>,
    /// Seconds until the next UTC midnight, when the quota refills.
    pub reset: u64,
    /// The next UTC midnight.
    #[schema(value_type = super::openapi::Timestamp)]
    pub reset_at: chrono::DateTime<Utc>,
}

/// `GET /api/v1/me`: who the token belongs to.
#[utoipa::path(
    get,
    path = "/me",
    tag = "auth",
    operation_id = "me",
    summary = "Who the access token belongs to",
    description = "The caller, whether MFA is on, and what is left of the daily quotas (this request does not count toward the request quota).",
    security(("bearerAuth" = [])),
    responses((status = 200, description = "The caller.", body = Me))
)]
pub async fn me(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<Me>, ApiError> {
    use crate::resilience::quota::QuotaKind;
    let mfa = crate::mfa::service::status(&state, &claims).await?;
    let now = state.clock.now();
    let account = claims.acct.to_string();
    let quotas = &state.resilience.quotas;
    let view = |d: crate::resilience::quota::QuotaDecision| QuotaView {
        limit: (d.limit > 0).then_some(d.limit),
        remaining: d.remaining(),
        reset: d.reset.as_secs(),
        reset_at: now + chrono::Duration::seconds(i64::try_from(d.reset.as_secs()).unwrap_or(0)),
    };
    Ok(Json(Me {
        user_id: claims.uid,
        account_id: claims.acct,
        role: claims.role,
        mfa_enabled: mfa.enabled,
        mfa: MeMfa {
            enabled: mfa.enabled,
            recovery_codes_left: mfa.recovery_codes_left,
            enrollment_required: mfa.enrolment_required,
        },
        quotas: MeQuotas {
            requests: view(quotas.peek(QuotaKind::Requests, &account, now).await),
            orders: view(quotas.peek(QuotaKind::Orders, &account, now).await),
        },
    }))
}
