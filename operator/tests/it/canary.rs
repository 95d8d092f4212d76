//! Canary rollouts (issue 13 "Level 5") against the fake API: the canary Deployment applied at
//! each step while the stable one keeps its template, promotion once every step passed, and the
//! automatic rollback on bad metrics (errors, latency, worse than stable, pods not ready). The
//! pods' `/metrics` come from a scraper fed by the test, in the platform's own format.

use crate::common;

use common::canary_env::*;
use common::env::{DEPLOY, SERVICE};
use serde_json::json;

#[tokio::test]
async fn a_new_image_starts_the_canary_at_the_first_weight_and_leaves_the_stable_alone() {
    let env = installed().await;
    assert_eq!(env.rollout()["phase"], "Stable");
    let stable_rev =
        env.api.get(DEPLOY).unwrap()["metadata"]["annotations"]["tradeplane.io/revision"].clone();
    assert!(
        stable_rev.is_string(),
        "the stable revision is recorded on the Deployment"
    );
    assert!(
        env.api.get(CANARY).is_none(),
        "no canary without a new revision"
    );
    env.api.take_log();

    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    let canary = env.api.get(CANARY).expect("canary Deployment applied");
    assert_eq!(image(&canary), "img:2");
    assert_eq!(canary["spec"]["replicas"], 1, "ceil(10 % of 4)");
    assert_eq!(
        canary["spec"]["selector"]["matchLabels"]["tradeplane.io/track"],
        "canary"
    );
    let pod_labels = &canary["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["tradeplane.io/track"], "canary");
    let service = env.api.get(SERVICE).unwrap();
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "the Service selects the canary pods too");
    }
    let stable = env.api.get(DEPLOY).unwrap();
    assert_eq!(
        image(&stable),
        "img:1",
        "the stable pods keep the old template"
    );
    assert_eq!(stable["spec"]["replicas"], 4, "and their count");
    assert_eq!(
        stable["metadata"]["annotations"]["tradeplane.io/revision"],
        stable_rev
    );
    assert!(
        stable["spec"]["selector"]["matchLabels"]
            .get("tradeplane.io/track")
            .is_none()
    );
    let r = env.rollout();
    assert_eq!(
        (
            r["phase"].as_str(),
            r["step"].as_i64(),
            r["weight"].as_i64()
        ),
        (Some("Analysing"), Some(1), Some(10))
    );
    assert_eq!(r["canaryReplicas"], 1);
    assert_eq!(r["decision"], "SetWeight");
    assert_eq!(r["stableRevision"], stable_rev);
    assert_ne!(r["canaryRevision"], stable_rev);
    assert_eq!(env.condition("Progressing")["reason"], "CanaryAnalysing");
    let ev = env.events();
    assert!(ev.iter().any(|e| e["reason"] == "CanaryStep"), "{ev:#?}");
}

#[tokio::test]
async fn good_metrics_advance_each_step_then_promote_and_remove_the_canary() {
    let env = at_step_one().await;
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("baseline"),
        "{}",
        env.rollout()
    );
    // 100 good requests on the canary, the stable pods keep a 0.1 % error ratio
    env.serve("10.0.1.1", 100, 0, 0);
    env.serve("10.0.0.1", 2000, 2, 0);
    env.at(30);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["decision"].as_str()),
        (Some(1), Some("Wait")),
        "{r}"
    );
    assert_eq!(r["canaryRequests"], 100);
    assert_eq!(r["canaryErrorRatio"], 0.0);
    assert!(r["stableErrorRatio"].as_f64().unwrap() > 0.0);
    assert!(r["canaryP99Seconds"].as_f64().unwrap() <= 0.05);

    env.at(61);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["weight"].as_i64()),
        (Some(2), Some(50)),
        "{r}"
    );
    assert_eq!(
        env.api.get(CANARY).unwrap()["spec"]["replicas"],
        2,
        "ceil(50 % of 4)"
    );
    let weight = r#"tradeplane_operator_canary_weight_percent{namespace="ns",tradingplatform="x"}"#;
    assert!(env.ctx.metrics.encode().contains(&format!("{weight} 50")));
    assert_eq!(image(&env.api.get(DEPLOY).unwrap()), "img:1");

    env.pod("x-canary-c-2", CANARY, "10.0.1.2", true);
    env.serve("10.0.1.2", 0, 0, 0);
    env.at(70);
    env.reconcile().await; // baseline of step 2
    env.serve("10.0.1.1", 300, 1, 0);
    env.serve("10.0.1.2", 200, 0, 0);
    env.at(122);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["phase"].as_str(), r["decision"].as_str()),
        (Some("Promoted"), Some("Promote")),
        "{r}"
    );
    let stable = env.api.get(DEPLOY).unwrap();
    assert_eq!(
        image(&stable),
        "img:2",
        "promotion gives the stable Deployment the new template"
    );
    assert_eq!(
        stable["metadata"]["annotations"]["tradeplane.io/revision"],
        r["canaryRevision"]
    );
    assert!(
        env.api.get(CANARY).is_some(),
        "the canary serves until the stable rollout finished"
    );
    assert!(env.events().iter().any(|e| e["reason"] == "CanaryPromoted"));

    env.at(130);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_some(), "still rolling");
    env.available(DEPLOY);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "canary removed once the stable rollout finished"
    );
    let r = env.rollout();
    assert_eq!(r["phase"], "Promoted");
    assert_eq!(r["stableRevision"], r["canaryRevision"]);
    assert!(r["canaryReplicas"].is_null());
    let m = env.ctx.metrics.encode();
    assert!(m.contains(&format!("{weight} 0")), "{m}");
    assert!(m.contains(r#"tradeplane_operator_canary_decisions_total{decision="step"} 2"#));
    assert!(m.contains(r#"tradeplane_operator_canary_decisions_total{decision="promote"} 1"#));
    assert_eq!(env.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn bad_metrics_roll_back_at_once_and_the_revision_is_not_retried() {
    let env = at_step_one().await;
    env.api.take_log();
    env.serve("10.0.1.1", 80, 20, 0); // 20 % errors
    env.at(20);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none(), "canary deleted");
    assert_eq!(
        image(&env.api.get(DEPLOY).unwrap()),
        "img:1",
        "stable untouched"
    );
    let d = env.condition("Degraded");
    assert_eq!(
        (d["status"].as_str(), d["reason"].as_str()),
        (Some("True"), Some("CanaryFailed"))
    );
    let m = d["message"].as_str().unwrap();
    assert!(
        m.contains("step 1 (10 %)")
            && m.contains("error ratio 0.2000 is above the threshold 0.0100"),
        "{m}"
    );
    let r = env.rollout();
    assert_eq!(
        (r["phase"].as_str(), r["decision"].as_str()),
        (Some("RolledBack"), Some("RollBack"))
    );
    assert_eq!(
        r["canaryErrorRatio"], 0.2,
        "the failing measurement stays visible"
    );
    let ev = env.events();
    let warn = ev
        .iter()
        .find(|e| e["reason"] == "CanaryRolledBack")
        .expect("an Event");
    assert_eq!(warn["type"], "Warning");
    assert!(
        env.ctx
            .metrics
            .encode()
            .contains(r#"tradeplane_operator_canary_decisions_total{decision="rollback"} 1"#)
    );

    env.at(500);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "the failed revision is not retried"
    );
    assert_eq!(env.condition("Degraded")["reason"], "CanaryFailed");

    env.edit_spec(|s| s["image"] = json!("img:3"));
    env.reconcile().await;
    assert_eq!(
        image(&env.api.get(CANARY).expect("a new template is tried")),
        "img:3"
    );
    assert_eq!(env.rollout()["phase"], "Analysing");
    assert_eq!(env.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn a_slow_canary_or_one_worse_than_stable_rolls_back() {
    let env = at_step_one().await;
    env.serve("10.0.1.1", 50, 0, 50); // half the requests take 0.9 s
    env.at(20);
    env.reconcile().await;
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("p99 latency"), "{m}");

    let env = at_step_one().await;
    env.serve("10.0.1.1", 992, 8, 0); // 0.8 %: under 1 %, but stable is at 0.1 %
    env.at(20);
    env.reconcile().await;
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("exceeds the stable pods'"), "{m}");
}

#[tokio::test]
async fn canary_pods_not_ready_after_the_interval_roll_back() {
    let env = at_step_one().await;
    env.pod("x-canary-c-1", CANARY, "10.0.1.1", false);
    env.at(30);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_some(),
        "pods may start within the interval"
    );
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("0/1 canary pods ready")
    );
    env.at(61);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none());
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("not ready"), "{m}");
}

#[tokio::test]
async fn no_traffic_on_the_canary_does_not_advance() {
    let env = at_step_one().await;
    env.at(200);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(r["step"], 1, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("no requests"),
        "{r}"
    );
}

#[tokio::test]
async fn a_prometheus_analysis_advances_and_rolls_back() {
    let env = installed().await;
    env.edit_spec(|s| {
        s["rollout"]["canary"] = json!({"prometheus": {"url": "http://prom:9090"}});
        s["image"] = json!("img:2");
    });
    env.reconcile().await;
    env.pod("x-canary-c-1", CANARY, "10.0.1.1", true);
    env.prometheus(None, Some(0.001), None);
    env.at(20);
    env.reconcile().await;
    let r = env.rollout();
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("Prometheus has no requests"),
        "{r}"
    );
    env.prometheus(Some(0.002), Some(0.001), Some(0.12));
    env.at(61);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["weight"].as_i64()),
        (Some(2), Some(50)),
        "{r}"
    );
    assert_eq!(r["canaryErrorRatio"], 0.002);
    assert_eq!(r["canaryP99Seconds"], 0.12);
    env.pod("x-canary-c-2", CANARY, "10.0.1.2", true);
    env.prometheus(Some(0.002), Some(0.001), Some(0.9));
    env.at(70);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "rolled back on the p99 from Prometheus"
    );
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        m.contains("step 2 (50 %): canary p99 latency 0.900 s"),
        "{m}"
    );
}
