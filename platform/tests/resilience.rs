//! Resilience through the router: rate limits trip and recover, login lockout, load shedding
//! that spares health, metrics and cancels, security headers and CORS, the market-data cache and
//! its invalidation by trades, the database breaker. `redis::` runs against a real Redis (and a
//! private `redis-server` it stops and starts), `pg::` against a real PostgreSQL behind a TCP
//! proxy the test cuts; both through `scripts/test`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;

/// One request from client address `ip`; returns status, headers and the JSON body.
async fn call(
    state: &AppState,
    ip: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let addr: SocketAddr = format!("{ip}:40000").parse().expect("ip");
    req.extensions_mut().insert(ConnectInfo(addr));
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

/// The value of one sample line of the exposition, e.g. `rate_limited_total{limit="ip"}`.
fn sample(state: &AppState, series: &str) -> f64 {
    let text = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("render");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

const CREDS: &str = "password-123";

async fn register(state: &AppState, ip: &str, name: &str) -> i64 {
    let (status, _, user) = call(
        state,
        ip,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "password": CREDS})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user["account_id"].as_i64().expect("account")
}

async fn login(state: &AppState, ip: &str, name: &str, password: &str) -> (StatusCode, Value) {
    let (status, _, body) = call(
        state,
        ip,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": name, "password": password})),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn ip_limit_trips_with_headers_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[("RATE_LIMIT_PER_SECOND", "10"), ("RATE_LIMIT_BURST", "3")],
    )
    .await;
    for i in 0..3 {
        let (status, headers, body) =
            call(&state, "10.0.0.1", "GET", "/api/v1/instruments", None, None).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        assert_eq!(headers["ratelimit-policy"], "\"ip\";q=3;w=1");
        assert_eq!(
            headers["ratelimit"].to_str().expect("ascii"),
            format!("\"ip\";r={};t=1", 2 - i)
        );
    }
    let (status, headers, body) =
        call(&state, "10.0.0.1", "GET", "/api/v1/instruments", None, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(body["request_id"].is_string(), "the envelope has the id");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        headers["ratelimit"]
            .to_str()
            .expect("ascii")
            .contains("r=0")
    );
    assert_eq!(sample(&state, "rate_limited_total{limit=\"ip\"}"), 1.0);

    let (status, _, _) = call(&state, "10.0.0.2", "GET", "/api/v1/instruments", None, None).await;
    assert_eq!(status, StatusCode::OK, "another client is not affected");
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let (status, _, _) = call(&state, "10.0.0.1", "GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path} is never rate limited");
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (status, _, _) = call(&state, "10.0.0.1", "GET", "/api/v1/instruments", None, None).await;
    assert_eq!(status, StatusCode::OK, "the quota refills");
}

#[tokio::test]
async fn account_limit_follows_the_token_across_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "2")],
    )
    .await;
    register(&state, "10.1.0.1", "carol").await;
    let (status, tokens) = login(&state, "10.1.0.2", "carol", CREDS).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let mut codes = Vec::new();
    for i in 0..3 {
        let ip = format!("10.1.1.{i}");
        let (status, _, body) = call(&state, &ip, "GET", "/api/v1/me", Some(&token), None).await;
        codes.push((status, body["code"].clone()));
    }
    assert_eq!(codes[0].0, StatusCode::OK);
    assert_eq!(codes[1].0, StatusCode::OK);
    assert_eq!(codes[2].0, StatusCode::TOO_MANY_REQUESTS, "{codes:?}");
    assert_eq!(sample(&state, "rate_limited_total{limit=\"account\"}"), 1.0);
}

#[tokio::test]
async fn login_is_limited_per_ip_and_per_username() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[("LOGIN_RATE_LIMIT_PER_MINUTE", "2")]).await;
    // Per IP: registration and login share the budget.
    register(&state, "10.2.0.1", "dave").await;
    let (status, _) = login(&state, "10.2.0.1", "dave", CREDS).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = login(&state, "10.2.0.1", "dave", CREDS).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["message"].as_str().expect("msg").contains("login_ip"));
    // Per username, from fresh addresses (dave has used one login already).
    let (status, _) = login(&state, "10.2.0.2", "dave", CREDS).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = login(&state, "10.2.0.3", "dave", CREDS).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("msg")
            .contains("login_user")
    );
    assert_eq!(
        sample(&state, "rate_limited_total{limit=\"login_user\"}"),
        1.0
    );
    // Ordinary reads from the first address are not affected by its login budget.
    let (status, _, _) = call(&state, "10.2.0.1", "GET", "/api/v1/instruments", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_lock_the_account_and_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
            ("FAILED_LOGIN_LIMIT_PER_HOUR", "3"),
        ],
    )
    .await;
    register(&state, "10.3.0.1", "erin").await;
    for i in 0..3 {
        let (status, body) = login(&state, &format!("10.3.1.{i}"), "erin", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {i}: {body}");
    }
    let (status, body) = login(&state, "10.3.2.1", "erin", CREDS).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "login_locked");
    let (status, _) = login(&state, "10.3.2.1", "ERIN", CREDS).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "usernames are case-folded"
    );
    let events = state.store.list_audit(100, None).await.expect("audit");
    let locked: Vec<_> = events
        .iter()
        .filter(|e| e.action == "login.locked")
        .collect();
    assert_eq!(locked.len(), 1, "one lockout record: {events:?}");
    assert_eq!(locked[0].subject.as_deref(), Some("username:erin"));
    // Other accounts are not affected.
    register(&state, "10.3.0.1", "frank").await;
    let (status, _) = login(&state, "10.3.3.1", "frank", CREDS).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn at_saturation_new_requests_are_shed_fast_but_health_metrics_and_cancels_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[
            ("MAX_CONCURRENT_REQUESTS", "2"),
            ("CANCEL_RESERVED_REQUESTS", "1"),
        ],
    )
    .await;
    register(&state, "10.4.0.1", "gina").await;
    let (_, tokens) = login(&state, "10.4.0.1", "gina", CREDS).await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();

    // Two requests in flight hold the general budget.
    let held = [
        state.resilience.admit(false).expect("slot 1"),
        state.resilience.admit(false).expect("slot 2"),
    ];
    let begin = Instant::now();
    let (status, headers, body) =
        call(&state, "10.4.0.2", "GET", "/api/v1/instruments", None, None).await;
    let shed_latency = begin.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "overloaded");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        shed_latency < Duration::from_millis(200),
        "{shed_latency:?}"
    );
    let (status, _, body) = call(
        &state,
        "10.4.0.2",
        "POST",
        "/api/v1/orders",
        Some(&token),
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "1"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
    );
    for path in ["/health/live", "/health/ready", "/health", "/metrics"] {
        let (status, _, _) = call(&state, "10.4.0.2", "GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path} passes at saturation");
    }
    // A cancel uses the reserve: it reaches the handler (404: no such order), not the shedder.
    let (status, _, body) = call(
        &state,
        "10.4.0.2",
        "DELETE",
        "/api/v1/orders/999",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // With the reserve taken too, cancels are shed last.
    let reserve = state.resilience.admit(true).expect("reserve slot");
    let (status, _, body) = call(
        &state,
        "10.4.0.2",
        "DELETE",
        "/api/v1/orders/999",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
    );
    assert_eq!(
        sample(&state, "requests_shed_total{class=\"general\"}"),
        2.0
    );
    assert_eq!(sample(&state, "requests_shed_total{class=\"cancel\"}"), 1.0);
    drop(held);
    drop(reserve);
    let (status, _, _) = call(&state, "10.4.0.2", "GET", "/api/v1/instruments", None, None).await;
    assert_eq!(status, StatusCode::OK, "capacity is back");
}

#[tokio::test]
async fn real_concurrent_requests_beyond_the_limit_get_503_not_a_queue() {
    // Slow requests (a database that never answers within the acquire timeout) fill the budget;
    // the surplus must be answered at once instead of waiting behind them.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(
        &dir,
        &[
            ("MAX_CONCURRENT_REQUESTS", "4"),
            ("BREAKER_FAILURE_THRESHOLD", "1000"),
            ("DATABASE_CONNECT_TIMEOUT_SECONDS", "2"),
        ],
    );
    config.database_url = "postgres://nobody@127.0.0.1:1/none".into();
    let state = tradeplane_platform::server::build_state(config)
        .await
        .expect("state");
    state.health.mark_started();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let begin = Instant::now();
            let (status, body) =
                login(&state, &format!("10.5.0.{i}"), &format!("user{i}"), CREDS).await;
            (
                status,
                body["code"].as_str().map(str::to_owned),
                begin.elapsed(),
            )
        }));
    }
    let mut shed = Vec::new();
    let mut slow = 0;
    for t in tasks {
        let (status, code, took) = t.await.expect("task");
        match code.as_deref() {
            Some("overloaded") => shed.push(took),
            Some("dependency_unavailable") => slow += 1,
            other => panic!("unexpected {status} {other:?}"),
        }
    }
    assert_eq!(slow, 4, "exactly the budget waited on the database");
    assert_eq!(shed.len(), 8);
    let worst = shed.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(500),
        "503s are fast: worst {worst:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashing_past_its_slots_and_queue_is_shed_with_503() {
    // One hash at a time and no queue: of a burst of logins, those that find the slot taken
    // are answered 503 `overloaded` with Retry-After at once instead of each allocating 19 MiB.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[
            ("PASSWORD_HASH_CONCURRENCY", "1"),
            ("PASSWORD_HASH_QUEUE", "0"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    )
    .await;
    register(&state, "10.6.0.1", "hasher").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let password = if i % 2 == 0 { CREDS } else { "wrong-password" };
            call(
                &state,
                &format!("10.6.1.{i}"),
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "hasher", "password": password})),
            )
            .await
        }));
    }
    let (mut served, mut shed) = (0, 0);
    for t in tasks {
        let (status, headers, body) = t.await.expect("task");
        match status {
            StatusCode::OK | StatusCode::UNAUTHORIZED => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["code"], "overloaded", "{body}");
                assert_eq!(headers["retry-after"], "1");
                shed += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(served >= 1, "the slot serves");
    assert!(shed >= 1, "a burst past one slot and no queue is shed");
    assert_eq!(sample(&state, "password_hash_shed_total"), f64::from(shed));
}

#[tokio::test]
async fn database_breaker_opens_fails_fast_and_shows_in_health_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(
        &dir,
        &[
            ("BREAKER_FAILURE_THRESHOLD", "2"),
            ("BREAKER_OPEN_SECONDS", "60"),
            ("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
        ],
    );
    config.database_url = "postgres://nobody@127.0.0.1:1/none".into();
    let state = tradeplane_platform::server::build_state(config)
        .await
        .expect("state");
    state.health.mark_started();
    for i in 0..2 {
        let (status, body) = login(&state, "10.6.0.1", &format!("u{i}"), CREDS).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "dependency_unavailable");
    }
    let begin = Instant::now();
    let (status, headers, body) = call(
        &state,
        "10.6.0.1",
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "u9", "password": CREDS})),
    )
    .await;
    let took = begin.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "dependency_unavailable");
    assert!(
        body["message"]
            .as_str()
            .expect("msg")
            .contains("circuit open")
    );
    assert!(
        took < Duration::from_millis(200),
        "fails fast while open: {took:?}"
    );
    assert!(headers.contains_key("retry-after"));
    // Market data without a cached copy fails fast too.
    let begin = Instant::now();
    let (status, _, body) = call(
        &state,
        "10.6.0.1",
        "GET",
        "/api/v1/markets/AAPL/ticker",
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("dependency_unavailable")
        )
    );
    assert!(begin.elapsed() < Duration::from_millis(200));
    let (status, _, report) = call(&state, "10.6.0.1", "GET", "/health", None, None).await;
    assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(report["breakers"]["database"], "open", "{report}");
    assert_eq!(report["breakers"]["redis"], "closed");
    // Through the real endpoint, which refreshes the breaker gauges at scrape time.
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(
        text.contains("circuit_breaker_state{dependency=\"database\"} 1"),
        "{text}"
    );
    // Liveness never depends on it.
    let (status, _, _) = call(&state, "10.6.0.1", "GET", "/health/live", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn security_headers_on_every_response_and_cors_only_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    for path in ["/health/live", "/api/v1/instruments", "/no/such/route"] {
        let (_, headers, _) = call(&state, "10.7.0.1", "GET", path, None, None).await;
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(
            headers["strict-transport-security"]
                .to_str()
                .expect("a")
                .starts_with("max-age=")
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("a")
                .contains("default-src 'none'")
        );
    }
    let preflight = |state: AppState, origin: &'static str| async move {
        let req = Request::builder()
            .method("OPTIONS")
            .uri("/api/v1/orders")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .expect("request");
        router(state).oneshot(req).await.expect("infallible")
    };
    let resp = preflight(state.clone(), "https://app.example").await;
    assert!(
        !resp.headers().contains_key("access-control-allow-origin"),
        "off by default"
    );

    let dir2 = tempfile::tempdir().expect("tempdir");
    let state =
        common::started_state(&dir2, &[("CORS_ALLOWED_ORIGINS", "https://app.example")]).await;
    let resp = preflight(state.clone(), "https://app.example").await;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .expect("a")
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let resp = preflight(state.clone(), "https://evil.example").await;
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    let (_, headers, _) = call(&state, "10.7.0.1", "GET", "/api/v1/instruments", None, None).await;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "no Origin, no CORS header"
    );
}

async fn admin_token(state: &AppState) -> String {
    tradeplane_platform::server::ensure_admin(state)
        .await
        .expect("admin");
    let (status, tokens) = login(state, "10.8.0.1", "root", "root-password-long").await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn market_reads_are_cached_and_a_trade_invalidates_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[
            ("ADMIN_PASSWORD", "root-password-long"),
            ("ADMIN_USERNAME", "root"),
            ("MARKET_CACHE_TTL_MS", "60000"),
        ],
    )
    .await;
    let admin = admin_token(&state).await;
    let mut tokens = Vec::new();
    for name in ["hank", "ivy"] {
        let account = register(&state, "10.8.0.2", name).await;
        let (status, body, _) = {
            let (s, _, b) = call(
                &state,
                "10.8.0.3",
                "POST",
                &format!("/api/v1/admin/accounts/{account}/deposits"),
                Some(&admin),
                Some(json!({"amount": "100000"})),
            )
            .await;
            (s, b, ())
        };
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, t) = login(&state, "10.8.0.4", name, CREDS).await;
        tokens.push((
            account,
            t["access_token"].as_str().expect("token").to_owned(),
        ));
    }
    let (_, _, d) = call(
        &state,
        "10.8.0.3",
        "POST",
        &format!("/api/v1/admin/accounts/{}/deposits", tokens[0].0),
        Some(&admin),
        Some(json!({"amount": "10", "symbol": "AAPL", "cost": "100"})),
    )
    .await;
    assert_eq!(d["position"], "10", "{d}");

    let ticker = || {
        call(
            &state,
            "10.8.1.1",
            "GET",
            "/api/v1/markets/AAPL/ticker",
            None,
            None,
        )
    };
    let (status, _, first) = ticker().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["last"].is_null());
    let (_, _, second) = ticker().await;
    assert_eq!(first, second);
    assert_eq!(
        sample(
            &state,
            "cache_requests_total{cache=\"ticker\",result=\"miss\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &state,
            "cache_requests_total{cache=\"ticker\",result=\"hit_memory\"}"
        ),
        1.0
    );

    // A trade at 150.
    let order = |side: &str| json!({"symbol": "AAPL", "side": side, "type": "limit", "price": "150", "qty": "1"});
    let (status, _, body) = call(
        &state,
        "10.8.2.1",
        "POST",
        "/api/v1/orders",
        Some(&tokens[0].1),
        Some(order("sell")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = call(
        &state,
        "10.8.2.2",
        "POST",
        "/api/v1/orders",
        Some(&tokens[1].1),
        Some(order("buy")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The event reaches the invalidator just after the commit.
    let mut after = Value::Null;
    for _ in 0..50 {
        let (_, _, t) = ticker().await;
        after = t;
        if !after["last"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        after["last"], "150",
        "the trade invalidated the cached ticker: {after}"
    );
    let (_, _, trades) = call(
        &state,
        "10.8.1.1",
        "GET",
        "/api/v1/markets/AAPL/trades",
        None,
        None,
    )
    .await;
    assert_eq!(trades.as_array().map(Vec::len), Some(1), "{trades}");
    // Balances and orders are never cached: a second read of orders sees a change at once.
    let (_, _, orders) = call(
        &state,
        "10.8.1.1",
        "GET",
        "/api/v1/orders",
        Some(&tokens[1].1),
        None,
    )
    .await;
    assert!(orders.to_string().contains("filled"), "{orders}");
}

/// Against the real Redis at `TEST_REDIS_URL`, and a private `redis-server` for the outage.
mod redis {
    use super::*;
    use tradeplane_platform::resilience::ratelimit::LimitKind;

    /// A random client address, so runs sharing the Redis server do not share quotas.
    fn random_ip() -> String {
        let n = uuid::Uuid::new_v4().as_u128();
        format!("10.{}.{}.{}", (n >> 16) as u8, (n >> 8) as u8, n as u8)
    }

    #[tokio::test]
    #[ignore = "needs Redis: run through scripts/test"]
    async fn the_limit_is_shared_by_replicas_and_recovers() {
        let url = common::redis_url();
        let vars = [
            ("REDIS_URL", url.as_str()),
            ("RATE_LIMIT_PER_SECOND", "10"),
            ("RATE_LIMIT_BURST", "3"),
        ];
        let (d1, d2) = (
            tempfile::tempdir().expect("d"),
            tempfile::tempdir().expect("d"),
        );
        let a = common::started_state(&d1, &vars).await;
        let b = common::started_state(&d2, &vars).await;
        let ip = random_ip();
        let statuses = [
            call(&a, &ip, "GET", "/api/v1/instruments", None, None)
                .await
                .0,
            call(&b, &ip, "GET", "/api/v1/instruments", None, None)
                .await
                .0,
            call(&a, &ip, "GET", "/api/v1/instruments", None, None)
                .await
                .0,
            call(&b, &ip, "GET", "/api/v1/instruments", None, None)
                .await
                .0,
        ];
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ],
            "one quota across both replicas"
        );
        assert!(a.resilience.limiter.is_shared());
        let d = a.resilience.limiter.peek(LimitKind::Ip, &ip).await;
        assert!(d.shared && !d.allowed, "{d:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, _, _) = call(&b, &ip, "GET", "/api/v1/instruments", None, None).await;
        assert_eq!(status, StatusCode::OK, "refilled");
    }

    #[tokio::test]
    #[ignore = "needs Redis: run through scripts/test"]
    async fn failed_login_lockout_is_shared_through_redis() {
        let url = common::redis_url();
        let vars = [
            ("REDIS_URL", url.as_str()),
            ("FAILED_LOGIN_LIMIT_PER_HOUR", "2"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
        ];
        let (d1, d2) = (
            tempfile::tempdir().expect("d"),
            tempfile::tempdir().expect("d"),
        );
        let a = common::started_state(&d1, &vars).await;
        // Shared limiters connect to Redis in the background; until then they count locally.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !a.resilience.limiter.is_shared() {
            assert!(Instant::now() < deadline, "a's limiter never reached Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        register(&a, &random_ip(), &name).await;
        for _ in 0..2 {
            let (status, _) = login(&a, &random_ip(), &name, "wrong-password").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // Another replica (own process memory) sees the lock through Redis.
        let b = common::started_state(&d2, &vars).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !b.resilience.limiter.is_shared() {
            assert!(Instant::now() < deadline, "b's limiter never reached Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lock = b
            .resilience
            .limiter
            // Keyed like uniqueness: the case-folded confusable skeleton (`0` reads as `o`).
            .peek(
                LimitKind::FailedLogin,
                &tradeplane_platform::input::username_key(&name),
            )
            .await;
        assert!(lock.shared && !lock.allowed, "{lock:?}");
        let (status, body) = login(&a, &random_ip(), &name, CREDS).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("login_locked"))
        );
    }

    /// Runs a private `redis-server` on a spare port, stops it mid-test and starts it again.
    #[tokio::test]
    #[ignore = "needs redis-server: run through scripts/test"]
    async fn redis_outage_switches_to_local_limiting_and_back() {
        let _ = common::redis_url(); // same gate as the rest of the suite
        let mut server = common::PrivateRedis::start().await;
        let url = server.url();
        let dir = tempfile::tempdir().expect("d");
        let state = common::started_state(
            &dir,
            &[
                ("REDIS_URL", url.as_str()),
                ("RATE_LIMIT_PER_SECOND", "1"),
                ("RATE_LIMIT_BURST", "2"),
                ("BREAKER_FAILURE_THRESHOLD", "1"),
                ("BREAKER_OPEN_SECONDS", "1"),
            ],
        )
        .await;
        let limiter = &state.resilience.limiter;
        assert!(limiter.check(LimitKind::Ip, "before").await.shared);

        server.stop();
        // Requests are still served, and still limited, by the local limiter.
        let statuses = [
            call(&state, "10.9.0.1", "GET", "/api/v1/instruments", None, None)
                .await
                .0,
            call(&state, "10.9.0.1", "GET", "/api/v1/instruments", None, None)
                .await
                .0,
            call(&state, "10.9.0.1", "GET", "/api/v1/instruments", None, None)
                .await
                .0,
        ];
        assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
        assert!(statuses[1] == StatusCode::OK, "{statuses:?}");
        assert!(!limiter.is_shared(), "the redis breaker is open");
        let (_, _, report) = call(&state, "10.9.0.9", "GET", "/health", None, None).await;
        assert_eq!(report["breakers"]["redis"], "open", "{report}");

        server.restart().await;
        let mut back = false;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if limiter.check(LimitKind::Ip, "after").await.shared {
                back = true;
                break;
            }
        }
        assert!(
            back,
            "the limiter goes back to Redis once its probe succeeds"
        );
        assert!(limiter.is_shared());
        server.stop();
    }
}

/// Against the real PostgreSQL at `TEST_DATABASE_URL`, through a TCP proxy the test cuts.
mod pg {
    use super::*;
    use common::pg_proxy::PgProxy;

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn database_outage_gives_fast_503s_and_recovers_without_restart() {
        let db = common::PgDatabase::create().await;
        let mut proxy = PgProxy::in_front_of(&db.url, None).await;
        let url = proxy.url_for(&db.url);
        let dir = tempfile::tempdir().expect("d");
        let mut config = common::config(
            &dir,
            &[
                ("BREAKER_FAILURE_THRESHOLD", "2"),
                ("BREAKER_OPEN_SECONDS", "1"),
                ("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
                ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
            ],
        );
        config.database_url = url;
        let state = tradeplane_platform::server::build_state(config)
            .await
            .expect("state");
        state.store.migrate().await.expect("migrate");
        state.health.mark_started();
        register(&state, "10.10.0.1", "kim").await;
        let (status, _) = login(&state, "10.10.0.1", "kim", CREDS).await;
        assert_eq!(status, StatusCode::OK);

        proxy.cut();
        for _ in 0..2 {
            let (status, body) = login(&state, "10.10.0.1", "kim", CREDS).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("dependency_unavailable")
                ),
                "{body}"
            );
        }
        let begin = Instant::now();
        let (status, body) = login(&state, "10.10.0.1", "kim", CREDS).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            begin.elapsed() < Duration::from_millis(200),
            "open: fast 503 {:?}",
            begin.elapsed()
        );

        proxy.restore().await;
        let mut recovered = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (status, _) = login(&state, "10.10.0.1", "kim", CREDS).await;
            if status == StatusCode::OK {
                recovered = true;
                break;
            }
        }
        assert!(
            recovered,
            "the half-open probe closes the breaker once the database answers"
        );
        assert_eq!(
            state.resilience.db_breaker.state(),
            tradeplane_platform::resilience::breaker::BreakerState::Closed
        );
        state.store.close().await;
        db.drop_now().await;
    }
}
