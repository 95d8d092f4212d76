//! `/api/v1/auth/mfa/*`: TOTP enrolment, confirmation, the second login step and disabling.
//! The flows are in [`crate::mfa::service`]; these handlers parse and shape only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{TokenPair, new_session};
use super::extract::{ApiJson, AuthUser, RequestId};
use crate::error::ApiError;
use crate::input::{self, Validate};
use crate::mfa::service;
use crate::state::AppState;

/// A new enrolment: add it to an authenticator app, then confirm with a code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "otpauth_uri": "otpauth://totp/Tradeplane:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Tradeplane", "confirmed": false}))]
pub struct MfaEnrollment {
    /// The TOTP secret in base32, to type into an authenticator app.
    pub secret: String,
    /// The `otpauth://` URI, the content of the QR code authenticator apps scan.
    pub otpauth_uri: String,
    /// Always `false`: MFA is active only after `POST /auth/mfa/confirm`.
    pub confirmed: bool,
}

/// Body of `POST /auth/mfa/confirm` and `POST /auth/mfa/disable`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "492039"}))]
pub struct MfaCode {
    /// A current 6-digit TOTP code (disable also takes a recovery code).
    #[schema(value_type = super::openapi::Text)]
    pub code: String,
}

impl Validate for MfaCode {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(input::text("code", &self.code)?)
    }
}

/// The recovery codes, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"enabled": true, "recovery_codes": ["ABCD-EFGH-IJKL-MNOP", "QRST-UVWX-YZ23-4567"]}))]
pub struct MfaConfirmed {
    /// Always `true`: MFA is on from now.
    pub enabled: bool,
    /// Ten one-time recovery codes; each completes one login (or disables MFA) without the app.
    /// Only their hashes are stored: this is the only time they are shown.
    pub recovery_codes: Vec<String>,
}

/// Body of `POST /auth/mfa/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"challenge": "c2VjcmV0LWNoYWxsZW5nZS1mcm9tLWxvZ2luLXJlc3BvbnNl", "code": "492039"}))]
pub struct MfaVerify {
    /// The `challenge` of the login response.
    #[schema(value_type = super::openapi::Text)]
    pub challenge: String,
    /// A current 6-digit TOTP code or an unused recovery code (`XXXX-XXXX-XXXX-XXXX`).
    #[schema(value_type = super::openapi::Text)]
    pub code: String,
}

impl Validate for MfaVerify {
    fn validate(&self) -> Result<(), ApiError> {
        input::text("challenge", &self.challenge)?;
        Ok(input::text("code", &self.code)?)
    }
}

/// `POST /api/v1/auth/mfa/enroll`: starts enrolling the caller in TOTP MFA, so that a stolen
/// password alone no longer opens the account.
#[utoipa::path(
    post,
    path = "/auth/mfa/enroll",
    tag = "auth",
    operation_id = "mfaEnroll",
    summary = "Start MFA enrolment",
    description = "Creates a new TOTP secret (stored encrypted) and returns it with its `otpauth://` URI. MFA is not active until `POST /auth/mfa/confirm` with a valid code; enrolling again before that replaces the secret.",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The new secret.", body = MfaEnrollment),
        (status = 409, description = "`mfa_already_enabled`.", body = crate::error::ErrorBody),
        (status = 503, description = "`mfa_unavailable`: the server has no `MFA_ENCRYPTION_KEY`.", body = crate::error::ErrorBody),
    )
)]
pub async fn enroll(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    RequestId(request_id): RequestId,
) -> Result<Json<MfaEnrollment>, ApiError> {
    let e = service::enroll(&state, &claims, request_id.as_deref()).await?;
    Ok(Json(MfaEnrollment {
        secret: e.secret,
        otpauth_uri: e.otpauth_uri,
        confirmed: false,
    }))
}

/// `POST /api/v1/auth/mfa/confirm`: proves the app has the secret and turns MFA on.
#[utoipa::path(
    post,
    path = "/auth/mfa/confirm",
    tag = "auth",
    operation_id = "mfaConfirm",
    summary = "Confirm MFA enrolment",
    description = "Checks a current code of the pending enrolment and turns MFA on. Returns ten one-time recovery codes, shown only this once. A wrong code counts toward the failed-login cap.",
    security(("bearerAuth" = [])),
    request_body = MfaCode,
    responses(
        (status = 200, description = "MFA is on.", body = MfaConfirmed),
        (status = 409, description = "`mfa_not_enrolled` or `mfa_already_enabled`.", body = crate::error::ErrorBody),
        (status = 422, description = "`mfa_code_invalid` or `invalid_text`.", body = crate::error::ErrorBody),
        (status = 503, description = "`mfa_unavailable`.", body = crate::error::ErrorBody),
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<MfaCode>,
) -> Result<Json<MfaConfirmed>, ApiError> {
    let codes = service::confirm(&state, &claims, &body.code, request_id.as_deref()).await?;
    Ok(Json(MfaConfirmed {
        enabled: true,
        recovery_codes: codes,
    }))
}

/// `POST /api/v1/auth/mfa/verify`: the second step of a login with MFA.
#[utoipa::path(
    post,
    path = "/auth/mfa/verify",
    tag = "auth",
    operation_id = "mfaVerify",
    summary = "Complete a login with an MFA code",
    description = "Completes the login whose response was `mfa_required` with its challenge and a TOTP code (one 30-second step either side accepted, each code once) or an unused recovery code. Returns the token pair of a new session. A challenge lasts 5 minutes, completes one login and survives 5 wrong codes; wrong codes count toward the failed-login cap (`FAILED_LOGIN_LIMIT_PER_HOUR`).",
    request_body = MfaVerify,
    responses(
        (status = 200, description = "A token pair.", body = TokenPair),
        (status = 401, description = "`mfa_challenge_invalid` (unknown, expired, used or exhausted challenge) or `mfa_code_invalid` (wrong or replayed code).", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_text`.", body = crate::error::ErrorBody),
        (status = 503, description = "`mfa_unavailable`.", body = crate::error::ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    super::extract::ClientIp(ip): super::extract::ClientIp,
    ApiJson(body): ApiJson<MfaVerify>,
) -> Result<Json<TokenPair>, ApiError> {
    let (user, _factor) = service::verify(
        &state,
        &body.challenge,
        &body.code,
        request_id.as_deref(),
        ip,
    )
    .await?;
    Ok(Json(new_session(&state, &user).await?))
}

/// `POST /api/v1/auth/mfa/disable`: turns MFA off, with proof of the second factor, so that a
/// hijacked session alone cannot remove it.
#[utoipa::path(
    post,
    path = "/auth/mfa/disable",
    tag = "auth",
    operation_id = "mfaDisable",
    summary = "Disable MFA",
    description = "Removes the caller's TOTP secret and recovery codes. Needs a current TOTP code or an unused recovery code; a wrong one counts toward the failed-login cap. Admins cannot while `REQUIRE_ADMIN_MFA` is on.",
    security(("bearerAuth" = [])),
    request_body = MfaCode,
    responses(
        (status = 204, description = "MFA is off."),
        (status = 409, description = "`mfa_not_enabled` or `admin_mfa_required`.", body = crate::error::ErrorBody),
        (status = 422, description = "`mfa_code_invalid` or `invalid_text`.", body = crate::error::ErrorBody),
        (status = 503, description = "`mfa_unavailable`.", body = crate::error::ErrorBody),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<MfaCode>,
) -> Result<StatusCode, ApiError> {
    service::disable(&state, &claims, &body.code, request_id.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
