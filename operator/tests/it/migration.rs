//! Database migrations before a rollout (issue 13): the migration Job builder, and the controller
//! against the fake API — a new image first runs `tradeplane-platform migrate` as a Job, the
//! Deployment keeps the old image until it succeeded, a failure is `Degraded`/`MigrationFailed`.

use crate::common;

use common::env::*;
use http::Method;
use serde_json::{Value, json};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::resources::{self, Parent, migration};

const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";

fn tp_of(v: Value) -> TradingPlatform {
    serde_json::from_value(v).unwrap()
}

fn job_path(image: &str) -> String {
    let parent = Parent::of(&tp_of(tp_json(json!({})))).unwrap();
    format!("{JOBS}/{}", migration::job_name(&parent, image))
}

fn image(env: &Env) -> Value {
    env.api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone()
}

fn backup_image(env: &Env) -> Value {
    env.api.get(CRON).expect("backup CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .clone()
}

fn finish(env: &Env, path: &str, ok: bool, message: &str) {
    let status = if ok {
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
    } else {
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
            "reason": "PodFailurePolicy", "message": message}]})
    };
    env.api.edit(path, |j| j["status"] = status);
}

fn events(env: &Env) -> Vec<Value> {
    env.api
        .take_log()
        .into_iter()
        // The recorder sends a repeat of an Event (same reason and action) as a PATCH.
        .filter(|l| l.method != Method::GET && l.path.starts_with(EVENTS))
        .filter_map(|l| l.body)
        .collect()
}

#[test]
fn the_job_runs_migrate_from_the_new_image_with_the_pods_env() {
    let tp = tp_of(tp_json(
        json!({"image": "reg/tp:2", "redis": {"name": "r", "key": "u"},
        "env": [{"name": "TZ", "value": "UTC"}], "imagePullSecrets": ["pull"]}),
    ));
    let parent = Parent::of(&tp).unwrap();
    let job = serde_json::to_value(migration::job(&parent, &tp.spec).unwrap()).unwrap();
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("x-migrate-") && name.len() == "x-migrate-".len() + 10,
        "{name}"
    );
    assert_ne!(
        name,
        migration::job_name(&parent, "reg/tp:3"),
        "one Job per image"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "tp-uid");
    assert_eq!(
        job["metadata"]["labels"]["app.kubernetes.io/component"],
        "migrate"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "pull"}]));
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "reg/tp:2");
    assert_eq!(c["command"], json!(["tradeplane-platform", "migrate"]));
    let dep = serde_json::to_value(resources::desired(&tp).unwrap().deployment.unwrap()).unwrap();
    let pc = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["env"], pc["env"],
        "same env (DATABASE_URL, POD_IP, spec.env …)"
    );
    assert_eq!(c["envFrom"], pc["envFrom"], "same ConfigMap");
    assert_eq!(c["securityContext"], pc["securityContext"]);
    // exit 6 (refused) cannot be helped by a retry: the Job fails at once
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][0],
        json!({"action": "FailJob", "onExitCodes": {"containerName": "migrate", "operator": "In", "values": [6]}})
    );
    assert_eq!(job["spec"]["backoffLimit"], 3);
}

#[test]
fn job_outcomes_are_read_from_conditions_with_exit_code_hints() {
    let job = |status: Value| -> k8s_openapi::api::batch::v1::Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).unwrap()
    };
    assert_eq!(
        migration::outcome(&job(json!({"active": 1}))),
        migration::JobOutcome::Running
    );
    assert_eq!(
        migration::outcome(&job(
            json!({"conditions": [{"type": "Complete", "status": "True"}]})
        )),
        migration::JobOutcome::Succeeded
    );
    let migration::JobOutcome::Failed(m) = migration::outcome(&job(json!({"conditions": [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
         "message": "Container migrate for pod ns/x-migrate-1 failed with exit code 6 matching FailJob rule at index 0"}]})))
    else {
        panic!("failed")
    };
    assert!(m.starts_with("PodFailurePolicy: Container migrate"), "{m}");
    assert!(m.contains("newer release has contracted the schema"), "{m}");
    let migration::JobOutcome::Failed(m) = migration::outcome(&job(json!({"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "failed with exit code 4"}]})))
    else {
        panic!("failed")
    };
    assert!(m.contains("the database failed"), "{m}");
}

#[tokio::test]
async fn on_create_the_deployment_waits_for_the_first_migration() {
    let env = Env::new(tp_json(json!({})));
    env.api.hold_migrations();
    env.converge().await;
    let job = job_path("img:1");
    assert!(env.api.get(&job).is_some(), "migration Job created");
    assert!(
        env.api.get(DEPLOY).is_none(),
        "no pod before the schema is migrated"
    );
    assert!(env.api.get(SERVICE).is_some() && env.api.get(CM).is_some());
    let p = env.condition("Progressing");
    assert_eq!(
        (p["status"].as_str(), p["reason"].as_str()),
        (Some("True"), Some("Migrating"))
    );
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("is created once it succeeds"),
        "{p}"
    );
    assert!(env.api.get(TP).unwrap()["status"]["migratedImage"].is_null());

    finish(&env, &job, true, "");
    env.reconcile().await.unwrap();
    assert_eq!(image(&env), "img:1");
    assert_eq!(env.api.get(TP).unwrap()["status"]["migratedImage"], "img:1");
}

#[tokio::test]
async fn a_new_image_runs_its_migration_job_first_and_the_deployment_keeps_the_old_one() {
    let env = Env::new(tp_json(json!({"backup": {"enabled": true}})));
    env.converge().await;
    env.make_deployment_available(2);
    env.reconcile().await.unwrap();
    assert_eq!(env.api.get(TP).unwrap()["status"]["migratedImage"], "img:1");
    env.api.hold_migrations();
    env.edit_spec(|s| {
        s["image"] = json!("img:2");
        s["replicas"] = json!(3);
    });
    let _ = env.api.take_log();
    let action = env.reconcile().await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(
            tradeplane_operator::controller::BACKUP_NOW_RETRY
        )
    );
    let job = job_path("img:2");
    let j = env.api.get(&job).expect("migration Job of img:2");
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );
    let dep = env.api.get(DEPLOY).unwrap();
    assert_eq!(image(&env), "img:1", "old image while migrating");
    assert_eq!(
        backup_image(&env),
        "img:1",
        "backups keep the migrated image"
    );
    assert_eq!(
        dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"],
        "1"
    );
    assert_eq!(dep["spec"]["replicas"], 3, "other changes still apply");
    let p = env.condition("Progressing");
    assert_eq!(p["reason"], "Migrating");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("the Deployment keeps img:1"),
        "{p}"
    );
    assert_eq!(env.api.get(TP).unwrap()["status"]["phase"], "Progressing");
    let ev = events(&env);
    assert!(
        ev.iter().any(|e| e["reason"] == "MigrationStarted"),
        "{ev:?}"
    );

    // Still running: nothing changes, no second Job.
    env.reconcile().await.unwrap();
    assert_eq!(image(&env), "img:1");
    let jobs = env
        .api
        .state
        .lock()
        .unwrap()
        .store
        .keys()
        .filter(|k| k.contains("-migrate-"))
        .count();
    assert_eq!(jobs, 2, "img:1's and img:2's");

    finish(&env, &job, true, "");
    env.reconcile().await.unwrap();
    assert_eq!(image(&env), "img:2", "rolled out once migrated");
    assert_eq!(backup_image(&env), "img:2", "and backups with it");
    assert_eq!(env.api.get(TP).unwrap()["status"]["migratedImage"], "img:2");
    assert_ne!(env.condition("Progressing")["reason"], "Migrating");
    assert!(
        env.api.get(&job_path("img:1")).is_none(),
        "the older Job is deleted"
    );
    assert!(env.api.get(&job).is_some());
    assert!(events(&env).iter().any(|e| e["reason"] == "Migrated"));
}

#[tokio::test]
async fn a_failed_migration_is_degraded_and_the_old_version_keeps_serving() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.hold_migrations();
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await.unwrap();
    let job = job_path("img:2");
    finish(
        &env,
        &job,
        false,
        "Container migrate for pod ns/x-migrate-1 failed with exit code 6 matching FailJob rule at index 0",
    );
    let _ = env.api.take_log();
    env.reconcile().await.unwrap();
    assert_eq!(image(&env), "img:1");
    let d = env.condition("Degraded");
    assert_eq!(
        (d["status"].as_str(), d["reason"].as_str()),
        (Some("True"), Some("MigrationFailed"))
    );
    let m = d["message"].as_str().unwrap();
    assert!(
        m.contains(&format!(
            "migration Job {}",
            job.rsplit('/').next().unwrap()
        )),
        "{m}"
    );
    assert!(
        m.contains("exit code 6") && m.contains("the Deployment keeps img:1"),
        "{m}"
    );
    assert_eq!(env.api.get(TP).unwrap()["status"]["phase"], "Degraded");
    assert_eq!(env.api.get(TP).unwrap()["status"]["migratedImage"], "img:1");
    let ev = events(&env);
    let warn = ev
        .iter()
        .find(|e| e["reason"] == "MigrationFailed")
        .expect("an Event");
    assert_eq!(warn["type"], "Warning");
    // Nothing is retried on its own: the next reconciliation writes no Job, no status, no Event.
    env.reconcile().await.unwrap();
    let log = env.api.take_log();
    let w = writes(&log);
    assert!(
        !w.iter()
            .any(|w| w.contains("/jobs") || w.contains("/status") || w.contains("/events")),
        "{w:?}"
    );
}

#[tokio::test]
async fn an_operator_restart_does_not_migrate_again() {
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.remove(&job_path("img:1"));
    // A new context is a restarted operator (empty memory); the status remembers.
    let restarted = Env {
        api: env.api.clone(),
        ctx: {
            let (_, client) = (0, env.ctx.client.clone());
            let mut c = tradeplane_operator::controller::Context::new(
                client,
                tradeplane_operator::metrics::Metrics::new().unwrap(),
                Some("t2".into()),
            );
            c.clock = std::sync::Arc::new(now);
            std::sync::Arc::new(c)
        },
    };
    let _ = restarted.api.take_log();
    restarted.reconcile().await.unwrap();
    let log = restarted.api.take_log();
    assert!(
        !log.iter().any(|l| l.path.contains("/jobs/")),
        "{:?}",
        writes(&log)
    );
    assert!(restarted.api.get(&job_path("img:1")).is_none());
}

#[tokio::test]
async fn pods_that_already_run_the_image_are_adopted_without_a_job() {
    // Installed by an operator that did not migrate: the status has no migratedImage.
    let env = Env::new(tp_json(json!({})));
    env.converge().await;
    env.api.remove(&job_path("img:1"));
    env.api.edit(TP, |tp| {
        tp["status"]
            .as_object_mut()
            .unwrap()
            .remove("migratedImage")
            .map(|_| ())
            .unwrap_or(())
    });
    env.reconcile().await.unwrap();
    assert!(env.api.get(&job_path("img:1")).is_none());
    assert_eq!(env.api.get(TP).unwrap()["status"]["migratedImage"], "img:1");
}
