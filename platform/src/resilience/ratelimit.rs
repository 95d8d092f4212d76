//! Rate limits shared by every replica through Redis, with a per-process fallback.
//!
//! The shared limiter is GCRA (the generic cell rate algorithm: one timestamp per key, the
//! "theoretical arrival time") run by one Lua script, so the read-check-write is atomic in Redis
//! and the clock is Redis's own (replicas' clocks may differ). The script is sent with `EVALSHA`
//! and re-sent with `EVAL` when Redis does not know it yet (`redis::Script` does both).
//!
//! When Redis is unreachable the `redis` circuit breaker opens and every check goes to
//! [`governor`]'s keyed GCRA in process memory with the same quotas. An outage therefore neither
//! blocks all traffic nor removes protection; it only makes the limit per replica instead of
//! global until the breaker's probe finds Redis again.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};
use prometheus::IntCounterVec;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::breaker::Breaker;
use crate::config::ResilienceConfig;

/// GCRA in one atomic step. KEYS[1]: the key's theoretical arrival time (ms). ARGV[1]: emission
/// interval in ms (period / rate), ARGV[2]: burst, ARGV[3]: `1` to take a cell, `0` to only
/// look. Returns {allowed, remaining, retry_after_ms, reset_ms}.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
  tat = new_tat
end
return {1, math.floor((now + tolerance - tat) / interval), 0, tat - now}
";

/// How long one Redis call of the limiter may take before it counts as a failure.
pub(super) const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Local limiter keys are pruned after this many checks, so idle keys do not pile up.
const PRUNE_EVERY: u64 = 4096;

/// The limits the platform enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Every API request, per client IP.
    Ip,
    /// Every authenticated API request, per account.
    Account,
    /// Login and registration attempts, per client IP (brute force, sign-up spam).
    LoginIp,
    /// Login attempts, per username (credential stuffing from many IPs).
    LoginUser,
    /// Failed logins, per username, per hour; exhausting it locks the account's logins.
    FailedLogin,
}

impl LimitKind {
    /// Every limit, for building the local limiters and pre-creating metric labels.
    pub const ALL: [LimitKind; 5] = [
        LimitKind::Ip,
        LimitKind::Account,
        LimitKind::LoginIp,
        LimitKind::LoginUser,
        LimitKind::FailedLogin,
    ];

    /// The name used in metrics, Redis keys and the `RateLimit-Policy` header.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Ip => "ip",
            LimitKind::Account => "account",
            LimitKind::LoginIp => "login_ip",
            LimitKind::LoginUser => "login_user",
            LimitKind::FailedLogin => "failed_login",
        }
    }
}

/// A quota: `burst` requests at once, refilled at one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota2 {
    /// Time to earn one request back.
    pub interval: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Quota2 {
    /// `count` per `period` with the given burst.
    pub fn new(count: u32, period: Duration, burst: u32) -> Quota2 {
        let interval = period / count.max(1);
        Quota2 {
            interval: interval.max(Duration::from_millis(1)),
            burst: burst.max(1),
        }
    }

    /// The window a full burst takes to refill, in whole seconds (at least 1).
    fn window_secs(self) -> u64 {
        (self.interval * self.burst).as_secs().max(1)
    }
}

/// The answer of a limit check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Which limit decided.
    pub kind: LimitKind,
    /// The limit's quota.
    pub quota: Quota2,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// When a refused request would be accepted (zero when allowed).
    pub retry_after: Duration,
    /// When the burst is full again.
    pub reset: Duration,
    /// Whether the shared Redis limiter answered (false: the local fallback did).
    pub shared: bool,
}

impl Decision {
    /// The response headers this decision calls for.
    pub fn headers(&self) -> LimitHeaders {
        LimitHeaders {
            name: self.kind.name(),
            quota: self.quota.burst.into(),
            window: self.quota.window_secs(),
            remaining: self.remaining.into(),
            reset: ceil_secs(self.reset),
            retry_after: (!self.allowed).then(|| ceil_secs(self.retry_after).max(1)),
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

/// The `RateLimit-Policy`, `RateLimit` and (on refusals) `Retry-After` headers, in the
/// structured-field form of the IETF RateLimit header fields draft:
/// `RateLimit-Policy: "ip";q=100;w=2` and `RateLimit: "ip";r=0;t=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHeaders {
    name: &'static str,
    quota: u64,
    window: u64,
    remaining: u64,
    reset: u64,
    retry_after: Option<u64>,
}

impl LimitHeaders {
    /// Headers of limit `name`: `quota` per `window` seconds, `remaining` left, full again in
    /// `reset` seconds; `retry_after` on refusals.
    pub fn new(
        name: &'static str,
        quota: u64,
        window: u64,
        remaining: u64,
        reset: u64,
        retry_after: Option<u64>,
    ) -> LimitHeaders {
        LimitHeaders {
            name,
            quota,
            window,
            remaining,
            reset,
            retry_after,
        }
    }

    /// Requests left under this limit.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Writes the headers into `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set(
            headers,
            "ratelimit-policy",
            format!("\"{}\";q={};w={}", self.name, self.quota, self.window),
        );
        set(
            headers,
            "ratelimit",
            format!("\"{}\";r={};t={}", self.name, self.remaining, self.reset),
        );
        if let Some(secs) = self.retry_after {
            set(headers, "retry-after", secs.to_string());
        }
    }
}

type Local =
    Governor<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The limiter; one per process, shared by every request through [`super::Resilience`].
pub struct RateLimiter {
    quotas: HashMap<LimitKind, Quota2>,
    local: HashMap<LimitKind, Local>,
    /// Local record of locked accounts (governor cannot look without taking a cell).
    local_locks: Mutex<HashMap<String, Instant>>,
    redis: Option<RedisSide>,
    breaker: Breaker,
    prefix: String,
    refused: IntCounterVec,
    checks: AtomicU64,
}

/// A Redis client with its lazily made connection and the script it runs (shared with
/// [`super::quota`]).
pub(super) struct RedisSide {
    pub(super) client: redis::Client,
    pub(super) conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    pub(super) script: redis::Script,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quotas", &self.quotas)
            .field("redis", &self.redis.is_some())
            .field("breaker", &self.breaker.state())
            .finish()
    }
}

impl RateLimiter {
    /// Builds the limiter from the configuration. With `redis` the limits are shared; the
    /// connection is made lazily, so an unreachable server at start-up is not an error.
    pub fn new(
        config: &ResilienceConfig,
        redis: Option<redis::Client>,
        prefix: &str,
        breaker: Breaker,
        refused: IntCounterVec,
    ) -> RateLimiter {
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        let quotas: HashMap<LimitKind, Quota2> = [
            (
                LimitKind::Ip,
                Quota2::new(config.rate_per_second, second, config.rate_burst),
            ),
            (
                LimitKind::Account,
                Quota2::new(config.rate_per_second, second, config.rate_burst),
            ),
            (
                LimitKind::LoginIp,
                Quota2::new(config.login_per_minute, minute, config.login_per_minute),
            ),
            (
                LimitKind::LoginUser,
                Quota2::new(config.login_per_minute, minute, config.login_per_minute),
            ),
            (
                LimitKind::FailedLogin,
                Quota2::new(
                    config.failed_logins_per_hour,
                    Duration::from_secs(3600),
                    config.failed_logins_per_hour,
                ),
            ),
        ]
        .into_iter()
        .collect();
        let local = quotas
            .iter()
            .map(|(kind, q)| {
                let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(q.interval)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                (*kind, Governor::keyed(quota).with_middleware())
            })
            .collect();
        for kind in LimitKind::ALL {
            refused.with_label_values(&[kind.name()]);
        }
        RateLimiter {
            quotas,
            local,
            local_locks: Mutex::new(HashMap::new()),
            redis: redis.map(|client| RedisSide {
                client,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(GCRA_LUA),
            }),
            breaker,
            prefix: prefix.to_owned(),
            refused,
            checks: AtomicU64::new(0),
        }
    }

    /// The quota of a limit.
    pub fn quota(&self, kind: LimitKind) -> Quota2 {
        self.quotas
            .get(&kind)
            .copied()
            .unwrap_or(Quota2::new(1, Duration::from_secs(1), 1))
    }

    /// Whether checks currently go to Redis (false: no Redis configured, or its breaker is open).
    pub fn is_shared(&self) -> bool {
        self.redis.is_some() && self.breaker.state() != super::breaker::BreakerState::Open
    }

    /// Takes one request from `key`'s quota of `kind`; counts refusals in
    /// `rate_limited_total{limit}`.
    pub async fn check(&self, kind: LimitKind, key: &str) -> Decision {
        let decision = self.decide(kind, key, true).await;
        if !decision.allowed {
            self.refused.with_label_values(&[kind.name()]).inc();
        }
        decision
    }

    /// Looks at `key`'s quota of `kind` without taking from it: would one more be allowed?
    /// A "no" is a refusal and counted like one.
    pub async fn peek(&self, kind: LimitKind, key: &str) -> Decision {
        let decision = self.decide(kind, key, false).await;
        if !decision.allowed {
            self.refused.with_label_values(&[kind.name()]).inc();
        }
        decision
    }

    async fn decide(&self, kind: LimitKind, key: &str, take: bool) -> Decision {
        let quota = self.quota(kind);
        let key = self.key(kind, key);
        if let Some(d) = self.shared(kind, quota, &key, take).await {
            return d;
        }
        self.local(kind, quota, key, take)
    }

    fn key(&self, kind: LimitKind, key: &str) -> String {
        // Keys come from clients (usernames, forwarded addresses): bound their length.
        let key = if key.len() > 64 {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(key.as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        } else {
            key.to_owned()
        };
        format!("{}rl:{}:{}", self.prefix, kind.name(), key)
    }

    async fn shared(
        &self,
        kind: LimitKind,
        quota: Quota2,
        key: &str,
        take: bool,
    ) -> Option<Decision> {
        let redis = self.redis.as_ref()?;
        let permit = self.breaker.try_acquire()?;
        let result = tokio::time::timeout(REDIS_TIMEOUT * 4, async {
            let mut conn = redis_conn(redis).await?;
            let reply: Vec<i64> = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis
                    .script
                    .key(key)
                    .arg(u64::try_from(quota.interval.as_millis()).unwrap_or(u64::MAX))
                    .arg(quota.burst)
                    .arg(if take { 1 } else { 0 })
                    .invoke_async(&mut conn)
                    .instrument(crate::cache::redis_span("EVALSHA")),
            )
            .await
            .map_err(|_| "redis call timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            Ok::<_, String>(reply)
        })
        .await
        .unwrap_or_else(|_| Err("redis connect timed out".to_owned()));
        match result {
            Ok(reply) if reply.len() == 4 => {
                permit.success();
                let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
                Some(Decision {
                    allowed: reply[0] == 1,
                    kind,
                    quota,
                    remaining: u32::try_from(reply[1]).unwrap_or(0),
                    retry_after: ms(reply[2]),
                    reset: ms(reply[3]),
                    shared: true,
                })
            }
            Ok(reply) => {
                permit.failure();
                tracing::warn!(
                    ?reply,
                    "unexpected rate limit script reply; limiting locally"
                );
                None
            }
            Err(e) => {
                permit.failure();
                tracing::debug!(error = %e, "redis rate limit failed; limiting locally");
                None
            }
        }
    }

    fn local(&self, kind: LimitKind, quota: Quota2, key: String, take: bool) -> Decision {
        let Some(limiter) = self.local.get(&kind) else {
            return allow(kind, quota, quota.burst);
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            for l in self.local.values() {
                l.retain_recent();
            }
            let now = Instant::now();
            self.locks().retain(|_, until| *until > now);
        }
        if !take {
            // Only the failed-login limit is looked at without taking: see `record_failure`.
            let until = self.locks().get(&key).copied();
            return match until.map(|u| u.saturating_duration_since(Instant::now())) {
                Some(wait) if !wait.is_zero() => refuse(kind, quota, wait),
                _ => allow(kind, quota, quota.burst),
            };
        }
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                if remaining == 0 && kind == LimitKind::FailedLogin {
                    // The next one would wait one interval: remember that for `peek`.
                    self.locks().insert(key, Instant::now() + quota.interval);
                }
                Decision {
                    remaining,
                    reset: quota.interval * (quota.burst - remaining.min(quota.burst)),
                    ..allow(kind, quota, remaining)
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                if kind == LimitKind::FailedLogin {
                    self.locks().insert(key, Instant::now() + wait);
                }
                refuse(kind, quota, wait)
            }
        }
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.local_locks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn allow(kind: LimitKind, quota: Quota2, remaining: u32) -> Decision {
    Decision {
        allowed: true,
        kind,
        quota,
        remaining,
        retry_after: Duration::ZERO,
        reset: Duration::ZERO,
        shared: false,
    }
}

fn refuse(kind: LimitKind, quota: Quota2, wait: Duration) -> Decision {
    Decision {
        allowed: false,
        kind,
        quota,
        remaining: 0,
        retry_after: wait,
        reset: wait + quota.interval * quota.burst.saturating_sub(1),
        shared: false,
    }
}

/// The limiter's Redis connection, made on first use (and after a failed attempt, on the next
/// call the breaker lets through).
pub(super) async fn redis_conn(redis: &RedisSide) -> Result<ConnectionManager, String> {
    let mut slot = redis.conn.lock().await;
    if let Some(conn) = slot.as_ref() {
        return Ok(conn.clone());
    }
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT * 2))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(0);
    let conn = ConnectionManager::new_with_config(redis.client.clone(), config)
        .await
        .map_err(|e| e.to_string())?;
    *slot = Some(conn.clone());
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(extra: &[(&str, &str)], redis: Option<&str>) -> RateLimiter {
        let vars = extra.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config = crate::config::Config::from_vars(vars).expect("config");
        let refused =
            IntCounterVec::new(prometheus::Opts::new("rate_limited_total", "t"), &["limit"])
                .expect("metric");
        RateLimiter::new(
            &config.resilience,
            redis.map(|u| redis::Client::open(u).expect("url")),
            &format!("t{}:", uuid::Uuid::new_v4().simple()),
            Breaker::new("redis", 1, Duration::from_secs(60)),
            refused,
        )
    }

    #[tokio::test]
    async fn local_limit_trips_after_the_burst_and_recovers() {
        let l = limiter(
            &[("RATE_LIMIT_PER_SECOND", "20"), ("RATE_LIMIT_BURST", "3")],
            None,
        );
        for i in 0..3 {
            let d = l.check(LimitKind::Ip, "1.2.3.4").await;
            assert!(d.allowed, "request {i} is within the burst");
            assert_eq!(d.remaining, 2 - i);
        }
        let refused = l.check(LimitKind::Ip, "1.2.3.4").await;
        assert!(!refused.allowed);
        assert!(
            refused.retry_after > Duration::ZERO
                && refused.retry_after <= Duration::from_millis(50)
        );
        assert!(
            l.check(LimitKind::Ip, "5.6.7.8").await.allowed,
            "other keys are not affected"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(l.check(LimitKind::Ip, "1.2.3.4").await.allowed, "refilled");
        assert_eq!(l.refused.with_label_values(&["ip"]).get(), 1);
    }

    #[tokio::test]
    async fn local_peek_sees_an_exhausted_failed_login_quota() {
        let l = limiter(&[("FAILED_LOGIN_LIMIT_PER_HOUR", "2")], None);
        assert!(l.peek(LimitKind::FailedLogin, "bob").await.allowed);
        assert!(l.check(LimitKind::FailedLogin, "bob").await.allowed);
        assert!(l.peek(LimitKind::FailedLogin, "bob").await.allowed);
        let last = l.check(LimitKind::FailedLogin, "bob").await;
        assert!(last.allowed && last.remaining == 0);
        let locked = l.peek(LimitKind::FailedLogin, "bob").await;
        assert!(!locked.allowed, "locked once the quota is used up");
        assert!(locked.retry_after > Duration::from_secs(1700));
        assert!(l.peek(LimitKind::FailedLogin, "alice").await.allowed);
    }

    #[tokio::test]
    async fn unreachable_redis_opens_the_breaker_and_limits_locally() {
        let l = limiter(
            &[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "2")],
            Some("redis://127.0.0.1:1"),
        );
        let d = l.check(LimitKind::Ip, "k").await;
        assert!(d.allowed && !d.shared, "answered locally");
        assert!(!l.is_shared(), "breaker open after the failure");
        assert!(l.check(LimitKind::Ip, "k").await.allowed);
        assert!(
            !l.check(LimitKind::Ip, "k").await.allowed,
            "still protected"
        );
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let d = Decision {
            allowed: false,
            kind: LimitKind::LoginIp,
            quota: Quota2::new(10, Duration::from_secs(60), 10),
            remaining: 0,
            retry_after: Duration::from_millis(5500),
            reset: Duration::from_secs(60),
            shared: true,
        };
        let mut h = HeaderMap::new();
        d.headers().apply(&mut h);
        assert_eq!(h["ratelimit-policy"], "\"login_ip\";q=10;w=60");
        assert_eq!(h["ratelimit"], "\"login_ip\";r=0;t=60");
        assert_eq!(h["retry-after"], "6");
    }
}
