//! Hostile input through the router: control characters in every kind of text field, oversize
//! audit fields and request ids, overflowing deposits, parameter names in errors, and the
//! bearer scheme's case. The same matrix runs on PostgreSQL (`pg::`), where a NUL that reaches
//! SQL is an error rather than a stored byte.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;

use common::send;

const ADMIN: (&str, &str) = ("root", "root-password-long");
const ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", ADMIN.0),
    ("ADMIN_PASSWORD", ADMIN.1),
    ("RATE_LIMIT_PER_SECOND", "100000"),
    ("RATE_LIMIT_BURST", "100000"),
    ("LOGIN_RATE_LIMIT_PER_MINUTE", "100000"),
];

async fn sqlite_state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, ENV).await;
    tradeplane_platform::server::ensure_admin(&state)
        .await
        .expect("admin");
    (dir, state)
}

/// Sends a request with extra headers; returns status, headers and the JSON body.
async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

/// Every route's text inputs with a NUL and other control characters: a 422 naming the field,
/// never a 5xx, never stored.
async fn control_characters_are_refused_everywhere(state: &AppState) {
    let (status, user) = send(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "carol", "password": "carol-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let trader = common::access_token(state, "carol", "carol-password").await;
    let admin = common::access_token(state, ADMIN.0, ADMIN.1).await;
    let audit_before = state
        .store
        .list_audit(500, None)
        .await
        .expect("audit")
        .len();
    for bad in ["a\0b", "x\u{1}y", "BTC\u{7f}USD", "nl\nnl", "c1\u{85}"] {
        let enc = bad.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let order = |field: &str| {
            let mut o =
                json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "1"});
            o[field] = json!(bad);
            o
        };
        // (method, uri, bearer token, body, the field the error must name)
        type Case<'a> = (&'a str, String, Option<&'a str>, Option<Value>, &'a str);
        let cases: Vec<Case> = vec![
            (
                "POST",
                "/api/v1/auth/register".into(),
                None,
                Some(json!({"username": bad, "password": "long-enough-1"})),
                "username",
            ),
            (
                "POST",
                "/api/v1/auth/register".into(),
                None,
                Some(json!({"username": "dave", "password": format!("long-enough{bad}")})),
                "password",
            ),
            (
                "POST",
                "/api/v1/auth/login".into(),
                None,
                Some(json!({"username": bad, "password": "long-enough-1"})),
                "username",
            ),
            (
                "POST",
                "/api/v1/auth/login".into(),
                None,
                Some(json!({"username": "carol", "password": format!("carol-password{bad}")})),
                "password",
            ),
            (
                "POST",
                "/api/v1/auth/refresh".into(),
                None,
                Some(json!({"refresh_token": bad})),
                "refresh_token",
            ),
            (
                "POST",
                "/api/v1/auth/logout".into(),
                None,
                Some(json!({"refresh_token": bad})),
                "refresh_token",
            ),
            (
                "POST",
                "/api/v1/orders".into(),
                Some(&trader),
                Some(order("symbol")),
                "symbol",
            ),
            (
                "POST",
                "/api/v1/orders".into(),
                Some(&trader),
                Some(order("client_order_id")),
                "client_order_id",
            ),
            (
                "GET",
                format!("/api/v1/orders?symbol={enc}"),
                Some(&trader),
                None,
                "symbol",
            ),
            (
                "GET",
                format!("/api/v1/fills?symbol={enc}"),
                Some(&trader),
                None,
                "symbol",
            ),
            (
                "GET",
                format!("/api/v1/markets/{enc}/book"),
                None,
                None,
                "symbol",
            ),
            (
                "GET",
                format!("/api/v1/markets/{enc}/trades"),
                None,
                None,
                "symbol",
            ),
            (
                "GET",
                format!("/api/v1/markets/{enc}/ticker"),
                None,
                None,
                "symbol",
            ),
            (
                "POST",
                format!("/api/v1/admin/markets/{enc}/halt"),
                Some(&admin),
                None,
                "symbol",
            ),
            (
                "POST",
                format!("/api/v1/admin/markets/{enc}/resume"),
                Some(&admin),
                None,
                "symbol",
            ),
            (
                "POST",
                "/api/v1/admin/accounts/1/deposits".into(),
                Some(&admin),
                Some(json!({"amount": "1", "symbol": bad})),
                "symbol",
            ),
        ];
        for (method, uri, bearer, body, field) in cases {
            let auth = bearer.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let (status, _, err) = call(state, method, &uri, &headers, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {uri} {body:?} -> {err}"
            );
            let message = err["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with(&format!("{field} must be")),
                "{method} {uri}: the message names {field}: {err}"
            );
            assert!(
                err["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("invalid")),
                "{err}"
            );
        }
    }
    let audit_after = state
        .store
        .list_audit(500, None)
        .await
        .expect("audit")
        .len();
    assert_eq!(
        audit_before, audit_after,
        "no refused input reached the audit trail"
    );
}

#[tokio::test]
async fn control_characters_are_refused_on_sqlite() {
    let (_dir, state) = sqlite_state().await;
    control_characters_are_refused_everywhere(&state).await;
}

#[tokio::test]
async fn foreign_request_ids_are_kept_only_when_short_and_safe() {
    let (_dir, state) = sqlite_state().await;
    let huge = "r".repeat(100_000);
    let cases = [
        ("trace-0af7651916cd43dd8448eb211c80319c", true),
        ("a", true),
        (huge.as_str(), false),
        ("has space", false),
        ("semi;colon", false),
        ("<script>", false),
    ];
    for (id, kept) in cases {
        let (status, headers, _) = call(
            &state,
            "POST",
            "/api/v1/auth/login",
            &[("x-request-id", id)],
            Some(json!({"username": "nobody", "password": "wrong-password"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let echoed = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("a request id is always echoed")
            .to_owned();
        if kept {
            assert_eq!(echoed, id);
        } else {
            assert_ne!(echoed, id);
            uuid::Uuid::parse_str(&echoed).expect("a fresh UUID replaces the foreign id");
        }
        let audit = state.store.list_audit(1, None).await.expect("audit");
        assert_eq!(audit[0].action, "login.failed");
        assert_eq!(audit[0].request_id.as_deref(), Some(echoed.as_str()));
    }
}

#[tokio::test]
async fn oversize_login_names_never_reach_the_audit_trail() {
    let (_dir, state) = sqlite_state().await;
    let before = state
        .store
        .list_audit(500, None)
        .await
        .expect("audit")
        .len();
    let (status, _, err) = call(
        &state,
        "POST",
        "/api/v1/auth/login",
        &[],
        Some(json!({"username": "u".repeat(60_000), "password": "whatever-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["message"].as_str().is_some_and(|m| m.len() < 200),
        "{err}"
    );
    let after = state.store.list_audit(500, None).await.expect("audit");
    assert_eq!(after.len(), before);

    // And the store bounds whatever reaches it, whoever calls it.
    let event = tradeplane_platform::store::NewAuditEvent {
        actor: "a".repeat(10_000),
        action: "test.bounded".into(),
        subject: Some(format!("s\0{}", "s".repeat(10_000))),
        request_id: Some("q".repeat(10_000)),
        details: json!({ "blob": "d".repeat(100_000) }),
    };
    state.store.append_audit(&event).await.expect("append");
    let stored = &state.store.list_audit(1, None).await.expect("audit")[0];
    assert!(
        stored.actor.chars().count() <= 257,
        "{}",
        stored.actor.len()
    );
    let subject = stored.subject.as_deref().expect("subject");
    assert!(subject.chars().count() <= 257 && !subject.contains('\0'));
    assert!(stored.request_id.as_deref().expect("id").chars().count() <= 129);
    assert_eq!(stored.details["truncated"], true, "{}", stored.details);
}

#[tokio::test]
async fn a_cash_deposit_that_would_overflow_is_refused_before_anything_is_written() {
    let (_dir, state) = sqlite_state().await;
    let (_, user) = send(
        &state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "rich", "password": "rich-password"})),
    )
    .await;
    let account = user["account_id"].as_i64().expect("account");
    let admin = common::access_token(&state, ADMIN.0, ADMIN.1).await;
    let uri = format!("/api/v1/admin/accounts/{account}/deposits");
    let (status, ok) = send(
        &state,
        "POST",
        &uri,
        Some(&admin),
        Some(json!({"amount": "92233720368"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    let audit_before = state
        .store
        .list_audit(500, None)
        .await
        .expect("audit")
        .len();
    let (status, err) = send(
        &state,
        "POST",
        &uri,
        Some(&admin),
        Some(json!({"amount": "92233720368"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["code"], "cashOverflow", "{err}");
    let row = state
        .store
        .account(account)
        .await
        .expect("read")
        .expect("account");
    assert_eq!(
        row.cash, 9_223_372_036_800_000_000,
        "the balance is unchanged"
    );
    assert_eq!(
        state
            .store
            .list_audit(500, None)
            .await
            .expect("audit")
            .len(),
        audit_before,
        "nothing was written"
    );
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/admin/accounts/999999/deposits",
        Some(&admin),
        Some(json!({"amount": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn page_size_errors_name_the_parameter() {
    let (_dir, state) = sqlite_state().await;
    let (status, err) = send(
        &state,
        "GET",
        "/api/v1/markets/AAPL/book?depth=0",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["code"], "invalid_page_size");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("depth ")),
        "{err}"
    );
    let (_, err) = send(
        &state,
        "GET",
        "/api/v1/markets/AAPL/trades?limit=501",
        None,
        None,
    )
    .await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("limit ")),
        "{err}"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (_dir, state) = sqlite_state().await;
    let admin = common::access_token(&state, ADMIN.0, ADMIN.1).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {admin}");
        let (status, _, me) = call(
            &state,
            "GET",
            "/api/v1/me",
            &[("authorization", &auth)],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {me}");
    }
    let auth = format!("Basic {admin}");
    let (status, _, _) = call(
        &state,
        "GET",
        "/api/v1/me",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

mod pg {
    use super::*;

    #[tokio::test]
    #[ignore = "needs PostgreSQL (TEST_DATABASE_URL); run by scripts/test"]
    async fn control_characters_are_refused_on_postgres() {
        let db = common::PgDatabase::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: Vec<(&str, &str)> = ENV.to_vec();
        env.push(("DATABASE_URL", &db.url));
        let state = common::started_state(&dir, &env).await;
        tradeplane_platform::server::ensure_admin(&state)
            .await
            .expect("admin");
        control_characters_are_refused_everywhere(&state).await;
        state.store.close().await;
        db.drop_now().await;
    }
}
