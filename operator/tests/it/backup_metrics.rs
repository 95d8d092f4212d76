//! The operator exports each TradingPlatform's backup state on its own /metrics: the success
//! time from the Jobs, size/rows/duration from the backup container's termination message.

use crate::common;

use common::env::{Env, tp_json};
use serde_json::json;

const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";
const PODS: &str = "/api/v1/namespaces/ns/pods";

fn backup_job(name: &str, condition: &str, at: &str) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": at,
            "labels": {"app.kubernetes.io/instance": "x",
                "app.kubernetes.io/managed-by": "tradeplane-operator",
                "app.kubernetes.io/component": "backup"}},
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"completionTime": if condition == "Complete" { json!(at) } else { json!(null) },
            "conditions": [{"type": condition, "status": "True", "lastTransitionTime": at}]}
    })
}

fn pod(job: &str, message: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job}-abcde"), "namespace": "ns",
            "labels": {"batch.kubernetes.io/job-name": job}},
        "status": {"containerStatuses": [{"name": "backup", "image": "img:1", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-22T02:00:09Z",
                "message": message}}}]}
    })
}

fn series(env: &Env, name: &str) -> Option<f64> {
    let text = env.ctx.metrics.encode();
    let prefix = format!("{name}{{namespace=\"ns\",tradingplatform=\"x\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().expect("a number"))
}

#[tokio::test]
async fn backup_results_reach_the_operator_metrics() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    assert_eq!(
        series(
            &env,
            "tradeplane_operator_backup_last_success_timestamp_seconds"
        ),
        None,
        "no backup yet: no series (the alert's absent() guard covers it)"
    );
    env.api.put(
        &format!("{JOBS}/x-backup-100"),
        backup_job("x-backup-100", "Complete", "2026-11-22T02:00:10Z"),
    );
    env.api.put(
        &format!("{PODS}/x-backup-100-abcde"),
        pod(
            "x-backup-100",
            r#"{"operation":"backup","success":true,"exit_code":0,"finished_at":1795312809.5,"duration_seconds":8.25,"size_bytes":123456,"rows":789,"backup":"s3://b/p/x.tpb"}"#,
        ),
    );
    env.api.put(
        &format!("{JOBS}/x-backup-50"),
        backup_job("x-backup-50", "Failed", "2026-11-21T02:00:00Z"),
    );
    env.reconcile().await.expect("reconciles");
    assert_eq!(
        series(
            &env,
            "tradeplane_operator_backup_last_success_timestamp_seconds"
        ),
        Some(1_795_312_810.0)
    );
    assert_eq!(
        series(
            &env,
            "tradeplane_operator_backup_last_failure_timestamp_seconds"
        ),
        Some(1_795_226_400.0)
    );
    assert_eq!(
        series(&env, "tradeplane_operator_backup_last_size_bytes"),
        Some(123_456.0)
    );
    assert_eq!(
        series(&env, "tradeplane_operator_backup_last_rows"),
        Some(789.0)
    );
    assert_eq!(
        series(&env, "tradeplane_operator_backup_last_duration_seconds"),
        Some(8.25)
    );

    // The pod is read once per succeeded Job; afterwards the result is remembered.
    env.api.take_log();
    env.reconcile().await.expect("reconciles");
    assert!(
        !env.api.take_log().iter().any(|l| l.path.starts_with(PODS)),
        "the same Job's pod is not listed again"
    );
    assert_eq!(
        series(&env, "tradeplane_operator_backup_last_size_bytes"),
        Some(123_456.0)
    );

    // Backups switched off: the series go away.
    env.edit_spec(|s| s["backup"] = json!({"enabled": false}));
    env.reconcile().await.expect("reconciles");
    assert_eq!(
        series(
            &env,
            "tradeplane_operator_backup_last_success_timestamp_seconds"
        ),
        None
    );
    assert_eq!(
        series(&env, "tradeplane_operator_backup_last_size_bytes"),
        None
    );
}
