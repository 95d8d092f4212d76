//! The one error type of the HTTP API and its JSON shape.
//!
//! Every error a client sees is `{"code": ..., "message": ..., "request_id": ...}` with a stable,
//! machine-readable `code`. Handlers return [`ApiError`]; errors produced outside handlers
//! (unknown routes, oversize bodies, timeouts, panics) are rewritten into the same shape by
//! [`crate::http::middleware::envelope`], which also fills in the request id.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error returned by the API, mapped to a status code and a stable code string.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, wrong types, unknown fields).
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but breaks a rule; `code` says which.
    #[error("{message}")]
    Unprocessable {
        /// Stable machine-readable reason.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// Missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The request body exceeds `MAX_BODY_BYTES`.
    #[error("the request body is larger than the configured limit")]
    PayloadTooLarge,
    /// The body is not `application/json`.
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The resource does not exist (or is not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with current state.
    #[error("{0}")]
    Conflict(String),
    /// A dependency is unavailable; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A rate limit refused the request (429 `rate_limited`, or `login_locked` after too many
    /// failed logins); `retry_after` is when it would be accepted.
    #[error("{message}")]
    RateLimited {
        /// `rate_limited` or `login_locked`.
        code: &'static str,
        /// Human explanation.
        message: String,
        /// The `Retry-After` and `RateLimit` header values.
        headers: crate::resilience::ratelimit::LimitHeaders,
    },
    /// The service is saturated and shed the request (503 `overloaded`); retry with backoff.
    #[error("{0}")]
    Overloaded(String),
    /// A dependency's circuit breaker is open or the dependency failed (503
    /// `dependency_unavailable`); the request was not attempted, or failed without effect.
    #[error("{0}")]
    DependencyUnavailable(String),
    /// An error with its own status and code (the order path's 408 `request_timeout`, 409
    /// `idempotency_conflict`, 504 `outcome_unknown`).
    #[error("{message}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// Stable machine-readable reason.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// A bug or an unexpected failure; details go to the log, not the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_)
            | ApiError::Overloaded(_)
            | ApiError::DependencyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Status { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code string clients can switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unprocessable { code, .. }
            | ApiError::RateLimited { code, .. }
            | ApiError::Status { code, .. } => code,
            ApiError::Overloaded(_) => "overloaded",
            ApiError::DependencyUnavailable(_) => "dependency_unavailable",
            other => code_for_status(other.status()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => {
                ApiError::DependencyUnavailable("the database is unavailable, retry later".into())
            }
            e if crate::store::telemetry::is_timeout(&e) => ApiError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "statement_timeout",
                message: "the database did not complete the request in time (DATABASE_STATEMENT_TIMEOUT_SECONDS); retry later".into(),
            },
            other => ApiError::Internal(other.into()),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error, example = json!({"code": "not_found", "message": "no order 42", "request_id": "3f8a0c1e-8d2b-4c4e-9a57-2f1d9c0b7e21"}))]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// The request id (also in the `x-request-id` header), for support and log search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            code: self.code().to_owned(),
            message,
            request_id: None,
        };
        let db_failed = matches!(self, ApiError::DependencyUnavailable(_));
        // The matcher's own "database down" answer (see `trading::Refusal::DatabaseDown`): says
        // nothing to the HTTP breaker either way.
        let db_untouched = matches!(
            self,
            ApiError::Status {
                code: "dependency_unavailable",
                ..
            }
        );
        let overloaded = matches!(self, ApiError::Overloaded(_));
        let headers = match &self {
            ApiError::RateLimited { headers, .. } => Some(headers.clone()),
            _ => None,
        };
        let mut response = (status, Json(body.clone())).into_response();
        if let Some(headers) = headers {
            headers.apply(response.headers_mut());
        }
        if overloaded {
            // Shed work is retried soon: the saturation lasts as long as a request does.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if db_failed {
            // Read by the database breaker middleware: this request saw the database fail.
            response
                .extensions_mut()
                .insert(crate::resilience::breaker::DbOutcome::Failed);
        }
        if db_untouched {
            response
                .extensions_mut()
                .insert(crate::resilience::breaker::DbOutcome::Untouched);
        }
        // The envelope (http::guard) adds the request id from this marker.
        response.extensions_mut().insert(body);
        response
    }
}

/// The stable code for an HTTP status, used when no more specific code is known.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    }
}
