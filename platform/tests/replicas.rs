//! Several platform replicas against one PostgreSQL: each `AppState` here has its own matcher
//! and in-memory engine, exactly like two pods. Orders race through both; afterwards every
//! invariant of the trading core must hold in the database.

mod common;

use axum::http::StatusCode;
use serde_json::json;
use tradeplane_engine::num::{Cash, Price, Qty, notional};
use tradeplane_platform::store::Store;

use common::send;

/// A tiny deterministic generator, so a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const TRADERS: usize = 6;
const ORDERS_PER_TRADER: usize = 60;

/// In a `pg` module so that `scripts/test` runs it with the PostgreSQL suite (`-- --ignored pg::`).
mod pg {
    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn two_replicas_keep_every_invariant() {
        super::two_replicas_keep_every_invariant().await;
    }
}

async fn two_replicas_keep_every_invariant() {
    let db = common::PgDatabase::create().await;
    let env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db.url),
        ("ADMIN_USERNAME", "root"),
        ("ADMIN_PASSWORD", "root-password-long"),
        // Replicas must share the signing key, as the operator's secret makes them.
        ("JWT_SECRET", "replica-test-secret-0123456789abcdef"),
    ];
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = common::started_state(&dir_a, &env).await;
    let b = common::started_state(&dir_b, &env).await;
    tradeplane_platform::server::ensure_admin(&a)
        .await
        .expect("admin");
    let (_, t) = send(
        &a,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "root", "password": "root-password-long"})),
    )
    .await;
    let admin = t["access_token"].as_str().expect("token").to_owned();

    let mut tokens = Vec::new();
    for i in 0..TRADERS {
        let name = format!("trader{i}");
        let (_, user) = send(
            &a,
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"username": name, "password": "password-123"})),
        )
        .await;
        let account = user["account_id"].as_i64().expect("account");
        for body in [
            json!({"amount": "100000"}),
            json!({"amount": "500", "symbol": "AAPL", "cost": "100"}),
        ] {
            let (status, r) = send(
                &b,
                "POST",
                &format!("/api/v1/admin/accounts/{account}/deposits"),
                Some(&admin),
                Some(body),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{r}");
        }
        let (_, t) = send(
            &b,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": name, "password": "password-123"})),
        )
        .await;
        tokens.push(t["access_token"].as_str().expect("token").to_owned());
    }

    // Every trader sends a stream of crossing orders, alternating replicas, all at once.
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(i as u64 + 1);
            let mut accepted = [0usize; 2];
            for n in 0..ORDERS_PER_TRADER {
                let replica = (n + i) % 2;
                let state = if replica == 0 { &a } else { &b };
                let side = if rng.next(2) == 0 { "buy" } else { "sell" };
                let price = 95 + rng.next(11);
                let qty = 1 + rng.next(5);
                let body = match rng.next(10) {
                    0 => json!({"symbol": "AAPL", "side": side, "type": "market", "qty": qty.to_string()}),
                    1 => json!({"symbol": "AAPL", "side": side, "type": "limit", "price": price.to_string(), "qty": qty.to_string(), "tif": "IOC"}),
                    _ => json!({"symbol": "AAPL", "side": side, "type": "limit", "price": price.to_string(), "qty": qty.to_string()}),
                };
                let (status, r) = send(state, "POST", "/api/v1/orders", Some(&token), Some(body)).await;
                assert!(status == StatusCode::CREATED || status == StatusCode::UNPROCESSABLE_ENTITY, "{status} {r}");
                if status == StatusCode::CREATED {
                    accepted[replica] += 1;
                    if rng.next(5) == 0 && r["status"] == "new" {
                        let path = format!("/api/v1/orders/{}", r["id"]);
                        let (status, c) = send(state, "DELETE", &path, Some(&token), None).await;
                        // It may have been filled by the other replica in the meantime.
                        assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "{status} {c}");
                    }
                }
            }
            accepted
        }));
    }
    let mut accepted = [0usize; 2];
    for t in tasks {
        let r = t.await.expect("task");
        accepted[0] += r[0];
        accepted[1] += r[1];
    }
    assert!(
        accepted[0] > 0 && accepted[1] > 0,
        "both replicas matched orders: {accepted:?}"
    );

    let Store::Postgres(pool) = &a.store else {
        panic!("postgres")
    };
    let trades: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trades")
        .fetch_one(pool)
        .await
        .expect("q");
    assert!(
        trades > 10,
        "the streams crossed and traded ({trades} trades)"
    );

    // Conservation: cash and net position equal what was deposited.
    let cash: i64 = sqlx::query_scalar("SELECT CAST(SUM(cash) AS BIGINT) FROM accounts")
        .fetch_one(pool)
        .await
        .expect("q");
    assert_eq!(cash, TRADERS as i64 * 100_000 * 100_000_000);
    let net: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(qty) AS BIGINT) FROM positions WHERE symbol = 'AAPL'")
            .fetch_one(pool)
            .await
            .expect("q");
    assert_eq!(net, TRADERS as i64 * 500 * 100_000_000);

    // No order filled more than its quantity, and fills equal the trades that name the order.
    let bad: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders o WHERE o.filled > o.qty OR o.filled <> COALESCE(( \
         SELECT SUM(t.qty) FROM trades t WHERE t.taker_order_id = o.id OR t.maker_order_id = o.id), 0)",
    )
    .fetch_one(pool)
    .await
    .expect("q");
    assert_eq!(bad, 0, "orders whose fills disagree with the trades");

    // Reservations and open-order counts equal what the resting orders need.
    let accounts: Vec<(i64, i64, i32)> =
        sqlx::query_as("SELECT id, cash_reserved, open_orders FROM accounts")
            .fetch_all(pool)
            .await
            .expect("q");
    for (id, reserved, open) in accounts {
        let resting: Vec<(String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT side, price, remaining FROM orders WHERE account_id = $1 AND status IN ('new', 'partially_filled')",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("q");
        let want_cash: Cash = resting
            .iter()
            .filter(|(s, _, _)| s == "buy")
            .map(|(_, p, r)| notional(Price::from_raw(p.unwrap_or(0)), Qty::from_raw(*r)))
            .fold(Cash::ZERO, |acc, c| acc + c);
        assert_eq!(
            i128::from(reserved),
            want_cash.raw(),
            "cash reserved of account {id}"
        );
        assert_eq!(open as usize, resting.len(), "open orders of account {id}");
        let want_units: i64 = resting
            .iter()
            .filter(|(s, _, _)| s == "sell")
            .map(|(_, _, r)| r)
            .sum();
        let units: Option<i64> = sqlx::query_scalar(
            "SELECT reserved FROM positions WHERE account_id = $1 AND symbol = 'AAPL'",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("q");
        assert_eq!(
            units.unwrap_or(0),
            want_units,
            "units reserved of account {id}"
        );
    }

    // The stored book is not crossed.
    let bid: Option<i64> = sqlx::query_scalar("SELECT MAX(price) FROM orders WHERE symbol = 'AAPL' AND side = 'buy' AND status IN ('new', 'partially_filled')").fetch_one(pool).await.expect("q");
    let ask: Option<i64> = sqlx::query_scalar("SELECT MIN(price) FROM orders WHERE symbol = 'AAPL' AND side = 'sell' AND status IN ('new', 'partially_filled')").fetch_one(pool).await.expect("q");
    if let (Some(bid), Some(ask)) = (bid, ask) {
        assert!(bid < ask, "crossed book: bid {bid} >= ask {ask}");
    }

    a.store.close().await;
    b.store.close().await;
    db.drop_now().await;
}
