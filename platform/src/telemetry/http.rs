//! The HTTP request span: named and attributed by the OpenTelemetry semantic conventions
//! (`otel.name` "POST /api/v1/orders", `http.route`, `http.response.status_code`, server kind)
//! when tracing is on, and a child of the request's W3C `traceparent`.

use axum::extract::{MatchedPath, Request};

use super::otel;

/// The span of one request (used by the router's `TraceLayer`). Without tracing it is the plain
/// log span (request id, method, path).
pub fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get(crate::http::middleware::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    if !otel::enabled() {
        return tracing::info_span!("request", request_id, method = %req.method(), path = %req.uri().path());
    }
    let span = tracing::info_span!(
        "request",
        request_id,
        method = %req.method(),
        path = %req.uri().path(),
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    otel::extract(&span, req.headers());
    span
}

/// Records the route template on the request span and renames it `METHOD /route` (called by
/// [`crate::http::guard::pipeline`], inside the `TraceLayer`, where the route is known).
pub fn record_route(req: &Request) {
    if !otel::enabled() {
        return;
    }
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if let Some(route) = req.extensions().get::<MatchedPath>() {
        span.record("http.route", route.as_str());
        // The span may have started already (a log line inside it reads its ids), after which
        // `otel.name` is no longer read: rename the live span.
        span.context()
            .span()
            .update_name(format!("{} {}", req.method(), route.as_str()));
    }
}

/// Records the response status on the request span (5xx marks it as an error).
pub fn record_status(status: axum::http::StatusCode) {
    if !otel::enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
