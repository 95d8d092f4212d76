//! Four-eyes approval of large orders (issue 16), through the HTTP API on both backends: an
//! order above `APPROVAL_NOTIONAL_DEFAULT` waits as `pending_approval` with its cash or
//! position reserved; another admin approves it (it is matched, balances exact) or rejects it
//! (reservation released); the trader may cancel it; self-approval is refused. The rest of
//! the life of a held order (risk at approval, restart, expiry) is in `approvals_lifecycle.rs`.

#[macro_use]
mod common;

use axum::http::StatusCode;
use serde_json::json;
use tradeplane_platform::state::AppState;

use common::approvals::*;
use common::send;

state_on_both_backends!(super::common::approvals::ENV;
    a_large_order_waits_and_another_admin_approves_it_into_the_book,
    a_rejection_releases_the_reservation_with_the_reason,
    the_trader_cancels_while_pending,
    self_approval_and_non_admins_are_refused,
);

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
    approving_again_is_refused(&state, &checker, id).await;
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
    approving_again_is_refused(&state, &checker, id).await;
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
    approving_again_is_refused(&state, &checker, id).await;
    assert!(audited(&state, "order.approval_cancelled", id).await);
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
