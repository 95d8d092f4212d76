//! The state shared by every request handler.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::TokenKeys;
use crate::cache::Cache;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a handler may need, cloned into each request (all fields are cheap handles).
#[derive(Clone)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Redis or its in-process fallback.
    pub cache: Cache,
    /// Health state, read by the probes.
    pub health: Health,
    /// Access-token signing keys (from `JWT_SECRET`).
    pub keys: TokenKeys,
    /// The order flow and market data.
    pub trading: crate::trading::Trading,
    /// The Prometheus registry and HTTP metrics.
    pub metrics: Metrics,
    /// The WebSocket fan-out, caps and metrics.
    pub ws: crate::http::ws::WsHub,
    /// Password hashing, bounded in concurrency (and so in memory).
    pub passwords: crate::passwords::Passwords,
    /// Rate limiters, load shedding, circuit breakers and the market-data cache.
    pub resilience: crate::resilience::Resilience,
    /// Cancelled when a graceful shutdown starts. Long-lived connections (WebSockets) select on
    /// it and close themselves, because axum's graceful shutdown does not wait for upgraded
    /// connections.
    pub shutdown: CancellationToken,
}
