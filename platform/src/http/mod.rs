//! The HTTP surface: routes grouped by resource, and the middleware stack around them.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod candles;
pub mod compression;
pub mod debug;
pub mod extract;
pub mod guard;
pub mod health;
pub mod internal;
pub mod market;
pub mod mfa;
pub mod middleware;
pub mod openapi;
pub mod orders;
pub mod serve;
pub mod slo;
pub mod web;
pub mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::resilience;
use crate::state::AppState;

/// Builds the whole application: health, metrics and API routes behind the middleware stack.
///
/// Layers, outermost first: sensitive headers are marked (so they are never logged), a request id
/// is taken from `x-request-id` or made, a tracing span carries it into every log line of the
/// request (and, with tracing on, joins the caller's `traceparent`), the id is echoed in the
/// response, large JSON and text bodies are compressed when the client accepts it, CORS applies
/// when configured, then the platform's one middleware ([`guard::pipeline`]: the route on the
/// trace span, JSON error envelope, metrics, security headers, and for API requests load
/// shedding, rate limits and the database breaker), panics become 500s, then the timeout, body
/// deadline and body limits apply.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let mut routes = Router::new()
        .route("/health", get(health::detail))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/startup", get(health::startup))
        .route("/metrics", get(metrics))
        .route(crate::trading::forward::PATH, post(internal::commands))
        .route("/", get(web::index))
        .route("/docs", get(web::docs))
        .route("/assets/{*path}", get(web::asset))
        .nest("/api/v1", api());
    if config.enable_debug_endpoints {
        routes = routes.route("/debug/sleep", get(debug::sleep));
    }

    // One `Router::layer` call with the whole stack: axum boxes each route once per `layer`
    // call and clones every box on every request, so twenty calls cost twenty boxed clones of
    // ever deeper stacks per request (issue 10). `ServiceBuilder` lists layers outermost first.
    let stack = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .map_request(middleware::drop_unsafe_request_id)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(
                    crate::telemetry::http::request_span::<axum::body::Body>
                        as fn(&Request) -> tracing::Span,
                )
                .on_response(middleware::log_response)
                .on_failure(middleware::log_failure),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(compression::layer())
        .option_layer(resilience::cors(&config.resilience))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::pipeline,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        // Back to axum's body type: the timeout's 408 needs a body it can make (`Default`).
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .map_request(|req: axum::http::Request<_>| req.map(axum::body::Body::new))
        .layer(middleware::BodyDeadline {
            timeout: config.resilience.request_body_timeout,
            max_bytes: config.max_body_bytes,
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    routes.fallback(not_found).layer(stack).with_state(state)
}

/// The versioned API.
fn api() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/mfa/enroll", post(mfa::enroll))
        .route("/auth/mfa/confirm", post(mfa::confirm))
        .route("/auth/mfa/verify", post(mfa::verify))
        .route("/auth/mfa/disable", post(mfa::disable))
        .route("/me", get(auth::me))
        .route("/admin/accounts/{id}/deposits", post(admin::deposit))
        .route("/admin/audit", get(audit::audit))
        .route("/admin/orders/pending", get(approvals::pending))
        .route("/admin/orders/{id}/approve", post(approvals::approve))
        .route("/admin/orders/{id}/reject", post(approvals::reject))
        .route("/admin/slo", get(slo::report))
        .route("/admin/markets/{symbol}/halt", post(market::halt))
        .route("/admin/markets/{symbol}/resume", post(market::resume))
        .route("/orders", post(orders::place).get(orders::list))
        .route("/orders/{id}", get(orders::get).delete(orders::cancel))
        .route("/fills", get(orders::fills))
        .route("/portfolio", get(orders::portfolio))
        .route("/instruments", get(market::instruments))
        .route("/markets/{symbol}/book", get(market::book))
        .route("/markets/{symbol}/trades", get(market::trades))
        .route("/markets/{symbol}/ticker", get(market::ticker))
        .route("/markets/{symbol}/candles", get(candles::candles))
        .route("/ws", get(ws::ws))
        .route("/openapi.json", get(openapi::document))
}

/// `/metrics`: the Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> Response {
    state.resilience.refresh_gauges();
    match state.metrics.render(&state.store, &state.cache) {
        Ok(text) => (
            [(header::CONTENT_TYPE, middleware::prometheus_content_type())],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.into()).into_response(),
    }
}

/// Any unknown route.
async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
