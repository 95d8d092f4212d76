//! `--demo` seeds traders and keeps a live market with bots of its own.

#[macro_use]
mod common;

use std::time::Duration;

use serde_json::json;
use tradeplane_engine::order::Side;
use tradeplane_platform::demo::{self, DEMO_PASSWORD, DemoAccounts};
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::Store;

async fn login(state: &AppState, user: &str) -> axum::http::StatusCode {
    common::send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": user, "password": DEMO_PASSWORD})),
    )
    .await
    .0
}

/// Waits until every book has the maker's full ladder on both sides.
async fn quoted(state: &AppState) -> bool {
    for _ in 0..40 {
        let mut full = true;
        for symbol in ["AAPL", "BTC-USD", "ETH-USD"] {
            for side in [Side::Buy, Side::Sell] {
                let levels = state
                    .store
                    .depth_side(symbol, side, 50)
                    .await
                    .expect("depth");
                full &= levels.len() as i64 >= demo::LEVELS;
            }
        }
        if full {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

async fn count(state: &AppState, sql: &str) -> i64 {
    match &state.store {
        Store::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect(sql),
        Store::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect(sql),
    }
}

#[tokio::test]
async fn demo_market_trades_by_itself_with_its_own_bots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let accounts = demo::seed(&state).await.expect("seed");
    assert_eq!(
        demo::seed(&state).await.expect("seeding twice is harmless"),
        accounts
    );
    let DemoAccounts {
        maker,
        taker,
        traders,
    } = accounts.clone();
    assert!(!traders.contains(&maker) && !traders.contains(&taker));
    let before: Vec<_> = {
        let mut v = Vec::new();
        for t in &traders {
            v.push(
                state
                    .store
                    .account(*t)
                    .await
                    .expect("account")
                    .expect("exists")
                    .cash,
            );
        }
        v
    };
    let stop = tokio_util::sync::CancellationToken::new();
    demo::spawn_market_maker(state.clone(), accounts, stop.clone());
    assert!(
        quoted(&state).await,
        "within 10 s every book has the full ladder on both sides"
    );

    // The README's market buy, ten times while the maker requotes: every one fills.
    let (_, tokens) = common::send(
        &state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "demo-alice", "password": DEMO_PASSWORD})),
    )
    .await;
    let alice = tokens["access_token"].as_str().expect("token").to_owned();
    let mut spent = 0;
    for _ in 0..10 {
        let (status, order) = common::send(
            &state,
            "POST",
            "/api/v1/orders",
            Some(&alice),
            Some(json!({"symbol": "AAPL", "side": "buy", "type": "market", "qty": "1"})),
        )
        .await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{order}");
        assert_eq!(order["status"], "filled", "{order}");
        spent += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let trades = state
        .store
        .recent_trades("BTC-USD", 100)
        .await
        .expect("trades")
        .len()
        + state
            .store
            .recent_trades("ETH-USD", 100)
            .await
            .expect("trades")
            .len();
    stop.cancel();
    assert!(trades > 0, "the bots trade with each other");

    // The bots never traded Bob's account; Alice's only changed by her own orders.
    let bob = state
        .store
        .account(traders[1])
        .await
        .expect("q")
        .expect("bob");
    assert_eq!(bob.cash, before[1], "bob's cash is untouched");
    let alice_fills = count(
        &state,
        &format!(
            "SELECT COUNT(*) FROM trades WHERE taker_account_id = {0} OR maker_account_id = {0}",
            traders[0]
        ),
    )
    .await;
    assert!(alice_fills >= spent, "alice's market buys traded");
}

async fn a_start_without_demo_disables_the_demo_password_until_demo_again(state: AppState) {
    demo::seed(&state).await.expect("seed");
    assert_eq!(
        login(&state, "demo-alice").await,
        axum::http::StatusCode::OK
    );
    let (_, tokens) = common::send(
        &state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "demo-bob", "password": DEMO_PASSWORD})),
    )
    .await;
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    demo::retire(&state).await.expect("retire");
    demo::retire(&state)
        .await
        .expect("retiring twice is harmless");
    for user in demo::TRADERS {
        assert_eq!(
            login(&state, user).await,
            axum::http::StatusCode::UNAUTHORIZED,
            "{user}"
        );
    }
    let (status, _) = common::send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(
        status,
        axum::http::StatusCode::UNAUTHORIZED,
        "refresh tokens are revoked"
    );
    let audited = count(
        &state,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'demo.login_disabled'",
    )
    .await;
    assert_eq!(audited, 2);

    demo::seed(&state).await.expect("seed again");
    assert_eq!(
        login(&state, "demo-alice").await,
        axum::http::StatusCode::OK
    );
}

async fn bot_history_is_pruned_and_people_keep_theirs(state: AppState) {
    let accounts = demo::seed(&state).await.expect("seed");
    let stop = tokio_util::sync::CancellationToken::new();
    demo::spawn_market_maker(state.clone(), accounts.clone(), stop.clone());
    assert!(quoted(&state).await);
    let (_, tokens) = common::send(
        &state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "demo-bob", "password": DEMO_PASSWORD})),
    )
    .await;
    let bob = tokens["access_token"].as_str().expect("token").to_owned();
    let (status, order) = common::send(
        &state,
        "POST",
        "/api/v1/orders",
        Some(&bob),
        Some(json!({"symbol": "AAPL", "side": "sell", "type": "market", "qty": "1"})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), order["status"].as_str()),
        (201, Some("filled")),
        "{order}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let bots = format!("({}, {})", accounts.maker, accounts.taker);
    let bot_trades = format!(
        "SELECT COUNT(*) FROM trades WHERE taker_account_id IN {bots} AND maker_account_id IN {bots}"
    );
    let bot_audit = format!(
        "SELECT COUNT(*) FROM audit_events WHERE actor IN ('account:{}', 'account:{}')",
        accounts.maker, accounts.taker
    );
    let finished_bot_orders = format!(
        "SELECT COUNT(*) FROM orders WHERE account_id IN {bots} AND status IN ('filled', 'cancelled')"
    );
    assert!(count(&state, &bot_trades).await > 0);
    assert!(count(&state, &bot_audit).await > 0);
    assert!(count(&state, &finished_bot_orders).await > 0);
    let people_audit = "SELECT COUNT(*) FROM audit_events WHERE actor NOT LIKE 'account:%' OR actor IN (SELECT 'account:' || a.id FROM accounts a JOIN users u ON u.id = a.user_id WHERE u.username = 'demo-bob')";
    let people_before = count(&state, people_audit).await;

    // Prune as if everything were old enough.
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let pruned = state
        .store
        .prune_demo_bots(future, future)
        .await
        .expect("prune");
    assert!(
        pruned.trades > 0 && pruned.orders > 0 && pruned.audit > 0,
        "{pruned:?}"
    );
    assert_eq!(count(&state, &bot_trades).await, 0);
    assert_eq!(count(&state, &bot_audit).await, 0);
    // Bob's trade with the maker, and the maker's order it refers to, stay.
    let bob_trades = "SELECT COUNT(*) FROM trades t JOIN orders o ON o.id = t.maker_order_id \
        WHERE t.taker_account_id IN (SELECT a.id FROM accounts a JOIN users u ON u.id = a.user_id WHERE u.username = 'demo-bob')";
    assert!(count(&state, bob_trades).await >= 1);
    assert_eq!(
        count(&state, people_audit).await,
        people_before,
        "people's audit is untouched"
    );

    // Everyone else's audit trail is still append-only.
    let deleted = match &state.store {
        Store::Sqlite(p) => {
            sqlx::query("DELETE FROM audit_events WHERE actor NOT LIKE 'account:%'")
                .execute(p)
                .await
                .map(|_| ())
        }
        Store::Postgres(p) => {
            sqlx::query("DELETE FROM audit_events WHERE actor NOT LIKE 'account:%'")
                .execute(p)
                .await
                .map(|_| ())
        }
    };
    assert!(
        deleted.is_err(),
        "deleting a person's audit record is refused"
    );
}

state_on_both_backends!(
    &[];
    a_start_without_demo_disables_the_demo_password_until_demo_again,
    bot_history_is_pruned_and_people_keep_theirs,
);
