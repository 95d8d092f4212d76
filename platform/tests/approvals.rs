//! Four-eyes approval of large orders (issue 16), through the HTTP API on both backends: an
//! order above `APPROVAL_NOTIONAL_DEFAULT` waits as `pending_approval` with its cash or
//! position reserved; another admin approves it (it is matched, balances exact) or rejects it
//! (reservation released); the trader may cancel it; it expires; self-approval is refused.

#[macro_use]
mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeplane_platform::auth::Role;
use tradeplane_platform::state::AppState;

use common::send;

const ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", "root"),
    ("ADMIN_PASSWORD", "root-password-long"),
    ("APPROVAL_NOTIONAL_DEFAULT", "10000"),
    ("APPROVAL_SWEEP_INTERVAL_SECONDS", "3600"),
];

state_on_both_backends!(super::ENV;
    a_large_order_waits_and_another_admin_approves_it_into_the_book,
    a_rejection_releases_the_reservation_with_the_reason,
    the_trader_cancels_while_pending,
    self_approval_and_non_admins_are_refused,
    an_approval_that_fails_risk_rejects_the_order,
    a_restart_restores_the_hold,
);

/// `APPROVAL_TIMEOUT_SECONDS=1` with a sweep every second: holds expire on their own.
mod expiry {
    const ENV: &[(&str, &str)] = &[
        ("ADMIN_USERNAME", "root"),
        ("ADMIN_PASSWORD", "root-password-long"),
        ("APPROVAL_NOTIONAL_DEFAULT", "10000"),
        ("APPROVAL_TIMEOUT_SECONDS", "1"),
        ("APPROVAL_SWEEP_INTERVAL_SECONDS", "1"),
    ];
    pub(super) use super::an_unanswered_order_expires_and_is_released;
    use super::common;
    state_on_both_backends!(super::ENV; an_unanswered_order_expires_and_is_released);
}

/// The root admin's token, and a second admin's (created through the store, as `ensure_admin`
/// creates the first).
async fn admins(state: &AppState) -> (String, String) {
    tradeplane_platform::server::ensure_admin(state)
        .await
        .expect("admin");
    tradeplane_platform::accounts::create(
        &state.store,
        &state.passwords,
        "checker",
        "checker-password-long",
        Role::Admin,
        None,
    )
    .await
    .expect("second admin");
    (
        common::access_token(state, "root", "root-password-long").await,
        common::access_token(state, "checker", "checker-password-long").await,
    )
}

/// A registered trader with `cash` and `units` AAPL (at cost 100): (token, account id).
async fn trader(
    state: &AppState,
    admin: &str,
    name: &str,
    cash: &str,
    units: &str,
) -> (String, i64) {
    let token = common::register_and_login(state, name).await;
    let (_, me) = send(state, "GET", "/api/v1/me", Some(&token), None).await;
    let account = me["account_id"].as_i64().expect("account id");
    let path = format!("/api/v1/admin/accounts/{account}/deposits");
    for body in [
        json!({"amount": cash}),
        json!({"amount": units, "symbol": "AAPL", "cost": "100"}),
    ] {
        if body["amount"] == "0" {
            continue;
        }
        let (status, r) = send(state, "POST", &path, Some(admin), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{r}");
    }
    (token, account)
}

async fn order(
    state: &AppState,
    token: &str,
    side: &str,
    price: &str,
    qty: &str,
) -> (StatusCode, Value) {
    send(
        state,
        "POST",
        "/api/v1/orders",
        Some(token),
        Some(json!({"symbol": "AAPL", "side": side, "type": "limit", "price": price, "qty": qty})),
    )
    .await
}

async fn portfolio(state: &AppState, token: &str) -> Value {
    send(state, "GET", "/api/v1/portfolio", Some(token), None)
        .await
        .1
}

fn aapl(pf: &Value) -> &Value {
    pf["positions"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["symbol"] == "AAPL"))
        .expect("AAPL position")
}

async fn pending(state: &AppState, admin: &str) -> Vec<Value> {
    let (status, list) = send(
        state,
        "GET",
        "/api/v1/admin/orders/pending",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().expect("array").clone()
}

async fn audit_actions(state: &AppState) -> Vec<(String, Value)> {
    let audit = state.store.list_audit(500, None).await.expect("audit");
    audit
        .into_iter()
        .map(|e| {
            (
                e.action.clone(),
                serde_json::to_value(&e).expect("json")["details"].clone(),
            )
        })
        .collect()
}

/// The sum of a metric's samples with these labels (a histogram: pass `name_count`).
fn metric(state: &AppState, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus::Encoder;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&state.metrics.registry().gather(), &mut text)
        .expect("encode");
    String::from_utf8(text)
        .expect("utf-8")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let base = series.split('{').next().unwrap_or_default();
            base == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

async fn a_large_order_waits_and_another_admin_approves_it_into_the_book(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (seller, _) = trader(&state, &root, "seller", "0", "1000").await;
    let (buyer, buyer_account) = trader(&state, &root, "buyer", "100000", "1").await;

    // Below the threshold: not held (it rests below the ask).
    let (status, small) = order(&state, &buyer, "buy", "98", "1").await;
    assert_eq!(
        (status, small["status"].as_str()),
        (StatusCode::CREATED, Some("new"))
    );
    // Exactly at the threshold (10,000 × 1) is not above it: not held.
    let (_, at) = order(&state, &seller, "sell", "10000", "1").await;
    assert_eq!(at["status"], "new", "{at}");
    let path = format!("/api/v1/orders/{}", at["id"]);
    let (status, _) = send(&state, "DELETE", &path, Some(&seller), None).await;
    assert_eq!(status, StatusCode::OK);
    // A resting ask the large order will trade with (9,900: no approval).
    let (_, ask) = order(&state, &seller, "sell", "99", "100").await;
    assert_eq!(ask["status"], "new", "{ask}");

    // 101 × 100 = 10,100 > 10,000: held.
    let (status, big) = order(&state, &buyer, "buy", "101", "100").await;
    assert_eq!(status, StatusCode::CREATED, "{big}");
    assert_eq!(big["status"], "pending_approval", "{big}");
    assert_eq!(big["filled"], "0");
    let id = big["id"].as_i64().expect("id");
    let pf = portfolio(&state, &buyer).await;
    assert_eq!(
        pf["cash_reserved"], "10198",
        "98 for the small bid + 10,100 held: {pf}"
    );
    let (_, book) = send(&state, "GET", "/api/v1/markets/AAPL/book", None, None).await;
    assert_eq!(
        book["bids"][0]["price"], "98",
        "the held bid is not in the book: {book}"
    );
    let (_, shown) = send(
        &state,
        "GET",
        &format!("/api/v1/orders/{id}"),
        Some(&buyer),
        None,
    )
    .await;
    assert_eq!(shown["status"], "pending_approval");
    let (_, listed) = send(
        &state,
        "GET",
        "/api/v1/orders?status=pending_approval",
        Some(&buyer),
        None,
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let list = pending(&state, &root).await;
    let path = "/api/v1/admin/orders/pending?symbol=BTC-USD";
    let (status, other) = send(&state, "GET", path, Some(&root), None).await;
    assert_eq!(
        (status, other.as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let path = "/api/v1/admin/orders/pending?symbol=bad%20symbol";
    let (status, err) = send(&state, "GET", path, Some(&root), None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_symbol"))
    );
    let (_, instruments) = send(&state, "GET", "/api/v1/instruments", None, None).await;
    let aapl_rules = instruments
        .as_array()
        .and_then(|l| l.iter().find(|i| i["symbol"] == "AAPL"))
        .expect("AAPL");
    assert_eq!(aapl_rules["approvalNotional"], "10000", "{aapl_rules}");
    assert_eq!(list.len(), 1, "{list:?}");
    let p = &list[0];
    assert_eq!(
        (
            p["id"].as_i64(),
            p["trader"].as_str(),
            p["symbol"].as_str(),
            p["side"].as_str()
        ),
        (Some(id), Some("buyer"), Some("AAPL"), Some("buy"))
    );
    assert_eq!(
        (
            p["qty"].as_str(),
            p["price"].as_str(),
            p["notional"].as_str()
        ),
        (Some("100"), Some("101"), Some("10100"))
    );
    assert_eq!(p["account_id"].as_i64(), Some(buyer_account));
    assert!(p["expires_at"].as_str() > p["requested_at"].as_str(), "{p}");
    assert_eq!(metric(&state, "orders_pending", &[("symbol", "AAPL")]), 1.0);
    assert_eq!(
        metric(&state, "orders_pending_total", &[("symbol", "AAPL")]),
        1.0
    );

    // Another admin approves: matched against the ask at its price.
    let (status, approved) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(
        (approved["status"].as_str(), approved["filled"].as_str()),
        (Some("filled"), Some("100"))
    );
    let pf = portfolio(&state, &buyer).await;
    assert_eq!(
        (pf["cash"].as_str(), pf["cash_reserved"].as_str()),
        (Some("90100"), Some("98")),
        "paid 100 × 99; only the small bid stays reserved: {pf}"
    );
    assert_eq!(aapl(&pf)["qty"], "101");
    let spf = portfolio(&state, &seller).await;
    assert_eq!(
        (
            spf["cash"].as_str(),
            aapl(&spf)["qty"].as_str(),
            aapl(&spf)["reserved"].as_str()
        ),
        (Some("9900"), Some("900"), Some("0"))
    );
    let (_, fills) = send(&state, "GET", "/api/v1/fills", Some(&buyer), None).await;
    assert_eq!(fills[0]["order_id"].as_i64(), Some(id), "{fills}");
    assert!(pending(&state, &root).await.is_empty());

    // Decided once only.
    let (status, again) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_pending"))
    );
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/admin/orders/999999/approve",
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let audit = audit_actions(&state).await;
    let approved = audit
        .iter()
        .find(|(a, _)| a == "order.approved")
        .expect("order.approved audited");
    assert_eq!(approved.1["order_id"].as_i64(), Some(id));
    assert_eq!(approved.1["notional"], "10100");
    assert_eq!(approved.1["symbol"], "AAPL");
    assert!(approved.1["admin"].is_i64());
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "order.approval_requested" && d["order_id"].as_i64() == Some(id))
    );
    assert_eq!(
        metric(&state, "orders_approved_total", &[("symbol", "AAPL")]),
        1.0
    );
    assert_eq!(metric(&state, "orders_pending", &[("symbol", "AAPL")]), 0.0);
    assert_eq!(
        metric(
            &state,
            "order_processing_time_seconds_count",
            &[("outcome", "approved")]
        ),
        1.0
    );
}

async fn a_rejection_releases_the_reservation_with_the_reason(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (seller, _) = trader(&state, &root, "seller", "1000", "1000").await;
    let before = portfolio(&state, &seller).await;
    let (_, big) = order(&state, &seller, "sell", "150", "100").await;
    assert_eq!(big["status"], "pending_approval", "{big}");
    let id = big["id"].as_i64().expect("id");
    assert_eq!(aapl(&portfolio(&state, &seller).await)["reserved"], "100");

    for bad in [
        json!({"reason": ""}),
        json!({"reason": "x".repeat(257)}),
        json!({"reason": "a\u{0}b"}),
    ] {
        let (status, err) = send(
            &state,
            "POST",
            &format!("/api/v1/admin/orders/{id}/reject"),
            Some(&checker),
            Some(bad),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_text")),
            "{err}"
        );
    }
    // Rejecting needs no second person (it takes risk away), but it is still audited.
    let (status, rejected) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/reject"),
        Some(&root),
        Some(json!({"reason": "too large for today"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(
        (
            rejected["status"].as_str(),
            rejected["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("approval_rejected"))
    );
    assert_eq!(
        portfolio(&state, &seller).await,
        before,
        "the reservation is released"
    );
    let (_, book) = send(&state, "GET", "/api/v1/markets/AAPL/book", None, None).await;
    assert_eq!(book["asks"].as_array().map(Vec::len), Some(0));
    let audit = audit_actions(&state).await;
    let (_, d) = audit
        .iter()
        .find(|(a, _)| a == "order.approval_rejected")
        .expect("audited");
    assert_eq!(
        (
            d["order_id"].as_i64(),
            d["reason"].as_str(),
            d["notional"].as_str()
        ),
        (Some(id), Some("too large for today"), Some("15000"))
    );
    assert_eq!(
        metric(
            &state,
            "orders_rejected_total",
            &[("symbol", "AAPL"), ("reason", "rejected")]
        ),
        1.0
    );
    let (status, err) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_pending"))
    );
}

async fn the_trader_cancels_while_pending(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (buyer, _) = trader(&state, &root, "buyer", "50000", "0").await;
    let (_, big) = order(&state, &buyer, "buy", "200", "100").await;
    assert_eq!(big["status"], "pending_approval", "{big}");
    let id = big["id"].as_i64().expect("id");
    assert_eq!(portfolio(&state, &buyer).await["cash_reserved"], "20000");
    let (status, cancelled) = send(
        &state,
        "DELETE",
        &format!("/api/v1/orders/{id}"),
        Some(&buyer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("requested"))
    );
    let pf = portfolio(&state, &buyer).await;
    assert_eq!(
        (pf["cash"].as_str(), pf["cash_reserved"].as_str()),
        (Some("50000"), Some("0"))
    );
    assert!(pending(&state, &root).await.is_empty());
    let (status, err) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_pending"))
    );
    assert!(
        audit_actions(&state)
            .await
            .iter()
            .any(|(a, d)| a == "order.approval_cancelled" && d["order_id"].as_i64() == Some(id))
    );
    assert_eq!(
        metric(
            &state,
            "orders_rejected_total",
            &[("symbol", "AAPL"), ("reason", "cancelled")]
        ),
        1.0
    );
}

async fn self_approval_and_non_admins_are_refused(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (trader_token, _) = trader(&state, &root, "buyer", "50000", "0").await;
    // The root admin funds its own account and places a large order.
    let (_, me) = send(&state, "GET", "/api/v1/me", Some(&root), None).await;
    let root_account = me["account_id"].as_i64().expect("account");
    let (status, _) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/accounts/{root_account}/deposits"),
        Some(&root),
        Some(json!({"amount": "50000"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, own) = order(&state, &root, "buy", "200", "100").await;
    assert_eq!(own["status"], "pending_approval", "{own}");
    let id = own["id"].as_i64().expect("id");
    let (status, err) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("self_approval_forbidden")),
        "{err}"
    );
    assert_eq!(pending(&state, &checker).await.len(), 1, "still pending");
    // A trader may neither list nor decide.
    for (method, path, body) in [
        ("GET", "/api/v1/admin/orders/pending".to_owned(), None),
        ("POST", format!("/api/v1/admin/orders/{id}/approve"), None),
        (
            "POST",
            format!("/api/v1/admin/orders/{id}/reject"),
            Some(json!({"reason": "no"})),
        ),
    ] {
        let (status, err) = send(&state, method, &path, Some(&trader_token), body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{path}: {err}"
        );
    }
    // The other admin may.
    let (status, approved) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, approved["status"].as_str()),
        (StatusCode::OK, Some("new")),
        "{approved}"
    );
    let (_, book) = send(&state, "GET", "/api/v1/markets/AAPL/book", None, None).await;
    assert_eq!(
        (
            book["bids"][0]["price"].as_str(),
            book["bids"][0]["qty"].as_str()
        ),
        (Some("200"), Some("100"))
    );
}

async fn an_approval_that_fails_risk_rejects_the_order(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (buyer, _) = trader(&state, &root, "buyer", "50000", "0").await;
    let (_, big) = order(&state, &buyer, "buy", "200", "100").await;
    let id = big["id"].as_i64().expect("id");
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/admin/markets/AAPL/halt",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("symbolHalted")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("reservation released")),
        "{err}"
    );
    let (_, shown) = send(
        &state,
        "GET",
        &format!("/api/v1/orders/{id}"),
        Some(&buyer),
        None,
    )
    .await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_reason"].as_str()),
        (Some("cancelled"), Some("risk_rejected"))
    );
    assert_eq!(portfolio(&state, &buyer).await["cash_reserved"], "0");
    assert_eq!(
        metric(
            &state,
            "orders_rejected_total",
            &[("symbol", "AAPL"), ("reason", "risk")]
        ),
        1.0
    );
}

async fn a_restart_restores_the_hold(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (buyer, _) = trader(&state, &root, "buyer", "50000", "0").await;
    let (_, big) = order(&state, &buyer, "buy", "200", "100").await;
    let id = big["id"].as_i64().expect("id");
    // A new process on the same database: its engine rebuilds the market from the rows (with
    // PostgreSQL the first one hands its symbols over first, as a stopping replica does).
    state
        .trading
        .hand_over_all(std::time::Duration::from_secs(10))
        .await;
    let restarted = tradeplane_platform::server::build_state(state.config.as_ref().clone())
        .await
        .expect("second state");
    restarted.health.run_checks().await;
    restarted.health.mark_started();
    let (status, approved) = send(
        &restarted,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, approved["status"].as_str()),
        (StatusCode::OK, Some("new")),
        "{approved}"
    );
    assert_eq!(
        portfolio(&restarted, &buyer).await["cash_reserved"],
        "20000",
        "reserved once, not twice"
    );
    restarted.store.close().await;
}

pub(crate) async fn an_unanswered_order_expires_and_is_released(state: AppState) {
    let (root, checker) = admins(&state).await;
    let (buyer, _) = trader(&state, &root, "buyer", "50000", "0").await;
    let (_, big) = order(&state, &buyer, "buy", "200", "100").await;
    assert_eq!(big["status"], "pending_approval", "{big}");
    let id = big["id"].as_i64().expect("id");
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = send(
            &state,
            "GET",
            &format!("/api/v1/orders/{id}"),
            Some(&buyer),
            None,
        )
        .await
        .1;
        if shown["status"] != "pending_approval" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_reason"].as_str()),
        (Some("cancelled"), Some("approval_expired")),
        "{shown}"
    );
    assert_eq!(portfolio(&state, &buyer).await["cash_reserved"], "0");
    let (status, err) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(&checker),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_pending"))
    );
    assert!(
        audit_actions(&state)
            .await
            .iter()
            .any(|(a, d)| a == "order.approval_expired" && d["order_id"].as_i64() == Some(id))
    );
    assert_eq!(
        metric(
            &state,
            "orders_rejected_total",
            &[("symbol", "AAPL"), ("reason", "expired")]
        ),
        1.0
    );
}
