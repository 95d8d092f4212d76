//! `GET /api/v1/admin/slo` through the router: admin only, and its SLIs follow the requests served.

mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};

use common::send;

const ADMIN: (&str, &str) = ("root", "root-password-long");

fn window<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .find(|w| w["window"] == name)
        .unwrap_or_else(|| panic!("no window {name}: {report}"))
}

#[tokio::test]
async fn admin_only_and_the_slis_count_errors_and_slow_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(
        &dir,
        &[
            ("ADMIN_USERNAME", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("ENABLE_DEBUG_ENDPOINTS", "true"),
            ("SLO_AVAILABILITY_TARGET", "99.5"),
            ("SLO_LATENCY_THRESHOLD_MS", "150"),
            ("SLO_LATENCY_TARGET", "95"),
        ],
    )
    .await;
    tradeplane_platform::server::ensure_admin(&state)
        .await
        .expect("admin");
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "erin", "password": "erin-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let trader = common::access_token(&state, "erin", "erin-password").await;
    let admin = common::access_token(&state, ADMIN.0, ADMIN.1).await;

    let (status, body) = send(&state, "GET", "/api/v1/admin/slo", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send(&state, "GET", "/api/v1/admin/slo", Some(&trader), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, before) = send(&state, "GET", "/api/v1/admin/slo", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["scope"], "replica");
    assert_eq!(before["objectives"]["availability_target"], 99.5);
    assert_eq!(before["objectives"]["latency_threshold_ms"], 150);
    assert_eq!(before["objectives"]["latency_target"], 95.0);
    let names: Vec<&str> = before["breakers"]
        .as_array()
        .expect("breakers")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["database", "redis"]);
    let base = window(&before, "since_start").clone();

    // Probes are not API traffic.
    for _ in 0..5 {
        send(&state, "GET", "/health/live", None, None).await;
    }
    // Three slow requests (above 150 ms)...
    for _ in 0..3 {
        let (status, _) = send(&state, "GET", "/debug/sleep?ms=200", None, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    // ...and two 5xx: the database is gone.
    state.store.close().await;
    for _ in 0..2 {
        let (status, body) = send(&state, "GET", "/api/v1/admin/audit", Some(&admin), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }

    let (status, after) = send(&state, "GET", "/api/v1/admin/slo", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let life = window(&after, "since_start");
    let n = |w: &Value, k: &str| w[k].as_u64().unwrap_or_else(|| panic!("{k}: {w}"));
    // The 3 sleeps, the 2 failures and the previous /admin/slo call.
    assert_eq!(n(life, "requests") - n(&base, "requests"), 6, "{after}");
    assert_eq!(n(life, "errors") - n(&base, "errors"), 2, "{after}");
    assert_eq!(n(life, "slow") - n(&base, "slow"), 3, "{after}");
    let requests = n(life, "requests") as f64;
    let errors = n(life, "errors") as f64;
    let availability = life["availability"].as_f64().expect("availability");
    assert!((availability - 100.0 * (1.0 - errors / requests)).abs() < 1e-9);
    let burn = life["availability_burn_rate"].as_f64().expect("burn rate");
    assert!((burn - (errors / requests) / 0.005).abs() < 1e-6, "{after}");
    let remaining = after["remaining_budget"]["availability"]
        .as_f64()
        .expect("remaining");
    assert!((remaining - (1.0 - burn)).abs() < 1e-9);
    // The process is young: the 5-minute window holds everything since start too.
    assert_eq!(window(&after, "5m")["requests"], life["requests"]);
}
