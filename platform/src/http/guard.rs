//! The platform's own per-request work, in one middleware: the route and status on the trace
//! span, the JSON error envelope, the route-labelled HTTP metrics, the security headers and, for
//! API requests, load shedding, rate
//! limits and the database circuit breaker (the state they use lives in [`crate::resilience`]).
//!
//! One middleware rather than one per concern because each `axum::middleware::from_fn` layer
//! clones the whole stack beneath it and boxes it on every request: five of them cost more than
//! the work they did (issue 10, "The HTTP stack itself"). The steps run in the order the separate
//! layers had, outermost first: envelope, metrics, shedding, rate limits, breaker.
//!
//! Requests outside `/api/` (health probes, `/metrics`, the web app, the internal endpoint) get
//! the envelope, the metrics and the headers only, so probes and scrapes keep answering under
//! overload, abuse and outages.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::middleware::{self, REQUEST_ID};
use crate::error::ApiError;
use crate::resilience::breaker::DbOutcome;
use crate::resilience::quota::QuotaKind;
use crate::resilience::ratelimit::{self, LimitKind};
use crate::resilience::{self, security_headers};
use crate::state::AppState;

/// The one middleware (see the module documentation).
pub async fn pipeline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    crate::telemetry::http::record_route(&req);
    let request_id = req.headers().get(REQUEST_ID).cloned();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = middleware::method_label(req.method());
    let metrics = &state.metrics;
    metrics.http_in_flight.inc();
    let in_flight = InFlight(&metrics.http_in_flight);
    let start = Instant::now();

    let response = if is_api(&req) {
        protected(&state, req, next).await
    } else {
        next.run(req).await
    };

    let status = response.status();
    crate::telemetry::http::record_status(status);
    let labels = [
        method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        status.as_str(),
    ];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_duration
        .with_label_values(&labels)
        .observe(start.elapsed().as_secs_f64());
    drop(in_flight);

    let mut response = middleware::envelope(response, request_id).await;
    let headers = response.headers_mut();
    for (name, value) in security_headers() {
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }
    response
}

/// Decrements the in-flight gauge even when the request future is dropped (client went away).
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An API request: shed at the concurrency limit, rate limited, guarded by the database
/// breaker, in that order.
async fn protected(state: &AppState, req: Request, next: Next) -> Response {
    // Load shedding: at most `MAX_CONCURRENT_REQUESTS` API requests at once, plus
    // `CANCEL_RESERVED_REQUESTS` that only cancels may use; over the limit, 503 `overloaded`
    // with `Retry-After: 1` at once instead of queueing into a timeout. A semaphore rather than
    // tower's `ConcurrencyLimit` + `LoadShed`, because the limit is by request class.
    let cancel = is_cancel(&req);
    let Some(_slot) = state.resilience.admit(cancel) else {
        state.resilience.count_shed(cancel);
        let mut response = ApiError::Overloaded("the service is at capacity, retry shortly".into())
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };

    let tightest = match rate_limit(state, limit_keys(state, &req)).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };

    // The database breaker: while open, requests that need the database are answered at once
    // with 503 `dependency_unavailable` and `Retry-After`; outcomes feed it.
    let permit = if needs_database(&req) {
        let breaker = &state.resilience.db_breaker;
        match breaker.try_acquire() {
            Some(permit) => Some(permit),
            None => return circuit_open(breaker),
        }
    } else {
        None
    };

    let mut response = next.run(req).await;
    if let Some(permit) = permit {
        match response.extensions().get::<DbOutcome>() {
            Some(DbOutcome::Failed) => permit.failure(),
            Some(DbOutcome::Untouched) => drop(permit),
            None if response.status().is_success() || response.status().is_redirection() => {
                permit.success()
            }
            // A 4xx may or may not have reached the database: it says nothing about it.
            None => drop(permit),
        }
    }
    if let Some(h) = tightest
        && !response.headers().contains_key("ratelimit")
    {
        h.apply(response.headers_mut());
    }
    response
}

/// The keys an API request is rate limited by: its client IP, its account when a valid bearer
/// token is present, and whether the stricter login limit per IP applies (login, registration).
fn limit_keys(state: &AppState, req: &Request) -> LimitKeys {
    let ip = client_ip(req, state.config.resilience.forwarded_for_hops)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let path = req.uri().path();
    let login = req.method() == Method::POST
        && (path == "/api/v1/auth/login"
            || path == "/api/v1/auth/register"
            || path == "/api/v1/auth/mfa/verify");
    let order = req.method() == Method::POST && path == "/api/v1/orders";
    // `GET /me` shows the quotas, so it does not use them up.
    let me = path == "/api/v1/me";
    // The scheme is case-insensitive, as the extractor reads it: `bearer x` is limited per
    // account too.
    let account = super::extract::bearer_token(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .and_then(|t| state.keys.verify(t).ok())
    .map(|claims| claims.acct.to_string());
    LimitKeys {
        ip,
        login,
        account,
        order,
        me,
    }
}

/// What [`limit_keys`] read from a request, owned: a `&Request` cannot be held across an await
/// (its body is not `Sync`).
struct LimitKeys {
    ip: String,
    login: bool,
    account: Option<String>,
    /// An order submission: counts toward the daily order quota.
    order: bool,
    /// `GET /me`: exempt from the daily request quota.
    me: bool,
}

/// Checks the limits of `keys`, then the account's daily quotas. `Err` is the 429
/// (`rate_limited` or `quota_exceeded`, `Retry-After`); `Ok` carries the headers of the
/// tightest limit (`RateLimit` and `RateLimit-Policy`), which the response gets.
async fn rate_limit(
    state: &AppState,
    LimitKeys {
        ip,
        login,
        account,
        order,
        me,
    }: LimitKeys,
) -> Result<Option<ratelimit::LimitHeaders>, Response> {
    let limiter = &state.resilience.limiter;
    let checks = [
        Some((LimitKind::Ip, ip.as_str())),
        login.then_some((LimitKind::LoginIp, ip.as_str())),
        account.as_deref().map(|a| (LimitKind::Account, a)),
    ];
    let mut tightest: Option<ratelimit::Decision> = None;
    for (kind, key) in checks.into_iter().flatten() {
        let d = limiter.check(kind, key).await;
        if !d.allowed {
            return Err(resilience::refused(&d));
        }
        if tightest.as_ref().is_none_or(|t| d.remaining < t.remaining) {
            tightest = Some(d);
        }
    }
    let mut tightest = tightest.map(|d| d.headers());
    if let Some(account) = account.as_deref() {
        let quotas = &state.resilience.quotas;
        let now = state.clock.now();
        let checks = [
            (!me).then_some(QuotaKind::Requests),
            order.then_some(QuotaKind::Orders),
        ];
        for kind in checks.into_iter().flatten() {
            if quotas.limit(kind) == 0 {
                continue;
            }
            let d = quotas.take(kind, account, now).await;
            if !d.allowed {
                return Err(resilience::quota_error(&d).into_response());
            }
            let headers = d.headers();
            if tightest
                .as_ref()
                .is_none_or(|t| headers.remaining() < t.remaining())
            {
                tightest = Some(headers);
            }
        }
    }
    Ok(tightest)
}

/// The 503 of an open database breaker.
fn circuit_open(breaker: &resilience::breaker::Breaker) -> Response {
    let mut response = ApiError::DependencyUnavailable(
        "the database is unavailable (circuit open), retry later".into(),
    )
    .into_response();
    let secs = breaker.retry_after().as_millis().div_ceil(1000).max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    response
}

/// The client's address: the peer, or with `FORWARDED_FOR_HOPS` = N the N-th address from the
/// right of `X-Forwarded-For` (the one the outermost trusted proxy saw).
pub fn client_ip(req: &Request, hops: usize) -> Option<IpAddr> {
    client_ip_of(req.headers(), req.extensions(), hops)
}

/// [`client_ip`] from a request's parts (for extractors).
pub fn client_ip_of(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    hops: usize,
) -> Option<IpAddr> {
    if hops > 0
        && let Some(ip) = headers
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
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Whether a request is subject to the API protections (health and metrics never are).
fn is_api(req: &Request) -> bool {
    req.uri().path().starts_with("/api/")
}

/// `DELETE /api/v1/orders/{id}`: a cancel, which reduces risk and must outlive new orders.
fn is_cancel(req: &Request) -> bool {
    req.method() == Method::DELETE && req.uri().path().starts_with("/api/v1/orders/")
}

/// Whether an API request goes through the database breaker: not the routes that never touch the
/// database, and not market-data reads, which go through the cache and its own breaker check.
fn needs_database(req: &Request) -> bool {
    let path = req.uri().path();
    let no_database = path == "/api/v1/openapi.json" || path == "/api/v1/ws";
    let market_read = req.method() == Method::GET
        && (path == "/api/v1/instruments" || path.starts_with("/api/v1/markets/"));
    !(no_database || market_read)
}
