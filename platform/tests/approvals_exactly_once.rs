//! Approval decisions happen exactly once whatever the network does between the matcher and
//! PostgreSQL (issue 16): an approval whose COMMIT reply is lost is resolved, not run again; a
//! rejection whose COMMIT is lost runs again once. Through the fault-injecting proxy of
//! `exactly_once.rs`.

mod common;

mod pg {
    use axum::http::StatusCode;
    use serde_json::{Value, json};
    use tradeplane_platform::auth::Role;
    use tradeplane_platform::state::AppState;
    use tradeplane_platform::store::Store;

    use super::common::{self, pg_proxy::PgProxy, send};

    async fn scalar(state: &AppState, sql: &str, id: i64) -> i64 {
        let Store::Postgres(pool) = &state.store else {
            panic!("PostgreSQL only");
        };
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("scalar")
    }

    async fn order(state: &AppState, token: &str, side: &str, price: &str, qty: &str) -> Value {
        let body =
            json!({"symbol": "AAPL", "side": side, "type": "limit", "price": price, "qty": qty});
        let (status, o) = send(state, "POST", "/api/v1/orders", Some(token), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{o}");
        o
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn lost_commit_replies_and_lost_commits_never_decide_twice() {
        let db = common::PgDatabase::create().await;
        let proxy = PgProxy::in_front_of(&db.url, Some("tradeplane-matcher")).await;
        let dir = tempfile::tempdir().expect("dir");
        let url = proxy.url_for(&db.url);
        let state = common::started_state(
            &dir,
            &[
                ("DATABASE_URL", &url),
                ("ADMIN_USERNAME", "root"),
                ("ADMIN_PASSWORD", "root-password-long"),
                ("APPROVAL_NOTIONAL_DEFAULT", "10000"),
                ("MATCHER_DB_TIMEOUT_MS", "1000"),
                ("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
            ],
        )
        .await;
        tradeplane_platform::server::ensure_admin(&state)
            .await
            .expect("admin");
        tradeplane_platform::accounts::create(
            &state.store,
            &state.passwords,
            "checker",
            "checker-password-long",
            Role::Admin,
            None,
        )
        .await
        .expect("second admin");
        let root = common::access_token(&state, "root", "root-password-long").await;
        let checker = common::access_token(&state, "checker", "checker-password-long").await;
        let mut traders = Vec::new();
        for (name, body) in [
            ("buyer", json!({"amount": "100000"})),
            (
                "seller",
                json!({"amount": "100", "symbol": "AAPL", "cost": "1"}),
            ),
        ] {
            let token = common::register_and_login(&state, name).await;
            let (_, me) = send(&state, "GET", "/api/v1/me", Some(&token), None).await;
            let account = me["account_id"].as_i64().expect("account");
            let path = format!("/api/v1/admin/accounts/{account}/deposits");
            let (status, r) = send(&state, "POST", &path, Some(&root), Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{r}");
            traders.push(token);
        }
        let (buyer, seller) = (&traders[0], &traders[1]);
        let ask = order(&state, seller, "sell", "99", "100").await;
        assert_eq!(ask["status"], "new", "9,900: no approval");
        let big = order(&state, buyer, "buy", "150", "100").await;
        assert_eq!(big["status"], "pending_approval");
        let id = big["id"].as_i64().expect("id");

        // The approval's COMMIT reaches the server but its reply is lost.
        proxy.drop_commit_replies(1);
        let path = format!("/api/v1/admin/orders/{id}/approve");
        let (status, approved) = send(&state, "POST", &path, Some(&checker), None).await;
        assert!(proxy.injected() >= 1, "the fault was injected");
        assert!(
            status == StatusCode::OK || approved["code"] == "outcome_unknown",
            "{status} {approved}"
        );
        let (status, again) = send(&state, "POST", &path, Some(&checker), None).await;
        assert_eq!(
            (status, again["code"].as_str()),
            (StatusCode::CONFLICT, Some("order_not_pending")),
            "{again}"
        );
        let trades = scalar(
            &state,
            "SELECT COUNT(*) FROM trades WHERE taker_order_id = $1",
            id,
        )
        .await;
        assert_eq!(trades, 1, "matched exactly once");
        let (_, pf) = send(&state, "GET", "/api/v1/portfolio", Some(buyer), None).await;
        assert_eq!(
            (pf["cash"].as_str(), pf["cash_reserved"].as_str()),
            (Some("90100"), Some("0")),
            "{pf}"
        );

        // A rejection's COMMIT is lost before the server: it runs again, once.
        let second = order(&state, buyer, "buy", "105", "100").await;
        assert_eq!(second["status"], "pending_approval");
        let id2 = second["id"].as_i64().expect("id");
        let before = proxy.injected();
        proxy.drop_commits(1);
        let path = format!("/api/v1/admin/orders/{id2}/reject");
        let (status, rejected) = send(
            &state,
            "POST",
            &path,
            Some(&checker),
            Some(json!({"reason": "no"})),
        )
        .await;
        assert!(proxy.injected() > before, "the fault was injected");
        assert!(
            status == StatusCode::OK || rejected["code"] == "dependency_unavailable",
            "{status} {rejected}"
        );
        if status != StatusCode::OK {
            // Nothing was applied: the client may send it again.
            let (status, r) = send(
                &state,
                "POST",
                &path,
                Some(&checker),
                Some(json!({"reason": "no"})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{r}");
        }
        let (status, again) = send(
            &state,
            "POST",
            &path,
            Some(&checker),
            Some(json!({"reason": "no"})),
        )
        .await;
        assert_eq!(
            (status, again["code"].as_str()),
            (StatusCode::CONFLICT, Some("order_not_pending"))
        );
        let decided = scalar(
            &state,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'order.approval_rejected' AND subject = 'order:' || $1::text",
            id2,
        )
        .await;
        assert_eq!(decided, 1, "rejected exactly once");
        let (_, pf) = send(&state, "GET", "/api/v1/portfolio", Some(buyer), None).await;
        assert_eq!(
            (pf["cash"].as_str(), pf["cash_reserved"].as_str()),
            (Some("90100"), Some("0")),
            "{pf}"
        );
        state.store.close().await;
        db.drop_now().await;
    }
}
