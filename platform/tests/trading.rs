//! Trading through the API: two accounts trade, balances move, bad input changes nothing.
//! Runs on SQLite always and on PostgreSQL in `pg::`.

#[macro_use]
mod common;

use axum::http::StatusCode;
use serde_json::json;
use tradeplane_platform::state::AppState;

use common::send;

const ADMIN: (&str, &str) = ("root", "root-password-long");

/// Registers a user, funds it with `cash`, and returns (token, account id).
async fn trader(state: &AppState, name: &str, cash: &str, admin: &str) -> (String, i64) {
    let (status, user) = send(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "password": "password-123"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let account = user["account_id"].as_i64().expect("account");
    let (status, body) = send(
        state,
        "POST",
        &format!("/api/v1/admin/accounts/{account}/deposits"),
        Some(admin),
        Some(json!({"amount": cash})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, tokens) = send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": name, "password": "password-123"})),
    )
    .await;
    (
        tokens["access_token"].as_str().expect("token").to_owned(),
        account,
    )
}

async fn admin_token(state: &AppState) -> String {
    tradeplane_platform::server::ensure_admin(state)
        .await
        .expect("admin");
    let (_, tokens) = send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": ADMIN.0, "password": ADMIN.1})),
    )
    .await;
    tokens["access_token"].as_str().expect("token").to_owned()
}

/// Sum of cash (raw units) over all accounts and net position per symbol, straight from SQL.
async fn totals(state: &AppState) -> (i64, Vec<(String, i64)>) {
    use tradeplane_platform::store::Store;
    let cash_sql = "SELECT CAST(COALESCE(SUM(cash), 0) AS BIGINT) FROM accounts";
    let pos_sql =
        "SELECT symbol, CAST(SUM(qty) AS BIGINT) FROM positions GROUP BY symbol ORDER BY symbol";
    match &state.store {
        Store::Postgres(p) => (
            sqlx::query_scalar(cash_sql)
                .fetch_one(p)
                .await
                .expect("cash"),
            sqlx::query_as(pos_sql)
                .fetch_all(p)
                .await
                .expect("positions"),
        ),
        Store::Sqlite(p) => (
            sqlx::query_scalar(cash_sql)
                .fetch_one(p)
                .await
                .expect("cash"),
            sqlx::query_as(pos_sql)
                .fetch_all(p)
                .await
                .expect("positions"),
        ),
    }
}

async fn two_traders_trade(state: AppState) {
    let admin = admin_token(&state).await;
    let (alice, alice_account) = trader(&state, "alice", "100000", &admin).await;
    let (bob, _) = trader(&state, "bob", "100000", &admin).await;

    // Alice has no AAPL yet: selling is refused and nothing changes.
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&alice),
        Some(
            json!({"symbol": "AAPL", "side": "sell", "type": "limit", "price": "150", "qty": "1"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["code"], "insufficientPosition");

    // An asset deposit gives her 10 AAPL at a cost of 100 each.
    let (status, dep) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/accounts/{alice_account}/deposits"),
        Some(&admin),
        Some(json!({"amount": "10", "symbol": "AAPL", "cost": "100"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dep}");
    assert_eq!(dep["position"], "10");
    let before = totals(&state).await;

    // Bob bids 2 @ 150 (rests, reserves 300), idempotently.
    let bid_body = json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "150", "qty": "2", "client_order_id": "bob-1"});
    let (status, bid) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&bob),
        Some(bid_body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bid}");
    assert_eq!(
        (bid["status"].as_str(), bid["remaining"].as_str()),
        (Some("new"), Some("2"))
    );
    let (_, again) = send(&state, "POST", "/api/v1/orders", Some(&bob), Some(bid_body)).await;
    assert_eq!(again["id"], bid["id"], "a retry returns the original order");
    let (_, pf) = send(&state, "GET", "/api/v1/portfolio", Some(&bob), None).await;
    assert_eq!(
        (pf["cash_reserved"].as_str(), pf["cash_available"].as_str()),
        (Some("300"), Some("99700"))
    );
    let (_, book) = send(&state, "GET", "/api/v1/markets/AAPL/book", None, None).await;
    assert_eq!(
        (
            book["bids"][0]["price"].as_str(),
            book["bids"][0]["qty"].as_str()
        ),
        (Some("150"), Some("2"))
    );

    // Alice sells 3 at market: 2 fill against Bob at 150, the rest is cancelled (IOC).
    let (status, sell) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&alice),
        Some(json!({"symbol": "AAPL", "side": "sell", "type": "market", "qty": "3"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sell}");
    assert_eq!(sell["filled"], "2");
    assert_eq!(sell["status"], "cancelled");
    assert_eq!(sell["cancel_reason"], "market_remainder");
    let (_, bid_now) = send(
        &state,
        "GET",
        &format!("/api/v1/orders/{}", bid["id"]),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        (bid_now["status"].as_str(), bid_now["filled"].as_str()),
        (Some("filled"), Some("2"))
    );

    let (_, alice_pf) = send(&state, "GET", "/api/v1/portfolio", Some(&alice), None).await;
    assert_eq!(alice_pf["cash"], "100300", "{alice_pf}");
    assert_eq!(alice_pf["positions"][0]["qty"], "8");
    assert_eq!(
        alice_pf["realized_pnl"], "100",
        "sold 2 at 150 bought at 100"
    );
    assert_eq!(alice_pf["positions"][0]["avg_cost"], "100");
    let (_, bob_pf) = send(&state, "GET", "/api/v1/portfolio", Some(&bob), None).await;
    assert_eq!(
        (bob_pf["cash"].as_str(), bob_pf["cash_reserved"].as_str()),
        (Some("99700"), Some("0"))
    );
    assert_eq!(bob_pf["positions"][0]["qty"], "2");
    assert_eq!(
        bob_pf["positions"][0]["unrealized_pnl"], "0",
        "marked at the last trade, 150"
    );

    let (_, fills) = send(&state, "GET", "/api/v1/fills", Some(&bob), None).await;
    assert_eq!(fills.as_array().map(Vec::len), Some(1));
    assert_eq!(
        (fills[0]["side"].as_str(), fills[0]["liquidity"].as_str()),
        (Some("buy"), Some("maker"))
    );
    let (_, trades) = send(&state, "GET", "/api/v1/markets/AAPL/trades", None, None).await;
    assert_eq!(
        (trades[0]["price"].as_str(), trades[0]["qty"].as_str()),
        (Some("150"), Some("2"))
    );
    let (_, ticker) = send(&state, "GET", "/api/v1/markets/AAPL/ticker", None, None).await;
    assert_eq!(
        (ticker["last"].as_str(), ticker["volume_24h"].as_str()),
        (Some("150"), Some("2"))
    );

    assert_eq!(
        totals(&state).await,
        before,
        "trading conserves cash and net positions"
    );

    // Orders and balances are private; cancels are the owner's only.
    let (_, bobs_orders) = send(&state, "GET", "/api/v1/orders", Some(&bob), None).await;
    assert_eq!(bobs_orders.as_array().map(Vec::len), Some(1));
    let (status, rest) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&bob),
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "140", "qty": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = rest["id"].as_i64().expect("id");
    let (status, _) = send(
        &state,
        "GET",
        &format!("/api/v1/orders/{id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &state,
        "DELETE",
        &format!("/api/v1/orders/{id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, cancelled) = send(
        &state,
        "DELETE",
        &format!("/api/v1/orders/{id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, _) = send(
        &state,
        "DELETE",
        &format!("/api/v1/orders/{id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Halting refuses new orders; resuming accepts them again.
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/admin/markets/AAPL/halt",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&bob),
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "140", "qty": "1"})),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("symbolHalted"))
    );
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/admin/markets/AAPL/halt",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    send(
        &state,
        "POST",
        "/api/v1/admin/markets/AAPL/resume",
        Some(&admin),
        None,
    )
    .await;
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&bob),
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "140", "qty": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let audit = state.store.list_audit(200, None).await.expect("audit");
    for action in [
        "order.placed",
        "order.rejected",
        "order.cancelled",
        "market.halted",
        "account.deposit",
    ] {
        assert!(
            audit.iter().any(|e| e.action == action),
            "audit has {action}"
        );
    }
}

/// Every kind of bad order is a 4xx with a code and changes nothing.
async fn bad_orders_change_nothing(state: AppState) {
    let admin = admin_token(&state).await;
    let (bob, bob_account) = trader(&state, "bob", "1000", &admin).await;
    let before = (
        totals(&state).await,
        state
            .store
            .orders(bob_account, None, None, 500, None)
            .await
            .expect("orders")
            .len(),
    );
    let cases = [
        (
            json!({"symbol": "NOPE", "side": "buy", "type": "limit", "price": "1", "qty": "1"}),
            "unknownSymbol",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1.001", "qty": "1"}),
            "priceNotOnTick",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "0"}),
            "invalidQuantity",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "-3"}),
            "bad_request",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "qty": "1"}),
            "missingPrice",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "100", "qty": "11"}),
            "insufficientCash",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "99999999999"}),
            "bad_request",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": 1, "qty": "1"}),
            "bad_request",
        ),
        (
            json!({"symbol": "AAPL", "side": "up", "type": "limit", "price": "1", "qty": "1"}),
            "bad_request",
        ),
        (
            json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "1", "leverage": 100}),
            "bad_request",
        ),
        (
            json!({"side": "buy", "type": "limit", "price": "1", "qty": "1"}),
            "bad_request",
        ),
    ];
    for (body, code) in cases {
        let (status, err) = send(
            &state,
            "POST",
            "/api/v1/orders",
            Some(&bob),
            Some(body.clone()),
        )
        .await;
        assert!(status.is_client_error(), "{body} -> {status} {err}");
        assert_eq!(err["code"], code, "{body} -> {err}");
    }
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/orders",
        None,
        Some(json!({"symbol": "AAPL"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, err) = send(
        &state,
        "GET",
        "/api/v1/orders?limit=100000",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_page_size"))
    );
    let after = (
        totals(&state).await,
        state
            .store
            .orders(bob_account, None, None, 500, None)
            .await
            .expect("orders")
            .len(),
    );
    assert_eq!(before, after);
    let (_, pf) = send(&state, "GET", "/api/v1/portfolio", Some(&bob), None).await;
    assert_eq!(pf["cash_reserved"], "0");
}

/// A histogram's count at or below `le` and its total count, from `/metrics`.
fn histogram(state: &AppState, name: &str, le: &str) -> (f64, f64) {
    let text = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("metrics");
    let value = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value(&format!("{name}_bucket{{le=\"{le}\"}}")),
        value(&format!("{name}_count")),
    )
}

/// Steady state: a batch's statements do not grow with its orders, trades or accounts.
async fn a_batch_costs_a_bounded_number_of_statements(state: AppState) {
    let admin = admin_token(&state).await;
    let mut traders = Vec::new();
    for i in 0..6 {
        traders.push(trader(&state, &format!("bulk{i}"), "1000000", &admin).await);
    }
    for (_, account) in &traders {
        let (status, body) = send(
            &state,
            "POST",
            &format!("/api/v1/admin/accounts/{account}/deposits"),
            Some(&admin),
            Some(json!({"amount": "1000", "symbol": "AAPL", "cost": "100"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Warm up: the first batch of a process creates the symbols' rows and loads the book.
    let (status, body) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&traders[0].0),
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "90", "qty": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (within_before, count_before) = histogram(&state, "match_batch_statements", "16");
    let (small_before, batches_before) = histogram(&state, "match_batch_size", "8");

    // Many orders at once from several accounts, crossing each other, with and without keys.
    let router = tradeplane_platform::http::router(state.clone());
    let mut tasks = Vec::new();
    for n in 0..240usize {
        let (router, token) = (router.clone(), traders[n % traders.len()].0.clone());
        tasks.push(tokio::spawn(async move {
            let side = if n % 2 == 0 { "buy" } else { "sell" };
            let mut body = json!({"symbol": "AAPL", "side": side, "type": "limit",
                                  "price": (99 + n % 3).to_string(), "qty": (1 + n % 4).to_string()});
            if n % 3 == 0 {
                body["client_order_id"] = json!(format!("bulk-{n}"));
            }
            common::send_to(&router, "POST", "/api/v1/orders", Some(&token), Some(body)).await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.expect("task");
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (within, count) = histogram(&state, "match_batch_statements", "16");
    let (small, batches) = histogram(&state, "match_batch_size", "8");
    assert!(count > count_before, "batches were committed");
    assert_eq!(
        within - within_before,
        count - count_before,
        "every batch took at most 16 statements"
    );
    assert!(
        (batches - batches_before) - (small - small_before) > 0.0,
        "some batches held more than 8 orders, so the bound was tested with large batches"
    );
}

/// The value of the first metrics line that starts with `prefix` (0 when absent).
fn metric(state: &AppState, prefix: &str) -> f64 {
    let text = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("metrics");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// On both backends a steady-state batch is planned from memory and costs three statements
/// (BEGIN, the write with its guard, COMMIT); an account another writer changed (here an admin
/// deposit, written outside the matcher) is noticed by the guard and the batch runs on fresh
/// state.
async fn batches_are_planned_from_memory_but_never_on_stale_state(state: AppState) {
    let admin = admin_token(&state).await;
    let (token, account) = trader(&state, "steady", "1000", &admin).await;
    let order = |price: &str, qty: &str| json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": price, "qty": qty});
    let place = |price: &str, qty: &str| {
        let body = order(price, qty);
        let (state, token) = (&state, &token);
        async move { send(state, "POST", "/api/v1/orders", Some(token), Some(body)).await }
    };
    // Warm up: the first batch loads the symbol's row and the account.
    let (status, body) = place("1", "1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hits = r#"match_optimistic_batches_total{outcome="hit"}"#;
    let replanned = r#"match_optimistic_batches_total{outcome="replanned"}"#;
    let (three_before, count_before) = histogram(&state, "match_batch_statements", "3");
    let hits_before = metric(&state, hits);
    for _ in 0..5 {
        let (status, body) = place("1", "1").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (three, count) = histogram(&state, "match_batch_statements", "3");
    assert_eq!(count - count_before, 5.0, "one batch per order");
    assert_eq!(
        metric(&state, hits) - hits_before,
        5.0,
        "every batch was planned from memory"
    );
    // The first may also have fetched a block of order ids.
    assert!(
        three - three_before >= 4.0,
        "three statements per batch: {} of 5",
        three - three_before
    );
    // 1000 cash, 6 reserved: 994 left, so an order of 1 500 is refused on the cached account.
    let (status, body) = place("1500", "1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "insufficientCash", "{body}");
    let (status, body) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/accounts/{account}/deposits"),
        Some(&admin),
        Some(json!({"amount": "1000"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replanned_before = metric(&state, replanned);
    let (status, body) = place("1500", "1").await;
    assert_eq!(status, StatusCode::CREATED, "the deposit is seen: {body}");
    assert_eq!(
        metric(&state, replanned) - replanned_before,
        1.0,
        "the guard saw the deposit; the account was read again under its lock"
    );
    let (status, body) = send(&state, "GET", "/api/v1/portfolio", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cash_reserved"], json!("1506"), "{body}");
    // The plan made on the stale account was written nowhere: one refusal (the order before the
    // deposit) and seven placements in the audit trail, nothing twice.
    let audit = state.store.list_audit(500, None).await.expect("audit");
    let count = |action: &str| audit.iter().filter(|e| e.action == action).count();
    assert_eq!(count("order.rejected"), 1, "one refusal");
    assert_eq!(count("order.placed"), 7, "seven placed orders");
}

/// The same `client_order_id` with the same order returns it; with another order it is a
/// conflict, as Stripe's idempotency keys.
async fn idempotency_keys_refuse_a_different_order(state: AppState) {
    let admin = admin_token(&state).await;
    let (token, _) = trader(&state, "idem", "100000", &admin).await;
    let order = json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "90",
                       "qty": "2", "client_order_id": "retry-me"});
    let (status, first) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&token),
        Some(order.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&token),
        Some(order.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["id"], first["id"], "the retry returns the original");
    let mut other = order.clone();
    other["qty"] = json!("3");
    let (status, body) = send(&state, "POST", "/api/v1/orders", Some(&token), Some(other)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "idempotency_conflict");
    let (_, orders) = send(&state, "GET", "/api/v1/orders", Some(&token), None).await;
    assert_eq!(
        orders.as_array().expect("list").len(),
        1,
        "one order was placed"
    );
}

/// An order from an account that no longer exists is refused as unauthenticated, never as a
/// database error to retry.
async fn an_order_of_a_deleted_account_is_unauthorized(state: AppState) {
    use tradeplane_platform::store::Store;
    let admin = admin_token(&state).await;
    let (token, account) = trader(&state, "ghost", "100000", &admin).await;
    let sql = "DELETE FROM accounts WHERE id = $1";
    match &state.store {
        Store::Postgres(p) => sqlx::query(sql).bind(account).execute(p).await.map(|_| ()),
        Store::Sqlite(p) => sqlx::query(sql).bind(account).execute(p).await.map(|_| ()),
    }
    .expect("account deleted");
    let (status, body) = send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&token),
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "90", "qty": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unauthorized");
}

/// An asset deposit whose cost does not fit is refused with a coded reason, and changes nothing.
async fn an_overflowing_asset_deposit_is_refused(state: AppState) {
    let admin = admin_token(&state).await;
    let (_, account) = trader(&state, "whale", "1", &admin).await;
    let (status, body) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/accounts/{account}/deposits"),
        Some(&admin),
        Some(json!({"amount": "10000000", "symbol": "AAPL", "cost": "90000000000"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "amountTooLarge", "{body}");
    let (status, body) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/accounts/{account}/deposits"),
        Some(&admin),
        Some(json!({"amount": "5", "symbol": "AAPL", "cost": "100"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a sane deposit still works: {body}");
}

const ADMIN_ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", ADMIN.0),
    ("ADMIN_PASSWORD", ADMIN.1),
    // Every simulated trader comes from the same (absent) address.
    ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
    ("RATE_LIMIT_PER_SECOND", "100000"),
    ("RATE_LIMIT_BURST", "100000"),
];

state_on_both_backends!(
    super::ADMIN_ENV;
    two_traders_trade,
    bad_orders_change_nothing,
    a_batch_costs_a_bounded_number_of_statements,
    batches_are_planned_from_memory_but_never_on_stale_state,
    idempotency_keys_refuse_a_different_order,
    an_order_of_a_deleted_account_is_unauthorized,
    an_overflowing_asset_deposit_is_refused,
);
