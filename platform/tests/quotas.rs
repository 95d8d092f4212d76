//! Daily quotas per account through the HTTP API: they trip with 429 `quota_exceeded`,
//! `Retry-After` until the next UTC midnight and the RateLimit headers, show in `GET /me`, and
//! reset at the day boundary (the clock is advanced, nobody sleeps); shared through Redis.

#[macro_use]
mod common;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tradeplane_platform::state::AppState;

const ENV: &[(&str, &str)] = &[
    ("QUOTA_REQUESTS_PER_DAY", "3"),
    ("QUOTA_ORDERS_PER_DAY", "1"),
];

state_on_both_backends!(super::ENV; quotas_trip_show_in_me_and_reset_at_midnight);

/// One request through the router, with the response headers.
async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    let req = req
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .expect("request");
    let resp = tradeplane_platform::http::router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

async fn trader(state: &AppState, name: &str) -> String {
    common::register_and_login(state, name).await
}

fn secs_to_midnight(state: &AppState) -> u64 {
    let now = state.clock.now().timestamp();
    (86_400 - now.rem_euclid(86_400)) as u64
}

async fn quotas_trip_show_in_me_and_reset_at_midnight(state: AppState) {
    let token = trader(&state, "alice").await;
    let (status, _, me) = call(&state, "GET", "/api/v1/me", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["quotas"]["requests"]["limit"], 3, "{me}");
    assert_eq!(
        me["quotas"]["requests"]["remaining"], 3,
        "/me does not count: {me}"
    );
    assert_eq!(me["quotas"]["orders"]["remaining"], 1, "{me}");

    // One order: it uses one request and the whole order quota.
    let order = json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "1"});
    let (status, headers, body) = call(
        &state,
        "POST",
        "/api/v1/orders",
        &token,
        Some(order.clone()),
    )
    .await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let limit = headers["ratelimit"].to_str().expect("ascii").to_owned();
    let t: u64 = limit
        .strip_prefix("\"orders_day\";r=0;t=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the order quota is the tightest: {limit}"));
    assert!(t.abs_diff(secs_to_midnight(&state)) <= 2, "{limit}");
    let (status, headers, err) = call(
        &state,
        "POST",
        "/api/v1/orders",
        &token,
        Some(order.clone()),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")),
        "{err}"
    );
    assert_eq!(headers["ratelimit-policy"], "\"orders_day\";q=1;w=86400");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        retry.abs_diff(secs_to_midnight(&state)) <= 2,
        "until midnight: {retry}"
    );

    // The request quota: 2 used so far (both orders), one left.
    let (status, headers, _) = call(&state, "GET", "/api/v1/portfolio", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["ratelimit"]
            .to_str()
            .expect("ascii")
            .starts_with("\"requests_day\";r=0;"),
        "{headers:?}"
    );
    let (status, headers, err) = call(&state, "GET", "/api/v1/portfolio", &token, None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")),
        "{err}"
    );
    assert_eq!(headers["ratelimit-policy"], "\"requests_day\";q=3;w=86400");
    assert!(headers.contains_key("retry-after"));
    let other = trader(&state, "bob").await;
    let (status, _, _) = call(&state, "GET", "/api/v1/portfolio", &other, None).await;
    assert_eq!(status, StatusCode::OK, "quotas are per account");

    let (_, _, me) = call(&state, "GET", "/api/v1/me", &token, None).await;
    assert_eq!(me["quotas"]["requests"]["remaining"], 0, "{me}");
    assert_eq!(me["quotas"]["orders"]["remaining"], 0, "{me}");
    let reset = me["quotas"]["requests"]["reset"].as_u64().expect("reset");
    assert!(reset.abs_diff(secs_to_midnight(&state)) <= 2);

    // Past the next UTC midnight both are full again.
    state.clock.advance(secs_to_midnight(&state) as i64 + 1);
    let (status, _, body) = call(&state, "GET", "/api/v1/portfolio", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, me) = call(&state, "GET", "/api/v1/me", &token, None).await;
    assert_eq!(
        (
            me["quotas"]["requests"]["remaining"].as_u64(),
            me["quotas"]["orders"]["remaining"].as_u64()
        ),
        (Some(2), Some(1)),
        "{me}"
    );

    let metrics = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("metrics");
    assert!(
        metrics.contains("quota_exceeded_total{quota=\"orders\"} 1"),
        "metrics"
    );
    assert!(
        metrics.contains("quota_exceeded_total{quota=\"requests\"} 1"),
        "metrics"
    );
}

#[tokio::test]
async fn unlimited_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let token = trader(&state, "carol").await;
    for _ in 0..5 {
        let (status, headers, _) = call(&state, "GET", "/api/v1/portfolio", &token, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !headers["ratelimit"]
                .to_str()
                .expect("ascii")
                .contains("_day")
        );
    }
    let (_, _, me) = call(&state, "GET", "/api/v1/me", &token, None).await;
    assert_eq!(me["quotas"]["requests"]["limit"], Value::Null, "{me}");
}

mod redis {
    use super::*;

    /// Two replicas (separate databases, one Redis prefix): the same account id 1 on both
    /// shares one count.
    #[tokio::test]
    #[ignore = "needs Redis: run through scripts/test"]
    async fn the_quota_is_shared_by_replicas() {
        let url = common::redis_url();
        let prefix = format!("tq{}:", uuid::Uuid::new_v4().simple());
        let vars = [
            ("REDIS_URL", url.as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("QUOTA_REQUESTS_PER_DAY", "3"),
        ];
        let (d1, d2) = (
            tempfile::tempdir().expect("d"),
            tempfile::tempdir().expect("d"),
        );
        let a = common::started_state(&d1, &vars).await;
        let b = common::started_state(&d2, &vars).await;
        let ta = trader(&a, "alice").await;
        let tb = trader(&b, "alice").await;
        let status = |r: (StatusCode, HeaderMap, Value)| r.0;
        assert_eq!(
            status(call(&a, "GET", "/api/v1/portfolio", &ta, None).await),
            StatusCode::OK
        );
        assert_eq!(
            status(call(&b, "GET", "/api/v1/portfolio", &tb, None).await),
            StatusCode::OK
        );
        assert_eq!(
            status(call(&a, "GET", "/api/v1/portfolio", &ta, None).await),
            StatusCode::OK
        );
        let (code, _, err) = call(&b, "GET", "/api/v1/portfolio", &tb, None).await;
        assert_eq!(
            (code, err["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")),
            "the count is global: {err}"
        );
        let (_, _, me) = call(&a, "GET", "/api/v1/me", &ta, None).await;
        assert_eq!(me["quotas"]["requests"]["remaining"], 0, "{me}");
        assert!(a.resilience.limiter.is_shared());
        // Clean up the prefix's keys.
        let client = ::redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: () = ::redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }
}
