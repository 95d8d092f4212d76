//! Approval decisions sent to a replica that does not own the order's symbol are forwarded to
//! the owner over the internal endpoint, like orders (issue 16): two real replicas on one
//! PostgreSQL; the decision is applied once, by the owner's matcher.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::process::{self, http_json};
use common::{PgDatabase, PrivateRedis};

mod pg {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and redis-server: run through scripts/test"]
    async fn decisions_on_a_replica_that_does_not_own_the_symbol_are_forwarded() {
        super::decisions_on_a_replica_that_does_not_own_the_symbol_are_forwarded().await;
    }
}

const SYMBOLS: [&str; 2] = ["AAA", "BBB"];

async fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then_some(body);
    http_json(port, method, path, token, body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on :{port}: {e}"))
}

async fn login(port: u16, user: &str, password: &str) -> String {
    let (status, t) = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"username": user, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    t["access_token"].as_str().expect("token").to_owned()
}

/// Waits until every symbol is leased to the replica rendezvous hashing picks among `ports`.
async fn settled(pool: &sqlx::PgPool, ports: &[u16]) -> std::collections::HashMap<String, u16> {
    use tradeplane_platform::store::leases::Replica;
    use tradeplane_platform::trading::ownership::winner;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.symbol, r.address FROM symbols s JOIN replicas r ON r.id = s.owner WHERE s.lease_expires > now()",
        )
        .fetch_all(pool)
        .await
        .expect("owners");
        let owners: std::collections::HashMap<String, u16> = owners
            .into_iter()
            .filter_map(|(s, a)| Some((s, a.rsplit_once(':')?.1.parse().ok()?)))
            .collect();
        let live: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, address FROM replicas WHERE NOT leaving AND heartbeat_at > now() - interval '2 seconds'",
        )
        .fetch_all(pool)
        .await
        .expect("replicas");
        let live: Vec<Replica> = live
            .into_iter()
            .map(|(id, address)| Replica { id, address })
            .collect();
        let balanced = live.len() == ports.len()
            && SYMBOLS.iter().all(|s| {
                let want = winner(s, &live)
                    .and_then(|r| r.address.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                want.is_some() && owners.get(*s) == want.as_ref()
            });
        if balanced {
            return owners;
        }
        assert!(
            Instant::now() < deadline,
            "ownership did not settle: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn decisions_on_a_replica_that_does_not_own_the_symbol_are_forwarded() {
    let redis = PrivateRedis::start().await;
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let instruments: Vec<Value> = SYMBOLS
        .iter()
        .map(|s| {
            json!({"symbol": s, "tickSize": "0.01", "lotSize": "1", "minQty": "1", "maxQty": "1000",
                   "maxNotional": "1000000", "approvalNotional": "1000"})
        })
        .collect();
    let instruments = Value::Array(instruments).to_string();
    let redis_url = redis.url();
    let mut children = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let port = process::spare_port();
        let advertise = format!("127.0.0.1:{port}");
        let env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", &db.url),
            ("REDIS_URL", &redis_url),
            ("INSTRUMENTS", &instruments),
            ("ADMIN_USERNAME", "root"),
            ("ADMIN_PASSWORD", "root-password-long"),
            ("JWT_SECRET", "replica-test-secret-0123456789abcdef"),
            ("ADVERTISE_ADDR", &advertise),
            ("SYMBOL_LEASE_SECONDS", "3"),
            ("RATE_LIMIT_PER_SECOND", "100000"),
            ("RATE_LIMIT_BURST", "100000"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "100000"),
        ];
        children.push(process::start(dir.path(), port, &env));
        process::wait_ready(port, Duration::from_secs(60)).await;
        ports.push(port);
    }
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let owners = settled(&pool, &ports).await;
    let owner = owners["AAA"];
    let other = *ports.iter().find(|p| **p != owner).expect("a non-owner");

    // Everything below goes through the replica that does not own AAA.
    let root = login(other, "root", "root-password-long").await;
    let mut accounts = Vec::new();
    let mut tokens = Vec::new();
    for name in ["checker", "buyer", "seller"] {
        let (status, user) = call(
            other,
            "POST",
            "/api/v1/auth/register",
            None,
            json!({"username": name, "password": "password-123"}),
        )
        .await;
        assert_eq!(status, 201, "{user}");
        accounts.push(user["account_id"].as_i64().expect("account"));
    }
    sqlx::query("UPDATE users SET role = 'admin' WHERE username = 'checker'")
        .execute(&pool)
        .await
        .expect("promote the second admin");
    for (account, body) in [
        (accounts[1], json!({"amount": "100000"})),
        (
            accounts[2],
            json!({"amount": "100", "symbol": "AAA", "cost": "1"}),
        ),
    ] {
        let (status, r) = call(
            other,
            "POST",
            &format!("/api/v1/admin/accounts/{account}/deposits"),
            Some(&root),
            body,
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }
    for name in ["checker", "buyer", "seller"] {
        tokens.push(login(other, name, "password-123").await);
    }
    let (checker, buyer, seller) = (&tokens[0], &tokens[1], &tokens[2]);
    let place = |token: String, side: &'static str, price: &'static str, qty: &'static str| async move {
        call(
            other,
            "POST",
            "/api/v1/orders",
            Some(&token),
            json!({"symbol": "AAA", "side": side, "type": "limit", "price": price, "qty": qty}),
        )
        .await
    };
    let (_, ask) = place(seller.clone(), "sell", "9", "100").await;
    assert_eq!(ask["status"], "new", "{ask}");
    let (status, big) = place(buyer.clone(), "buy", "11", "100").await;
    assert_eq!(
        (status, big["status"].as_str()),
        (201, Some("pending_approval")),
        "{big}"
    );
    let id = big["id"].as_i64().expect("id");

    // Approved by the second admin through the non-owner: forwarded, matched once.
    let (status, approved) = call(
        other,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(checker),
        Value::Null,
    )
    .await;
    assert_eq!(
        (
            status,
            approved["status"].as_str(),
            approved["filled"].as_str()
        ),
        (200, Some("filled"), Some("100")),
        "{approved}"
    );
    let (status, again) = call(
        other,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(checker),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("order_not_pending")),
        "{again}"
    );
    let trades: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trades WHERE taker_order_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("trades");
    assert_eq!(trades, 1, "matched exactly once");

    // A rejection is forwarded too and releases the reservation.
    let (_, second) = place(buyer.clone(), "buy", "10", "200").await;
    let id2 = second["id"].as_i64().expect("id");
    let (status, rejected) = call(
        other,
        "POST",
        &format!("/api/v1/admin/orders/{id2}/reject"),
        Some(checker),
        json!({"reason": "no"}),
    )
    .await;
    assert_eq!(
        (status, rejected["cancel_reason"].as_str()),
        (200, Some("approval_rejected")),
        "{rejected}"
    );
    let (_, pf) = call(other, "GET", "/api/v1/portfolio", Some(buyer), Value::Null).await;
    assert_eq!(
        (pf["cash"].as_str(), pf["cash_reserved"].as_str()),
        (Some("99100"), Some("0")),
        "{pf}"
    );

    // The other replica forwarded every command (2 orders, 2 approvals, 1 order, 1 rejection).
    let (_, metrics) = process::http_get(other, "/metrics").await.expect("metrics");
    let forwarded: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("orders_forwarded_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("orders_forwarded_total");
    assert!(forwarded >= 6.0, "forwarded {forwarded}");
    let owner_log = process::log(dir.path(), owner);
    assert!(!owner_log.contains("panicked"), "{owner_log}");
    pool.close().await;
    for mut c in children {
        process::sigkill(&mut c);
    }
    db.drop_now().await;
    drop(redis);
}
