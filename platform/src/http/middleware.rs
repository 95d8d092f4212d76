//! Request and response pieces no tower-http layer provides: request-id hygiene, the body
//! deadline, the request log line, the JSON error envelope and panics as JSON. The per-request
//! middleware that uses them is [`crate::http::guard`]; everything else (request ids, tracing,
//! timeouts, limits) comes from tower-http; see [`crate::http::router`].

use axum::Json;
use std::convert::Infallible;
use std::task::Poll;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};

use crate::error::{ErrorBody, code_for_status};

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
/// the extractors would not spend anyway. A body that is already known to be empty (GETs,
/// WebSocket upgrades) is passed through untouched, without boxing anything: a tower `Layer`
/// rather than `from_fn`, which would clone and box the inner service on every request.
impl<S> tower::Layer<S> for BodyDeadline {
    type Service = BodyDeadlineService<S>;

    fn layer(&self, inner: S) -> BodyDeadlineService<S> {
        BodyDeadlineService {
            limit: *self,
            inner,
        }
    }
}

/// The service of [`BodyDeadline`].
#[derive(Clone, Debug)]
pub struct BodyDeadlineService<S> {
    limit: BodyDeadline,
    inner: S,
}

impl<S> tower::Service<Request> for BodyDeadlineService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        use axum::body::HttpBody as _;
        if req.body().is_end_stream() {
            return Either::Left(self.inner.call(req));
        }
        // The ready service answers this request; its clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Either::Right(Box::pin(async move {
            match read_body(limit, req).await {
                Ok(req) => inner.call(req).await,
                Err(refused) => Ok(refused),
            }
        }))
    }
}

/// The request with its body read within the deadline, or the error response.
async fn read_body(limit: BodyDeadline, req: Request) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limit.timeout, axum::body::to_bytes(body, limit.max_bytes)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut too_large = false;
            while let Some(err) = source {
                too_large |= err.is::<http_body_util::LengthLimitError>();
                source = err.source();
            }
            Err(if too_large {
                crate::error::ApiError::PayloadTooLarge.into_response()
            } else {
                crate::error::ApiError::BadRequest("the request body could not be read".into())
                    .into_response()
            })
        }
        Err(_) => Err(crate::error::ApiError::Status {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout",
            message: format!(
                "the request body did not arrive within {} s",
                limit.timeout.as_secs()
            ),
        }
        .into_response()),
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
pub async fn envelope(response: Response, request_id: Option<HeaderValue>) -> Response {
    let request_id = || {
        request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if let Some(body) = response.extensions().get::<ErrorBody>().cloned() {
        let (parts, _) = response.into_parts();
        return rebuild(
            parts,
            ErrorBody {
                request_id: request_id(),
                ..body
            },
        );
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
            request_id: request_id(),
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

/// Turns a panic into a 500 JSON error; the envelope adds the request id.
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

/// Known methods keep their name; anything else is `other`, so clients cannot inflate cardinality.
pub fn method_label(method: &Method) -> &'static str {
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
