//! Market data reaches the WebSocket subscribers of every replica through Redis pub/sub.

mod common;

mod redis {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use tradeplane_platform::http::router;
    use tradeplane_platform::state::AppState;

    use super::common;

    async fn send(state: &AppState, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = router(state.clone())
            .oneshot(req.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("infallible");
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    #[ignore = "needs Redis and PostgreSQL: run through scripts/test"]
    async fn events_matched_on_one_replica_reach_the_other() {
        let redis_url = common::redis_url();
        let db = common::PgDatabase::create().await;
        // This platform's keys and channel, apart from any other run's on the same Redis.
        let prefix = format!("tradeplane:fanout-{}:", uuid::Uuid::new_v4().simple());
        let env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", &db.url),
            ("REDIS_URL", &redis_url),
            ("REDIS_KEY_PREFIX", &prefix),
            ("ADMIN_USERNAME", "root"),
            ("ADMIN_PASSWORD", "root-password-long"),
            ("JWT_SECRET", "fanout-test-secret-0123456789abcdef"),
        ];
        let (da, db_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let first = common::started_state(&da, &env).await;
        let second = common::started_state(&db_dir, &env).await;
        // Another platform (its own database) on the same Redis under its own prefix: it must
        // hear nothing of this one's market data.
        let other_dir = tempfile::tempdir().expect("dir");
        let other_prefix = format!("{prefix}other:");
        let other = common::started_state(
            &other_dir,
            &[
                ("REDIS_URL", &redis_url),
                ("REDIS_KEY_PREFIX", &other_prefix),
                ("JWT_SECRET", "fanout-test-secret-0123456789abcdef"),
            ],
        )
        .await;
        let mut on_other = other.trading.subscribe();
        // AAPL is leased to one of the two: `a` is its owner (it matches, the event starts
        // there), `b` the other replica, which only hears of it through Redis. Wait until the
        // lease has stayed put for 2 s (a join hands symbols over within two lease rounds).
        let owner_of = |s: &AppState| s.trading.ownership().token("AAPL").is_some();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut stable_since: Option<(bool, tokio::time::Instant)> = None;
        let first_owns = loop {
            let now = (owner_of(&first), owner_of(&second));
            let current = match now {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            };
            match (current, stable_since) {
                (Some(c), Some((s, since))) if c == s => {
                    if since.elapsed() >= Duration::from_secs(2) {
                        break c;
                    }
                }
                (Some(c), _) => stable_since = Some((c, tokio::time::Instant::now())),
                (None, _) => stable_since = None,
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "AAPL never settled on one owner"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (a, b) = if first_owns {
            (first, second)
        } else {
            (second, first)
        };
        let mut on_b = b.trading.subscribe();

        tradeplane_platform::server::ensure_admin(&a)
            .await
            .expect("admin");
        let admin = send(
            &a,
            "/api/v1/auth/login",
            None,
            json!({"username": "root", "password": "root-password-long"}),
        )
        .await;
        let admin = admin["access_token"].as_str().expect("token").to_owned();
        let user = send(
            &a,
            "/api/v1/auth/register",
            None,
            json!({"username": "maker", "password": "password-123"}),
        )
        .await;
        let account = user["account_id"].as_i64().expect("account");
        send(
            &a,
            &format!("/api/v1/admin/accounts/{account}/deposits"),
            Some(&admin),
            json!({"amount": "10000"}),
        )
        .await;
        let t = send(
            &a,
            "/api/v1/auth/login",
            None,
            json!({"username": "maker", "password": "password-123"}),
        )
        .await;
        let token = t["access_token"].as_str().expect("token");
        let order = send(
            &a,
            "/api/v1/orders",
            Some(token),
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "101", "qty": "1"}),
        )
        .await;
        assert_eq!(order["status"], "new", "{order}");

        // B's matcher did nothing; the book event must have come from A through Redis.
        let event = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
            .await
            .expect("an event within 5 s")
            .expect("event");
        assert_eq!(event.symbol, "AAPL");
        assert_eq!(event.kind, "book");
        assert_eq!(event.origin, a.trading.origin());
        assert_ne!(event.origin, b.trading.origin());
        assert_eq!(event.data["price"], "101");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), on_other.recv())
                .await
                .is_err(),
            "a platform with another REDIS_KEY_PREFIX received this platform's market data"
        );

        a.store.close().await;
        b.store.close().await;
        db.drop_now().await;
    }
}
