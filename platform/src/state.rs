//! The state shared by every request handler.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::TokenKeys;
use crate::cache::Cache;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a handler may need: one `Arc`, so the clone every middleware and handler takes
/// costs one atomic increment however many subsystems there are (each field is a handle of its
/// own, and cloning them all per request once dominated the CPU of a request). Fields are read
/// through `Deref`: `state.store`, `state.trading`, …
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the subsystems.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The subsystems behind [`AppState`].
pub struct Shared {
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
    /// This replica's SLO view (`GET /api/v1/admin/slo`).
    pub slo: Arc<crate::slo::Slo>,
    /// Multi-factor authentication: the secrets' keyring, `REQUIRE_ADMIN_MFA`, metrics.
    pub mfa: crate::mfa::Mfa,
    /// The wall clock of TOTP steps and daily quotas (advanced by tests only).
    pub clock: crate::clock::Clock,
    /// Cancelled when a graceful shutdown starts. Long-lived connections (WebSockets) select on
    /// it and close themselves, because axum's graceful shutdown does not wait for upgraded
    /// connections.
    pub shutdown: CancellationToken,
}
