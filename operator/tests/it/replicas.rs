//! Builder tests for several replicas sharing one PostgreSQL (issue 12): each replica learns its
//! address (`POD_IP`), the lease duration is a CRD field, a rollout and the disruption budget
//! always keep a replica serving, and the NetworkPolicy lets replicas forward orders to each other.

use crate::common;

use serde_json::{Value, json};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::resources::{self, Desired};

fn build(spec_patch: Value) -> Desired {
    let mut obj = common::env::tp_json(spec_patch);
    obj["metadata"]["uid"] = json!("1234-uid");
    let tp: TradingPlatform = serde_json::from_value(obj).expect("valid TradingPlatform");
    resources::desired(&tp).expect("builds")
}

fn j<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap()
}

fn container(d: &Desired) -> Value {
    j(d.deployment.as_ref().unwrap())["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn pod_ip_comes_from_the_downward_api_before_any_other_env() {
    let c = container(&build(
        json!({"env": [{"name": "ADVERTISE_ADDR", "value": "$(POD_IP):8080"}]}),
    ));
    let env = c["env"].as_array().unwrap();
    assert_eq!(
        env[0],
        json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}),
        "first, so spec.env can refer to $(POD_IP)"
    );
    let user = env
        .iter()
        .position(|e| e["name"] == "ADVERTISE_ADDR")
        .unwrap();
    assert!(user > 0);
    assert_eq!(env.iter().filter(|e| e["name"] == "POD_IP").count(), 1);
}

#[test]
fn symbol_lease_seconds_defaults_to_3_and_reaches_the_config_map() {
    let d = build(json!({}));
    let data = &j(d.config_map.as_ref().unwrap())["data"];
    assert_eq!(data["SYMBOL_LEASE_SECONDS"], "3");
    let d = build(json!({"settings": {"symbolLeaseSeconds": 10}}));
    let cm = j(d.config_map.as_ref().unwrap());
    assert_eq!(cm["data"]["SYMBOL_LEASE_SECONDS"], "10");
    // A change rolls the pods (the ConfigMap checksum on the pod template changes).
    let before = &j(build(json!({})).deployment.as_ref().unwrap())["spec"]["template"]["metadata"]
        ["annotations"]["tradeplane.io/config-checksum"]
        .clone();
    let after = &j(d.deployment.as_ref().unwrap())["spec"]["template"]["metadata"]["annotations"]["tradeplane.io/config-checksum"];
    assert_ne!(before, after);
}

#[test]
fn symbol_lease_seconds_is_bounded_1_to_60_in_the_schema() {
    let tp = |v: Value| common::env::tp_json(json!({"settings": {"symbolLeaseSeconds": v}}));
    assert!(common::structural(&tp(json!(1))).is_empty());
    assert!(common::structural(&tp(json!(60))).is_empty());
    let low = common::structural(&tp(json!(0)));
    assert!(
        low.iter()
            .any(|e| e.contains("symbolLeaseSeconds") && e.contains("minimum")),
        "{low:?}"
    );
    let high = common::structural(&tp(json!(61)));
    assert!(
        high.iter()
            .any(|e| e.contains("symbolLeaseSeconds") && e.contains("maximum")),
        "{high:?}"
    );
}

#[test]
fn a_rollout_never_goes_below_the_current_replica_count() {
    let dep = j(build(json!({"replicas": 3})).deployment.as_ref().unwrap());
    assert_eq!(
        dep["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}})
    );
}

fn pdb(spec: Value) -> (Value, Option<String>) {
    let d = build(spec);
    (j(d.pdb.as_ref().expect("a budget")), d.pdb_skipped_reason)
}

#[test]
fn the_default_budget_keeps_all_but_one_replica() {
    let (p, note) = pdb(json!({"replicas": 3}));
    assert_eq!(p["spec"]["maxUnavailable"], 1);
    assert!(note.is_none(), "{note:?}");
}

#[test]
fn a_budget_that_would_let_every_replica_go_is_tightened() {
    for budget in [
        json!({"minAvailable": 0}),
        json!({"minAvailable": "0%"}),
        json!({"maxUnavailable": "100%"}),
        json!({"maxUnavailable": 3}),
        json!({"maxUnavailable": 7}),
        json!({"maxUnavailable": "70%"}), // 70% of 3 rounds up to 3
    ] {
        let spec = json!({"replicas": 3, "disruptionBudget": {"minAvailable": null, "maxUnavailable": null}});
        let mut spec = spec;
        common::fake_api::merge_patch(&mut spec["disruptionBudget"], &budget);
        let (p, note) = pdb(spec);
        assert_eq!(p["spec"]["maxUnavailable"], 2, "{budget}");
        assert!(p["spec"]["minAvailable"].is_null(), "{budget}");
        let note = note.unwrap_or_default();
        assert!(note.contains("at least one replica"), "{budget}: {note}");
    }
}

#[test]
fn a_budget_that_keeps_one_replica_is_left_as_written() {
    for (budget, field, value) in [
        (json!({"minAvailable": 1}), "minAvailable", json!(1)),
        (json!({"minAvailable": "1%"}), "minAvailable", json!("1%")),
        (json!({"maxUnavailable": 2}), "maxUnavailable", json!(2)),
        (
            json!({"maxUnavailable": "50%"}),
            "maxUnavailable",
            json!("50%"),
        ), // 2 of 3
    ] {
        let mut spec = json!({"replicas": 3, "disruptionBudget": {"minAvailable": null, "maxUnavailable": null}});
        common::fake_api::merge_patch(&mut spec["disruptionBudget"], &budget);
        let (p, note) = pdb(spec);
        assert_eq!(p["spec"][field], value, "{budget}");
        assert!(note.is_none(), "{budget}: {note:?}");
    }
}

#[test]
fn with_an_autoscaler_the_budget_is_judged_at_its_minimum() {
    let (p, note) = pdb(
        json!({"autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 4,
        "targetCPUUtilizationPercentage": 70}, "disruptionBudget": {"maxUnavailable": null, "minAvailable": 0}}),
    );
    assert_eq!(p["spec"]["maxUnavailable"], 1);
    assert!(note.is_some());
    let (p, note) = pdb(
        json!({"autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 4,
        "targetCPUUtilizationPercentage": 70}}),
    );
    assert_eq!(p["spec"]["maxUnavailable"], 1);
    assert!(note.is_none(), "{note:?}");
}

#[test]
fn the_network_policy_admits_the_platforms_own_pods_for_forwarding() {
    let np = j(
        build(json!({"networkPolicy": {"allowedNamespaceLabels": {"team": "trading"}}}))
            .network_policy
            .as_ref()
            .unwrap(),
    );
    let rule = &np["spec"]["ingress"][0];
    assert_eq!(rule["ports"], json!([{"port": 8080, "protocol": "TCP"}]));
    let from = rule["from"].as_array().unwrap();
    assert!(
        from.iter().any(|p| p["podSelector"]["matchLabels"]
            == json!({"app.kubernetes.io/name": "tradeplane", "app.kubernetes.io/instance": "x",
                "app.kubernetes.io/component": "platform"})
            && p.get("namespaceSelector").is_none()),
        "own pods (same namespace) admitted: {from:?}"
    );
    // Without a namespace restriction every source may connect, the own pods included.
    let open = j(build(json!({})).network_policy.as_ref().unwrap());
    assert!(open["spec"]["ingress"][0]["from"].is_null());
}

#[test]
fn no_headless_service_is_built() {
    let d = build(json!({"replicas": 3}));
    let services: Vec<Value> = d
        .to_values()
        .unwrap()
        .into_iter()
        .filter(|v| v["kind"] == "Service")
        .collect();
    assert_eq!(services.len(), 1);
    assert_ne!(services[0]["spec"]["clusterIP"], "None");
}
