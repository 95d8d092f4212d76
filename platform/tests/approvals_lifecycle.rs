//! Four-eyes approval (issue 16), the rest of a held order's life through the HTTP API on both
//! backends: an approval refused by the risk check of that moment, a restart that must restore
//! the hold, and expiry.

#[macro_use]
mod common;

use axum::http::StatusCode;
use serde_json::Value;
use tradeplane_platform::state::AppState;

use common::approvals::*;
use common::send;

state_on_both_backends!(super::common::approvals::ENV;
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
    approving_again_is_refused(&state, &checker, id).await;
    assert!(audited(&state, "order.approval_expired", id).await);
    assert_eq!(
        metric(
            &state,
            "orders_rejected_total",
            &[("symbol", "AAPL"), ("reason", "expired")]
        ),
        1.0
    );
}
