//! Two-level cache for public market-data reads: in-process (moka) in front of Redis.
//!
//! Keys carry the symbol's market-data sequence (`md_seq`), which the matcher advances on every
//! trade, book change and status change and publishes after commit. A background task follows
//! those events ([`crate::trading::Trading::subscribe`], which also carries other replicas'
//! events through the Redis fan-out) and bumps the version, so a trade invalidates every cached
//! read of its symbol at once, on every replica, without deleting anything. The TTL bounds the
//! staleness of what no event covers (the ticker's 24-hour volume window) and of a replica that
//! has not seen an event yet.
//!
//! Only public market data is cached; balances, orders and fills never are.
//!
//! While the database breaker is open, or a load fails, the last good answer (kept for
//! [`STALE_FOR`]) is served instead of an error; `cache_requests_total{result="stale"}` counts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use prometheus::IntCounterVec;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::breaker::Breaker;
use crate::cache::Cache;
use crate::error::ApiError;

/// How long the last good answer is kept for serving while the database is unavailable.
pub const STALE_FOR: Duration = Duration::from_secs(300);
/// Entries kept in memory per level.
const CAPACITY: u64 = 10_000;

/// The caches, by the label they have in `cache_requests_total{cache}`.
pub const CACHES: [&str; 4] = ["instruments", "ticker", "book", "trades"];

/// Per-symbol versions: the latest `md_seq` seen, and the `md_seq` of the latest status change.
#[derive(Debug, Default)]
struct Versions {
    md: AtomicU64,
    status: AtomicU64,
}

/// The market-data cache; cheap to clone.
#[derive(Clone)]
pub struct MarketCache {
    l1: moka::future::Cache<String, Bytes>,
    stale: moka::future::Cache<String, Bytes>,
    l2: Cache,
    ttl: Duration,
    versions: Arc<HashMap<String, Versions>>,
    /// Bumped when the event stream lagged: every key changes, nothing stale survives.
    epoch: Arc<AtomicU64>,
    requests: IntCounterVec,
}

impl std::fmt::Debug for MarketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketCache")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl MarketCache {
    /// A cache for `symbols` with entries living `ttl` (zero disables caching), with `l2` (Redis
    /// or its fallback) as the second level, counting into `requests` (`{cache, result}`).
    pub fn new(
        symbols: impl IntoIterator<Item = String>,
        ttl: Duration,
        l2: Cache,
        requests: IntCounterVec,
    ) -> MarketCache {
        for cache in CACHES {
            for result in ["hit_memory", "hit_redis", "miss", "stale"] {
                requests.with_label_values(&[cache, result]);
            }
        }
        MarketCache {
            l1: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            stale: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(STALE_FOR)
                .build(),
            l2,
            ttl,
            versions: Arc::new(
                symbols
                    .into_iter()
                    .map(|s| (s, Versions::default()))
                    .collect(),
            ),
            epoch: Arc::new(AtomicU64::new(0)),
            requests,
        }
    }

    /// Records a market event of `symbol`: cached reads of older versions are no longer used.
    pub fn observe(&self, symbol: &str, md_seq: u64, status_change: bool) {
        if let Some(v) = self.versions.get(symbol) {
            v.md.fetch_max(md_seq, Ordering::SeqCst);
            if status_change {
                v.status.fetch_max(md_seq, Ordering::SeqCst);
            }
        }
    }

    /// Follows the trading service's market events until `stop`, invalidating as they come.
    pub fn spawn_invalidator(
        &self,
        trading: &crate::trading::Trading,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let mut events = trading.subscribe();
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.recv() => match event {
                        Ok(e) => cache.observe(&e.symbol, e.md_seq, e.kind == "status"),
                        Err(RecvError::Lagged(_)) => {
                            cache.epoch.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(RecvError::Closed) => break,
                    },
                }
            }
        })
    }

    /// The versioned key of a read; `symbol` `None` means all symbols (the instrument list).
    fn key(&self, cache: &str, symbol: Option<&str>, suffix: &str) -> (String, String) {
        let version = match symbol {
            Some(s) => self
                .versions
                .get(s)
                .map(|v| v.md.load(Ordering::SeqCst))
                .unwrap_or(0),
            None => self
                .versions
                .values()
                .map(|v| v.status.load(Ordering::SeqCst))
                .fold(0u64, u64::wrapping_add),
        };
        let stable = format!("md:{cache}:{}:{suffix}", symbol.unwrap_or("*"));
        let epoch = self.epoch.load(Ordering::SeqCst);
        (format!("{stable}:v{version}.{epoch}"), stable)
    }

    fn count(&self, cache: &str, result: &str) {
        self.requests.with_label_values(&[cache, result]).inc();
    }

    /// Returns the cached JSON of a read, or runs `load` (guarded by the database `breaker`) and
    /// caches its answer. Concurrent misses of one key on this replica share one load.
    pub async fn get_or_load<F, Fut>(
        &self,
        cache: &'static str,
        symbol: Option<&str>,
        suffix: &str,
        breaker: &Breaker,
        load: F,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        let (key, stable) = self.key(cache, symbol, suffix);
        if self.ttl.is_zero() {
            self.count(cache, "miss");
            return guarded(breaker, load).await;
        }
        let loaded = AtomicBool::new(false);
        let from_redis = AtomicBool::new(false);
        let result = self
            .l1
            .try_get_with(key.clone(), async {
                loaded.store(true, Ordering::Relaxed);
                if let Some(v) = self.l2.get(&key).await {
                    from_redis.store(true, Ordering::Relaxed);
                    return Ok(Bytes::from(v));
                }
                let v = guarded(breaker, load).await?;
                self.l2.set(&key, &v, self.ttl).await;
                Ok::<_, ApiError>(v)
            })
            .await;
        match result {
            Ok(v) => {
                self.count(
                    cache,
                    match (
                        loaded.load(Ordering::Relaxed),
                        from_redis.load(Ordering::Relaxed),
                    ) {
                        (false, _) => "hit_memory",
                        (true, true) => "hit_redis",
                        (true, false) => "miss",
                    },
                );
                self.stale.insert(stable, v.clone()).await;
                Ok(v)
            }
            Err(e) => {
                if matches!(*e, ApiError::DependencyUnavailable(_))
                    && let Some(v) = self.stale.get(&stable).await
                {
                    self.count(cache, "stale");
                    return Ok(v);
                }
                self.count(cache, "miss");
                Err(clone_error(&e))
            }
        }
    }
}

/// Runs a database load through the breaker: fails fast while it is open.
async fn guarded<F, Fut>(breaker: &Breaker, load: F) -> Result<Bytes, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, ApiError>>,
{
    let Some(permit) = breaker.try_acquire() else {
        return Err(ApiError::DependencyUnavailable(
            "the database is unavailable (circuit open), retry later".into(),
        ));
    };
    let result = load().await;
    match &result {
        Ok(_) => permit.success(),
        Err(ApiError::DependencyUnavailable(_)) => permit.failure(),
        Err(_) => drop(permit),
    }
    result
}

/// The shared load's error, rebuilt for this caller (moka hands every waiter the same `Arc`).
fn clone_error(e: &ApiError) -> ApiError {
    match e {
        ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
        ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
        ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
        ApiError::DependencyUnavailable(m) => ApiError::DependencyUnavailable(m.clone()),
        ApiError::Unprocessable { code, message } => ApiError::Unprocessable {
            code,
            message: message.clone(),
        },
        other => ApiError::Internal(anyhow::anyhow!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl: Duration) -> MarketCache {
        let requests = IntCounterVec::new(
            prometheus::Opts::new("cache_requests_total", "t"),
            &["cache", "result"],
        )
        .expect("metric");
        MarketCache::new(["BTC-USD".to_owned()], ttl, Cache::local("t:"), requests)
    }

    fn counts(c: &MarketCache) -> [u64; 4] {
        ["hit_memory", "hit_redis", "miss", "stale"]
            .map(|r| c.requests.with_label_values(&["book", r]).get())
    }

    #[tokio::test]
    async fn hits_until_an_event_bumps_the_version() {
        let c = cache(Duration::from_secs(60));
        let b = Breaker::new("database", 5, Duration::from_secs(5));
        let load = |v: &'static str| move || async move { Ok(Bytes::from_static(v.as_bytes())) };
        let first = c
            .get_or_load("book", Some("BTC-USD"), "20", &b, load("a"))
            .await;
        assert_eq!(first.expect("load"), "a");
        let second = c
            .get_or_load("book", Some("BTC-USD"), "20", &b, load("b"))
            .await;
        assert_eq!(second.expect("hit"), "a", "served from memory");
        assert_eq!(counts(&c), [1, 0, 1, 0]);
        c.observe("BTC-USD", 7, false);
        let third = c
            .get_or_load("book", Some("BTC-USD"), "20", &b, load("c"))
            .await;
        assert_eq!(third.expect("reload"), "c", "a trade invalidates");
        let other = c
            .get_or_load("book", Some("BTC-USD"), "5", &b, load("d"))
            .await;
        assert_eq!(other.expect("other depth"), "d");
    }

    #[tokio::test]
    async fn the_second_level_serves_a_fresh_first_level() {
        let c = cache(Duration::from_secs(60));
        let b = Breaker::new("database", 5, Duration::from_secs(5));
        c.get_or_load("book", Some("BTC-USD"), "20", &b, || async {
            Ok(Bytes::from("x"))
        })
        .await
        .expect("load");
        c.l1.invalidate_all();
        let v = c
            .get_or_load("book", Some("BTC-USD"), "20", &b, || async {
                Err(ApiError::Internal(anyhow::anyhow!("must not load")))
            })
            .await;
        assert_eq!(v.expect("from redis level"), "x");
        assert_eq!(counts(&c), [0, 1, 1, 0]);
    }

    #[tokio::test]
    async fn open_breaker_serves_stale_or_fails_fast() {
        let c = cache(Duration::from_secs(60));
        let b = Breaker::new("database", 1, Duration::from_secs(60));
        c.get_or_load("book", Some("BTC-USD"), "20", &b, || async {
            Ok(Bytes::from("old"))
        })
        .await
        .expect("load");
        c.observe("BTC-USD", 9, false);
        let v = c
            .get_or_load("book", Some("BTC-USD"), "20", &b, || async {
                Err(ApiError::DependencyUnavailable("down".into()))
            })
            .await;
        assert_eq!(v.expect("stale"), "old");
        assert_eq!(b.state(), super::super::breaker::BreakerState::Open);
        let fresh = c
            .get_or_load("book", Some("BTC-USD"), "50", &b, || async {
                panic!("an open breaker must not call the database")
            })
            .await;
        assert!(matches!(fresh, Err(ApiError::DependencyUnavailable(_))));
        assert_eq!(counts(&c)[3], 1);
    }
}
