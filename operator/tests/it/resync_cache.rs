//! The real Controller against the fake API: the 5-minute resync of an unchanged platform lists
//! no backup Jobs (the Job watch has seen nothing since the last list) and applies only the
//! children whose status it reads (the Deployment and the CronJob); a Job event makes the next
//! reconciliation list them again, and a child changed by someone else is applied again. Time is
//! tokio's paused clock.

use crate::common;

use std::time::Duration;

use common::env::*;
use common::fake_api::Logged;
use futures::StreamExt;
use http::Method;
use serde_json::json;
use tokio::time::Instant;
use tradeplane_operator::controller;
use tradeplane_operator::metrics::Metrics;
use tradeplane_operator::run::build_controller;
use tradeplane_operator::watch::WatchHealth;

const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";

async fn until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "not within {limit:?} (virtual)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn backup_job_lists(log: &[Logged]) -> usize {
    log.iter()
        .filter(|l| {
            l.method == Method::GET
                && l.path == JOBS
                && !l.query.contains("watch")
                && l.query.contains("backup")
        })
        .count()
}

fn applied(log: &[Logged]) -> Vec<&str> {
    let mut p: Vec<&str> = log
        .iter()
        .filter(|l| l.method == Method::PATCH && !l.path.ends_with("/status"))
        .map(|l| l.path.as_str())
        .collect();
    p.sort();
    p
}

#[tokio::test(start_paused = true)]
async fn a_resync_lists_no_backup_jobs_until_the_job_watch_sees_a_change() {
    let mut tp = tp_json(json!({}));
    tp["metadata"]["finalizers"] = json!([controller::FINALIZER]);
    let env = Env::with_watch_feed(tp);
    let health = WatchHealth::with_metrics(Metrics::new().unwrap());
    let controller = build_controller(&env.ctx.client, "ns", &health, env.ctx.feed.clone()).run(
        controller::reconcile,
        controller::error_policy,
        env.ctx.clone(),
    );
    let task = tokio::spawn(controller.for_each(|_| async {}));
    until(Duration::from_secs(10), || {
        env.api.get(DEPLOY).is_some() && env.api.open_watches() == 12
    })
    .await;
    // The fake delivers no watch events of its own: a 410 Gone on every watch makes them
    // relist, which reports every child's version, as a real API server's events would.
    env.api.end_watches(&[common::fake_api::gone_event()]);
    until(Duration::from_secs(10), || env.api.open_watches() == 12).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first = env.api.take_log();
    assert!(
        backup_job_lists(&first) >= 1,
        "the first reconciliation lists the backup Jobs"
    );

    // The resync of the unchanged platform: the Deployment and CronJob are applied again (their
    // status feeds the conditions), nothing else is sent, Jobs are not listed.
    tokio::time::sleep(controller::RESYNC + Duration::from_secs(5)).await;
    let resync = env.api.take_log();
    assert_eq!(applied(&resync), [DEPLOY, CRON], "{resync:?}");
    assert_eq!(
        backup_job_lists(&resync),
        0,
        "nothing changed, so the kept list answers"
    );
    assert_eq!(env.condition("Degraded")["status"], "False");

    // Someone edits the Service: its watch reports a new version, and the Service is applied
    // again (by the reconciliation that event triggers).
    env.api.edit(SERVICE, |svc| {
        svc["metadata"]["resourceVersion"] = json!("8001");
        svc["spec"]["ports"][0]["port"] = json!(9999);
    });
    let svc = env.api.get(SERVICE).expect("the Service exists");
    env.api.send_watch_event(
        "/api/v1/namespaces/ns/services",
        &json!({"type": "MODIFIED", "object": svc}),
    );
    until(Duration::from_secs(10), || {
        env.api
            .get(SERVICE)
            .is_some_and(|s| s["spec"]["ports"][0]["port"] != 9999)
    })
    .await;
    let repaired = env.api.take_log();
    assert!(applied(&repaired).contains(&SERVICE), "{repaired:?}");

    // A backup-now Job fails: its watch event makes the next reconciliation list again.
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "x-backup-now-r", "namespace": "ns", "resourceVersion": "9001",
            "creationTimestamp": "2026-11-22T02:00:00Z",
            "annotations": {"tradeplane.io/backup-now": "r"},
            "labels": {"app.kubernetes.io/instance": "x", "app.kubernetes.io/managed-by": "tradeplane-operator",
                "app.kubernetes.io/component": "backup"},
            "ownerReferences": [{"apiVersion": "tradeplane.io/v1alpha1", "kind": "TradingPlatform",
                "name": "x", "uid": "tp-uid", "controller": true}]},
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"failed": 3, "startTime": "2026-11-22T02:00:00Z", "conditions": [{"type": "Failed",
            "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2026-11-22T02:10:00Z"}]}});
    env.api.put(&format!("{JOBS}/x-backup-now-r"), job.clone());
    job["metadata"]["resourceVersion"] = json!("9001");
    env.api
        .send_watch_event(JOBS, &json!({"type": "ADDED", "object": job}));
    until(Duration::from_secs(10), || {
        env.condition("Degraded")["reason"] == "BackupJobFailed"
    })
    .await;
    let after = env.api.take_log();
    assert!(
        backup_job_lists(&after) >= 1,
        "the Job event made the kept list stale"
    );
    let m = env.condition("Degraded")["message"].to_string();
    assert!(m.contains("x-backup-now-r"), "{m}");
    task.abort();
}
