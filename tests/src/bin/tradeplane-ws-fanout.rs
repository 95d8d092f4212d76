//! WebSocket fan-out benchmark: N market-data subscribers on one symbol of a running platform,
//! trades driven through the REST API, and what the platform delivers per second and costs in
//! resident memory. Run by `scripts/bench-ws-fanout.sh`, which starts the platform.
//!
//!   tradeplane-ws-fanout --url http://127.0.0.1:8080 --admin-password ... --pid PID \
//!       --subscribers 10000 --seconds 20
//!
//! Prints one line: subscribers, trade pairs per second sent, events per second per subscriber,
//! messages delivered per second in total, and the platform's RSS (from `/proc/PID/status`).

#[path = "tradeplane-loadgen/client.rs"]
#[allow(dead_code)]
mod client;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use client::Conn;

#[derive(Parser, Debug)]
#[command(about = "WebSocket fan-out benchmark against a running tradeplane-platform")]
struct Args {
    /// Base URL of the platform (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin login, to fund the two traders that make the trades.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// Admin password (the platform's ADMIN_PASSWORD).
    #[arg(long)]
    admin_password: String,
    /// Platform process id, for its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Subscribers to open.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Measured seconds (after every subscriber has its snapshot).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Symbol traded and subscribed to.
    #[arg(long, default_value = "AAPL")]
    symbol: String,
    /// Concurrent REST clients placing crossing order pairs.
    #[arg(long, default_value_t = 4)]
    traders: usize,
}

fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Registers, funds (cash and the symbol) and logs in one trader.
async fn trader(conn: &mut Conn, admin: &str, name: &str, symbol: &str) -> Result<String, String> {
    let password = "fanout-trader-password";
    let user = conn
        .expect(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(&json!({"username": name, "password": password})),
            201,
        )
        .await?;
    let account = user["account_id"].as_i64().ok_or("no account_id")?;
    let path = format!("/api/v1/admin/accounts/{account}/deposits");
    for body in [
        json!({"amount": "100000000"}),
        json!({"amount": "1000000", "symbol": symbol, "cost": "100"}),
    ] {
        conn.expect(Method::POST, &path, Some(admin), Some(&body), 200)
            .await?;
    }
    let tokens = conn
        .expect(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": name, "password": password})),
            200,
        )
        .await?;
    Ok(tokens["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let target = client::resolve(&args.url).await?;
    let mut conn = Conn::new(target.clone(), Duration::from_secs(30));
    let admin = conn
        .expect(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": args.admin_user, "password": args.admin_password})),
            200,
        )
        .await?["access_token"]
        .as_str()
        .ok_or("no admin token")?
        .to_owned();
    let run = uuid_like();
    let mut tokens = Vec::new();
    for i in 0..args.traders.max(1) * 2 {
        tokens.push(
            trader(
                &mut conn,
                &admin,
                &format!("fanout-{run}-{i}"),
                &args.symbol,
            )
            .await?,
        );
    }
    let idle_rss = rss_mib(args.pid);

    // Subscribers: each counts the messages it receives after its snapshot.
    let delivered = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let ws_url = format!("ws://{}/api/v1/ws", target.addr);
    let subscribe = json!({"op": "subscribe", "symbols": [args.symbol]}).to_string();
    let opened = Instant::now();
    for _ in 0..args.subscribers {
        let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
            .await
            .map_err(|e| {
                format!(
                    "connecting subscriber {}: {e}",
                    ready.load(Ordering::SeqCst)
                )
            })?;
        ws.send(Message::text(subscribe.clone()))
            .await
            .map_err(|e| format!("subscribing: {e}"))?;
        let (delivered, ready) = (delivered.clone(), ready.clone());
        tokio::spawn(async move {
            let mut snapshot = false;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(_) = msg {
                    if snapshot {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        snapshot = true;
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
    }
    while (ready.load(Ordering::SeqCst) as usize) < args.subscribers {
        if opened.elapsed() > Duration::from_secs(120) {
            return Err("subscribers did not all get their snapshot within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subscribed_rss = rss_mib(args.pid);

    // Trades: pairs of crossing limit orders (a resting sell, then a buy that fills it), each
    // pair publishing book and trade events to every subscriber.
    let pairs = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    delivered.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let mut drivers = Vec::new();
    for pair in tokens.chunks(2) {
        let (seller, buyer) = (pair[0].clone(), pair[1].clone());
        let (symbol, pairs, target) = (args.symbol.clone(), pairs.clone(), target.clone());
        drivers.push(tokio::spawn(async move {
            let mut conn = Conn::new(target, Duration::from_secs(30));
            while Instant::now() < stop {
                for (token, side) in [(&seller, "sell"), (&buyer, "buy")] {
                    let order = json!({"symbol": symbol, "side": side, "type": "limit", "price": "100", "qty": "1"});
                    if let Err(e) = conn
                        .expect(Method::POST, "/api/v1/orders", Some(token), Some(&order), 201)
                        .await
                    {
                        eprintln!("order: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                pairs.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for d in drivers {
        let _ = d.await;
    }
    // Let the last events reach everyone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let secs = started.elapsed().as_secs_f64();
    let total = delivered.load(Ordering::SeqCst) as f64;
    let peak_rss = rss_mib(args.pid);
    let fmt = |m: Option<f64>| m.map_or("-".to_owned(), |m| format!("{m:.0}"));
    println!(
        "subscribers={} pairs_per_s={:.0} events_per_s_per_subscriber={:.0} delivered_msgs_per_s={:.0} rss_mib_idle={} rss_mib_subscribed={} rss_mib_end={}",
        args.subscribers,
        pairs.load(Ordering::SeqCst) as f64 / secs,
        total / secs / args.subscribers.max(1) as f64,
        total / secs,
        fmt(idle_rss),
        fmt(subscribed_rss),
        fmt(peak_rss),
    );
    Ok(())
}

/// A short run id, so repeated runs on one database register fresh traders.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos % 0xffff_ffff)
}
