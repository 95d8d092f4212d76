//! Canary rollouts, continued: the promote/abort annotations, `spec.paused`, an operator restart
//! mid-rollout, the migration gate, a settings change, the switch back to rolling, the HPA.

use crate::common;

use common::canary_env::*;
use common::env::{CM, DEPLOY, TP, tp_json};
use http::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn abort_rolls_back_and_promote_skips_the_analysis() {
    let env = at_step_one().await;
    env.annotate("tradeplane.io/abort", "true");
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none());
    assert!(
        env.condition("Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("aborted by tradeplane.io/abort=true")
    );

    // Still set at the next rollout: it does not start until the annotation is removed.
    env.edit_spec(|s| s["image"] = json!("img:3"));
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none());
    let r = env.rollout();
    assert!(
        r["message"].as_str().unwrap().contains("does not start"),
        "{r}"
    );
    env.api
        .edit(TP, |tp| tp["metadata"]["annotations"] = json!({}));
    env.reconcile().await;
    assert_eq!(image(&env.api.get(CANARY).expect("started")), "img:3");

    let env = at_step_one().await;
    env.annotate("tradeplane.io/promote", "true");
    env.reconcile().await;
    assert_eq!(
        image(&env.api.get(DEPLOY).unwrap()),
        "img:2",
        "promoted without analysis"
    );
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("promoted by tradeplane.io/promote=true")
    );
}

#[tokio::test]
async fn pause_freezes_the_rollout() {
    let env = at_step_one().await;
    let before = env.rollout();
    env.edit_spec(|s| s["paused"] = json!(true));
    env.serve("10.0.1.1", 0, 100, 0); // would roll back
    env.at(300);
    env.api.take_log();
    env.reconcile().await;
    let writes: Vec<_> = env
        .api
        .take_log()
        .into_iter()
        .filter(|l| l.method != Method::GET && l.path.contains("/deployments"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    let mut frozen = env.rollout();
    assert_eq!(frozen["pausedAt"], "2026-11-22T12:05:00Z");
    frozen.as_object_mut().unwrap().remove("pausedAt");
    assert_eq!(frozen, before, "nothing else changes");
    assert!(env.api.get(CANARY).is_some());
    env.edit_spec(|s| s["paused"] = json!(false));
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "the analysis resumes with the pause lifted"
    );
}

#[tokio::test]
async fn a_pause_stops_the_steps_clock() {
    let env = at_step_one().await; // step 1 since t=0, baseline at t=10
    env.at(20);
    env.edit_spec(|s| s["paused"] = json!(true));
    env.reconcile().await;
    env.at(300);
    env.reconcile().await;
    env.edit_spec(|s| s["paused"] = json!(false));
    env.serve("10.0.1.1", 100, 0, 0);
    env.at(310);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(r["step"], 1, "20 s ran before the pause, 0 s since: {r}");
    assert_eq!(
        r["stepStartedAt"], "2026-11-22T12:04:50Z",
        "moved on by the 290 s paused (t=20 to t=310)"
    );
    assert!(r["pausedAt"].is_null());
    env.at(349);
    env.reconcile().await;
    assert_eq!(env.rollout()["step"], 1, "59 s analysed");
    env.at(350);
    env.reconcile().await;
    assert_eq!(env.rollout()["step"], 2);
}

#[tokio::test]
async fn a_restarted_operator_resumes_from_the_status() {
    let env = at_step_one().await;
    env.serve("10.0.1.1", 100, 0, 0);
    env.at(61);
    env.reconcile().await;
    let step2 = env.rollout();
    assert_eq!(step2["step"], 2);
    env.pod("x-canary-c-2", CANARY, "10.0.1.2", true);
    env.serve("10.0.1.2", 0, 0, 0);

    let env = env.restart();
    env.at(90);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["stepStartedAt"].clone()),
        (Some(2), step2["stepStartedAt"].clone()),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("baseline"),
        "a new baseline after the restart"
    );
    env.serve("10.0.1.1", 200, 0, 0);
    env.serve("10.0.1.2", 100, 0, 0);
    env.at(121);
    env.reconcile().await;
    assert_eq!(
        env.rollout()["phase"],
        "Promoted",
        "the interval was not restarted"
    );
}

#[tokio::test]
async fn a_canary_waits_for_the_migration_gate() {
    let env = installed().await;
    env.api.hold_migrations();
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "no new pod before the migration succeeded"
    );
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("migration")
    );
    let job = env
        .api
        .state
        .lock()
        .unwrap()
        .store
        .iter()
        .find(|(k, j)| k.contains("/jobs/x-migrate-") && image(j) == "img:2")
        .map(|(k, _)| k.clone())
        .unwrap();
    env.api.edit(
        &job,
        |j| {
            j["status"] =
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
        },
    );
    env.reconcile().await;
    assert_eq!(
        image(&env.api.get(CANARY).unwrap_or_else(|| panic!(
            "canary after the gate: {}",
            env.api.get(TP).unwrap()["status"]
        ))),
        "img:2"
    );
}

fn checksum(d: &Value) -> Value {
    d["spec"]["template"]["metadata"]["annotations"]["tradeplane.io/config-checksum"].clone()
}

fn env_from(d: &Value) -> Value {
    d["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"].clone()
}

/// `installed`, then `settings.logLevel: debug`: a canary of the new settings.
async fn settings_canary() -> (Env, Value) {
    let env = installed().await;
    env.edit_spec(|s| s["settings"] = json!({"logLevel": "debug"}));
    env.reconcile().await;
    let canary = env
        .api
        .get(CANARY)
        .expect("a settings change rolls out as a canary too");
    let stable = env.api.get(DEPLOY).unwrap();
    assert_ne!(
        checksum(&canary),
        checksum(&stable),
        "the stable pods keep theirs"
    );
    assert_eq!(env_from(&canary), "x-canary-config");
    assert_eq!(env_from(&stable), "x-config");
    let own = env.api.get(CANARY_CM).expect("the canary's ConfigMap");
    assert_eq!(own["data"]["RUST_LOG"], "debug");
    assert_eq!(own["metadata"]["ownerReferences"][0]["uid"], "tp-uid");
    assert_eq!(
        env.api.get(CM).unwrap()["data"]["RUST_LOG"],
        "info",
        "the shared ConfigMap keeps the stable pods' settings"
    );
    (env, canary)
}

#[tokio::test]
async fn a_settings_change_runs_as_a_canary_with_its_own_config_map() {
    let (env, _) = settings_canary().await;
    env.annotate("tradeplane.io/abort", "true");
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none() && env.api.get(CANARY_CM).is_none());
    assert_eq!(
        env.api.get(CM).unwrap()["data"]["RUST_LOG"],
        "info",
        "a rollback leaves the settings as they were"
    );

    let (env, canary) = settings_canary().await;
    env.annotate("tradeplane.io/promote", "true");
    env.reconcile().await;
    let stable = env.api.get(DEPLOY).unwrap();
    assert_eq!(checksum(&stable), checksum(&canary));
    assert_eq!(env_from(&stable), "x-config");
    assert_eq!(
        env.api.get(CM).unwrap()["data"]["RUST_LOG"],
        "debug",
        "promotion gives the shared ConfigMap the new settings"
    );
    env.available(DEPLOY);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none() && env.api.get(CANARY_CM).is_none());
}

#[tokio::test]
async fn switching_back_to_rolling_removes_the_canary() {
    let (env, canary) = settings_canary().await;
    env.edit_spec(|s| s["rollout"]["strategy"] = json!("rolling"));
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none() && env.api.get(CANARY_CM).is_none());
    assert_eq!(
        checksum(&env.api.get(DEPLOY).unwrap()),
        checksum(&canary),
        "the Deployment rolls itself"
    );
    assert_eq!(env.api.get(CM).unwrap()["data"]["RUST_LOG"], "debug");
    assert!(env.rollout().is_null());
}

#[tokio::test]
async fn with_the_hpa_the_canary_follows_the_live_stable_count() {
    let env = Env::new(tp_json(json!({"rollout": {"strategy": "canary"},
        "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 20, "targetCPUUtilizationPercentage": 70}})));
    env.reconcile().await;
    env.reconcile().await;
    env.api.state.lock().unwrap().hpa_scales(DEPLOY, 12);
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    assert_eq!(
        env.api.get(CANARY).unwrap()["spec"]["replicas"],
        2,
        "ceil(10 % of 12)"
    );
    assert_eq!(
        env.api.get(DEPLOY).unwrap()["spec"]["replicas"],
        12,
        "the HPA keeps the stable count"
    );
}
