//! Controller tests against an in-memory API server (tower-test): create, update, drift,
//! feature disable, deletion with finalizer, API error -> Degraded + requeue, paused,
//! backup-now, and "nothing changed -> nothing written".

use crate::common;

use std::time::Duration;

use http::Method;
use serde_json::json;
use std::sync::Arc;
use tradeplane_operator::controller::{self, Context, FINALIZER};
use tradeplane_operator::metrics::Metrics;

use common::env::*;
use common::fake_api::Logged;

#[tokio::test]
async fn create_adds_finalizer_then_applies_children_and_status() {
    let env = Env::new(tp_json(json!({})));
    let action = env.reconcile().await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let tp = env.api.get(TP).unwrap();
    assert_eq!(tp["metadata"]["finalizers"], json!([FINALIZER]));
    assert!(
        env.api.get(DEPLOY).is_none(),
        "no children before the finalizer is in place"
    );

    let action = env.reconcile().await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(controller::RESYNC)
    );
    for p in [SA, CM, SERVICE, DEPLOY, PDB, PVC, CRON, NETPOL] {
        assert!(env.api.get(p).is_some(), "{p} missing");
    }
    assert!(env.api.get(HPA).is_none() && env.api.get(INGRESS).is_none());
    let log = env.api.take_log();
    let applies: Vec<&Logged> = log
        .iter()
        .filter(|l| l.content_type.starts_with("application/apply-patch"))
        .collect();
    // The eight children and, on create, the migration Job of the image (it runs before the
    // Deployment is created; the fake completes it at once).
    assert_eq!(applies.len(), 9);
    assert!(
        applies.iter().any(|a| a
            .path
            .starts_with("/apis/batch/v1/namespaces/ns/jobs/x-migrate-")),
        "migration Job applied"
    );
    for a in &applies {
        assert!(
            a.query.contains("fieldManager=tradeplane-operator"),
            "{}",
            a.query
        );
        assert!(a.query.contains("force=true"), "{}", a.query);
    }
    // owned children carry the owner reference
    assert_eq!(
        env.api.get(DEPLOY).unwrap()["metadata"]["ownerReferences"][0]["uid"],
        "tp-uid"
    );

    let tp = env.api.get(TP).unwrap();
    let status = &tp["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["phase"], "Progressing");
    assert_eq!(
        status["selector"],
        "app.kubernetes.io/component=platform,app.kubernetes.io/instance=x,app.kubernetes.io/name=tradeplane"
    );
    for t in ["Ready", "Progressing", "Degraded", "BackupHealthy"] {
        let c = env.condition(t);
        assert!(
            c["reason"].is_string() && c["message"].is_string(),
            "{t}: {c}"
        );
        assert_eq!(c["observedGeneration"], 1);
        assert!(c["lastTransitionTime"].is_string());
    }
    assert_eq!(env.condition("Ready")["status"], "False");
    assert_eq!(env.condition("Progressing")["status"], "True");
    assert_eq!(env.condition("Degraded")["status"], "False");
    assert_eq!(env.condition("BackupHealthy")["status"], "Unknown");
    assert_eq!(
        env.condition("BackupHealthy")["reason"],
        "AwaitingFirstBackup"
    );
}

#[tokio::test]
async fn unchanged_world_writes_no_status_and_no_events() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.take_and_ignore();
    env.reconcile().await.unwrap();
    let log = env.api.take_log();
    assert!(
        !log.iter().any(|l| l.path.ends_with("/status")),
        "status written although nothing changed: {:?}",
        writes(&log)
    );
    assert!(
        !log.iter().any(|l| l.path.starts_with(EVENTS)),
        "{:?}",
        writes(&log)
    );
}

/// The lists of a reconcile, as `kind-collection` names (`ingresses`, `jobs`, ...).
fn lists(log: &[Logged]) -> Vec<String> {
    log.iter()
        .filter(|l| l.method == Method::GET && l.query.contains("labelSelector"))
        .map(|l| l.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_resync_of_an_unchanged_platform_lists_nothing_to_prune_until_it_changes() {
    let env = Env::new(tp_json(
        json!({"ingress": {"enabled": true, "host": "x.example"}}),
    ));
    env.converge().await;
    env.take_and_ignore();
    // The resync: nothing changed since the last reconcile pruned.
    env.reconcile().await.unwrap();
    let resync = lists(&env.api.take_log());
    let prunable = [
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
        "cronjobs",
        "ingresses",
        "networkpolicies",
    ];
    assert!(
        !resync.iter().any(|l| prunable.contains(&l.as_str())),
        "the resync listed children to prune: {resync:?}"
    );
    // An unwanted child appears only when the spec (or the labels, annotations) change: then
    // the next reconcile lists and deletes it.
    env.edit_spec(|s| s["ingress"]["enabled"] = json!(false));
    env.reconcile().await.unwrap();
    let changed = lists(&env.api.take_log());
    for kind in prunable {
        assert!(
            changed.iter().any(|l| l == kind),
            "{kind} not listed: {changed:?}"
        );
    }
    assert!(
        env.api.get(INGRESS).is_none(),
        "the disabled Ingress is deleted"
    );
    // A new operator process (restart, new leader) prunes once, whatever it missed meanwhile.
    let restarted = Env {
        api: env.api.clone(),
        ctx: Arc::new(Context::new(
            env.ctx.client.clone(),
            Metrics::new().unwrap(),
            Some("second".into()),
        )),
    };
    restarted.reconcile().await.unwrap();
    let first = lists(&restarted.api.take_log());
    assert!(first.iter().any(|l| l == "ingresses"), "{first:?}");
}

impl Env {
    fn take_and_ignore(&self) {
        let _ = self.api.take_log();
    }
}

#[tokio::test]
async fn update_rolls_spec_into_children_and_reports_ready() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.edit_spec(|s| {
        s["replicas"] = json!(3);
        s["settings"] = json!({"logLevel": "debug"});
    });
    let before = env.api.get(DEPLOY).unwrap()["spec"]["template"]["metadata"]["annotations"]
        ["tradeplane.io/config-checksum"]
        .clone();
    env.reconcile().await.unwrap();
    let dep = env.api.get(DEPLOY).unwrap();
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_ne!(
        dep["spec"]["template"]["metadata"]["annotations"]["tradeplane.io/config-checksum"], before,
        "config change must roll the pods"
    );
    assert_eq!(env.api.get(CM).unwrap()["data"]["RUST_LOG"], "debug");
    assert_eq!(env.api.get(TP).unwrap()["status"]["observedGeneration"], 2);

    env.make_deployment_available(3);
    env.take_and_ignore();
    env.reconcile().await.unwrap();
    assert_eq!(env.condition("Ready")["status"], "True");
    assert_eq!(env.condition("Progressing")["reason"], "RolloutComplete");
    let tp = env.api.get(TP).unwrap();
    assert_eq!(tp["status"]["phase"], "Ready");
    assert_eq!(tp["status"]["readyReplicas"], 3);
    assert_eq!(tp["status"]["replicas"], 3);
    let log = env.api.take_log();
    let events: Vec<&Logged> = log.iter().filter(|l| l.path.starts_with(EVENTS)).collect();
    assert!(
        events.iter().any(|e| e
            .body
            .as_ref()
            .is_some_and(|b| b["reason"] == "ReplicasAvailable")),
        "Ready transition must be an Event"
    );
}

#[tokio::test]
async fn drift_and_deleted_children_are_put_back() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.edit(DEPLOY, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest");
    });
    env.api.remove(SERVICE);
    env.reconcile().await.unwrap();
    assert_eq!(
        env.api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:1"
    );
    assert!(env.api.get(SERVICE).is_some());
}

#[tokio::test]
async fn disabling_features_deletes_their_objects() {
    let env = Env::new(tp_json(json!({
        "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
        "ingress": {"enabled": true, "host": "x.example.com"},
        "backup": {"storage": {"retentionPolicy": "Delete"}}
    })));
    env.converge().await;
    assert!(env.api.get(HPA).is_some() && env.api.get(INGRESS).is_some());
    // Created at minReplicas, then handed over to the HPA: the operator stops sending replicas.
    assert_eq!(env.api.get(DEPLOY).unwrap()["spec"]["replicas"], 2);
    let _ = env.api.take_log();
    env.reconcile().await.unwrap();
    let sent = env
        .api
        .take_log()
        .into_iter()
        .rev()
        .find(|l| {
            l.path == DEPLOY
                && l.query.contains("fieldManager=tradeplane-operator")
                && !l.query.contains("handover")
        })
        .and_then(|l| l.body)
        .unwrap();
    assert!(sent["spec"].get("replicas").is_none(), "HPA owns replicas");
    assert_eq!(env.api.get(DEPLOY).unwrap()["spec"]["replicas"], 2);

    // An object with our labels but not owned by this resource must survive pruning.
    env.api.put(
        "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/handmade",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "handmade", "namespace": "ns", "labels": {
                "app.kubernetes.io/instance": "x", "app.kubernetes.io/managed-by": "tradeplane-operator"}}}),
    );

    env.edit_spec(|s| {
        s["autoscaling"]["enabled"] = json!(false);
        s["ingress"]["enabled"] = json!(false);
        s["backup"]["enabled"] = json!(false);
        s["networkPolicy"] = json!({"enabled": false});
        s["replicas"] = json!(1);
    });
    env.take_and_ignore();
    env.reconcile().await.unwrap();
    for p in [HPA, INGRESS, CRON, NETPOL, PDB, PVC] {
        assert!(env.api.get(p).is_none(), "{p} should be deleted");
    }
    assert!(
        env.api
            .get("/apis/networking.k8s.io/v1/namespaces/ns/ingresses/handmade")
            .is_some()
    );
    assert_eq!(env.api.get(DEPLOY).unwrap()["spec"]["replicas"], 1);
    let log = env.api.take_log();
    let deletes: Vec<String> = log
        .iter()
        .filter(|l| l.method == Method::DELETE)
        .map(|l| l.path.clone())
        .collect();
    assert_eq!(deletes.len(), 6, "{deletes:?}");
    let ready = env.condition("Ready");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("block every node drain"),
        "status must say why there is no PDB: {ready}"
    );
    assert_eq!(env.condition("BackupHealthy")["reason"], "BackupsDisabled");
}

#[tokio::test]
async fn retained_claim_is_not_pruned() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.edit_spec(|s| s["backup"] = json!({"enabled": false}));
    env.reconcile().await.unwrap();
    assert!(env.api.get(CRON).is_none());
    assert!(env.api.get(PVC).is_some(), "Retain keeps the backups");
}

#[tokio::test]
async fn deletion_runs_the_finalizer() {
    // retentionPolicy Delete: the claim goes, then the finalizer is removed.
    let env = Env::new(tp_json(
        json!({"backup": {"storage": {"retentionPolicy": "Delete"}}}),
    ));
    env.converge().await;
    assert!(env.api.get(PVC).is_some());
    env.api.edit(TP, |tp| {
        tp["metadata"]["deletionTimestamp"] = json!("2026-11-22T12:00:00Z")
    });
    env.take_and_ignore();
    let action = env.reconcile().await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert!(env.api.get(PVC).is_none());
    assert_eq!(
        env.api.get(TP).unwrap()["metadata"]["finalizers"],
        json!([])
    );
    let log = env.api.take_log();
    assert!(log.iter().any(|l| {
        l.path.starts_with(EVENTS)
            && l.body
                .as_ref()
                .is_some_and(|b| b["reason"] == "BackupClaimDeleted")
    }));
    assert!(
        !log.iter()
            .any(|l| l.content_type.starts_with("application/apply-patch")),
        "no applies while deleting"
    );

    // retentionPolicy Retain (default): the claim stays and an Event says so.
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.edit(TP, |tp| {
        tp["metadata"]["deletionTimestamp"] = json!("2026-11-22T12:00:00Z")
    });
    env.take_and_ignore();
    env.reconcile().await.unwrap();
    assert!(env.api.get(PVC).is_some());
    assert_eq!(
        env.api.get(TP).unwrap()["metadata"]["finalizers"],
        json!([])
    );
    let log = env.api.take_log();
    assert!(log.iter().any(|l| {
        l.body
            .as_ref()
            .is_some_and(|b| b["reason"] == "BackupClaimRetained")
    }));
}

#[tokio::test]
async fn api_error_sets_degraded_and_requeues_with_backoff() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.fail_when(|m, p, ct| {
        (m == Method::PATCH
            && p.contains("/deployments/")
            && ct.starts_with("application/apply-patch"))
        .then_some(500)
    });
    let err = env.reconcile().await.expect_err("must fail");
    assert!(err.to_string().contains("injected failure"), "{err}");
    let degraded = env.condition("Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ChildApplyFailed");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("Deployment x: injected failure"),
        "{message}"
    );
    assert!(message.contains("(500 InternalError)"), "{message}");
    assert!(
        !message.contains("ApiError") && !message.contains("Status {"),
        "{message}"
    );
    assert_eq!(env.api.get(TP).unwrap()["status"]["phase"], "Degraded");
    let a1 = controller::error_policy(env.tp(), &err, env.ctx.clone());
    let a2 = controller::error_policy(env.tp(), &err, env.ctx.clone());
    assert_eq!(
        a1,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        a2,
        kube::runtime::controller::Action::requeue(Duration::from_secs(10))
    );
    let log = env.api.take_log();
    assert!(log.iter().any(|l| {
        l.body
            .as_ref()
            .is_some_and(|b| b["reason"] == "ApplyFailed" && b["type"] == "Warning")
    }));
    assert!(
        env.ctx
            .metrics
            .encode()
            .contains("tradeplane_operator_reconcile_errors_total{error=\"child_apply\"} 1")
    );

    // recovery clears Degraded
    env.api.heal();
    env.reconcile().await.unwrap();
    assert_eq!(env.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn paused_resource_gets_no_writes_but_a_status() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.edit_spec(|s| {
        s["paused"] = json!(true);
        s["replicas"] = json!(7);
    });
    env.take_and_ignore();
    env.reconcile().await.unwrap();
    let log = env.api.take_log();
    let w = writes(&log);
    assert!(
        w.iter()
            .all(|l| l.ends_with("/status") || l.contains("/events")),
        "only the status may be written while paused: {w:?}"
    );
    assert_ne!(env.api.get(DEPLOY).unwrap()["spec"]["replicas"], 7);
    assert_eq!(env.api.get(TP).unwrap()["status"]["phase"], "Paused");
    assert_eq!(env.condition("Progressing")["reason"], "Paused");
}

#[tokio::test]
async fn backup_now_annotation_starts_one_job() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.edit(TP, |tp| {
        tp["metadata"]["annotations"] = json!({"tradeplane.io/backup-now": "2026-11-22T12:00"});
    });
    env.reconcile().await.unwrap();
    let jobs: Vec<String> = env
        .api
        .state
        .lock()
        .unwrap()
        .store
        .keys()
        .filter(|k| k.contains("/jobs/") && !k.contains("-migrate-"))
        .cloned()
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = env.api.get(&jobs[0]).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        json!([
            "tradeplane-platform",
            "backup",
            "--dest",
            "/backups",
            "--keep-days",
            "30",
            "--result-file",
            "/dev/termination-log"
        ])
    );
    assert_eq!(
        env.api.get(TP).unwrap()["status"]["lastBackupNowRequest"],
        "2026-11-22T12:00"
    );
    env.take_and_ignore();
    env.reconcile().await.unwrap();
    let log = env.api.take_log();
    assert!(
        !log.iter().any(|l| l.path.contains("/jobs/")),
        "the same request must not start a second Job"
    );
}

#[tokio::test]
async fn backup_health_follows_the_cronjob() {
    let env = Env::new(tp_json(json!({"backup": {"schedule": "0 2 * * *"}})));
    env.converge().await;
    // recent success (10h ago, daily schedule): healthy
    env.api.edit(CRON, |c| c["status"] = json!({"lastSuccessfulTime": "2026-11-22T02:00:00Z", "lastScheduleTime": "2026-11-22T02:00:00Z"}));
    env.reconcile().await.unwrap();
    assert_eq!(env.condition("BackupHealthy")["status"], "True");
    let tp = env.api.get(TP).unwrap();
    assert_eq!(tp["status"]["lastSuccessfulBackup"], "2026-11-22T02:00:00Z");
    assert_eq!(tp["status"]["lastScheduledBackup"], "2026-11-22T02:00:00Z");
    // success 3 days ago: older than twice the daily interval
    env.api.edit(CRON, |c| c["status"] = json!({"lastSuccessfulTime": "2026-11-19T02:00:00Z", "lastScheduleTime": "2026-11-22T02:00:00Z"}));
    env.reconcile().await.unwrap();
    let c = env.condition("BackupHealthy");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "BackupOverdue");
}

#[tokio::test]
async fn invalid_spec_is_degraded_with_a_clear_message() {
    let env = Env::new(tp_json(json!({"backup": {"schedule": "61 * * * *"}})));
    let _ = env.reconcile().await; // finalizer
    let err = env.reconcile().await.expect_err("invalid schedule");
    assert!(err.to_string().contains("spec.backup.schedule"));
    assert!(
        env.condition("Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("minute \"61\" is invalid (allowed: 0-59"),
        "{}",
        env.condition("Degraded")["message"]
    );
}

/// A well-formed but unknown `spec.backup.timeZone` passes the CRD's pattern; the operator
/// refuses it before applying anything, with a condition a human can act on, instead of the API
/// server's error for the CronJob.
#[tokio::test]
async fn an_unknown_time_zone_is_reported_as_an_invalid_spec() {
    let env = Env::new(tp_json(
        json!({"backup": {"timeZone": "Mars/Olympus_Mons"}}),
    ));
    let _ = env.reconcile().await;
    let _ = env.reconcile().await;
    let degraded = env.condition("Degraded");
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert_eq!(degraded["reason"], "InvalidSpec", "{degraded}");
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.backup.timeZone \"Mars/Olympus_Mons\"")
            && message.contains("Europe/Berlin"),
        "{message}"
    );
    assert!(
        env.api.get(CRON).is_none(),
        "no CronJob with a zone the server refuses"
    );
    // Known zones, and UTC, are accepted by the same check.
    for zone in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"] {
        let env = Env::new(tp_json(json!({"backup": {"timeZone": zone}})));
        env.converge().await;
        assert_eq!(
            env.api.get(CRON).expect("CronJob")["spec"]["timeZone"],
            zone
        );
    }
}

/// `tradeplane_operator_reconcile_triggers_total` tells what started each reconcile: a spec the
/// status has not observed, a watch event, a due retry after a failure, or the periodic resync.
#[tokio::test]
async fn reconciles_are_counted_by_what_triggered_them() {
    let env = common::canary_env::Env::new(tp_json(json!({})));
    let count = |t: &str| env.ctx.metrics.triggers.with_label_values(&[t]).get();
    env.reconcile().await;
    env.reconcile().await;
    assert!(count("spec_change") >= 1, "the first sight of a spec");
    let (spec, child) = (count("spec_change"), count("child_change"));

    // Observed and nothing due: a watch event (a child or the metadata changed).
    env.reconcile().await;
    assert_eq!(count("child_change"), child + 1);
    assert_eq!(count("spec_change"), spec);

    // A spec change.
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    assert_eq!(count("spec_change"), spec + 1);

    // The resync, once it is due.
    env.at(controller::RESYNC.as_secs() as i64 + 1);
    env.reconcile().await;
    assert_eq!(count("resync"), 1);

    // A retry after a failure, once its backoff has passed.
    controller::error_policy(env.tp(), &controller::Error::NoNamespace, env.ctx.clone());
    env.at(controller::RESYNC.as_secs() as i64 + 1 + controller::backoff(1).as_secs() as i64);
    env.reconcile().await;
    assert_eq!(count("requeue"), 1);
    assert_eq!(
        count("child_change"),
        child + 1,
        "none of these was a watch event"
    );
}
