//! Trading metrics, registered in the platform's registry.

use prometheus::{
    CounterVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
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
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(trades.clone()))?;
        registry.register(Box::new(traded_quantity.clone()))?;
        registry.register(Box::new(match_latency.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(open_orders.clone()))?;
        registry.register(Box::new(websocket_subscribers.clone()))?;
        Ok(TradingMetrics {
            orders,
            trades,
            traded_quantity,
            match_latency,
            batch_size,
            open_orders,
            websocket_subscribers,
        })
    }
}
