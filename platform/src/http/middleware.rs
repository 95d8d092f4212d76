//! Middleware written here because no tower-http layer does it: the JSON error envelope and the
//! route-labelled HTTP metrics. Everything else (request ids, tracing, timeouts, limits, panics)
//! comes from tower-http; see [`crate::http::router`].

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorBody, code_for_status};
use crate::state::AppState;

/// The request id header, set by tower-http's `SetRequestIdLayer`.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest client-supplied `x-request-id` kept; a longer one is replaced by a fresh id.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's `x-request-id` may be kept: 1 to [`MAX_REQUEST_ID`] characters of ASCII
/// letters, digits and `-_.:+/=@`. Anything else (a 100 KB header, control characters, spaces)
/// would grow the audit trail and the logs, so it is replaced by a fresh UUID.
pub fn is_safe_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b))
}

/// Removes a foreign `x-request-id` that [`is_safe_request_id`] refuses, so the request-id layer
/// that runs next makes a fresh one.
pub fn drop_unsafe_request_id(mut req: Request) -> Request {
    let unsafe_id = req
        .headers()
        .get_all(REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !v.to_str().is_ok_and(is_safe_request_id));
    if unsafe_id {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// The body deadline of `REQUEST_BODY_TIMEOUT_SECONDS` and the `MAX_BODY_BYTES` bound.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline {
    /// How long the whole body may take, counted from the end of the request head.
    pub timeout: std::time::Duration,
    /// Largest body read.
    pub max_bytes: usize,
}

/// Reads the whole request body within one deadline, answering 408 `request_timeout` when it
/// has not arrived in time.
///
/// Hand-written because tower-http's `RequestBodyTimeoutLayer` restarts its timer at every
/// frame (a body trickled at 1 byte/s never trips it) and its error reaches the JSON extractor
/// as a 400. Request bodies here are small JSON documents, so buffering them costs nothing that
/// the extractors would not spend anyway. A body that is already known to be empty is passed
/// through untouched (GETs, WebSocket upgrades).
pub async fn body_deadline(
    State(limit): State<BodyDeadline>,
    req: Request,
    next: Next,
) -> Response {
    use axum::body::HttpBody as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limit.timeout, axum::body::to_bytes(body, limit.max_bytes)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut too_large = false;
            while let Some(err) = source {
                too_large |= err.is::<http_body_util::LengthLimitError>();
                source = err.source();
            }
            if too_large {
                crate::error::ApiError::PayloadTooLarge.into_response()
            } else {
                crate::error::ApiError::BadRequest("the request body could not be read".into())
                    .into_response()
            }
        }
        Err(_) => crate::error::ApiError::Status {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout",
            message: format!(
                "the request body did not arrive within {} s",
                limit.timeout.as_secs()
            ),
        }
        .into_response(),
    }
}

/// Response extension of a 503 that reports expected state (a probe saying "starting" or
/// "draining"), logged at DEBUG instead of ERROR by [`log_response`].
#[derive(Clone, Copy, Debug)]
pub struct ExpectedUnavailable;

/// The request log line: 5xx at ERROR (unless [`ExpectedUnavailable`]), others at DEBUG, in the
/// request's span (which carries the request id, method and path).
pub fn log_response<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_millis();
    if response.status().is_server_error()
        && response.extensions().get::<ExpectedUnavailable>().is_none()
    {
        tracing::error!(status, latency_ms, "response failed");
    } else {
        tracing::debug!(status, latency_ms, "finished processing request");
    }
}

/// Failures that are not a status (a response body that broke mid-stream) at ERROR; failing
/// statuses are logged by [`log_response`], which can tell an expected 503 apart.
pub fn log_failure(
    failure: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    if let tower_http::classify::ServerErrorsFailureClass::Error(error) = failure {
        tracing::error!(error, latency_ms = latency.as_millis(), "response failed");
    }
}

/// Largest plain-text error body kept as the message of a rewritten error.
const MAX_TEXT_ERROR: usize = 2048;

/// Gives every error response the JSON envelope `{code, message, request_id}`.
///
/// Handler errors ([`crate::error::ApiError`]) arrive with an [`ErrorBody`] extension and only
/// need the request id. Errors produced elsewhere (unknown routes, axum's extractor rejections,
/// tower-http's 413 and timeouts) arrive as plain text or empty bodies and are rewritten. JSON
/// bodies that are not errors of this shape (the 503 of a readiness probe) are left alone.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if let Some(body) = response.extensions().get::<ErrorBody>().cloned() {
        let (parts, _) = response.into_parts();
        return rebuild(parts, ErrorBody { request_id, ..body });
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT_ERROR)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let message = match (status.is_client_error(), text) {
        (true, Some(text)) => text,
        _ => default_message(status),
    };
    rebuild(
        parts,
        ErrorBody {
            code: code_for_status(status).to_owned(),
            message,
            request_id,
        },
    )
}

fn rebuild(mut parts: axum::http::response::Parts, body: ErrorBody) -> Response {
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut response = (parts, Json(body.clone())).into_response();
    response.extensions_mut().insert(body);
    response
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the configured limit".to_owned()
        }
        StatusCode::REQUEST_TIMEOUT => {
            "the request took longer than the configured timeout".to_owned()
        }
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

/// Turns a panic into a 500 JSON error; the json_errors layer adds the request id.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    let body = ErrorBody {
        code: "internal_error".into(),
        message: "internal server error".into(),
        request_id: None,
    };
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, Json(body.clone())).into_response();
    response.extensions_mut().insert(body);
    response
}

/// Decrements the in-flight gauge even when the request future is dropped (client went away).
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times every request by method, matched route template and status.
pub async fn track_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The state is one `Arc`: cloning it per request is one increment (a `Metrics` is a dozen).
    let metrics = &state.metrics;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    metrics.http_in_flight.inc();
    let _in_flight = InFlight(metrics.http_in_flight.clone());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [method, route.as_str(), status.as_str()];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_duration
        .with_label_values(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Known methods keep their name; anything else is `other`, so clients cannot inflate cardinality.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Header value for the Prometheus text exposition format.
pub fn prometheus_content_type() -> HeaderValue {
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8")
}
