//! Prometheus metrics of the operator (prefix `tradeplane_operator_`, contract).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
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
    /// Objects the operator manages, per TradingPlatform and kind (sum for totals).
    pub managed_objects: IntGaugeVec,
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
    /// Unix time the backup CronJob was created (backups expected since), per TradingPlatform.
    pub backup_expected_since: GaugeVec,
    /// Unix time of the last successful backup, per TradingPlatform (crate::backup_metrics).
    pub backup_last_success: GaugeVec,
    /// Unix time the newest failed backup Job failed, while that Job exists.
    pub backup_last_failure: GaugeVec,
    /// Size in bytes of the last successful backup (from its termination message).
    pub backup_last_size: GaugeVec,
    /// Rows in the last successful backup.
    pub backup_last_rows: GaugeVec,
    /// Duration of the last successful backup run.
    pub backup_last_duration: GaugeVec,
    /// `tradeplane_operator_canary_weight_percent{namespace,tradingplatform}`: the running
    /// canary's weight, 0 without one (alerting on a canary stuck at a step).
    pub canary_weight: GaugeVec,
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
        let managed_objects = IntGaugeVec::new(
            Opts::new(
                "tradeplane_operator_managed_objects",
                "Objects the operator manages (1) per TradingPlatform and kind",
            ),
            &["namespace", "tradingplatform", "kind"],
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
        let per_platform = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name, help), &["namespace", "tradingplatform"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let backup_expected_since = per_platform(
            "tradeplane_operator_backup_expected_since_timestamp_seconds",
            "Unix time the backup CronJob of each TradingPlatform was created (backups expected since)",
        )?;
        let backup_last_success = per_platform(
            "tradeplane_operator_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup of each TradingPlatform",
        )?;
        let backup_last_failure = per_platform(
            "tradeplane_operator_backup_last_failure_timestamp_seconds",
            "Unix time the newest failed backup Job of each TradingPlatform failed (while it exists)",
        )?;
        let backup_last_size = per_platform(
            "tradeplane_operator_backup_last_size_bytes",
            "Size of the last successful backup, from the backup Job's termination message",
        )?;
        let backup_last_rows = per_platform(
            "tradeplane_operator_backup_last_rows",
            "Rows in the last successful backup, from the backup Job's termination message",
        )?;
        let backup_last_duration = per_platform(
            "tradeplane_operator_backup_last_duration_seconds",
            "Duration of the last successful backup run, from the backup Job's termination message",
        )?;
        let canary_weight = per_platform(
            "tradeplane_operator_canary_weight_percent",
            "Weight of the running canary of each TradingPlatform (0: none)",
        )?;
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
        registry.register(Box::new(managed_objects.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            errors,
            duration,
            managed_objects,
            leader,
            watch_current,
            watch_errors,
            recreated,
            triggers,
            backup_expected_since,
            backup_last_success,
            backup_last_failure,
            backup_last_size,
            backup_last_rows,
            backup_last_duration,
            canary_weight,
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
