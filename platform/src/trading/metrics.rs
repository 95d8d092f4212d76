//! Trading metrics, registered in the platform's registry.

use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Counters and histograms of the order flow.
#[derive(Clone)]
pub struct TradingMetrics {
    /// Orders by symbol, side, type and outcome (`accepted`, `rejected`, `duplicate`, `failed`).
    pub orders: IntCounterVec,
    /// Trades by symbol.
    pub trades: IntCounterVec,
    /// Traded quantity by symbol, in instrument units.
    pub traded_quantity: CounterVec,
    /// Time to match and commit one batch.
    pub match_latency: Histogram,
    /// Commands per batch.
    pub batch_size: Histogram,
    /// Resting orders by symbol (this replica's view after its last batch).
    pub open_orders: IntGaugeVec,
    /// Connected WebSocket clients.
    pub websocket_subscribers: IntGauge,
    /// SQL statements per committed batch (BEGIN and COMMIT included).
    pub batch_statements: Histogram,
    /// Batches run again without having committed, by reason (`stale`, `connection`).
    pub batch_retries: IntCounterVec,
    /// Batches by what the optimistic path did (`hit`: planned from memory and committed by one
    /// guarded write, `guarded`: committed after the guard found nothing moved, `replanned`: accounts had moved and were read again, `missed`: a lease or book had
    /// moved, the full path ran; `skipped`: not tried).
    pub optimistic: IntCounterVec,
    /// Commands dropped unexecuted because their client stopped waiting.
    pub commands_expired: IntCounter,
    /// Lost COMMIT replies, by what the database said had happened (`committed`, `aborted`).
    pub commit_resolutions: IntCounterVec,
    /// Requests answered 504 `outcome_unknown` (their batch's COMMIT was still unresolved).
    pub outcome_unknown: IntCounter,
    /// 1 while the matcher sees its database as unreachable and refuses orders.
    pub database_down: IntGauge,
    /// Commands forwarded to the replica that owns their symbol.
    pub forwarded: IntCounter,
    /// Symbols this replica owns (matches) now.
    pub owned_symbols: IntGauge,
    /// Four-eyes approval of large orders.
    pub approvals: ApprovalMetrics,
}

/// The approval metrics (issue 16). Counted by the matcher after the batch that decided
/// commits, so a rolled-back batch counts nothing.
#[derive(Clone)]
pub struct ApprovalMetrics {
    /// `orders_pending_total{symbol}`: orders that were held for approval.
    pub pending_total: IntCounterVec,
    /// `orders_pending{symbol}`: orders held now (this replica's view after its last batch).
    pub pending: IntGaugeVec,
    /// `orders_approved_total{symbol}`: held orders approved and entered into matching.
    pub approved_total: IntCounterVec,
    /// `orders_rejected_total{symbol,reason}`: held orders released, reason `rejected`,
    /// `expired`, `cancelled` or `risk` (approved but refused by the risk check of that moment).
    pub rejected_total: IntCounterVec,
    /// `order_processing_time_seconds{outcome}`: from held to decided, by outcome (`approved`
    /// or one of the rejection reasons).
    pub processing_time: HistogramVec,
}

impl ApprovalMetrics {
    fn register(registry: &Registry) -> Result<ApprovalMetrics, prometheus::Error> {
        let pending_total = IntCounterVec::new(
            Opts::new(
                "orders_pending_total",
                "Orders held for four-eyes approval, by symbol.",
            ),
            &["symbol"],
        )?;
        let pending = IntGaugeVec::new(
            Opts::new(
                "orders_pending",
                "Orders waiting for approval now, by symbol.",
            ),
            &["symbol"],
        )?;
        let approved_total = IntCounterVec::new(
            Opts::new(
                "orders_approved_total",
                "Held orders approved and entered into matching, by symbol.",
            ),
            &["symbol"],
        )?;
        let rejected_total = IntCounterVec::new(
            Opts::new(
                "orders_rejected_total",
                "Held orders released without matching, by symbol and reason (rejected, expired, cancelled, risk).",
            ),
            &["symbol", "reason"],
        )?;
        let processing_time = HistogramVec::new(
            HistogramOpts::new(
                "order_processing_time_seconds",
                "Time from an order being held for approval to its decision, by outcome.",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 86400.0,
            ]),
            &["outcome"],
        )?;
        registry.register(Box::new(pending_total.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(approved_total.clone()))?;
        registry.register(Box::new(rejected_total.clone()))?;
        registry.register(Box::new(processing_time.clone()))?;
        Ok(ApprovalMetrics {
            pending_total,
            pending,
            approved_total,
            rejected_total,
            processing_time,
        })
    }

    /// Counts a committed batch's approval events.
    pub(super) fn record(&self, events: &[super::batch::ApprovalMetric]) {
        use super::batch::ApprovalMetric;
        for event in events {
            match event {
                ApprovalMetric::Held { symbol } => {
                    self.pending_total.with_label_values(&[symbol]).inc();
                }
                ApprovalMetric::Decided {
                    symbol,
                    outcome,
                    waited,
                } => {
                    if *outcome == "approved" {
                        self.approved_total.with_label_values(&[symbol]).inc();
                    } else {
                        self.rejected_total
                            .with_label_values(&[symbol.as_str(), outcome])
                            .inc();
                    }
                    self.processing_time
                        .with_label_values(&[outcome])
                        .observe(*waited);
                }
            }
        }
    }
}

impl TradingMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<TradingMetrics, prometheus::Error> {
        let orders = IntCounterVec::new(
            Opts::new(
                "orders_total",
                "Orders submitted, by symbol, side, type and outcome.",
            ),
            &["symbol", "side", "type", "outcome"],
        )?;
        let trades = IntCounterVec::new(
            Opts::new("trades_total", "Trades executed, by symbol."),
            &["symbol"],
        )?;
        let traded_quantity = CounterVec::new(
            Opts::new(
                "traded_quantity_total",
                "Quantity traded, by symbol, in instrument units.",
            ),
            &["symbol"],
        )?;
        let match_latency = Histogram::with_opts(
            HistogramOpts::new(
                "match_latency_seconds",
                "Time to match and commit one batch of orders.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "match_batch_size",
                "Commands matched and committed in one transaction.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        let open_orders = IntGaugeVec::new(
            Opts::new("open_orders", "Resting orders, by symbol."),
            &["symbol"],
        )?;
        let websocket_subscribers = IntGauge::new(
            "websocket_subscribers",
            "Connected market-data WebSocket clients.",
        )?;
        let batch_statements = Histogram::with_opts(
            HistogramOpts::new(
                "match_batch_statements",
                "SQL statements sent for one committed batch, BEGIN and COMMIT included.",
            )
            .buckets(vec![
                2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 30.0, 50.0,
            ]),
        )?;
        let batch_retries = IntCounterVec::new(
            Opts::new(
                "match_batch_retries_total",
                "Batches run again without having committed, by reason.",
            ),
            &["reason"],
        )?;
        let optimistic = IntCounterVec::new(
            Opts::new(
                "match_optimistic_batches_total",
                "Batches by what the optimistic path (planned from memory, checked by one \
                 guard statement) did: hit, replanned (moved accounts read again), missed (the full \
                 path ran), skipped (not tried).",
            ),
            &["outcome"],
        )?;
        let commands_expired = IntCounter::new(
            "matcher_commands_expired_total",
            "Commands dropped unexecuted because their client stopped waiting.",
        )?;
        let commit_resolutions = IntCounterVec::new(
            Opts::new(
                "match_commit_resolutions_total",
                "COMMITs whose reply was lost, by what the database said had happened.",
            ),
            &["outcome"],
        )?;
        let outcome_unknown = IntCounter::new(
            "order_outcome_unknown_total",
            "Requests answered 504 outcome_unknown while their batch's COMMIT was unresolved.",
        )?;
        let database_down = IntGauge::new(
            "matcher_database_down",
            "1 while the matcher sees its database as unreachable and refuses orders.",
        )?;
        let forwarded = IntCounter::new(
            "orders_forwarded_total",
            "Commands forwarded to the replica that owns their symbol.",
        )?;
        let owned_symbols = IntGauge::new(
            "owned_symbols",
            "Symbols this replica holds the lease of and matches.",
        )?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(owned_symbols.clone()))?;
        registry.register(Box::new(batch_statements.clone()))?;
        registry.register(Box::new(batch_retries.clone()))?;
        registry.register(Box::new(optimistic.clone()))?;
        registry.register(Box::new(commands_expired.clone()))?;
        registry.register(Box::new(commit_resolutions.clone()))?;
        registry.register(Box::new(outcome_unknown.clone()))?;
        registry.register(Box::new(database_down.clone()))?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(trades.clone()))?;
        registry.register(Box::new(traded_quantity.clone()))?;
        registry.register(Box::new(match_latency.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(open_orders.clone()))?;
        registry.register(Box::new(websocket_subscribers.clone()))?;
        let approvals = ApprovalMetrics::register(registry)?;
        Ok(TradingMetrics {
            orders,
            trades,
            traded_quantity,
            match_latency,
            batch_size,
            open_orders,
            websocket_subscribers,
            batch_statements,
            batch_retries,
            optimistic,
            commands_expired,
            commit_resolutions,
            outcome_unknown,
            database_down,
            forwarded,
            owned_symbols,
            approvals,
        })
    }
}
