//! The canary analysis against the platform's real `/metrics` text (two scrapes of a running
//! platform in tests/fixtures), the production HTTP scraper against a local server (also driven
//! by the controller: pods on loopback addresses serving the fixtures), the status ↔ state
//! mapping, and the CEL rules of `spec.rollout.canary`.

use crate::common;

use std::collections::HashMap;

use common::{cel, structural};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradeplane_operator::analysis::{self, Sample};
use tradeplane_operator::canary::{config, state_of};
use tradeplane_operator::crd::{CanarySpec, RolloutStatus};
use tradeplane_operator::rollout::RolloutState;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        common::repo_root()
            .join("operator/tests/fixtures")
            .join(name),
    )
    .expect("fixture exists")
}

#[test]
fn the_real_metrics_count_requests_but_not_probes_or_scrapes() {
    let a = analysis::parse(&fixture("platform-metrics.txt")).unwrap();
    // 2 × 404 + 1 × 401; the 3 liveness probes do not count
    assert_eq!((a.requests, a.errors), (3.0, 0.0));
    let inf = a.buckets.iter().next_back().unwrap();
    assert!(inf.0.0.is_infinite() && *inf.1 == 3.0, "{:?}", a.buckets);
    let b = analysis::parse(&fixture("platform-metrics-later.txt")).unwrap();
    let d = b.since(&a);
    // 4 × 404 + 2 × 401 in between; /health/ready and /metrics left out
    assert_eq!((d.requests, d.errors), (6.0, 0.0));
    assert_eq!(d.error_ratio(), Some(0.0));
    let p99 = d.p99().unwrap();
    assert!(
        p99 > 0.0 && p99 <= 0.001,
        "local requests are sub-millisecond: {p99}"
    );
}

#[test]
fn five_hundreds_in_the_platform_format_are_errors() {
    let base = fixture("platform-metrics.txt");
    let later = format!(
        "{base}http_requests_total{{method=\"POST\",route=\"/api/v1/orders\",status=\"500\"}} 3\nhttp_requests_total{{method=\"POST\",route=\"/api/v1/orders\",status=\"503\"}} 1\n"
    );
    let d = analysis::parse(&later)
        .unwrap()
        .since(&analysis::parse(&base).unwrap());
    assert_eq!((d.requests, d.errors), (4.0, 4.0));
    assert!(
        analysis::parse("# nothing here\nfoo 1\n").is_err(),
        "not the platform"
    );
}

#[test]
fn a_step_sums_pods_from_their_own_baselines() {
    let a = analysis::parse(&fixture("platform-metrics.txt")).unwrap();
    let b = analysis::parse(&fixture("platform-metrics-later.txt")).unwrap();
    let mut baseline = HashMap::from([("p1".to_string(), a.clone())]);
    let now = HashMap::from([("p1".to_string(), b.clone()), ("p2".to_string(), b)]);
    let total = analysis::over_step(&mut baseline, &now);
    assert_eq!(total.requests, 6.0, "p2 is new: it only gets a baseline");
    assert!(baseline.contains_key("p2"));
    let restarted = HashMap::from([("p1".to_string(), a.clone()), ("p2".to_string(), a)]);
    let mut baseline = now;
    let total: Sample = analysis::over_step(&mut baseline, &restarted);
    assert_eq!(
        total.requests, 6.0,
        "both restarted: each counts from zero (3 + 3)"
    );
}

async fn serve_once(status: &'static str, body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
    });
    format!("http://{addr}/metrics")
}

#[tokio::test]
async fn the_http_scraper_reads_a_pods_metrics() {
    let text = fixture("platform-metrics-later.txt");
    let url = serve_once("200 OK", text.clone()).await;
    let got = (analysis::http_scraper())(url).await.unwrap();
    assert_eq!(
        analysis::parse(&got).unwrap(),
        analysis::parse(&text).unwrap()
    );
    let url = serve_once("503 Service Unavailable", "down".into()).await;
    let err = (analysis::http_scraper())(url).await.unwrap_err();
    assert!(err.contains("503"), "{err}");
}

#[test]
fn the_status_maps_back_to_the_stored_state() {
    let s: RolloutStatus = serde_json::from_value(json!({"phase": "Analysing", "step": 2,
        "stepStartedAt": "2026-11-22T12:01:00Z"}))
    .unwrap();
    let since = "2026-11-22T12:01:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    assert_eq!(state_of(&s), RolloutState::Analysing { step: 1, since });
    let rb: RolloutStatus =
        serde_json::from_value(json!({"phase": "RolledBack", "message": "why"})).unwrap();
    assert_eq!(
        state_of(&rb),
        RolloutState::RolledBack {
            reason: "why".into()
        }
    );
    assert_eq!(state_of(&RolloutStatus::default()), RolloutState::Stable);
    let c = config(&CanarySpec::default());
    assert_eq!((c.steps, c.interval_seconds), (vec![10, 50, 100], 60));
}

fn with_canary(canary: Value) -> Value {
    json!({
        "apiVersion": "tradeplane.io/v1alpha1", "kind": "TradingPlatform",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"image": "img:1", "database": {"name": "s", "key": "db"},
            "jwtSecret": {"name": "s", "key": "jwt"},
            "rollout": {"strategy": "canary", "canary": canary}}
    })
}

#[test]
fn cel_rules_of_the_steps() {
    for ok in [
        json!([10, 50, 100]),
        json!([100]),
        json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 100]),
    ] {
        let obj = with_canary(json!({"steps": ok}));
        cel(&obj).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(structural(&obj).is_empty(), "{:?}", structural(&obj));
    }
    for (bad, words) in [
        (json!([50, 10, 100]), "strictly increasing"),
        (json!([10, 10, 100]), "strictly increasing"),
        (json!([10, 50]), "the last weight must be 100"),
        (json!([0, 100]), "each weight must be 1..100"),
        (json!([10, 50, 120]), "each weight must be 1..100"),
    ] {
        let err = cel(&with_canary(json!({"steps": bad}))).expect_err("refused");
        assert!(err.contains(words), "{bad}: {err}");
    }
}

#[test]
fn thresholds_and_strategy_are_checked_by_the_schema() {
    let bad =
        with_canary(json!({"maxErrorRatio": -0.1, "maxP99Seconds": -1, "intervalSeconds": 1}));
    let errors = structural(&bad);
    assert_eq!(errors.len(), 3, "{errors:?}");
    let mut obj = with_canary(json!({}));
    obj["spec"]["rollout"]["strategy"] = json!("blue-green");
    assert!(structural(&obj).iter().any(|e| e.contains("not in")));
}

#[test]
fn the_prometheus_url_is_plain_http() {
    let ok =
        with_canary(json!({"prometheus": {"url": "http://prometheus-operated.monitoring:9090"}}));
    assert!(structural(&ok).is_empty(), "{:?}", structural(&ok));
    for bad in ["https://prom:9090", "prom:9090", "http://prom:9090/?q=1"] {
        let obj = with_canary(json!({"prometheus": {"url": bad}}));
        assert!(!structural(&obj).is_empty(), "{bad} accepted");
    }
}

/// Serves `first` to the first request and `then` to every later one, on `ip:port`.
async fn platform_at(ip: &str, port: u16, first: String, then: String) {
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = if n == 0 { &first } else { &then };
            n += 1;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
}

#[tokio::test]
async fn the_controller_analyses_real_platform_metrics_over_http() {
    use common::canary_env::{CANARY, Env, REAL_HTTP};
    use common::env::{DEPLOY, tp_json};
    // One port on three loopback addresses: a canary pod and two stable pods.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (a, b) = (
        fixture("platform-metrics.txt"),
        fixture("platform-metrics-later.txt"),
    );
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        platform_at(ip, port, a.clone(), b.clone()).await;
    }
    let env = Env::new(tp_json(json!({"replicas": 4,
        "rollout": {"strategy": "canary", "canary": {"metricsPort": port}}})));
    env.served
        .lock()
        .unwrap()
        .insert(REAL_HTTP.into(), String::new());
    env.reconcile().await;
    env.reconcile().await;
    env.available(DEPLOY);
    env.pod("x-s-1", DEPLOY, "127.0.0.3", true);
    env.pod("x-s-2", DEPLOY, "127.0.0.4", true);
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    env.pod("x-canary-c-1", CANARY, "127.0.0.2", true);
    env.at(10);
    env.reconcile().await; // baseline: the first scrape of each pod
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("baseline")
    );
    env.at(61);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(r["canaryRequests"], 6, "{r}");
    assert_eq!(r["canaryErrorRatio"], 0.0);
    assert_eq!(r["stableErrorRatio"], 0.0);
    assert_eq!(
        (r["step"].as_i64(), r["weight"].as_i64()),
        (Some(2), Some(50)),
        "{r}"
    );
}
