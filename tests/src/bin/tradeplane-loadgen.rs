//! `tradeplane-loadgen`: an end-to-end load generator for the Tradeplane platform.
//!
//! It registers trader accounts, funds them through the admin API (cash and units of every
//! default instrument), then, for each concurrency level, runs that many simulated clients, each
//! on its own HTTP/1.1 keep-alive connection, placing a realistic mix of orders (limit orders
//! around a mid price on both sides so trades happen, some IOC/FOK/market, some cancels). Every
//! level is bounded both in requests (`--orders-per-level`) and in time (`--max-seconds`), and
//! the generator only ever talks to loopback addresses.
//!
//! It prints one row per level: requests, successes per second, latency percentiles of the
//! completed requests (any status), 4xx/5xx/transport-error counts, and the server's mean batch
//! size and transaction time for the level (read from its `/metrics`).
//!
//! ```text
//! tradeplane-loadgen --url http://127.0.0.1:18080 --admin-user admin \
//!     --admin-password 'a long password' --levels 1,4,16,64 --orders-per-level 2000 \
//!     --max-seconds 20 --accounts 32 [--csv out.csv] [--seed 7]
//! ```
//!
//! Errors never panic: refused connections, timeouts and 5xx answers are counted, and a setup
//! failure ends the process with a message and exit status 1.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

const USAGE: &str = "\
usage: tradeplane-loadgen [options]

  --url URL               platform base URL, loopback only (default http://127.0.0.1:8080)
  --admin-user NAME       admin username (default admin)
  --admin-password PASS   admin password (required; env LOADGEN_ADMIN_PASSWORD also works)
  --levels LIST           comma-separated concurrency levels (default 1,4,16,64,128)
  --orders-per-level N    requests per level, places and cancels together (default 2000)
  --max-seconds S         time limit per level, in seconds (default 30)
  --accounts N            trader accounts to register and fund (default 32)
  --timeout S             per-request timeout, in seconds (default 30)
  --seed N                random seed (default: from the clock)
  --csv PATH              also write the results as CSV to PATH
  -h, --help              this text
";

/// Command-line options.
#[derive(Debug, Clone)]
struct Args {
    url: String,
    admin_user: String,
    admin_password: String,
    levels: Vec<usize>,
    orders_per_level: u64,
    max_seconds: f64,
    accounts: usize,
    timeout: Duration,
    seed: u64,
    csv: Option<String>,
}

/// Parses the command line; `Ok(None)` means help was requested.
fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        url: "http://127.0.0.1:8080".into(),
        admin_user: "admin".into(),
        admin_password: std::env::var("LOADGEN_ADMIN_PASSWORD").unwrap_or_default(),
        levels: vec![1, 4, 16, 64, 128],
        orders_per_level: 2000,
        max_seconds: 30.0,
        accounts: 32,
        timeout: Duration::from_secs(30),
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        csv: None,
    };
    while let Some(arg) = raw.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--admin-user" => args.admin_user = value()?,
            "--admin-password" => args.admin_password = value()?,
            "--levels" => {
                args.levels = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--levels: {e}"))?;
                if args.levels.is_empty() || args.levels.iter().any(|&c| !(1..=1024).contains(&c)) {
                    return Err("--levels: each level must be between 1 and 1024".into());
                }
            }
            "--orders-per-level" => {
                args.orders_per_level = number(&flag, &value()?, 1, 10_000_000)?
            }
            "--max-seconds" => {
                let v = value()?;
                args.max_seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.1..=3600.0).contains(s))
                    .ok_or_else(|| format!("--max-seconds: {v:?} is not between 0.1 and 3600"))?;
            }
            "--accounts" => args.accounts = number(&flag, &value()?, 1, 10_000)? as usize,
            "--timeout" => args.timeout = Duration::from_secs(number(&flag, &value()?, 1, 600)?),
            "--seed" => args.seed = number(&flag, &value()?, 0, u64::MAX)?,
            "--csv" => args.csv = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.admin_password.is_empty() {
        return Err("--admin-password is required".into());
    }
    Ok(Some(args))
}

fn number(flag: &str, v: &str, min: u64, max: u64) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{flag}: {v:?} is not a whole number in {min}..={max}"))
}

/// Where requests go: one loopback socket address and the `Host` header to send.
#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
}

/// Resolves `http://host:port[/]` and refuses anything that is not a loopback address.
async fn resolve(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only plain http:// URLs are supported"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "{url:?}: give the base URL only, e.g. http://127.0.0.1:8080"
        ));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    let addrs = tokio::net::lookup_host(with_port.as_str())
        .await
        .map_err(|e| format!("{url:?}: cannot resolve: {e}"))?;
    let addr = addrs
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("{url:?}: refusing to send load to a non-loopback address"))?;
    Ok(Target {
        addr,
        host: authority.to_owned(),
    })
}

/// Why a request produced no HTTP response.
#[derive(Debug)]
enum ClientError {
    Connect(std::io::Error),
    Http(hyper::Error),
    Build(hyper::http::Error),
    Timeout,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect: {e}"),
            ClientError::Http(e) => write!(f, "http: {e}"),
            ClientError::Build(e) => write!(f, "request: {e}"),
            ClientError::Timeout => write!(f, "timed out"),
        }
    }
}

/// One HTTP/1.1 keep-alive connection, reopened after any transport error.
///
/// hyper's low-level `conn::http1` client is used rather than a pooled client so that a level
/// of concurrency C is exactly C connections with one request in flight on each.
struct Conn {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(target: Target, timeout: Duration) -> Conn {
        Conn {
            target,
            timeout,
            sender: None,
        }
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole answer: `(status, body)`.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        let result = tokio::time::timeout(self.timeout, self.call_inner(method, path, token, body))
            .await
            .unwrap_or(Err(ClientError::Timeout));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn call_inner(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.target.host.as_str());
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(ClientError::Build)?;
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.open().await?,
        };
        sender.ready().await.map_err(ClientError::Http)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }

    /// A setup call that must succeed with `expect`; returns the JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        expect: u16,
    ) -> Result<Value, String> {
        let (status, bytes) = self
            .call(method.clone(), path, token, body)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if status != expect {
            return Err(format!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{method} {path}: bad JSON: {e}"))
    }
}

/// A small xorshift64* generator: enough randomness for an order mix, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

/// How the generator trades one instrument.
struct Market {
    symbol: &'static str,
    /// Mid price in cents (every default instrument has a 0.01 tick).
    mid_cents: i64,
    /// Lot size as (digits after the point): quantity = lots * 10^-decimals.
    lot_decimals: u32,
    /// Lots per order: uniform in this range.
    lots: (i64, i64),
    /// Units deposited per account.
    deposit_units: &'static str,
}

const MARKETS: [Market; 3] = [
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
];

/// Cash deposited per account.
const DEPOSIT_CASH: &str = "100000000";

/// Formats `n * 10^-decimals` as a decimal string.
fn fixed(n: i64, decimals: u32) -> String {
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

/// A funded trader.
#[derive(Debug, Clone)]
struct Trader {
    username: String,
    token: String,
}

/// Logs in and returns the access token.
async fn login(conn: &mut Conn, username: &str, password: &str) -> Result<String, String> {
    let body = json!({ "username": username, "password": password });
    let v = conn
        .expect(Method::POST, "/api/v1/auth/login", None, Some(&body), 200)
        .await?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("login of {username}: no access_token in answer"))
}

const TRADER_PASSWORD: &str = "loadgen-trader-password";

/// Registers, funds and logs in one trader.
async fn set_up_trader(conn: &mut Conn, admin: &str, username: String) -> Result<Trader, String> {
    let body = json!({ "username": username, "password": TRADER_PASSWORD });
    let user = conn
        .expect(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(&body),
            201,
        )
        .await?;
    let account = user["account_id"]
        .as_i64()
        .ok_or_else(|| format!("register {username}: no account_id in answer"))?;
    let path = format!("/api/v1/admin/accounts/{account}/deposits");
    conn.expect(
        Method::POST,
        &path,
        Some(admin),
        Some(&json!({ "amount": DEPOSIT_CASH })),
        200,
    )
    .await?;
    for m in &MARKETS {
        let body = json!({
            "amount": m.deposit_units,
            "symbol": m.symbol,
            "cost": fixed(m.mid_cents, 2),
        });
        conn.expect(Method::POST, &path, Some(admin), Some(&body), 200)
            .await?;
    }
    let token = login(conn, &username, TRADER_PASSWORD).await?;
    Ok(Trader { username, token })
}

/// Registers and funds `n` traders, a few at a time (password hashing is deliberately slow).
async fn set_up_traders(
    target: &Target,
    timeout: Duration,
    admin: &str,
    run: &str,
    n: usize,
) -> Result<Vec<Trader>, String> {
    const PARALLEL: usize = 4;
    let mut handles = Vec::new();
    for lane in 0..PARALLEL.min(n) {
        let (target, admin, run) = (target.clone(), admin.to_owned(), run.to_owned());
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::new(target, timeout);
            let mut out = Vec::new();
            for i in (lane..n).step_by(PARALLEL) {
                let trader = set_up_trader(&mut conn, &admin, format!("lg{run}-{i}")).await?;
                out.push((i, trader));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await.map_err(|e| format!("setup task failed: {e}"))??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Logs every trader in again (access tokens live 15 minutes).
async fn refresh_tokens(
    target: &Target,
    timeout: Duration,
    traders: &mut [Trader],
) -> Result<(), String> {
    let mut conn = Conn::new(target.clone(), timeout);
    for t in traders.iter_mut() {
        t.token = login(&mut conn, &t.username, TRADER_PASSWORD).await?;
    }
    Ok(())
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
struct Stats {
    /// Latency of every request that got an HTTP answer, in microseconds.
    latencies_us: Vec<u32>,
    ok: u64,
    status_4xx: u64,
    status_5xx: u64,
    transport_errors: u64,
    /// Placed orders that traded at least partly.
    filled: u64,
    places: u64,
    cancels: u64,
    /// Rejections by `code` (or status when there is none).
    reject_codes: HashMap<String, u64>,
    /// First transport error seen, for the report.
    first_error: Option<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
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
async fn worker(
    mut conn: Conn,
    tokens: Arc<Vec<String>>,
    mut rng: Rng,
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
        let roll = rng.below(100);
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
            let (id, owner) = open.swap_remove(rng.below(open.len() as u64) as usize);
            conn.call(
                Method::DELETE,
                &format!("/api/v1/orders/{id}"),
                Some(&tokens[owner]),
                None,
            )
            .await
        } else {
            stats.places += 1;
            trader = rng.below(tokens.len() as u64) as usize;
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
                stats
                    .latencies_us
                    .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
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
fn order_body(rng: &mut Rng, op: Op, client_order_id: &str) -> Value {
    let m = &MARKETS[rng.below(MARKETS.len() as u64) as usize];
    let buy = rng.below(2) == 0;
    let qty = fixed(rng.range(m.lots.0, m.lots.1), m.lot_decimals);
    // Offsets in basis points of the mid. Resting buys sit in [-40, +10] and sells in
    // [-10, +40], so the books overlap a little and a share of limit orders trades on arrival;
    // IOC/FOK orders cross by 30 bp.
    let bp = match (op, buy) {
        (Op::Gtc, true) => rng.range(-40, 10),
        (Op::Gtc, false) => rng.range(-10, 40),
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

/// Sum and count of a Prometheus histogram, by the end of its name.
#[derive(Debug, Clone, Copy, Default)]
struct SumCount {
    sum: f64,
    count: f64,
}

/// Server-side counters read from `/metrics` (zero when unavailable).
#[derive(Debug, Clone, Copy, Default)]
struct ServerMetrics {
    batch_size: SumCount,
    match_latency: SumCount,
}

async fn scrape(conn: &mut Conn) -> ServerMetrics {
    let Ok((200, body)) = conn.call(Method::GET, "/metrics", None, None).await else {
        return ServerMetrics::default();
    };
    let text = String::from_utf8_lossy(&body);
    let mut m = ServerMetrics::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let slot = if name.ends_with("match_batch_size_sum") {
            &mut m.batch_size.sum
        } else if name.ends_with("match_batch_size_count") {
            &mut m.batch_size.count
        } else if name.ends_with("match_latency_seconds_sum") {
            &mut m.match_latency.sum
        } else if name.ends_with("match_latency_seconds_count") {
            &mut m.match_latency.count
        } else {
            continue;
        };
        *slot = value;
    }
    m
}

/// One row of the report.
#[derive(Debug, Clone)]
struct Row {
    concurrency: usize,
    requests: u64,
    ok: u64,
    seconds: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    status_4xx: u64,
    status_5xx: u64,
    errors: u64,
    filled: u64,
    places: u64,
    cancels: u64,
    mean_batch: f64,
    mean_tx_ms: f64,
}

impl Row {
    fn ok_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// Runs one concurrency level.
async fn run_level(
    args: &Args,
    target: &Target,
    traders: &[Trader],
    run: &str,
    concurrency: usize,
    seed: u64,
) -> (Row, HashMap<String, u64>, Option<String>) {
    let mut metrics_conn = Conn::new(target.clone(), args.timeout);
    let before = scrape(&mut metrics_conn).await;
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.max_seconds);
    let tokens: Arc<Vec<String>> = Arc::new(traders.iter().map(|t| t.token.clone()).collect());
    let mut handles = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        handles.push(tokio::spawn(worker(
            Conn::new(target.clone(), args.timeout),
            tokens.clone(),
            Rng::new(seed ^ ((concurrency as u64) << 32) ^ w as u64),
            format!("{run}-c{concurrency}-w{w}"),
            issued.clone(),
            args.orders_per_level,
            deadline,
        )));
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.await {
            Ok(s) => stats.merge(s),
            Err(e) => {
                stats.transport_errors += 1;
                stats
                    .first_error
                    .get_or_insert_with(|| format!("worker failed: {e}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = scrape(&mut metrics_conn).await;
    stats.latencies_us.sort_unstable();
    let lat = &stats.latencies_us;
    let batches = after.batch_size.count - before.batch_size.count;
    let txs = after.match_latency.count - before.match_latency.count;
    let row = Row {
        concurrency,
        requests: stats.ok + stats.status_4xx + stats.status_5xx + stats.transport_errors,
        ok: stats.ok,
        seconds,
        p50_ms: percentile_ms(lat, 0.50),
        p90_ms: percentile_ms(lat, 0.90),
        p99_ms: percentile_ms(lat, 0.99),
        max_ms: lat.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
        status_4xx: stats.status_4xx,
        status_5xx: stats.status_5xx,
        errors: stats.transport_errors,
        filled: stats.filled,
        places: stats.places,
        cancels: stats.cancels,
        mean_batch: if batches > 0.0 {
            (after.batch_size.sum - before.batch_size.sum) / batches
        } else {
            0.0
        },
        mean_tx_ms: if txs > 0.0 {
            (after.match_latency.sum - before.match_latency.sum) / txs * 1000.0
        } else {
            0.0
        },
    };
    (row, stats.reject_codes, stats.first_error)
}

const HEADER: &str = "conc  requests      ok    ok/s   p50ms   p90ms   p99ms   maxms   4xx   5xx   err  filled  batch  tx_ms";

fn format_row(r: &Row) -> String {
    format!(
        "{:>4}  {:>8}  {:>6}  {:>6.0}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.1}  {:>4}  {:>4}  {:>4}  {:>6}  {:>5.1}  {:>5.2}",
        r.concurrency,
        r.requests,
        r.ok,
        r.ok_per_second(),
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.max_ms,
        r.status_4xx,
        r.status_5xx,
        r.errors,
        r.filled,
        r.mean_batch,
        r.mean_tx_ms,
    )
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "concurrency,requests,ok,seconds,ok_per_second,p50_ms,p90_ms,p99_ms,max_ms,status_4xx,status_5xx,transport_errors,filled,places,cancels,mean_batch,mean_tx_ms\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{:.3},{:.1},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{:.2},{:.3}",
            r.concurrency,
            r.requests,
            r.ok,
            r.seconds,
            r.ok_per_second(),
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.status_4xx,
            r.status_5xx,
            r.errors,
            r.filled,
            r.places,
            r.cancels,
            r.mean_batch,
            r.mean_tx_ms
        );
    }
    out
}

async fn run(args: Args) -> Result<(), String> {
    let target = resolve(&args.url).await?;
    let run = format!("{:x}", args.seed % 0xFFFF_FFFF);
    eprintln!(
        "loadgen: target {} ({}), run {run}, {} accounts, levels {:?}, {} requests or {}s per level",
        args.url, target.addr, args.accounts, args.levels, args.orders_per_level, args.max_seconds
    );

    let mut conn = Conn::new(target.clone(), args.timeout);
    let admin = login(&mut conn, &args.admin_user, &args.admin_password).await?;
    let setup = Instant::now();
    let mut traders = set_up_traders(&target, args.timeout, &admin, &run, args.accounts).await?;
    eprintln!(
        "loadgen: registered and funded {} traders in {:.1}s",
        traders.len(),
        setup.elapsed().as_secs_f64()
    );
    let mut tokens_at = Instant::now();

    println!("{HEADER}");
    let mut rows = Vec::new();
    for (i, &concurrency) in args.levels.iter().enumerate() {
        if tokens_at.elapsed() > Duration::from_secs(10 * 60) {
            refresh_tokens(&target, args.timeout, &mut traders).await?;
            tokens_at = Instant::now();
        }
        let (row, codes, first_error) = run_level(
            &args,
            &target,
            &traders,
            &run,
            concurrency,
            args.seed.wrapping_add(i as u64),
        )
        .await;
        println!("{}", format_row(&row));
        if !codes.is_empty() {
            let mut codes: Vec<_> = codes.into_iter().collect();
            codes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
            eprintln!("loadgen: c={concurrency} non-2xx: {}", list.join(" "));
        }
        if let Some(e) = first_error {
            eprintln!("loadgen: c={concurrency} first transport error: {e}");
        }
        rows.push(row);
    }
    let totals: (u64, u64) = rows
        .iter()
        .fold((0, 0), |acc, r| (acc.0 + r.places, acc.1 + r.cancels));
    eprintln!(
        "loadgen: {} places, {} cancels; 'ok/s' counts 2xx answers; latencies cover every HTTP answer; \
         batch/tx_ms are the server's mean matcher batch size and transaction time over the level",
        totals.0, totals.1
    );
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&rows)).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tradeplane-loadgen: {e}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tradeplane-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Option<Args>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags() {
        let a = parse(&[
            "--url=http://127.0.0.1:9",
            "--admin-password",
            "secretsecret",
            "--levels",
            "1,8",
            "--orders-per-level",
            "10",
            "--max-seconds",
            "2.5",
            "--accounts",
            "3",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.levels, [1, 8]);
        assert_eq!(a.orders_per_level, 10);
        assert_eq!(a.accounts, 3);
        assert!((a.max_seconds - 2.5).abs() < 1e-9);
        assert!(parse(&["--levels", "0", "--admin-password", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn formats_fixed_point() {
        assert_eq!(fixed(3_000_000, 2), "30000.00");
        assert_eq!(fixed(5, 4), "0.0005");
        assert_eq!(fixed(12, 0), "12");
        assert_eq!(fixed(1234, 3), "1.234");
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refuses_non_loopback() {
        assert!(resolve("http://127.0.0.1:8080").await.is_ok());
        assert!(resolve("http://[::1]:8080/").await.is_ok());
        assert!(resolve("http://192.0.2.1:8080").await.is_err());
        assert!(resolve("https://127.0.0.1:8080").await.is_err());
        assert!(resolve("http://127.0.0.1:8080/api").await.is_err());
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
            Rng::new(1),
            "x".into(),
            Arc::new(AtomicU64::new(0)),
            3,
            Instant::now() + Duration::from_secs(5),
        )
        .await;
        assert_eq!(stats.transport_errors, 3);
        assert_eq!(stats.ok, 0);
    }

    #[test]
    fn order_prices_stay_on_tick_and_near_mid() {
        let mut rng = Rng::new(42);
        for op in [Op::Gtc, Op::Ioc, Op::Fok, Op::Market] {
            for _ in 0..200 {
                let v = order_body(&mut rng, op, "id");
                if let Some(p) = v["price"].as_str() {
                    let (_, cents) = p.split_once('.').unwrap();
                    assert_eq!(cents.len(), 2);
                }
                assert!(v["qty"].as_str().is_some_and(|q| q != "0"));
            }
        }
    }
}
