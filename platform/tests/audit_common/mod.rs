//! Helpers of tests/audit.rs: raw requests with headers, logins from an address, listing pages,
//! fixtures written straight to the store, and SQL on whichever backend a state uses.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::NewAuditEvent;

use super::common::send;

/// The admin the tests' environment creates.
pub const ADMIN: (&str, &str) = ("root", "root-password-long");

/// A raw request through the router: status, headers and body bytes.
pub async fn raw(
    state: &AppState,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => req.body(axum::body::Body::empty()),
    }
    .expect("request");
    let resp = tradeplane_platform::http::router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

/// Creates the admin and returns its access token.
pub async fn admin_token(state: &AppState) -> String {
    tradeplane_platform::server::ensure_admin(state)
        .await
        .expect("admin");
    super::common::access_token(state, ADMIN.0, ADMIN.1).await
}

/// Registers `name`; returns (user id, account id).
pub async fn register(state: &AppState, name: &str) -> (i64, i64) {
    let (status, user) = send(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "password": "password-123"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    (
        user["user_id"].as_i64().expect("user id"),
        user["account_id"].as_i64().expect("account id"),
    )
}

/// Logs `name` in from `ip` with `password`; returns the status and body.
pub async fn login_from(
    state: &AppState,
    name: &str,
    password: &str,
    ip: &str,
) -> (StatusCode, Value) {
    let (status, _, body) = raw(
        state,
        "POST",
        "/api/v1/auth/login",
        &[("x-forwarded-for", ip)],
        Some(json!({"username": name, "password": password})),
    )
    .await;
    (status, serde_json::from_slice(&body).expect("JSON"))
}

/// One page of the listing: (events, next cursor).
pub async fn page(state: &AppState, admin: &str, query: &str) -> (Vec<Value>, Option<String>) {
    let (status, headers, body) = raw(
        state,
        "GET",
        &format!("/api/v1/admin/audit?{query}"),
        &[("authorization", &format!("Bearer {admin}"))],
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{query}: {}",
        String::from_utf8_lossy(&body)
    );
    let events: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array");
    let next = headers
        .get("x-next-cursor")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (events, next)
}

/// An event's tags.
pub fn tags(e: &Value) -> Vec<&str> {
    e["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("tag"))
        .collect()
}

/// Appends `event`s straight to the store (the filters' fixture).
pub async fn append(state: &AppState, actor: &str, action: &str, details: Value) -> i64 {
    state
        .store
        .append_audit(&NewAuditEvent {
            actor: actor.into(),
            action: action.into(),
            subject: None,
            request_id: None,
            details,
        })
        .await
        .expect("append")
}

/// Enough percent-encoding for an RFC 3339 time in a query string.
pub fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Runs `sql` on whichever backend the state uses; whether it succeeded.
pub async fn execute(state: &AppState, sql: &str) -> bool {
    use tradeplane_platform::store::Store;
    match &state.store {
        Store::Postgres(p) => sqlx::query(sql).execute(p).await.is_ok(),
        Store::Sqlite(p) => sqlx::query(sql).execute(p).await.is_ok(),
    }
}
