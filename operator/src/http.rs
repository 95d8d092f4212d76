//! The operator's own HTTP endpoints: `/metrics`, `/health/live`, `/health/ready`.
//!
//! Readiness fails while any watch is not current; liveness fails once a watch has not been
//! current for longer than `--watch-stale-seconds`, so the kubelet restarts a leader that is
//! blind and a standby takes over the Lease (run.rs also steps down by itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::watch::WatchHealth;

/// Shared state of the endpoints.
#[derive(Clone)]
pub struct HttpState {
    /// Metrics to serve.
    pub metrics: Metrics,
    /// Set once the operator has a working API client (and is either leading or standing by).
    pub ready: Arc<AtomicBool>,
    /// Which watches are current (none registered on a standby).
    pub watches: WatchHealth,
    /// Liveness fails once a watch has not been current for longer than this.
    pub stale_bound: Duration,
}

/// The router, separate from serving so tests can call it.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_string());
    }
    let stale = s.watches.stale();
    if stale.is_empty() {
        (StatusCode::OK, "ready".to_string())
    } else {
        let list: Vec<String> = stale.iter().map(ToString::to_string).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", list.join("; ")),
        )
    }
}

async fn live(State(s): State<HttpState>) -> impl IntoResponse {
    match s.watches.stale_beyond(s.stale_bound) {
        None => (StatusCode::OK, "ok".to_string()),
        Some(w) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: {w}, longer than {}s", s.stale_bound.as_secs()),
        ),
    }
}

/// Serves the endpoints until the process ends.
pub async fn serve(addr: SocketAddr, state: HttpState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /health");
    axum::serve(listener, router(state)).await
}
