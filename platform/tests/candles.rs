//! Candles and the ticker's 24-hour figures from real trades. Runs on SQLite always and on
//! PostgreSQL in `pg::`.

#[macro_use]
mod common;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tradeplane_engine::num::{Price, Qty};
use tradeplane_platform::auth::Role;
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::Store;
use tradeplane_platform::trading::PlaceOrder;

use common::send;

/// A trader with `cash` and 1000 AAPL; returns its account id.
async fn funded(state: &AppState, name: &str) -> i64 {
    let user = tradeplane_platform::accounts::create(
        &state.store,
        &state.passwords,
        name,
        "password-123",
        Role::Trader,
        None,
    )
    .await
    .expect("user");
    let account = user.account_id;
    state
        .store
        .deposit(account, 10_000_000 * 100_000_000, "test", None)
        .await
        .expect("cash");
    state
        .trading
        .credit(
            account,
            "AAPL",
            Qty::from_raw(1000 * 100_000_000),
            Price::from_raw(100 * 100_000_000),
            "test".into(),
            None,
        )
        .await
        .expect("AAPL");
    account
}

fn order(side: &str, price: &str, qty: &str) -> PlaceOrder {
    serde_json::from_value(
        json!({"symbol": "AAPL", "side": side, "type": "limit", "price": price, "qty": qty}),
    )
    .expect("order")
}

/// One trade of `qty` at `price`: a resting sell, then a crossing buy.
async fn trade(state: &AppState, (seller, buyer): (i64, i64), price: &str, qty: &str) {
    state
        .trading
        .place(seller, order("sell", price, qty), None)
        .await
        .expect("sell rests");
    let buy = state
        .trading
        .place(buyer, order("buy", price, qty), None)
        .await
        .expect("buy crosses");
    assert_eq!(buy.status, "filled", "{buy:?}");
}

/// Moves the trade with symbol sequence rank `n` (0 = oldest) to `at`.
async fn set_time(state: &AppState, n: usize, at: &str) {
    let at: DateTime<Utc> = at.parse().expect("time");
    let ids = "SELECT id FROM trades WHERE symbol = 'AAPL' ORDER BY seq";
    let update = "UPDATE trades SET created_at = $1 WHERE id = $2";
    match &state.store {
        Store::Postgres(p) => {
            let ids: Vec<i64> = sqlx::query_scalar(ids).fetch_all(p).await.expect("ids");
            sqlx::query(update)
                .bind(at)
                .bind(ids[n])
                .execute(p)
                .await
                .expect("update");
        }
        Store::Sqlite(p) => {
            let ids: Vec<i64> = sqlx::query_scalar(ids).fetch_all(p).await.expect("ids");
            sqlx::query(update)
                .bind(at)
                .bind(ids[n])
                .execute(p)
                .await
                .expect("update");
        }
    }
}

async fn candles(state: &AppState, query: &str) -> Vec<Value> {
    let (status, body) = send(
        state,
        "GET",
        &format!("/api/v1/markets/AAPL/candles?{query}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    assert_eq!(body["symbol"], "AAPL");
    body["candles"].as_array().expect("candles").clone()
}

/// (start, open, high, low, close, volume, trades) of each candle.
fn ohlcv(candles: &[Value]) -> Vec<(String, String, String, String, String, String, i64)> {
    let s = |c: &Value, k: &str| {
        c[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {c}"))
            .to_owned()
    };
    candles
        .iter()
        .map(|c| {
            (
                s(c, "start"),
                s(c, "open"),
                s(c, "high"),
                s(c, "low"),
                s(c, "close"),
                s(c, "volume"),
                c["trades"].as_i64().expect("trades"),
            )
        })
        .collect()
}

fn c(
    start: &str,
    o: &str,
    h: &str,
    l: &str,
    cl: &str,
    v: &str,
    n: i64,
) -> (String, String, String, String, String, String, i64) {
    (
        start.into(),
        o.into(),
        h.into(),
        l.into(),
        cl.into(),
        v.into(),
        n,
    )
}

async fn candles_aggregate_trades_exactly(state: AppState) {
    let pair = (
        funded(&state, "seller").await,
        funded(&state, "buyer").await,
    );
    for (price, qty) in [
        ("150.5", "1"),
        ("152.25", "2"),
        ("149.75", "4"),
        ("151", "3"),
        ("153", "1"),
    ] {
        trade(&state, pair, price, qty).await;
    }
    for (n, at) in [
        (0, "2024-05-01T12:00:05Z"),
        (1, "2024-05-01T12:00:30.25Z"),
        (2, "2024-05-01T12:00:59.999999Z"),
        (3, "2024-05-01T12:01:00Z"),
        (4, "2024-05-01T12:07:10Z"),
    ] {
        set_time(&state, n, at).await;
    }

    let minute = candles(&state, "interval=1m&limit=10&before=2024-05-01T12:10:00Z").await;
    assert_eq!(
        ohlcv(&minute),
        vec![
            c(
                "2024-05-01T12:00:00Z",
                "150.5",
                "152.25",
                "149.75",
                "149.75",
                "7",
                3
            ),
            c("2024-05-01T12:01:00Z", "151", "151", "151", "151", "3", 1),
            c("2024-05-01T12:07:00Z", "153", "153", "153", "153", "1", 1),
        ],
        "empty minutes have no candle; a trade on the boundary opens the next one"
    );
    let five = candles(&state, "interval=5m&limit=10&before=2024-05-01T12:10:00Z").await;
    assert_eq!(
        ohlcv(&five),
        vec![
            c(
                "2024-05-01T12:00:00Z",
                "150.5",
                "152.25",
                "149.75",
                "151",
                "10",
                4
            ),
            c("2024-05-01T12:05:00Z", "153", "153", "153", "153", "1", 1),
        ]
    );
    // `before` is exclusive on candle starts, and `limit` counts intervals back from it.
    let page = candles(&state, "interval=1m&limit=10&before=2024-05-01T12:01:00Z").await;
    assert_eq!(ohlcv(&page).len(), 1);
    assert!(
        candles(&state, "interval=1m&limit=2&before=2024-05-01T12:10:00Z")
            .await
            .is_empty()
    );
    let hour = candles(
        &state,
        "interval=1h&limit=1&before=2024-05-01T12:00:00.001Z",
    )
    .await;
    assert_eq!(ohlcv(&hour)[0].5, "11", "the hour holds every trade");
    // The default window ends with the current interval: these trades are long past.
    assert!(candles(&state, "interval=1m").await.is_empty());

    for (query, status, code) in [
        ("interval=2m", StatusCode::BAD_REQUEST, "bad_request"),
        (
            "limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_page_size",
        ),
        (
            "limit=501",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_page_size",
        ),
        ("before=yesterday", StatusCode::BAD_REQUEST, "bad_request"),
        ("depth=3", StatusCode::BAD_REQUEST, "bad_request"),
    ] {
        let (got, body) = send(
            &state,
            "GET",
            &format!("/api/v1/markets/AAPL/candles?{query}"),
            None,
            None,
        )
        .await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
    }
    let (got, _) = send(&state, "GET", "/api/v1/markets/NOPE/candles", None, None).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
}

async fn ticker_has_the_24_hour_change(state: AppState) {
    let pair = (
        funded(&state, "seller").await,
        funded(&state, "buyer").await,
    );
    trade(&state, pair, "150", "1").await;
    set_time(&state, 0, "2000-01-01T00:00:00Z").await; // outside the window
    let (_, quiet) = send(&state, "GET", "/api/v1/markets/AAPL/ticker", None, None).await;
    assert_eq!(
        (&quiet["open_24h"], &quiet["change_24h"]),
        (&Value::Null, &Value::Null),
        "{quiet}"
    );
    for (price, qty) in [("155", "1"), ("157.5", "1"), ("152.25", "2")] {
        trade(&state, pair, price, qty).await;
    }
    let (status, t) = send(&state, "GET", "/api/v1/markets/AAPL/ticker", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t["last"], "152.25", "{t}");
    assert_eq!(t["open_24h"], "155");
    assert_eq!(t["high_24h"], "157.5");
    assert_eq!(t["low_24h"], "152.25");
    assert_eq!(t["change_24h"], "-2.75");
    assert_eq!(t["volume_24h"], "4");
}

state_on_both_backends!(
    &[];
    candles_aggregate_trades_exactly,
    ticker_has_the_24_hour_change
);
