//! `spec.restore`: the controller against the fake API — the restore Job runs first and nothing
//! else starts until it succeeded, a failure is `Degraded`/`RestoreFailed` quoting the exit code
//! and the error, a failed Job is never recreated — and the CRD's admission rules.

use crate::common;

use common::env::*;
use common::{cel, structural};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tradeplane_operator::controller::{BACKUP_NOW_RETRY, RESYNC};

const JOB: &str = "/apis/batch/v1/namespaces/ns/jobs/x-restore";
const POD: &str = "/api/v1/namespaces/ns/pods/x-restore-abcde";

fn source() -> Value {
    json!({"bucket": "old-bucket", "prefix": "prod", "endpoint": "http://minio:9000",
        "forcePathStyle": true, "credentials": {
            "accessKeyId": {"name": "s3", "key": "id"},
            "secretAccessKey": {"name": "s3", "key": "secret"}}})
}

fn restoring(restore: Value) -> Env {
    let env = Env::new(tp_json(json!({
        "backup": {"enabled": true, "storage": {"s3": {"bucket": "new-bucket", "prefix": "restored",
            "forcePathStyle": true}}},
        "restore": restore
    })));
    env.api.hold_migrations();
    env
}

fn finish(env: &Env, ok: bool) {
    let status = if ok {
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
    } else {
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
    };
    env.api.edit(JOB, |j| j["status"] = status);
}

fn events(env: &Env) -> Vec<Value> {
    env.api
        .take_log()
        .into_iter()
        .filter(|l| l.method != Method::GET && l.path.starts_with(EVENTS))
        .filter_map(|l| l.body)
        .collect()
}

fn migration_jobs(env: &Env) -> usize {
    env.api
        .state
        .lock()
        .unwrap()
        .store
        .keys()
        .filter(|k| k.contains("-migrate-"))
        .count()
}

#[tokio::test]
async fn the_restore_job_runs_first_and_nothing_else_starts_meanwhile() {
    let env = restoring(json!({"source": source(), "until": "2026-12-03T14:05:00Z"}));
    env.converge().await;
    let job = env.api.get(JOB).expect("restore Job created");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["command"],
        json!([
            "tradeplane-platform",
            "restore",
            "s3://old-bucket/prod",
            "--until",
            "2026-12-03T14:05:00Z"
        ])
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "tp-uid");
    assert!(
        env.api.get(DEPLOY).is_none(),
        "no Deployment while restoring"
    );
    assert_eq!(
        migration_jobs(&env),
        0,
        "no migration Job before the restore"
    );
    assert!(
        env.api.get(CRON).is_none(),
        "no backup of a database being restored"
    );
    assert!(env.api.get(SA).is_some() && env.api.get(CM).is_some());
    let p = env.condition("Progressing");
    assert_eq!(
        (p["status"].as_str(), p["reason"].as_str()),
        (Some("True"), Some("Restoring"))
    );
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("s3://old-bucket/prod up to 2026-12-03T14:05:00Z"),
        "{p}"
    );
    let st = env.api.get(TP).unwrap()["status"].clone();
    assert_eq!(st["phase"], "Progressing");
    assert_eq!(st["restore"]["phase"], "Running");
    assert_eq!(st["restore"]["jobName"], "x-restore");
    assert!(st["restore"]["completedAt"].is_null());

    // Still running: the same, re-checked soon, no second Job.
    let action = env.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(BACKUP_NOW_RETRY));
    assert!(env.api.get(DEPLOY).is_none());
}

#[tokio::test]
async fn after_the_restore_succeeded_the_normal_path_runs() {
    let env = restoring(json!({"source": source()}));
    env.converge().await;
    let _ = env.api.take_log();
    finish(&env, true);
    env.reconcile().await.unwrap();
    let st = env.api.get(TP).unwrap()["status"].clone();
    assert_eq!(st["restore"]["phase"], "Succeeded");
    assert_eq!(st["restore"]["completedAt"], "2026-11-22T12:00:00Z");
    assert!(
        events(&env)
            .iter()
            .any(|e| e["reason"] == "Restored" && e["type"] == "Normal")
    );
    // The migration gate runs after the restore, then the Deployment is created.
    assert_eq!(migration_jobs(&env), 1, "migration Job after the restore");
    assert!(env.api.get(DEPLOY).is_none(), "waits for the migration");
    env.api.state.lock().unwrap().complete_migrations = true;
    let m = env
        .api
        .state
        .lock()
        .unwrap()
        .store
        .keys()
        .find(|k| k.contains("-migrate-"))
        .cloned()
        .unwrap();
    env.api.edit(
        &m,
        |j| {
            j["status"] =
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
        },
    );
    env.reconcile().await.unwrap();
    assert!(
        env.api.get(DEPLOY).is_some(),
        "Deployment after the restore and the migration"
    );
    assert!(env.api.get(CRON).is_some(), "and the backup CronJob");
    assert_ne!(env.condition("Progressing")["reason"], "Restoring");

    // Completed is remembered: deleting the Job runs nothing again.
    env.api.remove(JOB);
    env.reconcile().await.unwrap();
    assert!(env.api.get(JOB).is_none(), "never restored twice");
    assert_eq!(
        env.api.get(TP).unwrap()["status"]["restore"]["completedAt"],
        "2026-11-22T12:00:00Z"
    );
}

#[tokio::test]
async fn a_succeeded_job_counts_as_completed_when_the_status_was_lost() {
    let env = restoring(json!({"source": source()}));
    env.converge().await;
    finish(&env, true);
    env.api.edit(TP, |tp| tp["status"] = json!({}));
    env.api.state.lock().unwrap().complete_migrations = true;
    env.reconcile().await.unwrap();
    assert_eq!(
        env.api.get(TP).unwrap()["status"]["restore"]["phase"],
        "Succeeded"
    );
    assert!(env.api.get(DEPLOY).is_some());
}

#[tokio::test]
async fn a_failed_restore_is_degraded_with_the_exit_code_and_the_error_and_is_not_retried() {
    let env = restoring(json!({"source": source(), "untilSeq": 42}));
    env.converge().await;
    finish(&env, false);
    env.api.put(
        POD,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "x-restore-abcde", "namespace": "ns",
                "labels": {"batch.kubernetes.io/job-name": "x-restore"}},
            "status": {"containerStatuses": [{"name": "restore", "image": "img:1", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 6,
                "finishedAt": "2026-11-22T11:59:00Z",
                "message": "reading s3://old-bucket/prod\ntradeplane-platform restore: restore point 42 is outside the archive (1..17)\n"}}}]}}),
    );
    let _ = env.api.take_log();
    let action = env.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    let d = env.condition("Degraded");
    assert_eq!(
        (d["status"].as_str(), d["reason"].as_str()),
        (Some("True"), Some("RestoreFailed"))
    );
    let m = d["message"].as_str().unwrap();
    for part in [
        "restore Job x-restore failed",
        "exit code 6 (refused",
        "restore point 42 is outside the archive (1..17)",
        "kubectl delete job x-restore",
        "create a new one",
    ] {
        assert!(m.contains(part), "{part:?} not in {m}");
    }
    let st = env.api.get(TP).unwrap()["status"].clone();
    assert_eq!(st["phase"], "Degraded");
    assert_eq!(st["restore"]["phase"], "Failed");
    assert!(
        env.api.get(DEPLOY).is_none(),
        "nothing starts after a failed restore"
    );
    assert_eq!(migration_jobs(&env), 0);
    let ev = events(&env);
    let warn = ev
        .iter()
        .find(|e| e["reason"] == "RestoreFailed")
        .unwrap_or_else(|| panic!("a Warning Event: {ev:?}"));
    assert_eq!(warn["type"], "Warning");

    // Not retried on its own: no new Job, no status, no Event, and the pod is not read again.
    env.reconcile().await.unwrap();
    let log = env.api.take_log();
    assert!(
        !writes(&log)
            .iter()
            .any(|w| w.contains("/jobs") || w.contains("/status") || w.contains("/events")),
        "{:?}",
        writes(&log)
    );
    assert!(
        !log.iter().any(|l| l.path.ends_with("/pods")),
        "pod read once"
    );

    // Deleting the Job retries with the same spec.
    env.api.remove(JOB);
    env.reconcile().await.unwrap();
    assert!(env.api.get(JOB).is_some(), "a new restore Job");
    assert_eq!(env.condition("Progressing")["reason"], "Restoring");
    assert_eq!(env.condition("Degraded")["status"], "False");
}

// --- admission -------------------------------------------------------------------------------

fn object(restore: Value, backup: Value) -> Value {
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            "image": "img:1",
            "database": {"name": "s", "key": "db"},
            "jwtSecret": {"name": "s", "key": "jwt"},
            "backup": backup,
            "restore": restore
        }
    })
}

fn plain(restore: Value) -> Value {
    object(restore, json!({}))
}

fn ok(obj: &Value) {
    cel(obj).unwrap_or_else(|e| panic!("should pass: {e}\n{obj:#}"));
    let s = structural(obj);
    assert!(s.is_empty(), "{s:#?}");
}

fn refused(obj: &Value, part: &str) {
    let err = cel(obj)
        .err()
        .or_else(|| {
            let s = structural(obj);
            (!s.is_empty()).then(|| s.join("; "))
        })
        .unwrap_or_else(|| panic!("should be refused: {obj:#}"));
    assert!(err.contains(part), "{part:?} not in {err}");
}

#[test]
fn admission_accepts_each_target_form() {
    for r in [
        json!({"source": source()}),
        json!({"source": source(), "backup": "tradeplane-backup-20261122T020005.123Z.tpb"}),
        json!({"source": source(), "until": "latest"}),
        json!({"source": source(), "until": "2026-12-03T14:05:00Z"}),
        json!({"source": source(), "until": "2026-12-03T15:05:00.250+01:00"}),
        json!({"source": source(), "untilSeq": 1}),
        json!({"source": source(), "backup": "tradeplane-backup-20261122T020005.123Z.tpb", "untilSeq": 9}),
    ] {
        ok(&plain(r));
    }
}

#[test]
fn admission_refuses_bad_targets() {
    refused(
        &plain(json!({"source": source(), "until": "yesterday"})),
        "spec.restore.until must be an RFC 3339 time",
    );
    refused(
        &plain(json!({"source": source(), "until": "2026-12-03T14:05:00"})),
        "RFC 3339 time with a zone",
    );
    refused(
        &plain(json!({"source": source(), "until": "latest", "untilSeq": 3})),
        "at most one of until and untilSeq",
    );
    refused(
        &plain(json!({"source": source(), "untilSeq": 0})),
        "minimum",
    );
    refused(
        &plain(json!({"source": source(), "backup": "../other.tpb"})),
        "does not match",
    );
    refused(
        &plain(json!({"backup": "tradeplane-backup-20261122T020005.123Z.tpb"})),
        "source: required",
    );
}

#[test]
fn restore_is_immutable_once_set() {
    let old = plain(json!({"source": source(), "until": "latest"}));
    let validate = |new: &Value, old: &Value| {
        kube::core::cel::Validator::new()
            .validate(&common::schema(), new, Some(old))
            .map_err(|e| format!("{e:?}"))
    };
    validate(&old, &old).expect("unchanged");
    let mut other = old.clone();
    other["spec"]["replicas"] = json!(5);
    validate(&other, &old).expect("other fields may change");
    let changed = plain(json!({"source": source(), "until": "2026-12-03T14:05:00Z"}));
    let err = validate(&changed, &old).expect_err("changed");
    assert!(err.contains("create a new TradingPlatform"), "{err}");
    let mut removed = old.clone();
    removed["spec"].as_object_mut().unwrap().remove("restore");
    assert!(validate(&removed, &old).is_err(), "removed");
    assert!(validate(&old, &removed).is_err(), "added after creation");
}

#[test]
fn archiving_into_the_restore_source_is_refused() {
    let archive = |s3: Value| json!({"retention": {"keepDays": 7}, "archive": {"enabled": true}, "storage": {"s3": s3}});
    let same = object(json!({"source": source()}), archive(source()));
    refused(&same, "the restored database starts a new archive");
    let mut no_prefix = source();
    no_prefix.as_object_mut().unwrap().remove("prefix");
    refused(
        &object(json!({"source": no_prefix.clone()}), archive(no_prefix)),
        "its own prefix",
    );
    let mut own = source();
    own["prefix"] = json!("prod-restored");
    ok(&object(json!({"source": source()}), archive(own)));
    let mut other_bucket = source();
    other_bucket["bucket"] = json!("new-bucket");
    ok(&object(json!({"source": source()}), archive(other_bucket)));
    // Backups without archiving are not refused (nothing is archived there).
    ok(&object(
        json!({"source": source()}),
        json!({"retention": {"keepDays": 7}, "storage": {"s3": source()}}),
    ));
}

#[test]
fn render_quotes_the_until_time_for_yaml_1_1_readers() {
    let path = common::repo_root().join("k8s/examples/restore-pitr.yaml");
    let rendered =
        tradeplane_operator::cli::render_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(rendered.contains("- '2026-12-03T14:05:00Z'"), "{rendered}");
    let q = tradeplane_operator::resources::quote_timestamps;
    assert_eq!(
        q("a: 2026-12-03\n- 2026-12-03 10:00:00\n"),
        "a: '2026-12-03'\n- '2026-12-03 10:00:00'\n"
    );
    assert_eq!(
        q("b: x2026-12-03\nc: 12:00\n"),
        "b: x2026-12-03\nc: 12:00\n"
    );
    let block = "data: |-\n  k: 2026-12-03\n  - 2026-12-03\nnext: 2026-12-04\n";
    assert_eq!(
        q(block),
        "data: |-\n  k: 2026-12-03\n  - 2026-12-03\nnext: '2026-12-04'\n"
    );
}
