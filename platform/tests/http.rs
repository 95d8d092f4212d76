//! Router tests through `tower::ServiceExt::oneshot`: probes in every state, metrics, errors.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tradeplane_platform::error::ErrorBody;
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;

async fn call(
    state: &AppState,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn get(state: &AppState, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = call(
        state,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
    (status, json)
}

#[tokio::test]
async fn probes_while_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tradeplane_platform::server::build_state(common::config(&dir, &[]))
        .await
        .expect("state");
    assert_eq!(get(&state, "/health/live").await.0, StatusCode::OK);
    let (status, body) = get(&state, "/health/startup").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "starting");
    let (status, body) = get(&state, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["check"], "startup");
    let (status, body) = get(&state, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["started"], false);
    assert_eq!(body["checks"]["database"]["status"], "unknown");
}

#[tokio::test]
async fn probes_when_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    for path in ["/health/live", "/health/startup", "/health/ready"] {
        assert_eq!(get(&state, path).await.0, StatusCode::OK, "{path}");
    }
    let (status, body) = get(&state, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database_backend"], "sqlite");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["redis"]["status"], "ok");
    assert_eq!(body["checks"]["disk"]["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn database_down_fails_readiness_only_after_the_grace_period() {
    // Grace 0: the first failed check takes the instance out of the Service.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[("READY_DB_FAILURE_SECONDS", "0")]).await;
    state.store.close().await;
    state.health.run_checks().await;
    let (status, body) = get(&state, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["check"], "database");
    assert_eq!(
        get(&state, "/health/live").await.0,
        StatusCode::OK,
        "liveness ignores the database"
    );
    assert_eq!(get(&state, "/health/startup").await.0, StatusCode::OK);
    let (_, detail) = get(&state, "/health").await;
    assert_eq!(detail["checks"]["database"]["status"], "failing");

    // Default grace: a failed check is a blip; readiness holds while /health reports it.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    state.store.close().await;
    state.health.run_checks().await;
    assert_eq!(get(&state, "/health/ready").await.0, StatusCode::OK);
    let (status, detail) = get(&state, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["status"], "degraded");
    assert_eq!(detail["checks"]["database"]["status"], "failing");
}

#[tokio::test]
async fn draining_fails_readiness_but_not_liveness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    state.health.mark_draining();
    let (status, body) = get(&state, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["check"], "shutdown");
    assert_eq!(get(&state, "/health/live").await.0, StatusCode::OK);
    assert_eq!(get(&state, "/health").await.1["draining"], true);
}

#[tokio::test]
async fn metrics_carry_route_templates_not_raw_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    get(&state, "/health/live").await;
    get(&state, "/health/live").await;
    get(&state, "/no/such/thing-1").await;
    get(&state, "/no/such/thing-2").await;
    let (status, headers, body) = call(
        &state,
        Request::get("/metrics").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(body).expect("utf8");
    let samples = parse_exposition(&text);
    let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(
        value(r#"http_requests_total{method="GET",route="/health/live",status="200"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#),
        Some(2.0),
        "unknown paths share one label"
    );
    assert!(!text.contains("thing-1"), "raw paths never become labels");
    assert!(
        value(
            r#"http_request_duration_seconds_count{method="GET",route="/health/live",status="200"}"#
        )
        .is_some()
    );
    assert_eq!(
        value("http_requests_in_flight"),
        Some(1.0),
        "the scrape itself is in flight"
    );
    assert_eq!(value("db_pool_max_connections"), Some(10.0));
    assert_eq!(value("redis_fallback_active"), Some(0.0));
    assert!(
        samples
            .iter()
            .any(|(n, v)| n.starts_with("build_info{") && *v == 1.0)
    );
}

/// Parses the Prometheus text format strictly enough to catch malformed output: every
/// non-comment line is `name{labels} value`, and every family has HELP and TYPE lines.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE has a name");
            let kind = parts.next().expect("TYPE has a kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().expect("name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE line");
        if family.ends_with("_total") || typed.contains(family) {
            samples.push((series.to_owned(), value));
        }
    }
    samples
}

#[tokio::test]
async fn request_ids_are_accepted_or_made_and_echoed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let req = Request::get("/nope")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .expect("req");
    let (status, headers, body) = call(&state, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-request-id"], "abc-123");
    let err: ErrorBody = serde_json::from_slice(&body).expect("error JSON");
    assert_eq!(err.code, "not_found");
    assert_eq!(err.request_id.as_deref(), Some("abc-123"));

    let (_, headers, _) = call(
        &state,
        Request::get("/health/live")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    let made = headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(made.len(), 36, "a UUID is made when none is sent: {made}");
}

#[tokio::test]
async fn errors_outside_handlers_are_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[
            ("MAX_BODY_BYTES", "1024"),
            ("ENABLE_DEBUG_ENDPOINTS", "true"),
        ],
    )
    .await;

    let req = Request::post("/health/live")
        .body(Body::empty())
        .expect("req");
    let (status, _, body) = call(&state, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let err: ErrorBody = serde_json::from_slice(&body).expect("405 is JSON");
    assert_eq!(err.code, "method_not_allowed");
    assert!(err.request_id.is_some());

    let req = Request::get("/debug/sleep?ms=1")
        .header("content-length", "4096")
        .body(Body::from(vec![b'x'; 4096]))
        .expect("req");
    let (status, _, body) = call(&state, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let err: ErrorBody = serde_json::from_slice(&body).expect("413 is JSON");
    assert_eq!(err.code, "payload_too_large");

    let (status, _, body) = call(
        &state,
        Request::get("/debug/sleep?ms=abc")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: ErrorBody = serde_json::from_slice(&body).expect("400 is JSON");
    assert_eq!(err.code, "bad_request");
    assert!(
        err.message.contains("ms"),
        "the message says what was wrong: {}",
        err.message
    );
}

#[tokio::test]
async fn debug_endpoints_are_off_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    assert_eq!(
        get(&state, "/debug/sleep?ms=1").await.0,
        StatusCode::NOT_FOUND
    );
}
