//! Helpers of the approval suites (`approvals.rs`, `approvals_lifecycle.rs`): admins,
//! funded traders, orders, and reads of the portfolio, the pending list, the audit trail and
//! the metrics.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeplane_platform::auth::Role;
use tradeplane_platform::state::AppState;

use super::send;

/// The environment both suites start from: a root admin and approval above 10,000.
pub const ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", "root"),
    ("ADMIN_PASSWORD", "root-password-long"),
    ("APPROVAL_NOTIONAL_DEFAULT", "10000"),
    ("APPROVAL_SWEEP_INTERVAL_SECONDS", "3600"),
];

/// The root admin's token, and a second admin's (created through the store, as `ensure_admin`
/// creates the first).
pub async fn admins(state: &AppState) -> (String, String) {
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
        super::access_token(state, "root", "root-password-long").await,
        super::access_token(state, "checker", "checker-password-long").await,
    )
}

/// A registered trader with `cash` and `units` AAPL (at cost 100): (token, account id).
pub async fn trader(
    state: &AppState,
    admin: &str,
    name: &str,
    cash: &str,
    units: &str,
) -> (String, i64) {
    let token = super::register_and_login(state, name).await;
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

pub async fn order(
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

pub async fn portfolio(state: &AppState, token: &str) -> Value {
    send(state, "GET", "/api/v1/portfolio", Some(token), None)
        .await
        .1
}

pub fn aapl(pf: &Value) -> &Value {
    pf["positions"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["symbol"] == "AAPL"))
        .expect("AAPL position")
}

pub async fn pending(state: &AppState, admin: &str) -> Vec<Value> {
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

pub async fn audit_actions(state: &AppState) -> Vec<(String, Value)> {
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
pub fn metric(state: &AppState, name: &str, labels: &[(&str, &str)]) -> f64 {
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

/// A second decision on an order that is no longer pending is refused: 409 `order_not_pending`.
pub async fn approving_again_is_refused(state: &AppState, admin: &str, id: i64) {
    let (status, err) = send(
        state,
        "POST",
        &format!("/api/v1/admin/orders/{id}/approve"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_pending"))
    );
}

/// Whether the audit trail holds an `action` record about order `id`.
pub async fn audited(state: &AppState, action: &str, id: i64) -> bool {
    audit_actions(state)
        .await
        .iter()
        .any(|(a, d)| a == action && d["order_id"].as_i64() == Some(id))
}
