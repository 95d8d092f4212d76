//! Prometheus metrics of the operator (prefix `tradeplane_operator_`, contract).
//!
//! Per-TradingPlatform figures live in [`platforms`], a compact table exported at scrape time.

pub mod platforms;

pub use platforms::{PlatformMetrics, Series};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Everything the operator measures; one instance shared by the controller and `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Reconciliations by result (`ok`, `error`).
    pub reconciliations: IntCounterVec,
    /// Reconcile errors by kind of error.
    pub errors: IntCounterVec,
    /// Reconcile duration.
    pub duration: HistogramVec,
    /// 1 while this replica holds the leader Lease.
    pub leader: IntGauge,
    /// 1 while a watch is current (listed and watching), per watched kind.
    pub watch_current: IntGaugeVec,
    /// Watch errors per watched kind and kind of error (`gone`: 410, relisted at once; `other`).
    pub watch_errors: IntCounterVec,
    /// Children deleted and re-created because server-side apply could not merge them, per kind.
    pub recreated: IntCounterVec,
    /// Reconciliations by what triggered them (`spec_change`, `child_change`, `requeue`, `resync`).
    pub triggers: IntCounterVec,
    /// Per-TradingPlatform backup figures and canary weight, and the managed objects per kind.
    pub platforms: PlatformMetrics,
    /// `tradeplane_operator_canary_decisions_total{decision}`: step, promote, rollback (alerting
    /// on rollbacks).
    pub canary_decisions: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "tradeplane_operator_reconciliations_total",
                "Reconciliations of TradingPlatform resources, by result",
            ),
            &["result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tradeplane_operator_reconcile_errors_total",
                "Failed reconciliations, by error kind",
            ),
            &["error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tradeplane_operator_reconcile_duration_seconds",
                "Duration of one reconciliation",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["result"],
        )?;
        let leader = IntGauge::new(
            "tradeplane_operator_leader",
            "1 while this replica holds the leader Lease",
        )?;
        let watch_current = IntGaugeVec::new(
            Opts::new(
                "tradeplane_operator_watch_current",
                "1 while the watch of this kind is current (listed and watching)",
            ),
            &["watch"],
        )?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "tradeplane_operator_watch_errors_total",
                "Watch errors by watched kind and error (gone: 410, relisted at once; other)",
            ),
            &["watch", "error"],
        )?;
        let recreated = IntCounterVec::new(
            Opts::new(
                "tradeplane_operator_children_recreated_total",
                "Children deleted and re-created because server-side apply could not merge them",
            ),
            &["kind"],
        )?;
        let triggers = IntCounterVec::new(
            Opts::new(
                "tradeplane_operator_reconcile_triggers_total",
                "Reconciliations by trigger: spec_change, child_change, requeue, resync",
            ),
            &["trigger"],
        )?;
        let platforms = PlatformMetrics::new(&crate::resources::MANAGED_KINDS)?;
        registry.register(Box::new(platforms.clone()))?;
        let canary_decisions = IntCounterVec::new(
            Opts::new(
                "tradeplane_operator_canary_decisions_total",
                "Canary rollout decisions: step, promote, rollback",
            ),
            &["decision"],
        )?;
        registry.register(Box::new(canary_decisions.clone()))?;
        registry.register(Box::new(watch_current.clone()))?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(recreated.clone()))?;
        registry.register(Box::new(triggers.clone()))?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            errors,
            duration,
            leader,
            watch_current,
            watch_errors,
            recreated,
            triggers,
            platforms,
            canary_decisions,
        })
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}
