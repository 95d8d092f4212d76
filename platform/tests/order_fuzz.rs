//! Property test of `POST /api/v1/orders`: random bodies from a funded account, through the
//! whole router. Whatever the body, the answer is never a 5xx, every 4xx carries the error
//! envelope, and a rejected order leaves the database exactly as it was.
//!
//! 64 cases by default; `PROPTEST_CASES=N` runs more.

mod common;

use std::fmt;

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tower::ServiceExt;
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::Store;

const ADMIN: (&str, &str) = ("root", "root-password-long");
/// The admin, and rate limits high enough that every case reaches the order handler.
const ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", ADMIN.0),
    ("ADMIN_PASSWORD", ADMIN.1),
    ("RATE_LIMIT_PER_SECOND", "1000000"),
    ("RATE_LIMIT_BURST", "1000000"),
];

/// A request body: JSON, or raw text that may not be JSON at all.
#[derive(Clone)]
enum Body {
    Json(Value),
    Raw(String),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Json(v) => write!(f, "{v}"),
            Body::Raw(s) => write!(f, "raw {s:?}"),
        }
    }
}

async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(HttpBody::from(b)),
        None => req.body(HttpBody::empty()),
    }
    .expect("request");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

async fn call_json(
    state: &AppState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let (status, bytes) = call(state, method, path, token, Some(body.to_string())).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

async fn login(state: &AppState, username: &str, password: &str) -> String {
    let (status, tokens) = call_json(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"username": username, "password": password}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens["access_token"].as_str().expect("token").to_owned()
}

/// A trader with cash and units of every default instrument, so that buys and sells can pass,
/// facing a second account's resting quotes.
async fn funded_trader(state: &AppState) -> String {
    tradeplane_platform::server::ensure_admin(state)
        .await
        .expect("admin");
    let admin = login(state, ADMIN.0, ADMIN.1).await;
    let (status, user) = call_json(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        json!({"username": "fuzzer", "password": "password-123"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let account = user["account_id"].as_i64().expect("account");
    for deposit in [
        json!({"amount": "1000000"}),
        json!({"amount": "1000", "symbol": "AAPL", "cost": "150"}),
        json!({"amount": "10", "symbol": "BTC-USD", "cost": "30000"}),
        json!({"amount": "100", "symbol": "ETH-USD", "cost": "2000"}),
    ] {
        let (status, body) = call_json(
            state,
            "POST",
            &format!("/api/v1/admin/accounts/{account}/deposits"),
            Some(&admin),
            deposit,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let fuzzer = login(state, "fuzzer", "password-123").await;

    // Another account quotes both sides of every symbol, so market and crossing orders trade.
    let (status, user) = call_json(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        json!({"username": "maker", "password": "password-123"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let maker_account = user["account_id"].as_i64().expect("account");
    for deposit in [
        json!({"amount": "10000000"}),
        json!({"amount": "10000", "symbol": "AAPL", "cost": "150"}),
        json!({"amount": "100", "symbol": "BTC-USD", "cost": "300"}),
        json!({"amount": "1000", "symbol": "ETH-USD", "cost": "200"}),
    ] {
        let (status, body) = call_json(
            state,
            "POST",
            &format!("/api/v1/admin/accounts/{maker_account}/deposits"),
            Some(&admin),
            deposit,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let maker = login(state, "maker", "password-123").await;
    for (symbol, qty) in [("AAPL", "500"), ("BTC-USD", "5"), ("ETH-USD", "50")] {
        for (side, price) in [
            ("buy", "100"),
            ("buy", "95.5"),
            ("sell", "110"),
            ("sell", "120.25"),
        ] {
            let (status, body) = call_json(
                state,
                "POST",
                "/api/v1/orders",
                Some(&maker),
                json!({"symbol": symbol, "side": side, "type": "limit", "price": price, "qty": qty}),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    fuzzer
}

/// Everything a rejected order must leave untouched, read with SQL.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// (account id, cash, cash reserved, open orders) per account.
    accounts: Vec<(i64, i64, i64, i64)>,
    /// (account id, symbol, qty, reserved, cost basis, realized P&L) per position.
    positions: Vec<(i64, String, i64, i64, i64, i64)>,
    /// (id, status, filled, remaining) per order.
    orders: Vec<(i64, String, i64, i64)>,
    /// Number of trades.
    trades: i64,
    /// (symbol, seq, md_seq) per symbol row.
    symbols: Vec<(String, i64, i64)>,
}

async fn snapshot(state: &AppState) -> Snapshot {
    let Store::Sqlite(pool) = &state.store else {
        panic!("the order fuzz test runs on SQLite");
    };
    Snapshot {
        accounts: sqlx::query_as(
            "SELECT id, cash, cash_reserved, CAST(open_orders AS BIGINT) FROM accounts ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .expect("accounts"),
        positions: sqlx::query_as(
            "SELECT account_id, symbol, qty, reserved, cost_basis, realized_pnl FROM positions \
             ORDER BY account_id, symbol",
        )
        .fetch_all(pool)
        .await
        .expect("positions"),
        orders: sqlx::query_as("SELECT id, status, filled, remaining FROM orders ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("orders"),
        trades: sqlx::query_scalar("SELECT COUNT(*) FROM trades")
            .fetch_one(pool)
            .await
            .expect("trades"),
        symbols: sqlx::query_as("SELECT symbol, seq, md_seq FROM symbols ORDER BY symbol")
            .fetch_all(pool)
            .await
            .expect("symbols"),
    }
}

// ---- strategies ----

/// Decimal-looking strings: valid, negative, huge, too many decimals, exponents, junk.
fn decimal_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u64..5000, 0u32..100).prop_map(|(i, c)| format!("{i}.{c:02}")),
        3 => (0u64..100).prop_map(|i| i.to_string()),
        2 => "-?[0-9]{0,30}(\\.[0-9]{0,25})?",
        1 => "[0-9]{19,60}",
        1 => "0\\.[0-9]{9,20}",
        1 => Just("-0".to_owned()),
        1 => Just("0.00000001".to_owned()),
        1 => Just("9223372036854775807".to_owned()),
        1 => Just("92233720368.54775807".to_owned()),
        1 => Just("170141183460469231731687303715884105727".to_owned()),
        1 => "[0-9]{1,5}[eE][+-]?[0-9]{1,3}",
        1 => " ?[0-9]{1,4} ?",
        1 => prop::sample::select(vec!["NaN", "inf", "-inf", "0x10", "1_000", "1,5", "", ".", "-", "+1", "1.", ".5", "١٢"]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        decimal_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}|.{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A plausible value for `field` most of the time, anything some of the time.
fn field_value(good: Vec<&'static str>, decimal: bool) -> impl Strategy<Value = Value> {
    let good: Vec<String> = good.into_iter().map(str::to_owned).collect();
    let base = if decimal {
        decimal_string().boxed()
    } else {
        prop::sample::select(good).boxed()
    };
    prop_oneof![
        6 => base.prop_map(Value::String),
        1 => "[A-Za-z-]{0,10}".prop_map(Value::String),
        1 => any_json(),
    ]
}

/// Order-shaped objects: each field present or missing, plausible or random, plus extras.
fn order_like() -> impl Strategy<Value = Value> {
    let fields = (
        prop::option::weighted(
            0.95,
            field_value(
                vec!["AAPL", "BTC-USD", "ETH-USD", "aapl", "NOPE", ""],
                false,
            ),
        ),
        prop::option::weighted(0.95, field_value(vec!["buy", "sell", "BUY", "hold"], false)),
        prop::option::weighted(
            0.95,
            field_value(vec!["limit", "market", "stop", "LIMIT"], false),
        ),
        prop::option::weighted(0.7, field_value(vec![], true)),
        prop::option::weighted(0.95, field_value(vec![], true)),
        prop::option::weighted(
            0.3,
            field_value(vec!["GTC", "IOC", "FOK", "gtc", "DAY"], false),
        ),
        prop::option::weighted(
            0.3,
            prop_oneof![
                "[ -~]{0,70}".prop_map(Value::String),
                any::<String>().prop_map(Value::String),
                any_json(),
            ],
        ),
        prop::option::weighted(0.1, ("[a-z_]{1,12}", any_json())),
    );
    fields.prop_map(|(symbol, side, kind, price, qty, tif, coid, extra)| {
        let mut m = Map::new();
        let named = [
            ("symbol", symbol),
            ("side", side),
            ("type", kind),
            ("price", price),
            ("qty", qty),
            ("tif", tif),
            ("client_order_id", coid),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        }
        if let Some((k, v)) = extra {
            m.insert(k, v);
        }
        Value::Object(m)
    })
}

/// Orders that pass parsing: right fields and types, amounts on the instrument's grid. Many
/// are accepted (and may trade against the maker's quotes); others break a rule (cash,
/// position, notional, band, market-order time in force) and must change nothing.
fn valid_order() -> impl Strategy<Value = Value> {
    // (symbol, lot size in units of 10^-4)
    let symbol = prop::sample::select(vec![("AAPL", 10_000u64), ("BTC-USD", 1), ("ETH-USD", 10)]);
    (
        symbol,
        prop::sample::select(vec!["buy", "sell"]),
        any::<bool>(),
        prop_oneof![3 => 9_000u64..=13_000, 1 => 1u64..=60_000],
        1u64..=3_000,
        prop::option::of(prop::sample::select(vec!["GTC", "IOC", "FOK"])),
        prop::option::of("[!-~]{1,64}"),
    )
        .prop_map(|((symbol, lot), side, limit, cents, lots, tif, coid)| {
            let units = lots * lot;
            let mut order = json!({
                "symbol": symbol,
                "side": side,
                "type": if limit { "limit" } else { "market" },
                "qty": format!("{}.{:04}", units / 10_000, units % 10_000),
            });
            if limit {
                order["price"] = json!(format!("{}.{:02}", cents / 100, cents % 100));
            }
            if let Some(tif) = tif {
                order["tif"] = json!(tif);
            }
            if let Some(coid) = coid {
                order["client_order_id"] = json!(coid);
            }
            order
        })
}

fn any_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => valid_order().prop_map(Body::Json),
        6 => order_like().prop_map(Body::Json),
        2 => any_json().prop_map(Body::Json),
        1 => order_like().prop_map(|v| {
            // Truncated JSON.
            let s = v.to_string();
            Body::Raw(s.chars().take(s.chars().count() / 2).collect())
        }),
        1 => any::<String>().prop_map(Body::Raw),
    ]
}

// ---- the property ----

/// What one case saw, for the summary printed at the end.
#[derive(Default, Debug)]
struct Tally {
    accepted: u32,
    rejected_4xx: u32,
    /// Rejections by error code.
    codes: std::collections::BTreeMap<String, u32>,
}

/// Checks one body; `Ok(None)` when accepted, `Ok(Some(code))` when rejected.
async fn check(
    state: &AppState,
    token: &str,
    body: &Body,
) -> Result<Option<String>, TestCaseError> {
    let before = snapshot(state).await;
    let text = match body {
        Body::Json(v) => v.to_string(),
        Body::Raw(s) => s.clone(),
    };
    let (status, bytes) = call(state, "POST", "/api/v1/orders", Some(token), Some(text)).await;
    let shown = String::from_utf8_lossy(&bytes);
    prop_assert!(!status.is_server_error(), "{body:?} -> {status} {shown}");
    if status.is_success() {
        prop_assert_eq!(status, StatusCode::CREATED, "{:?} -> {}", body, shown);
        let order: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("201 without a JSON order: {e}: {shown}")))?;
        prop_assert!(order["id"].is_i64(), "{body:?} -> {shown}");
        return Ok(None);
    }
    prop_assert!(status.is_client_error(), "{body:?} -> {status} {shown}");
    prop_assert_ne!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "rate limited although the test raised the limits: {}",
        shown
    );
    let err: Value = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{status} without a JSON body: {e}: {shown}")))?;
    for key in ["code", "message"] {
        prop_assert!(
            err[key].as_str().is_some_and(|s| !s.is_empty()),
            "{body:?} -> {status}: empty or missing {key}: {shown}"
        );
    }
    let after = snapshot(state).await;
    prop_assert_eq!(&before, &after, "{:?} -> {} changed the state", body, shown);
    Ok(err["code"].as_str().map(str::to_owned))
}

#[test]
fn random_order_bodies_never_5xx_and_rejections_change_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, token) = rt.block_on(async {
        let state = common::started_state(&dir, ENV).await;
        let token = funded_trader(&state).await;
        (state, token)
    });

    // Config::default() reads PROPTEST_CASES; without it, keep `cargo test` quick.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config.failure_persistence = None;
    config.max_shrink_iters = 256;
    let mut runner = TestRunner::new(config);
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&any_body(), |body| {
        let outcome = rt.block_on(check(&state, &token, &body))?;
        let mut t = tally.borrow_mut();
        match outcome {
            None => t.accepted += 1,
            Some(code) => {
                t.rejected_4xx += 1;
                *t.codes.entry(code).or_default() += 1;
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner();
    eprintln!("order fuzz: {tally:?}");
    assert!(
        tally.rejected_4xx > 0,
        "the generator produced no rejection at all: {tally:?}"
    );
}
