//! Authentication and admin flows through the router.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;

use common::send;

const ADMIN: (&str, &str) = ("root", "root-password-long");

async fn state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[("ADMIN_USERNAME", ADMIN.0), ("ADMIN_PASSWORD", ADMIN.1)],
    )
    .await;
    tradeplane_platform::server::ensure_admin(&state)
        .await
        .expect("admin");
    (dir, state)
}

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let (_dir, state) = state().await;
    let (status, user) = send(
        &state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "alice", "password": "alice-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["role"], "trader");

    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "alice", "password": "other-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["code"], "conflict");

    let tokens = common::login(&state, "alice", "alice-password").await;
    let access = tokens["access_token"].as_str().expect("access");
    let (status, me) = send(&state, "GET", "/api/v1/me", Some(access), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["account_id"], user["account_id"]);

    // Rotation: the old refresh token is spent, the new one works once.
    let r1 = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let (status, rotated) = send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let r2 = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(r1, r2);
    let (status, _) = send(
        &state,
        "GET",
        "/api/v1/me",
        Some(rotated["access_token"].as_str().expect("a")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Reusing a spent token revokes the whole family, including r2.
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r1})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(err["message"].as_str().expect("m").contains("already used"));
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r2})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the family is revoked");

    // Logout revokes a fresh login's token.
    let tokens = common::login(&state, "alice", "alice-password").await;
    let r = tokens["refresh_token"].clone();
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/logout",
        None,
        Some(json!({"refresh_token": r})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_credentials_and_tokens_are_refused_and_audited() {
    let (_dir, state) = state().await;
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "nobody", "password": "whatever-pw"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["code"], "unauthorized");
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": ADMIN.0, "password": "wrong-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&state, "GET", "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&state, "GET", "/api/v1/me", Some("not-a-jwt"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let audit = state.store.list_audit(50, None).await.expect("audit");
    let failed = audit.iter().filter(|e| e.action == "login.failed").count();
    assert_eq!(failed, 2, "{audit:?}");
}

#[tokio::test]
async fn registration_input_is_validated() {
    let (_dir, state) = state().await;
    let cases = [
        (
            json!({"username": "a", "password": "long-enough"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_username",
        ),
        (
            json!({"username": "bob", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_password",
        ),
        (
            json!({"username": "bob"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"username": "bob", "password": "long-enough", "role": "admin"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"username": 5, "password": "long-enough"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, err) = send(
            &state,
            "POST",
            "/api/v1/auth/register",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body} -> {err}");
        assert_eq!(err["code"], code, "{body}");
    }
    let req = Request::post("/api/v1/auth/register")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("req");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let req = Request::post("/api/v1/auth/register")
        .body(Body::from("{}"))
        .expect("req");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        state.store.find_user("bob").await.expect("query").is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn deposits_and_audit_need_the_admin_role() {
    let (_dir, state) = state().await;
    let (_, user) = send(
        &state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "carol", "password": "carol-password"})),
    )
    .await;
    let account = user["account_id"].as_i64().expect("id");
    let trader = common::login(&state, "carol", "carol-password").await;
    let trader = trader["access_token"].as_str().expect("t");
    let admin = common::login(&state, ADMIN.0, ADMIN.1).await;
    let admin = admin["access_token"].as_str().expect("t");
    let path = format!("/api/v1/admin/accounts/{account}/deposits");

    let (status, err) = send(
        &state,
        "POST",
        &path,
        Some(trader),
        Some(json!({"amount": "100"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["code"], "forbidden");
    let (status, body) = send(
        &state,
        "POST",
        &path,
        Some(admin),
        Some(json!({"amount": "1000.25"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cash"], "1000.25");
    let (status, body) = send(
        &state,
        "POST",
        &path,
        Some(admin),
        Some(json!({"amount": "0.75"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cash"], "1001");
    for bad in [
        json!({"amount": "-5"}),
        json!({"amount": "0"}),
        json!({"amount": "1.123456789"}),
        json!({"amount": 5}),
    ] {
        let (status, err) = send(&state, "POST", &path, Some(admin), Some(bad.clone())).await;
        assert!(status.is_client_error(), "{bad} -> {status} {err}");
    }
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/admin/accounts/999999/deposits",
        Some(admin),
        Some(json!({"amount": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let row = state
        .store
        .account(account)
        .await
        .expect("q")
        .expect("account");
    assert_eq!(
        row.cash,
        1001 * 100_000_000,
        "only the two valid deposits landed"
    );

    let (status, _) = send(&state, "GET", "/api/v1/admin/audit", Some(trader), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, events) = send(
        &state,
        "GET",
        "/api/v1/admin/audit?limit=10",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let deposits = events
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["action"] == "account.deposit")
        .count();
    assert_eq!(deposits, 2);
    let (status, _) = send(
        &state,
        "GET",
        "/api/v1/admin/audit?limit=100000",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
