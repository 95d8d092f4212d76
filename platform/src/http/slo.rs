//! `GET /api/v1/admin/slo`: this replica's SLO and error-budget view (see [`crate::slo`]).

use axum::Json;
use axum::extract::State;

use super::extract::AdminUser;
use crate::slo::SloReport;
use crate::state::AppState;

/// `GET /api/v1/admin/slo`: the objectives, SLIs, burn rates, remaining budget and breakers.
#[utoipa::path(
    get,
    path = "/admin/slo",
    tag = "admin",
    operation_id = "getSlo",
    summary = "This replica's SLOs and error budget",
    description = "Admin only. The configured objectives (`SLO_AVAILABILITY_TARGET`, `SLO_LATENCY_THRESHOLD_MS`, `SLO_LATENCY_TARGET`); the availability and latency SLIs of API requests (health probes and `/metrics` excluded) over the last 5 minutes, the last hour and since this process started, with their error-budget burn rates; the budget left since start; and the circuit breakers. `scope` is always `replica`: every figure is this process's alone. The fleet-wide view is Prometheus's recording rules (see the operating guide).",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "This replica's SLO view.", body = SloReport),
    )
)]
pub async fn report(State(state): State<AppState>, AdminUser(_): AdminUser) -> Json<SloReport> {
    Json(state.slo.report(&state.resilience.breakers()))
}
