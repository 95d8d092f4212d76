//! The CRD: committed file in sync, documented fields, CEL rules (each with a passing and a
//! failing object), examples valid against the schema.

use crate::common;

use common::{cel, example_files, schema, structural, yaml_file};
use serde_json::{Value, json};
use tradeplane_operator::cli::crd_yaml;
use tradeplane_operator::crd::TradingPlatform;

#[test]
fn committed_crd_matches_generated() {
    let path = common::repo_root().join("crds/tradingplatform.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/tradingplatform.yaml exists");
    let generated = crd_yaml().expect("serializes");
    assert!(
        committed == generated,
        "crds/tradingplatform.yaml drifted from `tradeplane-operator crd`; regenerate it with\n  cargo run -p tradeplane-operator -- crd > crds/tradingplatform.yaml"
    );
}

#[test]
fn crd_names_match_the_contract() {
    let crd: Value = serde_yaml_ng::from_str(&crd_yaml().unwrap()).unwrap();
    assert_eq!(crd["metadata"]["name"], "tradingplatforms.tradeplane.io");
    assert_eq!(crd["spec"]["group"], "tradeplane.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "TradingPlatform");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["tp"]));
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(
        v["subresources"]["scale"],
        json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"})
    );
    assert!(v["subresources"]["status"].is_object());
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in ["Ready", "Status", "Last Backup", "Age"] {
        assert!(
            cols.contains(&want),
            "printer column {want} missing: {cols:?}"
        );
    }
}

/// Every property of the spec and status has a description (what `kubectl explain` shows).
#[test]
fn every_field_is_documented() {
    fn check(s: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(p.clone());
                }
                check(v, &p, missing);
            }
        }
        if let Some(items) = s.get("items") {
            check(items, &format!("{path}[]"), missing);
        }
    }
    let mut missing = Vec::new();
    check(&schema(), "", &mut missing);
    assert!(missing.is_empty(), "undocumented fields: {missing:#?}");
}

fn base() -> Value {
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            "image": "img:1",
            "database": {"name": "s", "key": "db"},
            "jwtSecret": {"name": "s", "key": "jwt"}
        }
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut obj = base();
    let mut cur = &mut obj;
    for (i, p) in path.iter().enumerate() {
        if i == path.len() - 1 {
            cur[*p] = value.clone();
        } else {
            if cur.get(*p).is_none() {
                cur[*p] = json!({});
            }
            cur = &mut cur[*p];
        }
    }
    obj
}

fn assert_rule(ok: Value, bad: Value, message_part: &str) {
    cel(&ok).unwrap_or_else(|e| panic!("should pass: {e}\n{ok:#}"));
    let err = cel(&bad).expect_err("should fail");
    assert!(
        err.contains(message_part),
        "error {err:?} lacks {message_part:?}"
    );
}

#[test]
fn base_object_passes() {
    cel(&base()).unwrap();
    assert!(structural(&base()).is_empty());
}

#[test]
fn rule_min_replicas_le_max() {
    assert_rule(
        with(
            &["spec", "autoscaling"],
            json!({"enabled": true, "minReplicas": 3, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}),
        ),
        with(
            &["spec", "autoscaling"],
            json!({"enabled": true, "minReplicas": 4, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}),
        ),
        "minReplicas must be less than or equal to maxReplicas",
    );
}

#[test]
fn rule_autoscaling_needs_a_target() {
    assert_rule(
        with(
            &["spec", "autoscaling"],
            json!({"enabled": true, "podMetrics": [{"name": "rps", "targetAverageValue": "10"}]}),
        ),
        with(&["spec", "autoscaling"], json!({"enabled": true})),
        "autoscaling needs at least one target",
    );
    // Disabled autoscaling needs no target.
    cel(&with(&["spec", "autoscaling"], json!({"enabled": false}))).unwrap();
}

#[test]
fn rule_scaling_policy_needs_a_limit() {
    assert_rule(
        with(
            &["spec", "autoscaling", "scaleDown"],
            json!({"maxPercentPerPeriod": 10}),
        ),
        with(
            &["spec", "autoscaling", "scaleDown"],
            json!({"periodSeconds": 60}),
        ),
        "set maxPodsPerPeriod, maxPercentPerPeriod or both",
    );
}

#[test]
fn rule_exactly_one_of_min_available_max_unavailable() {
    let ok = with(
        &["spec", "disruptionBudget"],
        json!({"minAvailable": "50%"}),
    );
    let both = with(
        &["spec", "disruptionBudget"],
        json!({"minAvailable": 1, "maxUnavailable": 1}),
    );
    let neither = with(&["spec", "disruptionBudget"], json!({"enabled": true}));
    assert_rule(
        ok.clone(),
        both,
        "exactly one of minAvailable and maxUnavailable",
    );
    assert_rule(
        ok,
        neither,
        "exactly one of minAvailable and maxUnavailable",
    );
}

/// The CRD's rule and the operator's parser (croner, narrowed to what a CronJob takes) agree:
/// what the API server admits, the operator can schedule, and the reverse.
#[test]
fn rule_cron_schedule_shape() {
    use tradeplane_operator::schedule::CronSchedule;
    for good in [
        "0 2 * * *",
        "*/15 * * * *",
        "30 3 * * MON-FRI",
        "@daily",
        "@hourly",
        "0 0 1,15 * *",
        "5/10 * * * *",
        "0 0 30 2 *",
        "0 0 * jan-mar sun",
    ] {
        cel(&with(&["spec", "backup", "schedule"], json!(good)))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        CronSchedule::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "0 2 * *",
        "daily",
        "@fortnightly",
        "0 2 * * * *",
        "0;2 * * * *",
        "61 * * * *",
        "0 24 * * *",
        "0 0 L * *",
        "0 0 * * 1#2",
        "0 0 * * 7",
        "@midnight",
    ] {
        let err = cel(&with(&["spec", "backup", "schedule"], json!(bad))).expect_err(bad);
        assert!(err.contains("5-field cron"), "{bad}: {err}");
        assert!(
            CronSchedule::parse(bad).is_err(),
            "{bad}: the parser took it"
        );
    }
}

#[test]
fn rule_retention_needs_a_limit() {
    assert_rule(
        with(&["spec", "backup", "retention"], json!({"keepLast": 7})),
        with(&["spec", "backup", "retention"], json!({})),
        "set keepDays, keepLast or both",
    );
}

#[test]
fn rule_existing_claim_excludes_new_claim_fields() {
    assert_rule(
        with(
            &["spec", "backup", "storage"],
            json!({"existingClaim": "backups"}),
        ),
        with(
            &["spec", "backup", "storage"],
            json!({"existingClaim": "backups", "size": "5Gi"}),
        ),
        "existingClaim cannot be combined",
    );
}

#[test]
fn rule_ingress_host_required_when_enabled() {
    assert_rule(
        with(
            &["spec", "ingress"],
            json!({"enabled": true, "host": "a.example.com"}),
        ),
        with(&["spec", "ingress"], json!({"enabled": true})),
        "ingress.host is required",
    );
}

#[test]
fn rule_burst_at_least_rate() {
    assert_rule(
        with(
            &["spec", "settings", "rateLimits"],
            json!({"perSecond": 10, "burst": 10}),
        ),
        with(
            &["spec", "settings", "rateLimits"],
            json!({"perSecond": 10, "burst": 5}),
        ),
        "burst must be at least perSecond",
    );
}

#[test]
fn rule_reserved_env_names() {
    assert_rule(
        with(&["spec", "env"], json!([{"name": "TZ", "value": "UTC"}])),
        with(
            &["spec", "env"],
            json!([{"name": "JWT_SECRET", "value": "oops"}]),
        ),
        "are set from spec.database",
    );
}

#[test]
fn rule_name_is_short_dns_label() {
    let mut long = base();
    long["metadata"]["name"] = json!("a".repeat(46));
    let mut upper = base();
    upper["metadata"]["name"] = json!("Tp");
    let mut ok = base();
    ok["metadata"]["name"] = json!("a".repeat(45));
    assert_rule(ok.clone(), long, "DNS label of at most 45");
    assert_rule(ok, upper, "DNS label of at most 45");
}

#[test]
fn typed_validate_cel_uses_the_same_rules() {
    let mut tp: TradingPlatform = serde_json::from_value(base()).unwrap();
    kube::core::cel::validate_cel(&tp).unwrap();
    tp.spec.autoscaling.min_replicas = 9;
    tp.spec.autoscaling.max_replicas = 3;
    assert!(kube::core::cel::validate_cel(&tp).is_err());
}

#[test]
fn examples_pass_cel_and_structural_checks() {
    for f in example_files() {
        let obj = yaml_file(&f);
        cel(&obj).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let errs = structural(&obj);
        assert!(errs.is_empty(), "{}: {errs:#?}", f.display());
        tradeplane_operator::resources::parse_trading_platform(
            &std::fs::read_to_string(&f).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn structural_check_catches_mistakes() {
    let typo = with(&["spec", "replica"], json!(3));
    assert!(
        structural(&typo)
            .iter()
            .any(|e| e.contains("unknown field"))
    );
    let range = with(&["spec", "replicas"], json!(1000));
    assert!(structural(&range).iter().any(|e| e.contains("maximum")));
    let enum_bad = with(&["spec", "imagePullPolicy"], json!("Sometimes"));
    assert!(structural(&enum_bad).iter().any(|e| e.contains("not in")));
    let pattern = with(
        &["spec", "database"],
        json!({"name": "Bad_Name", "key": "k"}),
    );
    assert!(
        structural(&pattern)
            .iter()
            .any(|e| e.contains("does not match"))
    );
    let mut missing = base();
    missing["spec"].as_object_mut().unwrap().remove("jwtSecret");
    assert!(
        structural(&missing)
            .iter()
            .any(|e| e.contains("jwtSecret: required"))
    );
}

fn refused(path: &[&str], value: Value, message_part: &str) {
    let obj = with(path, value.clone());
    let err = cel(&obj)
        .err()
        .or_else(|| {
            let s = structural(&obj);
            (!s.is_empty()).then(|| s.join("; "))
        })
        .unwrap_or_else(|| panic!("{path:?} = {value} should be refused"));
    assert!(err.contains(message_part), "{path:?} = {value}: {err}");
}

fn accepted(path: &[&str], value: Value) {
    let obj = with(path, value.clone());
    cel(&obj).unwrap_or_else(|e| panic!("{path:?} = {value}: {e}"));
    assert!(structural(&obj).is_empty(), "{:?}", structural(&obj));
}

/// The specs of issue 13 that used to pass admission and fail later, each refused by the schema.
#[test]
fn invalid_specs_of_the_real_cluster_run_are_refused_at_admission() {
    let res = ["spec", "resources"];
    refused(
        &res,
        json!({"requests": {"cpu": "lots"}}),
        "spec.resources.requests.cpu must be a Kubernetes quantity",
    );
    refused(
        &res,
        json!({"limits": {"memory": "1 GB"}}),
        "spec.resources.limits.memory must be a Kubernetes quantity",
    );
    refused(
        &res,
        json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "2Gi"}}),
        "spec.resources.requests.cpu must be less than or equal to spec.resources.limits.cpu",
    );
    accepted(
        &res,
        json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}}),
    );

    let size = ["spec", "backup", "storage", "size"];
    refused(
        &size,
        json!("ten gigs"),
        "spec.backup.storage.size must be a positive Kubernetes quantity",
    );
    refused(&size, json!("0"), "positive");
    accepted(&size, json!("20Gi"));

    let tz = ["spec", "backup", "timeZone"];
    refused(
        &tz,
        json!("Not a zone!"),
        "spec.backup.timeZone must be an IANA time zone name",
    );
    accepted(&tz, json!("Europe/Berlin"));
    accepted(&tz, json!("UTC"));
    accepted(&tz, json!("America/Argentina/Buenos_Aires"));

    let sched = ["spec", "backup", "schedule"];
    for bad in [
        "61 * * * *",
        "0 24 * * *",
        "0 0 32 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "0-61 * * * *",
    ] {
        refused(&sched, json!(bad), "minute 0-59, hour 0-23");
    }
    for good in [
        "59 23 31 12 6",
        "0 */6 * * *",
        "0 2 * JAN-MAR sun",
        "5,35 1-3 ? * *",
    ] {
        accepted(&sched, json!(good));
    }

    let pdb = ["spec", "disruptionBudget"];
    refused(
        &pdb,
        json!({"maxUnavailable": "150%"}),
        "spec.disruptionBudget.maxUnavailable must be a number >= 0 or a percentage from 0% to 100%",
    );
    refused(
        &pdb,
        json!({"minAvailable": "101%"}),
        "spec.disruptionBudget.minAvailable",
    );
    accepted(&pdb, json!({"minAvailable": "100%"}));
    accepted(&pdb, json!({"maxUnavailable": 1}));

    let instruments = ["spec", "settings", "instruments"];
    refused(&instruments, json!([]), "fewer than 1 item");

    let image = ["spec", "image"];
    for bad in [
        "ghcr.io/tradeplane/trade plane:1",
        "Tradeplane:1",
        "img:1 ",
        "ghcr.io/x/y:t@sha256:zz",
        "x::1",
    ] {
        refused(&image, json!(bad), "spec.image must be an image reference");
    }
    for good in [
        "ghcr.io/tradeplane/tradeplane:0.1.0",
        "localhost:5000/tp:dev",
        "tradeplane",
        "registry.example.com/a/b_c/d-e:v1.2_3",
        "ghcr.io/tradeplane/tradeplane@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        accepted(&image, json!(good));
    }
}

/// Duplicate symbols are refused by the API server through the list-map keys (the offline CEL
/// validator does not model list types, so the schema itself is checked).
#[test]
fn instruments_are_a_map_keyed_by_symbol() {
    let s = schema();
    let i = &s["properties"]["spec"]["properties"]["settings"]["properties"]["instruments"];
    assert_eq!(i["x-kubernetes-list-type"], "map");
    assert_eq!(i["x-kubernetes-list-map-keys"], json!(["symbol"]));
    assert_eq!(i["minItems"], 1);
    assert!(
        i["items"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("symbol")),
        "a list-map key must be required"
    );
}
