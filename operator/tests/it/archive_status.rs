//! `status.archive` and `ArchiveHealthy`: read from the platform pods' `/metrics` while
//! `spec.backup.archive.enabled`, at most once a minute, never while archiving is off.

use crate::common;

use common::canary_env::{Env, PODS};
use common::env::{DEPLOY, TP, tp_json};
use serde_json::{Value, json};

fn archived() -> Value {
    tp_json(
        json!({"backup": {"enabled": true, "retention": {"keepDays": 7},
        "archive": {"enabled": true, "intervalSeconds": 5},
        "storage": {"s3": {"bucket": "b-bucket", "prefix": "p", "forcePathStyle": true}}}}),
    )
}

/// `archive_up` and the last shipment `ago` seconds before the test clock's now.
fn serve(env: &Env, ip: &str, up: u8, ago: i64) {
    let t = env.ctx.now().as_second() - ago;
    env.served.lock().unwrap().insert(
        ip.to_string(),
        format!("# TYPE archive_up gauge\narchive_up {up}\n# TYPE archive_last_shipped_timestamp_seconds gauge\narchive_last_shipped_timestamp_seconds {t}\n"),
    );
}

fn pod_lists(env: &Env) -> usize {
    env.api
        .take_log()
        .iter()
        .filter(|l| l.path == PODS && l.method == http::Method::GET)
        .count()
}

#[tokio::test]
async fn archive_status_comes_from_the_pods_at_most_once_a_minute() {
    let env = Env::new(archived());
    env.reconcile().await;
    env.reconcile().await;
    env.available(DEPLOY);
    env.pod("x-a", DEPLOY, "10.0.0.1", true);
    env.pod("x-b", DEPLOY, "10.0.0.2", true);
    env.at(61);
    serve(&env, "10.0.0.1", 0, 300);
    serve(&env, "10.0.0.2", 1, 3);
    let _ = env.api.take_log();
    env.reconcile().await;
    assert_eq!(pod_lists(&env), 1);
    let st = env.api.get(TP).unwrap()["status"]["archive"].clone();
    assert_eq!(st["healthy"], true, "{st}");
    assert_eq!(
        st["lastShippedAt"], "2026-11-22T12:00:58Z",
        "max over the pods"
    );
    let c = env.condition("ArchiveHealthy");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("True"), Some("Archiving"))
    );

    // Within the minute: no read, nothing changes even though the pods now say otherwise.
    serve(&env, "10.0.0.2", 0, 3);
    env.at(100);
    env.reconcile().await;
    assert_eq!(pod_lists(&env), 0, "not read again within a minute");
    assert_eq!(env.condition("ArchiveHealthy")["status"], "True");

    // A minute later: no pod up.
    env.at(125);
    env.reconcile().await;
    let log = env.api.take_log();
    assert_eq!(log.iter().filter(|l| l.path == PODS).count(), 1);
    let warned = log.iter().any(|l| {
        l.path.starts_with(common::env::EVENTS)
            && l.body
                .as_ref()
                .is_some_and(|b| b["type"] == "Warning" && b["reason"] == "ArchiveDown")
    });
    assert!(warned, "a Warning Event on the transition");
    let c = env.condition("ArchiveHealthy");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("ArchiveDown"))
    );
    assert_eq!(
        env.api.get(TP).unwrap()["status"]["archive"]["healthy"],
        false
    );

    // Up again but the last shipment is old: stale (5 × 5 s).
    env.at(190);
    serve(&env, "10.0.0.1", 1, 300);
    serve(&env, "10.0.0.2", 1, 300);
    env.reconcile().await;
    assert_eq!(env.condition("ArchiveHealthy")["reason"], "ArchiveStale");

    // Archiving off: the status and the condition go, and the pods are not read any more.
    env.edit_spec(|s| s["backup"]["archive"]["enabled"] = json!(false));
    env.at(400);
    let _ = env.api.take_log();
    env.reconcile().await;
    env.reconcile().await;
    assert_eq!(pod_lists(&env), 0);
    let tp = env.api.get(TP).unwrap();
    assert!(tp["status"]["archive"].is_null(), "{}", tp["status"]);
    assert!(env.condition("ArchiveHealthy").is_null());
}

#[tokio::test]
async fn without_archiving_no_pod_is_read() {
    let env = Env::new(tp_json(json!({})));
    env.reconcile().await;
    env.reconcile().await;
    env.pod("x-a", DEPLOY, "10.0.0.1", true);
    env.at(120);
    let _ = env.api.take_log();
    env.reconcile().await;
    assert_eq!(pod_lists(&env), 0);
    assert!(env.condition("ArchiveHealthy").is_null());
}
