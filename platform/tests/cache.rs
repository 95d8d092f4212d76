//! Cache tests: the in-process cache and the fallback always run; the Redis suite (`redis::`)
//! runs against a real server through `scripts/test` (always in CI).

mod common;

use std::time::Duration;

use tradeplane_platform::cache::{Cache, CacheMode};

#[tokio::test]
async fn local_cache_stores_expires_and_deletes() {
    let cache = Cache::local("t:");
    assert_eq!(cache.mode(), CacheMode::Local);
    cache.set("a", b"1", Duration::from_secs(60)).await;
    cache.set("short", b"2", Duration::from_millis(30)).await;
    assert_eq!(cache.get("a").await.as_deref(), Some(&b"1"[..]));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(cache.get("short").await, None, "expired entries are gone");
    cache.delete("a").await;
    assert_eq!(cache.get("a").await, None);
}

#[tokio::test]
async fn unreachable_redis_degrades_to_fallback_instead_of_failing() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let cache = Cache::connect("redis://127.0.0.1:1", "t:")
        .await
        .expect("an unreachable server is not an error");
    assert_eq!(cache.mode(), CacheMode::Fallback);
    cache.set("k", b"v", Duration::from_secs(60)).await;
    assert_eq!(
        cache.get("k").await.as_deref(),
        Some(&b"v"[..]),
        "the fallback serves"
    );
    assert_eq!(cache.check().await, CacheMode::Fallback, "still down");
}

#[tokio::test]
async fn fallback_shows_in_metrics_and_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let text = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("render");
    assert!(text.contains("redis_fallback_active 1"), "{text}");
    let report = state.health.report();
    assert_eq!(report.checks.redis.status, "degraded");
    assert_eq!(report.status, "degraded");
    assert!(
        report.ready,
        "a Redis outage does not take the instance out of the Service"
    );
}

#[tokio::test]
async fn malformed_redis_url_is_an_error() {
    assert!(Cache::connect("redis://[::1", "t:").await.is_err());
}

mod redis {
    use super::*;

    fn prefix() -> String {
        format!("tp-test:{}:", uuid::Uuid::new_v4().simple())
    }

    async fn cleanup(url: &str, prefix: &str) {
        let client = ::redis::Client::open(url).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: () = ::redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }

    #[tokio::test]
    #[ignore = "needs Redis: run through scripts/test"]
    async fn values_live_in_redis_with_ttl() {
        let url = common::redis_url();
        let prefix = prefix();
        let cache = Cache::connect(&url, &prefix).await.expect("connect");
        assert_eq!(cache.mode(), CacheMode::Redis, "{url} must answer");
        cache.set("k", b"hello", Duration::from_secs(30)).await;
        cache.set("short", b"x", Duration::from_millis(50)).await;

        // Read back through a separate client: the value really is in Redis, under the prefix.
        let client = ::redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let raw: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(format!("{prefix}k"))
            .query_async(&mut conn)
            .await
            .expect("get");
        assert_eq!(raw.as_deref(), Some(&b"hello"[..]));
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(format!("{prefix}k"))
            .query_async(&mut conn)
            .await
            .expect("pttl");
        assert!(ttl > 0 && ttl <= 30_000, "ttl {ttl}");

        assert_eq!(cache.get("k").await.as_deref(), Some(&b"hello"[..]));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get("short").await, None);
        cache.delete("k").await;
        assert_eq!(cache.get("k").await, None);
        cleanup(&url, &prefix).await;
    }

    /// Runs a private `redis-server` on a spare port, stops it mid-test and starts it again.
    #[tokio::test]
    #[ignore = "needs redis-server: run through scripts/test"]
    async fn outage_at_run_time_falls_back_and_recovers() {
        let _ = common::redis_url(); // same gate as the rest of the suite
        let mut server = common::PrivateRedis::start().await;
        let url = server.url();
        let cache = Cache::connect(&url, "t:").await.expect("connect");
        assert_eq!(cache.mode(), CacheMode::Redis);
        cache.set("k", b"before", Duration::from_secs(60)).await;

        server.stop();
        // The next call fails over instead of erroring; the value is written locally.
        cache.set("k", b"during", Duration::from_secs(60)).await;
        assert_eq!(cache.mode(), CacheMode::Fallback);
        assert_eq!(cache.get("k").await.as_deref(), Some(&b"during"[..]));

        server.restart().await;
        let mut mode = cache.check().await;
        for _ in 0..20 {
            if mode == CacheMode::Redis {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            mode = cache.check().await;
        }
        assert_eq!(
            mode,
            CacheMode::Redis,
            "the cache goes back to Redis once it answers"
        );
        // The fresh server is empty: reads come from Redis again, not the stale local copy.
        assert_eq!(cache.get("k").await, None);
        server.stop();
    }
}
