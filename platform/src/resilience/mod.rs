//! Resilience and abuse protection: rate limits, load shedding, circuit breakers, the
//! market-data cache and HTTP hygiene (security headers, CORS).
//!
//! [`Resilience`] holds the per-process state; the HTTP layer applies it to each request in
//! [`crate::http::guard`] (this module knows nothing of HTTP routes or the application state).
//! Requests to `/health*` and `/metrics` pass every protection untouched, so probes and scrapes
//! keep answering under overload, abuse and outages. See `docs/resilience.md` for the
//! configuration and the policies.

pub mod breaker;
pub mod market_cache;
pub mod quota;
pub mod ratelimit;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use self::breaker::Breaker;
use self::market_cache::MarketCache;
use self::ratelimit::{LimitKind, RateLimiter};
use crate::config::ResilienceConfig;
use crate::error::ApiError;

/// The per-process resilience state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Resilience {
    /// The shared (Redis) rate limiter with its local fallback.
    pub limiter: Arc<RateLimiter>,
    /// The daily quotas per account (Redis-shared, with a local fallback).
    pub quotas: Arc<quota::Quotas>,
    /// Breaker around the database: open → requests that need it fail fast.
    pub db_breaker: Breaker,
    /// Breaker around Redis as used by the rate limiter.
    pub redis_breaker: Breaker,
    /// Market-data cache.
    pub market: MarketCache,
    /// Budget for retrying idempotent reads (market data).
    pub retry_budget: Arc<retry::RetryBudget>,
    general: Arc<Semaphore>,
    cancel_reserve: Arc<Semaphore>,
    shed: IntCounterVec,
    breaker_state: IntGaugeVec,
}

impl Resilience {
    /// Builds the state and registers its metrics: `rate_limited_total{limit}`,
    /// `requests_shed_total{class}`, `circuit_breaker_state{dependency}` and
    /// `cache_requests_total{cache,result}`.
    pub fn new(
        config: &ResilienceConfig,
        redis: Option<redis::Client>,
        prefix: &str,
        l2: crate::cache::Cache,
        symbols: impl IntoIterator<Item = String>,
        registry: &Registry,
    ) -> Result<Resilience, prometheus::Error> {
        let refused = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused with 429, by limit (ip, account, login_ip, login_user, failed_login).",
            ),
            &["limit"],
        )?;
        let shed = IntCounterVec::new(
            Opts::new(
                "requests_shed_total",
                "API requests refused with 503 overloaded at the concurrency limit, by class.",
            ),
            &["class"],
        )?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "circuit_breaker_state",
                "Circuit breaker state by dependency: 0 closed, 1 open, 2 half-open.",
            ),
            &["dependency"],
        )?;
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Market-data cache lookups by cache and result (hit_memory, hit_redis, miss, stale).",
            ),
            &["cache", "result"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "read_retries_total",
                "Retries of idempotent reads, by outcome (retried, budget_exhausted).",
            ),
            &["outcome"],
        )?;
        let exceeded = IntCounterVec::new(
            Opts::new(
                "quota_exceeded_total",
                "Requests refused with 429 quota_exceeded, by daily quota (requests, orders).",
            ),
            &["quota"],
        )?;
        registry.register(Box::new(exceeded.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(cache_requests.clone()))?;
        for class in ["general", "cancel"] {
            shed.with_label_values(&[class]);
        }
        let db_breaker = Breaker::new(
            "database",
            config.breaker_failure_threshold,
            config.breaker_open,
        );
        let redis_breaker = Breaker::new(
            "redis",
            config.breaker_failure_threshold,
            config.breaker_open,
        );
        let quotas = quota::Quotas::new(
            config.quota_requests_per_day,
            config.quota_orders_per_day,
            redis.clone(),
            prefix,
            redis_breaker.clone(),
            exceeded,
        );
        let limiter = RateLimiter::new(config, redis, prefix, redis_breaker.clone(), refused);
        let resilience = Resilience {
            retry_budget: Arc::new(retry::RetryBudget::standard(Some(retries))),
            limiter: Arc::new(limiter),
            quotas: Arc::new(quotas),
            db_breaker,
            redis_breaker,
            market: MarketCache::new(symbols, config.market_cache_ttl, l2, cache_requests),
            general: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            cancel_reserve: Arc::new(Semaphore::new(config.cancel_reserved_requests)),
            shed,
            breaker_state,
        };
        resilience.refresh_gauges();
        Ok(resilience)
    }

    /// Takes one slot of the concurrency budget, or `None` when the request must be shed:
    /// the general budget first, then (cancels only) the cancel reserve. The slot is released
    /// when the permit is dropped.
    pub fn admit(&self, cancel: bool) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.general.clone().try_acquire_owned().ok().or_else(|| {
            cancel
                .then(|| self.cancel_reserve.clone().try_acquire_owned().ok())
                .flatten()
        })
    }

    /// Counts a request shed by [`Resilience::admit`] in `requests_shed_total{class}`.
    pub fn count_shed(&self, cancel: bool) {
        self.shed
            .with_label_values(&[if cancel { "cancel" } else { "general" }])
            .inc();
    }

    /// The breakers, for `/health`.
    pub fn breakers(&self) -> [&Breaker; 2] {
        [&self.db_breaker, &self.redis_breaker]
    }

    /// Updates `circuit_breaker_state` (called before each scrape).
    pub fn refresh_gauges(&self) {
        for b in self.breakers() {
            self.breaker_state
                .with_label_values(&[b.name()])
                .set(b.state().gauge());
        }
    }
}

/// The 429 for a refused decision.
pub fn refused(d: &ratelimit::Decision) -> Response {
    limit_error(d).into_response()
}

/// The error for a refused decision: 429 `rate_limited`, or `login_locked` for the failed-login
/// cap, with the rate limit headers.
pub fn limit_error(d: &ratelimit::Decision) -> ApiError {
    let (code, message) = match d.kind {
        LimitKind::FailedLogin => (
            "login_locked",
            "too many failed logins for this account; try again later".to_owned(),
        ),
        kind => (
            "rate_limited",
            format!(
                "rate limit {:?} exceeded; retry in {} s",
                kind.name(),
                d.retry_after.as_millis().div_ceil(1000).max(1)
            ),
        ),
    };
    ApiError::RateLimited {
        code,
        message,
        headers: d.headers(),
    }
}

/// The 429 `quota_exceeded` of a refused daily quota, with `Retry-After` until the next UTC
/// midnight and the rate limit headers.
pub fn quota_error(d: &quota::QuotaDecision) -> ApiError {
    ApiError::RateLimited {
        code: "quota_exceeded",
        message: format!(
            "daily {} quota of {} exhausted; it resets at the next UTC midnight, in {} s",
            d.kind.name(),
            d.limit,
            d.reset.as_secs().max(1)
        ),
        headers: d.headers(),
    }
}

/// The security headers every response carries (set only when a handler did not set them).
pub fn security_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// CORS from `CORS_ALLOWED_ORIGINS`: `None` when unset (browsers then allow same-origin only).
pub fn cors(config: &ResilienceConfig) -> Option<CorsLayer> {
    if config.cors_allowed_origins.is_empty() {
        return None;
    }
    let origin = if config.cors_allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
                // The audit listing's next page (`GET /admin/audit`).
                HeaderName::from_static(crate::http::audit::NEXT_CURSOR),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
