//! Several platform processes against one PostgreSQL and one Redis, as pods behind a Service:
//! every symbol is leased to one replica, the others forward its orders to the owner, market
//! data of a symbol comes only from its owner, and a replica that dies or stops hands its
//! symbols on. These run the real binary (orders cross replicas over the internal endpoint)
//! and check the database afterwards.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Child;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tradeplane_engine::num::{Cash, Price, Qty, notional};

use common::process::{self, http_json};
use common::{PgDatabase, PrivateRedis};

/// Four instruments without a price band, so random prices never hit it.
const SYMBOLS: [&str; 4] = ["AAA", "BBB", "CCC", "DDD"];
const TRADERS: usize = 6;
const LEASE_SECONDS: u64 = 3;

mod pg {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and redis-server: run through scripts/test"]
    async fn three_replicas_share_the_symbols_and_hand_them_over_on_sigterm() {
        super::three_replicas_share_the_symbols_and_hand_them_over_on_sigterm().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and redis-server: run through scripts/test"]
    async fn a_killed_owner_s_symbols_come_back_and_no_order_is_lost_or_doubled() {
        super::a_killed_owner_s_symbols_come_back_and_no_order_is_lost_or_doubled().await;
    }
}

fn instruments() -> String {
    let list: Vec<Value> = SYMBOLS
        .iter()
        .map(|s| {
            json!({"symbol": s, "tickSize": "0.01", "lotSize": "1", "minQty": "1",
                   "maxQty": "1000", "maxNotional": "1000000"})
        })
        .collect();
    Value::Array(list).to_string()
}

/// One database, one Redis, and the replicas started on them.
struct Cluster {
    db: Option<PgDatabase>,
    db_url: String,
    _redis: PrivateRedis,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    instruments: String,
    redis_url: String,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl Cluster {
    async fn new() -> Cluster {
        let redis = PrivateRedis::start().await;
        let db = PgDatabase::create().await;
        Cluster {
            db_url: db.url.clone(),
            db: Some(db),
            redis_url: redis.url(),
            _redis: redis,
            dir: tempfile::tempdir().expect("dir"),
            nodes: Vec::new(),
            instruments: instruments(),
        }
    }

    /// Starts one more replica and waits until it is ready; returns its index.
    async fn start(&mut self) -> usize {
        let port = process::spare_port();
        let advertise = format!("127.0.0.1:{port}");
        let lease = LEASE_SECONDS.to_string();
        let env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", &self.db_url),
            ("REDIS_URL", &self.redis_url),
            ("INSTRUMENTS", &self.instruments),
            ("ADMIN_USERNAME", "root"),
            ("ADMIN_PASSWORD", "root-password-long"),
            // Replicas share the signing key (the operator's secret), which also signs forwards.
            ("JWT_SECRET", "replica-test-secret-0123456789abcdef"),
            ("ADVERTISE_ADDR", &advertise),
            ("SYMBOL_LEASE_SECONDS", &lease),
            ("RATE_LIMIT_PER_SECOND", "100000"),
            ("RATE_LIMIT_BURST", "100000"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "100000"),
            ("DRAIN_TIMEOUT_SECONDS", "10"),
            ("RUST_LOG", "info"),
        ];
        let child = process::start(self.dir.path(), port, &env);
        process::wait_ready(port, Duration::from_secs(60)).await;
        self.nodes.push(Node {
            port,
            child: Some(child),
        });
        self.nodes.len() - 1
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    fn log(&self, i: usize) -> String {
        process::log(self.dir.path(), self.nodes[i].port)
    }

    /// Symbol → port of the replica whose valid lease holds it.
    async fn owners(&self) -> HashMap<String, u16> {
        let pool = self.pool().await;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.symbol, r.address FROM symbols s JOIN replicas r ON r.id = s.owner \
             WHERE s.lease_expires > now()",
        )
        .fetch_all(&pool)
        .await
        .expect("owners");
        pool.close().await;
        rows.into_iter()
            .filter_map(|(s, a)| Some((s, a.rsplit_once(':')?.1.parse().ok()?)))
            .collect()
    }

    /// Waits until every symbol is owned by the live replica that rendezvous hashing picks
    /// for it (joins and leaves have been handed over).
    async fn settled(&self, within: Duration) -> HashMap<String, u16> {
        use tradeplane_platform::store::leases::Replica;
        use tradeplane_platform::trading::ownership::winner;
        let deadline = Instant::now() + within;
        loop {
            let owners = self.owners().await;
            let pool = self.pool().await;
            let live: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, address FROM replicas WHERE NOT leaving AND heartbeat_at > now() - interval '2 seconds'",
            )
            .fetch_all(&pool)
            .await
            .expect("replicas");
            pool.close().await;
            let live: Vec<Replica> = live
                .into_iter()
                .map(|(id, address)| Replica { id, address })
                .collect();
            let ports = self.live_ports();
            let balanced = live.len() == ports.len()
                && SYMBOLS.iter().all(|s| {
                    let want = winner(s, &live).and_then(|r| r.address.rsplit_once(':'));
                    let want = want.and_then(|(_, p)| p.parse::<u16>().ok());
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

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db_url).await.expect("pool")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            process::sigkill(&mut c);
        }
    }

    async fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let mut c = self.nodes[i].child.take().expect("running");
        process::sigterm(&c);
        process::wait_exit(&mut c, Duration::from_secs(30)).await
    }

    async fn finish(mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if let Some(db) = self.db.take() {
            db.drop_now().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

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

/// Registers the traders through `port`, funds them with cash and 1,000 units of every symbol,
/// and returns their tokens.
async fn traders(port: u16) -> Vec<String> {
    let (_, t) = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"username": "root", "password": "root-password-long"}),
    )
    .await;
    let admin = t["access_token"].as_str().expect("admin token").to_owned();
    let mut tokens = Vec::new();
    for i in 0..TRADERS {
        let name = format!("trader{i}");
        let creds = json!({"username": name, "password": "password-123"});
        let (status, user) = call(port, "POST", "/api/v1/auth/register", None, creds.clone()).await;
        assert_eq!(status, 201, "{user}");
        let account = user["account_id"].as_i64().expect("account");
        let path = format!("/api/v1/admin/accounts/{account}/deposits");
        let (status, r) = call(
            port,
            "POST",
            &path,
            Some(&admin),
            json!({"amount": "1000000"}),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        for s in SYMBOLS {
            let body = json!({"amount": "1000", "symbol": s, "cost": "100"});
            let (status, r) = call(port, "POST", &path, Some(&admin), body).await;
            assert_eq!(status, 200, "{r}");
        }
        let (_, t) = call(port, "POST", "/api/v1/auth/login", None, creds).await;
        tokens.push(t["access_token"].as_str().expect("token").to_owned());
    }
    tokens
}

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

/// What a stream of orders saw: acknowledged client order ids, and refusals by status.
#[derive(Default, Debug)]
struct Seen {
    acked: Vec<String>,
    refused: BTreeMap<u16, usize>,
    /// The first refusal of each kind, to say why.
    why: BTreeMap<String, String>,
    /// Per replica port, orders acknowledged through it.
    through: BTreeMap<u16, usize>,
}

/// Sends `n` crossing orders for random symbols from `token`, spread over `ports` (round robin
/// from `start`); an order refused with 503 (or a dropped connection) is sent again with the
/// same `client_order_id` up to `retries` times, as a careful client does.
async fn orders(ports: Vec<u16>, token: String, seed: u64, n: usize, retries: usize) -> Seen {
    let mut rng = Lcg(seed);
    let mut seen = Seen::default();
    for k in 0..n {
        let symbol = SYMBOLS[rng.next(SYMBOLS.len() as u64) as usize];
        let side = if rng.next(2) == 0 { "buy" } else { "sell" };
        let price = format!("{}.{:02}", 95 + rng.next(10), rng.next(100));
        let qty = (1 + rng.next(5)).to_string();
        let id = format!("s{seed}-{k}");
        let body = match rng.next(8) {
            0 => {
                json!({"symbol": symbol, "side": side, "type": "limit", "price": price, "qty": qty, "tif": "IOC", "client_order_id": id})
            }
            _ => {
                json!({"symbol": symbol, "side": side, "type": "limit", "price": price, "qty": qty, "client_order_id": id})
            }
        };
        for attempt in 0..=retries {
            let port = ports[(k + attempt + seed as usize) % ports.len()];
            let reply = http_json(port, "POST", "/api/v1/orders", Some(&token), Some(&body)).await;
            match reply {
                Ok((201, _)) => {
                    seen.acked.push(id.clone());
                    *seen.through.entry(port).or_default() += 1;
                    break;
                }
                Ok((status, r)) => {
                    // 503: nothing was executed; 504: the outcome is unknown. Both are safe to
                    // send again with the same client_order_id.
                    assert!(
                        [422, 503, 504].contains(&status),
                        "order {body} on :{port} -> {status} {r}"
                    );
                    *seen.refused.entry(status).or_default() += 1;
                    seen.why
                        .entry(format!("{status} {}", r["code"]))
                        .or_insert_with(|| r["message"].to_string());
                    if status == 422 {
                        break;
                    }
                }
                Err(_) => *seen.refused.entry(0).or_default() += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    seen
}

/// Every acknowledged order is stored exactly once and the books and accounts add up.
async fn check_ledger(pool: &sqlx::PgPool, acked: &[String]) {
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT client_order_id, COUNT(*) FROM orders WHERE client_order_id IS NOT NULL GROUP BY client_order_id",
    )
    .fetch_all(pool)
    .await
    .expect("orders");
    let stored: HashMap<String, i64> = stored.into_iter().collect();
    for id in acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged order {id} is stored once"
        );
    }
    assert!(stored.values().all(|n| *n == 1), "no order is stored twice");

    let cash: i64 = sqlx::query_scalar("SELECT CAST(SUM(cash) AS BIGINT) FROM accounts")
        .fetch_one(pool)
        .await
        .expect("cash");
    assert_eq!(
        cash,
        TRADERS as i64 * 1_000_000 * 100_000_000,
        "cash is conserved"
    );
    for s in SYMBOLS {
        let net: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) FROM positions WHERE symbol = $1",
        )
        .bind(s)
        .fetch_one(pool)
        .await
        .expect("net");
        assert_eq!(
            net,
            TRADERS as i64 * 1000 * 100_000_000,
            "units of {s} are conserved"
        );
    }
    let bad: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders o WHERE o.filled > o.qty OR o.filled <> COALESCE(( \
         SELECT SUM(t.qty) FROM trades t WHERE t.taker_order_id = o.id OR t.maker_order_id = o.id), 0)",
    )
    .fetch_one(pool)
    .await
    .expect("fills");
    assert_eq!(bad, 0, "orders whose fills disagree with the trades");
    let accounts: Vec<(i64, i64, i32)> =
        sqlx::query_as("SELECT id, cash_reserved, open_orders FROM accounts")
            .fetch_all(pool)
            .await
            .expect("accounts");
    for (id, reserved, open) in accounts {
        let resting: Vec<(String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT side, price, remaining FROM orders WHERE account_id = $1 AND status IN ('new', 'partially_filled')",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("resting");
        let want: Cash = resting
            .iter()
            .filter(|(s, _, _)| s == "buy")
            .map(|(_, p, r)| notional(Price::from_raw(p.unwrap_or(0)), Qty::from_raw(*r)))
            .fold(Cash::ZERO, |acc, c| acc + c);
        assert_eq!(
            i128::from(reserved),
            want.raw(),
            "cash reserved of account {id}"
        );
        assert_eq!(open as usize, resting.len(), "open orders of account {id}");
    }
    for s in SYMBOLS {
        let (bid, ask): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT MAX(price) FILTER (WHERE side = 'buy'), MIN(price) FILTER (WHERE side = 'sell') \
             FROM orders WHERE symbol = $1 AND status IN ('new', 'partially_filled')",
        )
        .bind(s)
        .fetch_one(pool)
        .await
        .expect("book");
        if let (Some(bid), Some(ask)) = (bid, ask) {
            assert!(bid < ask, "{s}: crossed book, bid {bid} >= ask {ask}");
        }
    }
}

/// Deadlocks PostgreSQL counted in this database (its statistics lag by up to a second).
async fn deadlocks(pool: &sqlx::PgPool) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(pool)
        .await;
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(pool)
        .await
        .expect("deadlocks")
}

/// A WebSocket subscriber of every symbol on `port` that records each symbol's `md_seq`s:
/// returns the gaps it saw (a jump of more than one) and how many events it got.
async fn subscriber(port: u16, stop: tokio_util::sync::CancellationToken) -> (Vec<String>, usize) {
    let url = format!("ws://127.0.0.1:{port}/api/v1/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("ws connects");
    let subscribe = json!({"op": "subscribe", "symbols": SYMBOLS}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        subscribe.into(),
    ))
    .await
    .expect("subscribe");
    let mut last: HashMap<String, i64> = HashMap::new();
    let (mut gaps, mut events) = (Vec::new(), 0);
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            m = ws.next() => m,
        };
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else {
            match message {
                Some(Ok(_)) => continue,
                other => panic!("the subscriber on :{port} was cut: {other:?}"),
            }
        };
        let v: Value = serde_json::from_str(&text).expect("json event");
        let (Some(symbol), Some(seq)) = (v["symbol"].as_str(), v["md_seq"].as_i64()) else {
            continue;
        };
        if v["type"] == "snapshot" {
            last.insert(symbol.to_owned(), seq);
            continue;
        }
        events += 1;
        if let Some(prev) = last.insert(symbol.to_owned(), seq)
            && seq != prev + 1
        {
            gaps.push(format!("{symbol}: {prev} -> {seq}"));
        }
    }
    (gaps, events)
}

async fn three_replicas_share_the_symbols_and_hand_them_over_on_sigterm() {
    let mut cluster = Cluster::new().await;
    for _ in 0..3 {
        cluster.start().await;
    }
    let owners = cluster.settled(Duration::from_secs(20)).await;
    let pool = cluster.pool().await;
    let tokens = traders(cluster.nodes[0].port).await;
    let reloads_before: Vec<usize> = (0..3)
        .map(|i| {
            cluster
                .log(i)
                .matches("caught up with the stored book")
                .count()
        })
        .collect();

    // Steady state: subscribers on every replica, orders through every replica.
    let stop = tokio_util::sync::CancellationToken::new();
    let subs: Vec<_> = cluster
        .live_ports()
        .into_iter()
        .map(|p| tokio::spawn(subscriber(p, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ports = cluster.live_ports();
    let streams: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| tokio::spawn(orders(ports.clone(), t.clone(), i as u64 + 1, 60, 0)))
        .collect();
    let mut acked = Vec::new();
    let mut through: BTreeMap<u16, usize> = BTreeMap::new();
    for s in streams {
        let seen = s.await.expect("stream");
        assert!(
            ![503, 504, 0].iter().any(|s| seen.refused.contains_key(s)),
            "steady state refused nothing: {seen:?}"
        );
        for (p, n) in seen.through {
            *through.entry(p).or_default() += n;
        }
        acked.extend(seen.acked);
    }
    assert!(
        ports.iter().all(|p| through.get(p).is_some_and(|n| *n > 0)),
        "every replica took orders: {through:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for (port, sub) in ports.iter().zip(subs) {
        let (gaps, events) = sub.await.expect("subscriber");
        assert!(events > 0, "the subscriber on :{port} got market data");
        assert!(gaps.is_empty(), "md_seq gaps on :{port}: {gaps:?}");
    }
    for (i, before) in reloads_before.iter().enumerate() {
        let reloads = cluster
            .log(i)
            .matches("caught up with the stored book")
            .count();
        assert_eq!(
            reloads, *before,
            "replica {i} reloaded a book in steady state"
        );
    }
    assert_eq!(
        cluster.owners().await,
        owners,
        "ownership stayed put in steady state"
    );

    // A SIGTERMed replica hands its symbols over while orders keep coming: nobody is refused.
    let leaving = (0..3)
        .find(|i| owners.values().any(|p| *p == cluster.nodes[*i].port))
        .expect("some replica owns a symbol");
    let others: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| *p != cluster.nodes[leaving].port)
        .collect();
    let streams: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| tokio::spawn(orders(others.clone(), t.clone(), 100 + i as u64, 40, 0)))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = cluster.stop(leaving).await;
    assert!(status.success(), "a clean drain exits 0: {status:?}");
    let log = cluster.log(leaving);
    assert!(log.contains("handed every symbol over"), "{log}");
    for s in streams {
        let seen = s.await.expect("stream");
        assert!(
            seen.refused.is_empty(),
            "nothing refused during a handover: {seen:?}"
        );
        acked.extend(seen.acked);
    }
    let after = cluster.settled(Duration::from_secs(10)).await;
    assert!(after.values().all(|p| others.contains(p)), "{after:?}");

    check_ledger(&pool, &acked).await;
    assert_eq!(deadlocks(&pool).await, 0, "no deadlock");
    pool.close().await;
    cluster.finish().await;
}

async fn a_killed_owner_s_symbols_come_back_and_no_order_is_lost_or_doubled() {
    let mut cluster = Cluster::new().await;
    cluster.start().await;
    cluster.start().await;
    let owners = cluster.settled(Duration::from_secs(20)).await;
    let pool = cluster.pool().await;
    let tokens = traders(cluster.nodes[0].port).await;

    // Kill the owner of AAA (with its symbols) while clients keep sending, each retrying a
    // refused order with the same client_order_id.
    let victim = (0..2)
        .find(|i| owners["AAA"] == cluster.nodes[*i].port)
        .expect("AAA has an owner");
    let survivor = cluster.nodes[1 - victim].port;
    let streams: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| tokio::spawn(orders(vec![survivor], t.clone(), 200 + i as u64, 40, 60)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(victim);
    let killed = Instant::now();

    // The time until AAA takes orders again through the survivor.
    let token = &tokens[0];
    let body = json!({"symbol": "AAA", "side": "buy", "type": "limit", "price": "1", "qty": "1"});
    let failover = loop {
        let (status, r) = call(
            survivor,
            "POST",
            "/api/v1/orders",
            Some(token),
            body.clone(),
        )
        .await;
        if status == 201 {
            break killed.elapsed();
        }
        assert_eq!(status, 503, "{r}");
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "AAA never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "failover: AAA accepted orders again {failover:?} after kill -9 (lease {LEASE_SECONDS} s)"
    );
    let mut acked = Vec::new();
    for s in streams {
        acked.extend(s.await.expect("stream").acked);
    }
    let after = cluster.settled(Duration::from_secs(10)).await;
    assert!(after.values().all(|p| *p == survivor), "{after:?}");
    check_ledger(&pool, &acked).await;
    assert_eq!(deadlocks(&pool).await, 0, "no deadlock");
    pool.close().await;
    cluster.finish().await;
}
