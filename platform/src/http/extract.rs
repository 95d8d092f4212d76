//! Extractors that turn bad input into [`ApiError`]s with stable codes instead of axum's plain
//! text rejections, and the bearer-token authentication extractor.
//!
//! The body, query and path extractors only accept types implementing [`Validate`]: every text
//! a client sends passes the rules of [`crate::input`] before a handler sees it.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::auth::{Claims, Role};
use crate::error::ApiError;
use crate::input::Validate;
use crate::state::AppState;

/// JSON body extractor: malformed JSON, wrong types, missing or unknown fields are 400
/// `bad_request` naming the problem; a wrong content type is 415; an oversize body 413; a text
/// field that breaks its rule is 422 with the rule's code (see [`crate::input`]).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Validate, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => {
                v.validate()?;
                Ok(ApiJson(v))
            }
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::BadRequest(rejection.body_text()),
    }
}

/// Query-string extractor with the same error shape as [`ApiJson`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Validate, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))?;
        v.validate()?;
        Ok(ApiQuery(v))
    }
}

/// Path-parameter extractor with the same error shape as [`ApiJson`]: a parameter of the wrong
/// type is 400 naming it, a text parameter that breaks its rule 422.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Validate + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        v.validate()?;
        Ok(ApiPath(v))
    }
}

/// `{symbol}` in a path.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SymbolPath {
    /// Instrument symbol, e.g. `BTC-USD` (422 `invalid_symbol` when malformed, 404 when not
    /// configured).
    #[param(value_type = super::openapi::Symbol)]
    pub symbol: String,
}

impl Validate for SymbolPath {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(crate::input::symbol("symbol", &self.symbol)?)
    }
}

/// `{id}` in a path (an order or account id).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The id (an integer; else 400).
    pub id: i64,
}

impl Validate for IdPath {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(()) // an integer: nothing textual to check
    }
}

/// What a token restricted to MFA enrolment ([`Claims::enrol_only`]) may call.
const ENROL_ONLY_PATHS: [&str; 3] = [
    "/api/v1/auth/mfa/enroll",
    "/api/v1/auth/mfa/confirm",
    "/api/v1/me",
];

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
        let token = bearer_token(value.to_str().ok()).ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
        let claims = state
            .keys
            .verify(token)
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token".into()))?;
        crate::sessions::ensure_active(state, &claims).await?;
        // The API router is nested under /api/v1, which strips the prefix from `parts.uri`.
        let path = parts.uri.path();
        let allowed = ENROL_ONLY_PATHS
            .iter()
            .any(|p| *p == path || p.strip_prefix("/api/v1") == Some(path));
        if claims.enrol_only && !allowed {
            return Err(ApiError::Status {
                status: StatusCode::FORBIDDEN,
                code: "mfa_enrollment_required",
                message: "REQUIRE_ADMIN_MFA: enrol in MFA (POST /api/v1/auth/mfa/enroll, then /confirm) and log in again".into(),
            });
        }
        Ok(AuthUser(claims))
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name is case-insensitive
/// (RFC 9110 §11.1): `bearer` and `BEARER` work too.
pub(crate) fn bearer_token(value: Option<&str>) -> Option<&str> {
    let (scheme, token) = value?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An authenticated caller with the admin role.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Claims);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(claims) = AuthUser::from_request_parts(parts, state).await?;
        if claims.role != Role::Admin {
            return Err(ApiError::Forbidden(
                "this operation needs the admin role".into(),
            ));
        }
        Ok(AdminUser(claims))
    }
}

/// The client's address as the rate limits see it ([`super::guard::client_ip`]), for the audit
/// records of logins (a login from a new address scores higher).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(super::guard::client_ip_of(
            &parts.headers,
            &parts.extensions,
            state.config.resilience.forwarded_for_hops,
        )))
    }
}

/// The request id of the current request (set by the request-id layer, which replaces a foreign
/// id that is too long or has unsafe characters), for audit records.
#[derive(Debug, Clone)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get(super::middleware::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .filter(|v| super::middleware::is_safe_request_id(v))
                .map(str::to_owned),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "  bEaReR   abc  "] {
            assert_eq!(bearer_token(Some(v)), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", ""] {
            assert_eq!(bearer_token(Some(v)), None, "{v:?}");
        }
    }
}
