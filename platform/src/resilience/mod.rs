//! Resilience and abuse protection: rate limits, load shedding, circuit breakers, the
//! market-data cache and HTTP hygiene (security headers, CORS).
//!
//! [`Resilience`] holds the per-process state; the middlewares here are installed by
//! [`crate::http::router`]. Requests to `/health*` and `/metrics` pass every one of them
//! untouched, so probes and scrapes keep answering under overload, abuse and outages.
//! See `docs/resilience.md` for the configuration and the policies.

pub mod breaker;
pub mod market_cache;
pub mod ratelimit;
pub mod retry;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use self::breaker::{Breaker, DbOutcome};
use self::market_cache::MarketCache;
use self::ratelimit::{LimitKind, RateLimiter};
use crate::config::ResilienceConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The per-process resilience state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Resilience {
    /// The shared (Redis) rate limiter with its local fallback.
    pub limiter: Arc<RateLimiter>,
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
    config: Arc<ResilienceConfig>,
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
        let limiter = RateLimiter::new(config, redis, prefix, redis_breaker.clone(), refused);
        let resilience = Resilience {
            retry_budget: Arc::new(retry::RetryBudget::new(
                retry::DEFAULT_RATIO,
                retry::DEFAULT_RESERVE,
                Some(retries),
            )),
            limiter: Arc::new(limiter),
            db_breaker,
            redis_breaker,
            market: MarketCache::new(symbols, config.market_cache_ttl, l2, cache_requests),
            general: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            cancel_reserve: Arc::new(Semaphore::new(config.cancel_reserved_requests)),
            shed,
            breaker_state,
            config: Arc::new(config.clone()),
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

/// Whether a request is subject to the API protections (health and metrics never are).
fn is_api(req: &Request) -> bool {
    req.uri().path().starts_with("/api/")
}

/// `DELETE /api/v1/orders/{id}`: a cancel, which reduces risk and must outlive new orders.
fn is_cancel(req: &Request) -> bool {
    req.method() == Method::DELETE && req.uri().path().starts_with("/api/v1/orders/")
}

/// Load shedding: at most `MAX_CONCURRENT_REQUESTS` API requests at once, plus
/// `CANCEL_RESERVED_REQUESTS` that only cancels may use. A request over the limit is answered at
/// once with 503 `overloaded` and `Retry-After: 1` instead of queueing into a timeout.
///
/// A semaphore rather than tower's `ConcurrencyLimit` + `LoadShed`, because the limit is by
/// request class (cancels get the reserve) and must not cover the health and metrics routes.
pub async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_api(&req) {
        return next.run(req).await;
    }
    let r = &state.resilience;
    let cancel = is_cancel(&req);
    match r.admit(cancel) {
        Some(permit) => {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        None => {
            r.shed
                .with_label_values(&[if cancel { "cancel" } else { "general" }])
                .inc();
            let mut response =
                ApiError::Overloaded("the service is at capacity, retry shortly".into())
                    .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// The client's address: the peer, or with `FORWARDED_FOR_HOPS` = N the N-th address from the
/// right of `X-Forwarded-For` (the one the outermost trusted proxy saw).
pub fn client_ip(req: &Request, hops: usize) -> Option<IpAddr> {
    if hops > 0
        && let Some(ip) = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .nth(hops - 1)
            .and_then(|s| s.parse().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Rate limits of every API request: per client IP, per account when a valid bearer token is
/// present, and the stricter login limit per IP on login and registration. A refusal is 429
/// `rate_limited` with `Retry-After`; every checked response carries `RateLimit` and
/// `RateLimit-Policy` for the tightest limit.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_api(&req) {
        return next.run(req).await;
    }
    let limiter = &state.resilience.limiter;
    let ip = client_ip(&req, state.resilience.config.forwarded_for_hops)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let path = req.uri().path();
    let login = req.method() == Method::POST
        && (path == "/api/v1/auth/login" || path == "/api/v1/auth/register");
    // The scheme is case-insensitive, as the extractor reads it: `bearer x` is limited per
    // account too.
    let account = crate::http::extract::bearer_token(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .and_then(|t| state.keys.verify(t).ok())
    .map(|claims| claims.acct.to_string());

    let mut checks = vec![(LimitKind::Ip, ip.clone())];
    if login {
        checks.push((LimitKind::LoginIp, ip));
    }
    if let Some(account) = account {
        checks.push((LimitKind::Account, account));
    }
    let mut tightest: Option<ratelimit::Decision> = None;
    for (kind, key) in checks {
        let d = limiter.check(kind, &key).await;
        if !d.allowed {
            return refused(&d);
        }
        if tightest.as_ref().is_none_or(|t| d.remaining < t.remaining) {
            tightest = Some(d);
        }
    }
    let mut response = next.run(req).await;
    if let Some(d) = tightest
        && !response.headers().contains_key("ratelimit")
    {
        d.headers().apply(response.headers_mut());
    }
    response
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

/// Routes under `/api/v1` that never touch the database.
fn needs_no_database(req: &Request) -> bool {
    let path = req.uri().path();
    path == "/api/v1/openapi.json" || path == "/api/v1/me" || path == "/api/v1/ws"
}

/// Market-data reads, which go through the cache and its own breaker check.
fn is_market_read(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == Method::GET
        && (path == "/api/v1/instruments" || path.starts_with("/api/v1/markets/"))
}

/// The database circuit breaker around API requests: while open, requests that need the
/// database are answered at once with 503 `dependency_unavailable` and `Retry-After`; outcomes
/// (the [`DbOutcome`] marker of a failed response, or a success) feed the breaker.
pub async fn db_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_api(&req) || needs_no_database(&req) || is_market_read(&req) {
        return next.run(req).await;
    }
    let breaker = &state.resilience.db_breaker;
    let Some(permit) = breaker.try_acquire() else {
        let mut response = ApiError::DependencyUnavailable(
            "the database is unavailable (circuit open), retry later".into(),
        )
        .into_response();
        let secs = breaker.retry_after().as_millis().div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    };
    let response = next.run(req).await;
    match response.extensions().get::<DbOutcome>() {
        Some(DbOutcome::Failed) => permit.failure(),
        Some(DbOutcome::Untouched) => drop(permit),
        None if response.status().is_success() || response.status().is_redirection() => {
            permit.success()
        }
        // A 4xx may or may not have reached the database: it says nothing about it.
        None => drop(permit),
    }
    response
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
            ])
            .max_age(Duration::from_secs(600)),
    )
}
