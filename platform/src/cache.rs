//! A small key-value cache: Redis when `REDIS_URL` is set, an in-process map otherwise.
//!
//! Redis is an accelerator, never a dependency the service dies with: when it is unreachable at
//! start-up or fails at run time, every call falls back to the in-process map, the
//! `redis_fallback_active` gauge and `/health` say so, and the health checker's periodic
//! [`Cache::check`] switches back once Redis answers again. The in-process map is a `moka`
//! cache bounded in entries with each entry's own TTL, so a long outage can neither exhaust
//! memory nor flush everything at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use tokio::sync::RwLock;

/// How long one Redis command may take before the call falls back.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound of entries in the in-process map, so a long outage cannot exhaust memory.
const LOCAL_CAPACITY: u64 = 10_000;

/// Where cache calls currently go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Redis is configured and answering.
    Redis,
    /// Redis is configured but unreachable: the in-process map serves instead.
    Fallback,
    /// No Redis configured: the in-process map is the cache.
    Local,
}

/// The cache handle; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    client: Option<redis::Client>,
    redis: RwLock<Option<ConnectionManager>>,
    degraded: AtomicBool,
    prefix: String,
    local: moka::future::Cache<String, (Arc<[u8]>, Duration)>,
}

/// Each local entry lives for the TTL it was written with (rewriting it restarts that TTL).
struct WrittenTtl;

impl moka::Expiry<String, (Arc<[u8]>, Duration)> for WrittenTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &(Arc<[u8]>, Duration),
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &(Arc<[u8]>, Duration),
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("mode", &self.mode())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl Cache {
    /// A cache with no Redis behind it.
    pub fn local(prefix: &str) -> Cache {
        Cache::build(None, prefix)
    }

    /// Connects to Redis at `url`. An unreachable server is not an error: the cache starts in
    /// fallback mode and [`Cache::check`] reconnects later. A malformed URL is an error.
    pub async fn connect(url: &str, prefix: &str) -> Result<Cache, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let cache = Cache::build(Some(client), prefix);
        cache.check().await;
        Ok(cache)
    }

    fn build(client: Option<redis::Client>, prefix: &str) -> Cache {
        let degraded = client.is_some();
        Cache {
            inner: Arc::new(Inner {
                client,
                redis: RwLock::new(None),
                degraded: AtomicBool::new(degraded),
                prefix: prefix.to_owned(),
                local: moka::future::Cache::builder()
                    .max_capacity(LOCAL_CAPACITY)
                    .expire_after(WrittenTtl)
                    .build(),
            }),
        }
    }

    /// Where calls go right now.
    pub fn mode(&self) -> CacheMode {
        match (
            &self.inner.client,
            self.inner.degraded.load(Ordering::Relaxed),
        ) {
            (None, _) => CacheMode::Local,
            (Some(_), true) => CacheMode::Fallback,
            (Some(_), false) => CacheMode::Redis,
        }
    }

    /// Pings Redis (connecting first if needed) and updates the mode. Called by the health
    /// checker; returns the mode after the check.
    pub async fn check(&self) -> CacheMode {
        let Some(client) = &self.inner.client else {
            return CacheMode::Local;
        };
        let existing = self.inner.redis.read().await.clone();
        let conn = match existing {
            Some(conn) => Some(conn),
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1);
                match tokio::time::timeout(
                    CONNECT_TIMEOUT * 2,
                    ConnectionManager::new_with_config(client.clone(), config),
                )
                .await
                {
                    Ok(Ok(conn)) => {
                        *self.inner.redis.write().await = Some(conn.clone());
                        Some(conn)
                    }
                    Ok(Err(e)) => {
                        self.degrade(&e.to_string());
                        None
                    }
                    Err(_) => {
                        self.degrade("connect timed out");
                        None
                    }
                }
            }
        };
        if let Some(mut conn) = conn {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            match pong {
                Ok(_) => {
                    if self.inner.degraded.swap(false, Ordering::Relaxed) {
                        // Entries written during the outage may be stale once Redis serves again.
                        self.inner.local.invalidate_all();
                        tracing::info!("redis reachable again; leaving fallback mode");
                    }
                }
                Err(e) => self.degrade(&e.to_string()),
            }
        }
        self.mode()
    }

    fn degrade(&self, why: &str) {
        if !self.inner.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                "redis unavailable; serving the cache from process memory"
            );
        }
    }

    /// The connection to use, or `None` when calls should go to the local map.
    async fn conn(&self) -> Option<ConnectionManager> {
        if self.inner.degraded.load(Ordering::Relaxed) {
            return None;
        }
        self.inner.redis.read().await.clone()
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.inner.prefix, key)
    }

    /// Reads a value.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.key(key);
        if let Some(mut conn) = self.conn().await {
            match conn
                .get::<_, Option<Vec<u8>>>(&key)
                .instrument(redis_span("GET"))
                .await
            {
                Ok(v) => return v,
                Err(e) => self.degrade(&e.to_string()),
            }
        }
        self.inner.local.get(&key).await.map(|(v, _)| v.to_vec())
    }

    /// Writes a value that expires after `ttl`.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        let key = self.key(key);
        if let Some(mut conn) = self.conn().await {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            match conn
                .pset_ex::<_, _, ()>(&key, value, millis)
                .instrument(redis_span("PSETEX"))
                .await
            {
                Ok(()) => return,
                Err(e) => self.degrade(&e.to_string()),
            }
        }
        self.inner.local.insert(key, (Arc::from(value), ttl)).await;
    }

    /// Removes a value.
    pub async fn delete(&self, key: &str) {
        let key = self.key(key);
        if let Some(mut conn) = self.conn().await
            && let Err(e) = conn.del::<_, ()>(&key).instrument(redis_span("DEL")).await
        {
            self.degrade(&e.to_string());
        }
        self.inner.local.invalidate(&key).await;
    }
}

/// The trace span of one Redis command (disabled without tracing).
pub(crate) fn redis_span(command: &'static str) -> tracing::Span {
    crate::telemetry::otel::span_if_enabled!(
        "redis",
        otel.name = command,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = command,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_entries_expire_by_their_own_ttl() {
        let cache = Cache::local("t:");
        cache.set("short", b"a", Duration::from_millis(50)).await;
        cache.set("long", b"b", Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get("short").await, None);
        assert_eq!(cache.get("long").await.as_deref(), Some(&b"b"[..]));
        cache.delete("long").await;
        assert_eq!(cache.get("long").await, None);
    }

    #[tokio::test]
    async fn a_full_local_map_stays_bounded_without_flushing_everything() {
        let cache = Cache::local("t:");
        for i in 0..LOCAL_CAPACITY + 500 {
            cache
                .set(&format!("k{i}"), b"v", Duration::from_secs(60))
                .await;
        }
        cache.inner.local.run_pending_tasks().await;
        let n = cache.inner.local.entry_count();
        assert!(n <= LOCAL_CAPACITY, "{n} entries");
        assert!(
            n > LOCAL_CAPACITY / 2,
            "most entries are kept, not flushed: {n}"
        );
    }
}
