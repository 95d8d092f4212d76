//! Prometheus metrics, registered in one [`prometheus::Registry`] and served at `/metrics`.
//!
//! HTTP metrics are labelled by the matched route template (`/api/v1/orders/{id}`), never the raw
//! path, so that label cardinality stays bounded; requests that match no route share the label
//! `unmatched`. Gauges that mirror other components (pool, Redis mode) are refreshed at scrape.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::cache::{Cache, CacheMode};
use crate::store::Store;

/// Latency buckets in seconds, from 1 ms to 10 s; 0.2 is the default SLO latency threshold
/// (`SLO_LATENCY_THRESHOLD_MS`), which is always made a boundary (see
/// [`Metrics::with_latency_threshold`]).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric the platform exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests served, by method, route template and status.
    pub http_requests: IntCounterVec,
    /// Request latency, by method, route template and status.
    pub http_duration: HistogramVec,
    /// Requests being served right now (an HPA-friendly load signal).
    pub http_in_flight: IntGauge,
    db_pool_connections: IntGaugeVec,
    db_pool_max: IntGauge,
    redis_fallback: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        Metrics::with_latency_threshold(std::time::Duration::from_millis(200))
    }

    /// [`Metrics::new`], with `threshold` (the SLO's latency threshold) a boundary of the
    /// request-latency buckets, so that the fraction of requests within it is exact, in
    /// Prometheus (`le="0.2"`) and in the in-process SLO view.
    pub fn with_latency_threshold(
        threshold: std::time::Duration,
    ) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let mut buckets = LATENCY_BUCKETS.to_vec();
        let le = threshold.as_secs_f64();
        if !buckets.iter().any(|b| (b - le).abs() < 1e-9) {
            buckets.push(le);
            buckets.sort_by(f64::total_cmp);
        }
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests served, by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency in seconds.",
            )
            .buckets(buckets),
            &["method", "route", "status"],
        )?;
        let http_in_flight =
            IntGauge::new("http_requests_in_flight", "HTTP requests being served now.")?;
        let db_pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by state (idle or active).",
            ),
            &["state"],
        )?;
        let db_pool_max = IntGauge::new(
            "db_pool_max_connections",
            "Configured database pool size limit.",
        )?;
        let redis_fallback = IntGauge::new(
            "redis_fallback_active",
            "1 when REDIS_URL is set but Redis is unreachable and the in-process fallback serves.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Build information; the value is always 1."),
            &["version", "commit"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("TRADEPLANE_GIT_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);

        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(http_in_flight.clone()))?;
        registry.register(Box::new(db_pool_connections.clone()))?;
        registry.register(Box::new(db_pool_max.clone()))?;
        registry.register(Box::new(redis_fallback.clone()))?;
        registry.register(Box::new(build_info))?;
        // The standard `process_*` series (CPU seconds, resident memory, open descriptors):
        // the benchmark divides CPU seconds by answers, operators alert on memory and fds.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        crate::store::telemetry::register(&registry)?;
        crate::audit::runtime::register(&registry)?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            db_pool_connections,
            db_pool_max,
            redis_fallback,
        })
    }

    /// The registry, so other modules (trading, backups) can register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Refreshes the mirrored gauges and renders the text exposition format.
    pub fn render(&self, store: &Store, cache: &Cache) -> Result<String, prometheus::Error> {
        let pool = store.pool_stats();
        self.db_pool_connections
            .with_label_values(&["idle"])
            .set(i64::from(pool.idle));
        self.db_pool_connections
            .with_label_values(&["active"])
            .set(i64::from(pool.size.saturating_sub(pool.idle)));
        self.db_pool_max.set(i64::from(pool.max));
        self.redis_fallback
            .set(i64::from(cache.mode() == CacheMode::Fallback));

        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
