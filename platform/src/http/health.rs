//! Probe and diagnostics endpoints: `/health/live`, `/health/startup`, `/health/ready`, `/health`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// Liveness: the process can serve requests. Deliberately checks nothing else.
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Marks a probe's 503 as the expected state it reports (starting, draining, a dependency
/// down), so that the request log does not report it as a server error.
fn expected(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    if response.status().is_server_error() {
        response
            .extensions_mut()
            .insert(super::middleware::ExpectedUnavailable);
    }
    response
}

/// Startup: 200 once configuration, migrations and warm-up are done, 503 before.
pub async fn startup(State(state): State<AppState>) -> Response {
    expected(if state.health.is_started() {
        (StatusCode::OK, Json(json!({ "status": "started" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "starting", "check": "startup", "message": "start-up has not finished" }),
            ),
        )
    })
}

/// Readiness: 200 when this instance should receive traffic, else 503 naming the failing check.
pub async fn ready(State(state): State<AppState>) -> Response {
    expected(match state.health.readiness() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => {
            let message = match reason {
                crate::health::NotReady::Starting => "start-up has not finished",
                crate::health::NotReady::Draining => "shutting down; draining in-flight requests",
                crate::health::NotReady::Database => {
                    "the database has been failing for longer than the grace period"
                }
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "not_ready", "check": reason.check(), "message": message })),
            )
        }
    })
}

/// Detailed report of every check; 200 when ready, 503 otherwise.
pub async fn detail(State(state): State<AppState>) -> Response {
    let report = state.health.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    expected((status, Json(report)))
}
