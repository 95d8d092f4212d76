//! The order mix one simulated client sends, and what it counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::client::Conn;
use crate::report::Latencies;

/// How the generator trades one instrument.
pub struct Market {
    pub symbol: &'static str,
    /// Mid price in cents (every default instrument has a 0.01 tick).
    pub mid_cents: i64,
    /// Lot size as (digits after the point): quantity = lots * 10^-decimals.
    lot_decimals: u32,
    /// Lots per order: uniform in this range.
    lots: (i64, i64),
    /// Units deposited per account.
    pub deposit_units: &'static str,
}

/// Every instrument the generator knows how to trade; `--symbols` picks which (the first three
/// are the platform's defaults, SOL-USD makes the benchmark's four-symbol mix).
pub const MARKETS: [Market; 4] = [
    Market {
        symbol: "BTC-USD",
        mid_cents: 3_000_000,
        lot_decimals: 4,
        lots: (1, 100),
        deposit_units: "100",
    },
    Market {
        symbol: "ETH-USD",
        mid_cents: 200_000,
        lot_decimals: 3,
        lots: (1, 100),
        deposit_units: "1000",
    },
    Market {
        symbol: "AAPL",
        mid_cents: 15_000,
        lot_decimals: 0,
        lots: (1, 20),
        deposit_units: "100000",
    },
    Market {
        symbol: "SOL-USD",
        mid_cents: 15_000,
        lot_decimals: 2,
        lots: (1, 1000),
        deposit_units: "100000",
    },
];

/// The markets this run trades, chosen once from `--symbols` before any worker starts (a
/// process-wide setting, like the seed; the platform's three defaults when never set).
static ACTIVE: std::sync::OnceLock<Vec<&'static Market>> = std::sync::OnceLock::new();

/// Chooses the markets to trade; `Err` names a symbol the generator does not know.
pub fn select_markets(symbols: &[String]) -> Result<(), String> {
    let mut chosen = Vec::new();
    for s in symbols {
        let m = MARKETS.iter().find(|m| m.symbol == s).ok_or_else(|| {
            format!("--symbols: unknown symbol {s} (known: BTC-USD, ETH-USD, AAPL, SOL-USD)")
        })?;
        chosen.push(m);
    }
    ACTIVE
        .set(chosen)
        .map_err(|_| "markets were already chosen".to_owned())
}

/// The markets of this run.
pub fn active() -> &'static [&'static Market] {
    ACTIVE.get_or_init(|| MARKETS.iter().take(3).collect())
}

/// Cash deposited per account.
pub const DEPOSIT_CASH: &str = "100000000";

/// Formats `n * 10^-decimals` as a decimal string.
pub fn fixed(n: i64, decimals: u32) -> String {
    if decimals == 0 {
        return n.to_string();
    }
    let scale = 10_i64.pow(decimals);
    format!(
        "{}.{:0width$}",
        n / scale,
        n % scale,
        width = decimals as usize
    )
}

/// What one operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gtc,
    Ioc,
    Fok,
    Market,
    Cancel,
}

/// Counters of one worker (and, merged, of one level).
#[derive(Debug, Default)]
pub struct Stats {
    /// Latency of every request that got an HTTP answer, in microseconds.
    pub latencies_us: Latencies,
    pub ok: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub transport_errors: u64,
    /// Placed orders that traded at least partly.
    pub filled: u64,
    pub places: u64,
    pub cancels: u64,
    /// Rejections by `code` (or status when there is none).
    pub reject_codes: HashMap<String, u64>,
    /// First transport error seen, for the report.
    pub first_error: Option<String>,
}

impl Stats {
    pub fn merge(&mut self, other: Stats) {
        self.latencies_us.merge(&other.latencies_us);
        self.ok += other.ok;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.transport_errors += other.transport_errors;
        self.filled += other.filled;
        self.places += other.places;
        self.cancels += other.cancels;
        for (k, v) in other.reject_codes {
            *self.reject_codes.entry(k).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Most resting orders a worker remembers for later cancels.
const MAX_OPEN: usize = 64;

/// One simulated client: places and cancels until the level's budget or deadline is used up.
///
/// Each order is sent as a trader picked at random from `tokens` (one connection carrying many
/// users, like a gateway), so even a single client trades instead of self-trade-preventing;
/// a cancel is sent as the order's owner.
pub async fn worker(
    mut conn: Conn,
    tokens: Arc<Vec<String>>,
    mut rng: StdRng,
    tag: String,
    issued: Arc<AtomicU64>,
    budget: u64,
    deadline: Instant,
) -> Stats {
    let mut stats = Stats::default();
    // Orders this worker saw resting, with the index of their owner in `tokens`.
    let mut open: Vec<(i64, usize)> = Vec::new();
    let mut n = 0_u64;
    let mut trader = 0_usize;
    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < budget {
        n += 1;
        let roll = rng.gen_range(0..100);
        let op = match roll {
            0..15 if !open.is_empty() => Op::Cancel,
            _ if open.len() >= MAX_OPEN => Op::Cancel,
            0..60 => Op::Gtc,
            60..80 => Op::Ioc,
            80..88 => Op::Fok,
            _ => Op::Market,
        };
        let started = Instant::now();
        let result = if op == Op::Cancel {
            stats.cancels += 1;
            let (id, owner) = open.swap_remove(rng.gen_range(0..open.len()));
            conn.call(
                Method::DELETE,
                &format!("/api/v1/orders/{id}"),
                Some(&tokens[owner]),
                None,
            )
            .await
        } else {
            stats.places += 1;
            trader = rng.gen_range(0..tokens.len());
            let body = order_body(&mut rng, op, &format!("{tag}-{n}"));
            conn.call(
                Method::POST,
                "/api/v1/orders",
                Some(&tokens[trader]),
                Some(&body),
            )
            .await
        };
        let elapsed = started.elapsed();
        match result {
            Err(e) => {
                stats.transport_errors += 1;
                stats.first_error.get_or_insert_with(|| e.to_string());
                // Do not spin on a dead server: the budget and deadline still bound the loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok((status, body)) => {
                stats.latencies_us.record(elapsed);
                match status {
                    200..=299 => {
                        stats.ok += 1;
                        if op != Op::Cancel
                            && let Ok(order) = serde_json::from_slice::<Value>(&body)
                        {
                            let filled = order["filled"].as_str().unwrap_or("0");
                            if filled.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
                                stats.filled += 1;
                            }
                            let resting = matches!(
                                order["status"].as_str(),
                                Some("new" | "partially_filled")
                            );
                            if let (true, Some(id)) = (resting, order["id"].as_i64()) {
                                open.push((id, trader));
                            }
                        }
                    }
                    _ => {
                        if status >= 500 {
                            stats.status_5xx += 1;
                        } else {
                            stats.status_4xx += 1;
                        }
                        let code = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["code"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("http{status}"));
                        *stats
                            .reject_codes
                            .entry(format!("{status}:{code}"))
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    stats
}

/// The JSON of one new order of kind `op`.
fn order_body(rng: &mut impl Rng, op: Op, client_order_id: &str) -> Value {
    let markets = active();
    let m = markets[rng.gen_range(0..markets.len())];
    let buy = rng.gen_bool(0.5);
    let qty = fixed(rng.gen_range(m.lots.0..=m.lots.1), m.lot_decimals);
    // Offsets in basis points of the mid. Resting buys sit in [-40, +10] and sells in
    // [-10, +40], so the books overlap a little and a share of limit orders trades on arrival;
    // IOC/FOK orders cross by 30 bp.
    let bp = match (op, buy) {
        (Op::Gtc, true) => rng.gen_range(-40..=10),
        (Op::Gtc, false) => rng.gen_range(-10..=40),
        (_, true) => 30,
        (_, false) => -30,
    };
    let price_cents = m.mid_cents + m.mid_cents * bp / 10_000;
    let side = if buy { "buy" } else { "sell" };
    match op {
        Op::Market => json!({
            "symbol": m.symbol, "side": side, "type": "market", "qty": qty,
            "client_order_id": client_order_id,
        }),
        _ => json!({
            "symbol": m.symbol, "side": side, "type": "limit", "price": fixed(price_cents, 2),
            "qty": qty,
            "tif": match op { Op::Ioc => "IOC", Op::Fok => "FOK", _ => "GTC" },
            "client_order_id": client_order_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::client::resolve;

    #[test]
    fn formats_fixed_point() {
        assert_eq!(fixed(3_000_000, 2), "30000.00");
        assert_eq!(fixed(5, 4), "0.0005");
        assert_eq!(fixed(12, 0), "12");
        assert_eq!(fixed(1234, 3), "1.234");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn counts_refused_connections() {
        // Bind and drop a listener to find a port with nothing behind it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = resolve(&format!("http://127.0.0.1:{port}")).await.unwrap();
        let stats = worker(
            Conn::new(target, Duration::from_secs(2)),
            Arc::new(vec!["t".into()]),
            StdRng::seed_from_u64(1),
            "x".into(),
            Arc::new(AtomicU64::new(0)),
            3,
            Instant::now() + Duration::from_secs(5),
        )
        .await;
        assert_eq!(stats.transport_errors, 3);
        assert_eq!(stats.ok, 0);
        assert_eq!(stats.latencies_us.len(), 0, "no answer, no latency");
        assert!(stats.first_error.is_some_and(|e| e.starts_with("connect")));
    }

    #[test]
    fn order_prices_stay_on_tick_and_near_mid() {
        let mut rng = StdRng::seed_from_u64(42);
        for op in [Op::Gtc, Op::Ioc, Op::Fok, Op::Market] {
            for _ in 0..200 {
                let v = order_body(&mut rng, op, "id");
                let m = MARKETS.iter().find(|m| v["symbol"] == m.symbol).unwrap();
                if let Some(p) = v["price"].as_str() {
                    let (units, cents) = p.split_once('.').unwrap();
                    assert_eq!(cents.len(), 2);
                    let price: i64 = format!("{units}{cents}").parse().unwrap();
                    assert!(
                        (price - m.mid_cents).abs() <= m.mid_cents * 40 / 10_000,
                        "{p}"
                    );
                } else {
                    assert_eq!((op, v["type"].as_str()), (Op::Market, Some("market")));
                }
                assert!(v["qty"].as_str().is_some_and(|q| q != "0"));
            }
        }
    }
}
