//! Endpoints for tests, mounted only when `ENABLE_DEBUG_ENDPOINTS=true`. Never enable them in
//! production: they exist so that the graceful-shutdown test has a request that takes a while.

use std::time::Duration;

use axum::Json;
use axum::extract::Query;
use serde::Deserialize;
use serde_json::json;

/// Query of `/debug/sleep`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepQuery {
    /// Milliseconds to wait before answering (at most one minute).
    ms: u64,
}

/// Answers after `ms` milliseconds.
pub async fn sleep(Query(q): Query<SleepQuery>) -> Json<serde_json::Value> {
    let ms = q.ms.min(60_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms }))
}
