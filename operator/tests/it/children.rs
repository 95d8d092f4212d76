//! Controller tests (tower-test fake API) for children that fail: each child applied on its own,
//! SSA conflicts repaired by delete-and-recreate, human messages, the HPA handover that never
//! lowers replicas, ReplicaSet / backup Job failures surfaced, a terminating namespace, and
//! backup-now exclusive with the CronJob.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::env::*;
use http::Method;
use serde_json::{Value, json};
use tradeplane_operator::controller;

const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";

fn duplicate_port() -> (u16, String, Value) {
    (
        422,
        "Service \"x\" is invalid: spec.ports[1].name: Duplicate value: \"http\"".to_string(),
        json!({"name": "x", "kind": "services", "causes": [
            {"reason": "FieldValueDuplicate", "message": "Duplicate value: \"http\"", "field": "spec.ports[1].name"}
        ]}),
    )
}

fn is_apply(m: &Method, ct: &str) -> bool {
    m == Method::PATCH && ct.starts_with("application/apply-patch")
}

fn manager(query: &str) -> &str {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldManager="))
        .unwrap_or("")
}

fn events(log: &[common::fake_api::Logged]) -> Vec<Value> {
    log.iter()
        .filter(|l| l.method == Method::POST && l.path == EVENTS)
        .filter_map(|l| l.body.clone())
        .collect()
}

#[tokio::test]
async fn a_service_ssa_cannot_merge_is_recreated_and_the_others_are_still_applied() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.edit_spec(|s| s["image"] = json!("img:2"));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // The first apply of the Service fails as on the real server after a hand edit of its port.
    env.api.reject_when(move |m, p, ct| {
        (is_apply(m, ct) && p == SERVICE && c.fetch_add(1, Ordering::SeqCst) == 0)
            .then(duplicate_port)
    });
    let _ = env.api.take_log();
    env.reconcile().await.expect("repaired by re-creation");

    let log = env.api.take_log();
    let service_ops: Vec<String> = log
        .iter()
        .filter(|l| l.path == SERVICE)
        .map(|l| l.method.to_string())
        .collect();
    assert_eq!(
        service_ops,
        ["PATCH", "DELETE", "PATCH"],
        "apply, delete, apply"
    );
    assert!(env.api.get(SERVICE).is_some(), "the Service exists again");
    let image = &env.api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(
        image, "img:2",
        "the Deployment after the Service was applied"
    );
    let ev = events(&log);
    let recreated = ev
        .iter()
        .find(|e| e["reason"] == "Recreated")
        .expect("a Recreated event");
    let note = recreated["note"].as_str().unwrap();
    assert!(note.contains("Service x"), "{note}");
    assert!(
        note.contains("field spec.ports[1].name: Duplicate value"),
        "{note}"
    );
    assert_eq!(env.condition("Degraded")["status"], "False");
    assert!(
        env.ctx
            .metrics
            .encode()
            .contains("tradeplane_operator_children_recreated_total{kind=\"Service\"} 1")
    );
}

#[tokio::test]
async fn a_child_that_keeps_failing_is_reported_in_words_and_does_not_block_the_others() {
    let env = Env::new(tp_json(
        json!({"ingress": {"enabled": true, "host": "x.example.com"}}),
    ));
    env.converge().await;
    env.edit_spec(|s| s["image"] = json!("img:3"));
    env.api.reject_when(|m, p, ct| {
        (is_apply(m, ct) && p == SERVICE).then(|| {
            (
                422,
                "Service \"x\" is invalid: spec.ports[0].nodePort: Invalid value: 99999: provided port is not in the valid range".to_string(),
                json!({"causes": [{"reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
                    "message": "Invalid value: 99999: provided port is not in the valid range"}]}),
            )
        })
    });
    let err = env.reconcile().await.expect_err("the Service is refused");
    assert!(
        matches!(err, controller::Error::Children(ref f) if f.len() == 1),
        "{err}"
    );
    // Everything after the Service was applied.
    let image = &env.api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "img:3");
    assert!(env.api.get(INGRESS).is_some());
    assert!(env.api.get(NETPOL).is_some());
    let d = env.condition("Degraded");
    assert_eq!(d["status"], "True");
    assert_eq!(d["reason"], "ChildApplyFailed");
    let m = d["message"].as_str().unwrap();
    assert!(
        m.contains("Service x: field spec.ports[0].nodePort: Invalid value: 99999"),
        "{m}"
    );
    assert!(m.contains("(422 Invalid)"), "{m}");
    assert!(m.contains("correct the TradingPlatform field"), "{m}");
    assert!(!m.contains("ApiError") && !m.contains("Status {"), "{m}");
    // not a merge conflict: never deleted
    assert!(env.api.get(SERVICE).is_some());
}

#[tokio::test]
async fn enabling_autoscaling_never_lowers_replicas() {
    let env = Env::new(tp_json(json!({"replicas": 4})));
    env.converge().await;
    assert_eq!(env.api.get(DEPLOY).unwrap()["spec"]["replicas"], 4);
    env.edit_spec(|s| {
        s["autoscaling"] = json!({"enabled": true, "minReplicas": 2, "maxReplicas": 6,
            "targetCPUUtilizationPercentage": 70});
    });
    let _ = env.api.take_log();
    env.reconcile().await.unwrap();
    let log = env.api.take_log();
    assert_eq!(
        env.api.get(DEPLOY).unwrap()["spec"]["replicas"],
        4,
        "replicas kept at the live value"
    );
    let applies: Vec<(String, String)> = log
        .iter()
        .filter(|l| is_apply(&l.method, &l.content_type))
        .map(|l| (l.path.clone(), l.query.clone()))
        .collect();
    let hpa = applies
        .iter()
        .position(|(p, _)| p == HPA)
        .expect("HPA applied");
    let handover = applies
        .iter()
        .position(|(p, q)| p == DEPLOY && manager(q) == "tradeplane-operator-handover")
        .expect("replicas handed over by a second field manager");
    let deploy = applies
        .iter()
        .position(|(p, q)| p == DEPLOY && manager(q) == "tradeplane-operator")
        .expect("Deployment applied");
    assert!(hpa < handover && handover < deploy, "{applies:?}");
    let body = log
        .iter()
        .rev()
        .find(|l| l.path == DEPLOY && manager(&l.query) == "tradeplane-operator")
        .and_then(|l| l.body.clone())
        .unwrap();
    assert!(
        body["spec"].get("replicas").is_none(),
        "the operator stopped sending replicas"
    );

    // The HPA scales; the operator leaves the count alone from then on.
    env.api.state.lock().unwrap().hpa_scales(DEPLOY, 5);
    env.reconcile().await.unwrap();
    env.reconcile().await.unwrap();
    assert_eq!(env.api.get(DEPLOY).unwrap()["spec"]["replicas"], 5);
}

#[tokio::test]
async fn replicaset_failed_create_is_degraded_with_its_message_and_an_event() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.edit(DEPLOY, |d| {
        d["status"] = json!({"observedGeneration": d["metadata"]["generation"], "replicas": 0,
            "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": "pods \"x-7d9\" is forbidden: image reference \"bad image\" is invalid"}]});
    });
    let _ = env.api.take_log();
    env.reconcile().await.unwrap();
    let d = env.condition("Degraded");
    assert_eq!(d["status"], "True");
    assert_eq!(d["reason"], "ReplicaFailure");
    let m = d["message"].as_str().unwrap();
    assert!(m.contains("FailedCreate"), "{m}");
    assert!(
        m.contains("image reference \"bad image\" is invalid"),
        "{m}"
    );
    assert_eq!(env.condition("Progressing")["reason"], "ReplicaFailure");
    let ev = events(&env.api.take_log());
    assert!(
        ev.iter()
            .any(|e| e["reason"] == "ReplicaFailure" && e["type"] == "Warning"),
        "{ev:?}"
    );
}

#[tokio::test]
async fn a_deployment_past_its_progress_deadline_is_degraded_with_its_message_and_an_event() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.edit(DEPLOY, |d| {
        d["status"] = json!({"observedGeneration": d["metadata"]["generation"], "replicas": 3,
            "updatedReplicas": 1, "availableReplicas": 0,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"x-5f8\" has timed out progressing."}]});
    });
    let _ = env.api.take_log();
    env.reconcile().await.unwrap();
    let d = env.condition("Degraded");
    assert_eq!(d["status"], "True");
    assert_eq!(d["reason"], "ProgressDeadlineExceeded");
    let m = d["message"].as_str().unwrap();
    assert!(m.contains("has timed out progressing"), "{m}");
    assert!(m.contains("check the pods' events and logs"), "{m}");
    let p = env.condition("Progressing");
    assert_eq!(
        (&p["status"], &p["reason"]),
        (&json!("False"), &json!("ProgressDeadlineExceeded"))
    );
    assert_eq!(env.condition("Ready")["status"], "False");
    let ev = events(&env.api.take_log());
    assert!(
        ev.iter()
            .any(|e| e["reason"] == "ProgressDeadlineExceeded" && e["type"] == "Warning"),
        "{ev:?}"
    );

    // The next rollout that completes clears it.
    env.make_deployment_available(3);
    env.reconcile().await.unwrap();
    assert_eq!(env.condition("Degraded")["status"], "False");
    assert_eq!(env.condition("Progressing")["reason"], "RolloutComplete");
}

fn backup_job(name: &str, status: Value, manual: bool) -> Value {
    let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-11-22T02:00:00Z",
            "labels": {"app.kubernetes.io/instance": "x", "app.kubernetes.io/managed-by": "tradeplane-operator",
                "app.kubernetes.io/component": "backup"}},
        "spec": {"template": {"spec": {"containers": []}}}, "status": status});
    if manual {
        j["metadata"]["annotations"] = json!({"tradeplane.io/backup-now": "r"});
    }
    j
}

#[tokio::test]
async fn a_failed_backup_job_is_degraded() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.put(
        &format!("{JOBS}/x-backup-29000000"),
        backup_job(
            "x-backup-29000000",
            json!({"failed": 3, "startTime": "2026-11-22T02:00:00Z", "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-11-22T02:10:00Z"}]}),
            false,
        ),
    );
    env.reconcile().await.unwrap();
    let d = env.condition("Degraded");
    assert_eq!(d["reason"], "BackupJobFailed");
    let m = d["message"].as_str().unwrap();
    assert!(m.contains("x-backup-29000000"), "{m}");
    assert!(
        m.contains("BackoffLimitExceeded: Job has reached the specified backoff limit"),
        "{m}"
    );
    // a later success clears it
    env.api.edit(CRON, |c| {
        c["status"] = json!({"lastSuccessfulTime": "2026-11-22T03:00:00Z"})
    });
    env.reconcile().await.unwrap();
    assert_eq!(env.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn a_terminating_namespace_gets_no_recreation_and_no_failed_reconcile() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.remove(SERVICE);
    env.api.remove(DEPLOY);
    env.api.reject_when(|m, _, ct| {
        is_apply(m, ct).then(|| {
            (
                403,
                "serviceaccounts \"x\" is forbidden: unable to create new content in namespace ns because it is being terminated".to_string(),
                json!({"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                    "message": "namespace ns is being terminated"}]}),
            )
        })
    });
    let _ = env.api.take_log();
    let action = env.reconcile().await.expect("not a failure");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let log = env.api.take_log();
    let w = writes(&log);
    assert_eq!(w.len(), 1, "one refused apply, then nothing: {w:?}");
    assert!(env.api.get(SERVICE).is_none() && env.api.get(DEPLOY).is_none());
}

#[tokio::test]
async fn backup_now_waits_for_a_running_backup_and_suspends_the_cronjob_while_it_runs() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    let running = format!("{JOBS}/x-backup-29000000");
    env.api.put(
        &running,
        backup_job(
            "x-backup-29000000",
            json!({"active": 1, "startTime": "2026-11-22T11:59:00Z"}),
            false,
        ),
    );
    env.api.edit(TP, |tp| {
        tp["metadata"]["annotations"] = json!({"tradeplane.io/backup-now": "now-1"});
    });
    let _ = env.api.take_log();
    let action = env.reconcile().await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(controller::BACKUP_NOW_RETRY)
    );
    let jobs = |env: &Env| -> Vec<String> {
        env.api
            .state
            .lock()
            .unwrap()
            .store
            .keys()
            .filter(|k| k.starts_with(&format!("{JOBS}/")) && !k.contains("-migrate-"))
            .cloned()
            .collect()
    };
    assert_eq!(jobs(&env).len(), 1, "no second backup while one runs");
    assert_eq!(jobs(&env)[0], running);
    assert!(env.api.get(TP).unwrap()["status"]["lastBackupNowRequest"].is_null());
    let ev = events(&env.api.take_log());
    assert!(
        ev.iter().any(|e| e["reason"] == "BackupNowDeferred"),
        "{ev:?}"
    );

    // the scheduled run ends: the manual Job starts, owned by the CronJob, CronJob suspended
    env.api.edit(&running, |j| {
        j["status"] = json!({"succeeded": 1, "startTime": "2026-11-22T11:59:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
    });
    env.reconcile().await.unwrap();
    let all = jobs(&env);
    assert_eq!(all.len(), 2, "{all:?}");
    let manual = all.iter().find(|k| **k != running).unwrap().clone();
    let job = env.api.get(&manual).unwrap();
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["name"], "x-backup");
    assert_eq!(owner["controller"], true);
    assert_eq!(env.api.get(CRON).unwrap()["spec"]["suspend"], true);
    assert_eq!(
        env.api.get(TP).unwrap()["status"]["lastBackupNowRequest"],
        "now-1"
    );

    // still running on the next reconcile: still suspended
    env.reconcile().await.unwrap();
    assert_eq!(env.api.get(CRON).unwrap()["spec"]["suspend"], true);
    // done: the schedule resumes
    env.api.edit(&manual, |j| {
        j["status"] = json!({"succeeded": 1, "startTime": "2026-11-22T12:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
    });
    env.reconcile().await.unwrap();
    assert_eq!(env.api.get(CRON).unwrap()["spec"]["suspend"], false);
}

#[tokio::test]
async fn children_carry_the_version_label() {
    let env = Env::new(tp_json(
        json!({"image": "ghcr.io/tradeplane/tradeplane:0.4.1"}),
    ));
    env.converge().await;
    for p in [SA, CM, SERVICE, DEPLOY, CRON, NETPOL] {
        assert_eq!(
            env.api.get(p).unwrap()["metadata"]["labels"]["app.kubernetes.io/version"],
            "0.4.1",
            "{p}"
        );
    }
}
