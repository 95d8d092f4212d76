//! Daily quotas per account: authenticated API requests (`QUOTA_REQUESTS_PER_DAY`) and order
//! submissions (`QUOTA_ORDERS_PER_DAY`), in UTC days, 0 meaning unlimited.
//!
//! Unlike the per-second limits (GCRA, a sliding allowance), a quota is a counter per account
//! and UTC day: `INCR` of `<REDIS_KEY_PREFIX>quota:<kind>:<day>:<account>` in one Lua script
//! that also sets the key to expire an hour after the day ends, so every replica counts into
//! the same number. The day comes from the platform's clock ([`crate::clock::Clock`], NTP-synced
//! replicas agree to within seconds around midnight), not Redis's, so tests can cross a
//! midnight without waiting. When Redis is absent or its breaker open (the same `redis`
//! breaker as the rate limits), each replica counts in memory: the quota then holds per replica
//! until Redis is back, as the rate limits do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::IntCounterVec;
use tracing::Instrument;

use super::breaker::Breaker;
use super::ratelimit::{LimitHeaders, REDIS_TIMEOUT, RedisSide, redis_conn};

/// KEYS[1]: the counter. ARGV[1]: its lifetime in seconds, ARGV[2]: `1` to count one, `0` to
/// read. Returns the count.
const QUOTA_LUA: &str = r"
if ARGV[2] == '1' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
  return n
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
";

/// Local counters are pruned of past days beyond this many entries.
const LOCAL_MAX_ENTRIES: usize = 100_000;
const DAY_SECONDS: i64 = 86_400;

/// The daily quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Authenticated API requests.
    Requests,
    /// Order submissions (`POST /api/v1/orders`).
    Orders,
}

impl QuotaKind {
    /// Both quotas.
    pub const ALL: [QuotaKind; 2] = [QuotaKind::Requests, QuotaKind::Orders];

    /// The name in metrics, Redis keys and the `/me` body.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::Requests => "requests",
            QuotaKind::Orders => "orders",
        }
    }

    /// The name in the `RateLimit` headers.
    fn header_name(self) -> &'static str {
        match self {
            QuotaKind::Requests => "requests_day",
            QuotaKind::Orders => "orders_day",
        }
    }
}

/// The state of one account's quota after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Which quota.
    pub kind: QuotaKind,
    /// Per day; 0 is unlimited.
    pub limit: u64,
    /// Counted today, this request included when it was counted.
    pub used: u64,
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Until the next UTC midnight, when the count starts again.
    pub reset: Duration,
    /// Whether Redis answered (false: the local fallback did, or the quota is unlimited).
    pub shared: bool,
}

impl QuotaDecision {
    /// Requests left today (`None`: unlimited).
    pub fn remaining(&self) -> Option<u64> {
        (self.limit > 0).then(|| self.limit.saturating_sub(self.used))
    }

    /// The `RateLimit-Policy`, `RateLimit` and (refused) `Retry-After` headers.
    pub fn headers(&self) -> LimitHeaders {
        let reset = self.reset.as_secs().max(1);
        LimitHeaders::new(
            self.kind.header_name(),
            self.limit,
            DAY_SECONDS as u64,
            self.remaining().unwrap_or(u64::MAX),
            reset,
            (!self.allowed).then_some(reset),
        )
    }
}

/// The UTC day number of `now` and the time until it ends.
pub fn day_of(now: DateTime<Utc>) -> (i64, Duration) {
    let secs = now.timestamp();
    let day = secs.div_euclid(DAY_SECONDS);
    let left = (day + 1) * DAY_SECONDS - secs;
    (day, Duration::from_secs(u64::try_from(left).unwrap_or(1)))
}

/// The quotas; one per process, in [`super::Resilience`].
pub struct Quotas {
    limits: HashMap<QuotaKind, u64>,
    redis: Option<RedisSide>,
    breaker: Breaker,
    prefix: String,
    local: Mutex<HashMap<(QuotaKind, String), (i64, u64)>>,
    exceeded: IntCounterVec,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("limits", &self.limits)
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

impl Quotas {
    /// Quotas of `requests` and `orders` per day (0 unlimited), shared through `redis` when
    /// given; refusals are counted in `exceeded` (`quota_exceeded_total{quota}`).
    pub fn new(
        requests: u64,
        orders: u64,
        redis: Option<redis::Client>,
        prefix: &str,
        breaker: Breaker,
        exceeded: IntCounterVec,
    ) -> Quotas {
        for kind in QuotaKind::ALL {
            exceeded.with_label_values(&[kind.name()]);
        }
        Quotas {
            limits: [(QuotaKind::Requests, requests), (QuotaKind::Orders, orders)]
                .into_iter()
                .collect(),
            redis: redis.map(|client| RedisSide {
                client,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(QUOTA_LUA),
            }),
            breaker,
            prefix: prefix.to_owned(),
            local: Mutex::new(HashMap::new()),
            exceeded,
        }
    }

    /// The daily limit of `kind` (0: unlimited).
    pub fn limit(&self, kind: QuotaKind) -> u64 {
        self.limits.get(&kind).copied().unwrap_or(0)
    }

    /// Counts one request of `account` against `kind` on the UTC day of `now`.
    pub async fn take(&self, kind: QuotaKind, account: &str, now: DateTime<Utc>) -> QuotaDecision {
        let d = self.decide(kind, account, now, true).await;
        if !d.allowed {
            self.exceeded.with_label_values(&[kind.name()]).inc();
        }
        d
    }

    /// The state of `account`'s quota of `kind` without counting.
    pub async fn peek(&self, kind: QuotaKind, account: &str, now: DateTime<Utc>) -> QuotaDecision {
        let mut d = self.decide(kind, account, now, false).await;
        d.allowed = d.limit == 0 || d.used < d.limit;
        d
    }

    async fn decide(
        &self,
        kind: QuotaKind,
        account: &str,
        now: DateTime<Utc>,
        take: bool,
    ) -> QuotaDecision {
        let limit = self.limit(kind);
        let (day, reset) = day_of(now);
        let decision = |used: u64, shared: bool| QuotaDecision {
            kind,
            limit,
            used,
            allowed: limit == 0 || used <= limit,
            reset,
            shared,
        };
        if limit == 0 {
            return decision(0, false);
        }
        let key = format!("{}quota:{}:{day}:{account}", self.prefix, kind.name());
        let ttl = reset.as_secs() + 3600;
        if let Some(used) = self.shared(&key, ttl, take).await {
            return decision(used, true);
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() > LOCAL_MAX_ENTRIES {
            local.retain(|_, (d, _)| *d >= day);
        }
        let entry = local.entry((kind, account.to_owned())).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if take {
            entry.1 += 1;
        }
        decision(entry.1, false)
    }

    async fn shared(&self, key: &str, ttl: u64, take: bool) -> Option<u64> {
        let redis = self.redis.as_ref()?;
        let permit = self.breaker.try_acquire()?;
        let result = tokio::time::timeout(REDIS_TIMEOUT * 4, async {
            let mut conn = redis_conn(redis).await?;
            tokio::time::timeout(
                REDIS_TIMEOUT,
                redis
                    .script
                    .key(key)
                    .arg(ttl)
                    .arg(if take { 1 } else { 0 })
                    .invoke_async::<i64>(&mut conn)
                    .instrument(crate::cache::redis_span("EVALSHA")),
            )
            .await
            .map_err(|_| "redis call timed out".to_owned())?
            .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("redis connect timed out".to_owned()));
        match result {
            Ok(n) => {
                permit.success();
                Some(u64::try_from(n).unwrap_or(0))
            }
            Err(e) => {
                permit.failure();
                tracing::debug!(error = %e, "redis quota failed; counting locally");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(requests: u64, orders: u64) -> Quotas {
        let exceeded = IntCounterVec::new(prometheus::Opts::new("q", "q"), &["quota"]).expect("m");
        Quotas::new(
            requests,
            orders,
            None,
            "t:",
            Breaker::new("redis", 1, Duration::from_secs(60)),
            exceeded,
        )
    }

    #[test]
    fn days_end_at_utc_midnight() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T23:59:30Z")
            .expect("t")
            .to_utc();
        let (day, left) = day_of(t);
        assert_eq!(left, Duration::from_secs(30));
        let (next, left) = day_of(t + chrono::Duration::seconds(30));
        assert_eq!((next, left), (day + 1, Duration::from_secs(86_400)));
    }

    #[tokio::test]
    async fn local_quota_trips_and_resets_at_midnight() {
        let q = quotas(2, 0);
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .expect("t")
            .to_utc();
        assert!(q.take(QuotaKind::Requests, "1", now).await.allowed);
        let second = q.take(QuotaKind::Requests, "1", now).await;
        assert_eq!((second.allowed, second.remaining()), (true, Some(0)));
        let third = q.take(QuotaKind::Requests, "1", now).await;
        assert!(!third.allowed);
        assert_eq!(third.headers().remaining(), 0);
        assert!(
            q.take(QuotaKind::Requests, "2", now).await.allowed,
            "per account"
        );
        assert!(
            q.take(QuotaKind::Orders, "1", now).await.allowed,
            "unlimited"
        );
        let tomorrow = now + chrono::Duration::hours(12);
        let fresh = q.peek(QuotaKind::Requests, "1", tomorrow).await;
        assert_eq!((fresh.allowed, fresh.remaining()), (true, Some(2)));
        assert_eq!(q.exceeded.with_label_values(&["requests"]).get(), 1);
    }
}
