//! Pure builder tests: spec in, objects out, for every child and every option.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::resources::{self, Desired};

fn tp(spec_patch: Value) -> TradingPlatform {
    let mut obj = json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": "x", "namespace": "ns", "uid": "1234-uid"},
        "spec": {
            "image": "img:1",
            "database": {"name": "sec", "key": "db"},
            "jwtSecret": {"name": "sec", "key": "jwt"}
        }
    });
    merge(&mut obj["spec"], spec_patch);
    serde_json::from_value(obj).expect("valid TradingPlatform")
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn build(spec_patch: Value) -> Desired {
    resources::desired(&tp(spec_patch)).expect("builds")
}

fn j<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap()
}

#[test]
fn defaults_create_the_standard_set() {
    let d = build(json!({}));
    let kinds: Vec<String> = d
        .to_values()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "PersistentVolumeClaim",
            "CronJob",
            "NetworkPolicy"
        ]
    );
    assert!(d.hpa.is_none() && d.ingress.is_none());
}

#[test]
fn every_child_is_labelled_and_owned() {
    let d = build(
        json!({"autoscaling": {"enabled": true, "targetCPUUtilizationPercentage": 50}, "ingress": {"enabled": true, "host": "h.example.com"}}),
    );
    for v in d.to_values().unwrap() {
        let labels = &v["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "tradeplane");
        assert_eq!(labels["app.kubernetes.io/instance"], "x");
        assert_eq!(labels["app.kubernetes.io/part-of"], "tradeplane");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "tradeplane-operator"
        );
        assert!(labels["app.kubernetes.io/component"].is_string());
        assert_eq!(v["metadata"]["namespace"], "ns");
        let owners = &v["metadata"]["ownerReferences"];
        if v["kind"] == "PersistentVolumeClaim" {
            assert!(owners.is_null(), "backup claim must outlive the resource");
        } else {
            assert_eq!(owners[0]["uid"], "1234-uid", "{}", v["kind"]);
            assert_eq!(owners[0]["controller"], true);
            assert_eq!(owners[0]["kind"], "TradingPlatform");
        }
    }
}

#[test]
fn render_without_uid_has_no_owner_references() {
    let mut t = tp(json!({}));
    t.metadata.uid = None;
    let d = resources::desired(&t).unwrap();
    for v in d.to_values().unwrap() {
        assert!(v["metadata"]["ownerReferences"].is_null());
    }
}

#[test]
fn unnamed_resource_is_a_clear_error() {
    let mut t = tp(json!({}));
    t.metadata.name = None;
    assert_eq!(
        resources::desired(&t).unwrap_err(),
        resources::BuildError::MissingName
    );
}

#[test]
fn deployment_probes_drain_and_security() {
    let d = build(
        json!({"shutdown": {"preStopSleepSeconds": 7, "drainTimeoutSeconds": 33},
        "probes": {"readiness": {"periodSeconds": 3, "failureThreshold": 4, "successThreshold": 2, "timeoutSeconds": 1}}}),
    );
    let dep = j(d.deployment.as_ref().unwrap());
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["ports"][0],
        json!({"name": "http", "containerPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/health/startup");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/ready");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 3);
    assert_eq!(c["readinessProbe"]["failureThreshold"], 4);
    assert_eq!(c["readinessProbe"]["successThreshold"], 2);
    assert_eq!(c["readinessProbe"]["timeoutSeconds"], 1);
    assert_eq!(c["livenessProbe"]["successThreshold"], 1);
    assert_eq!(c["lifecycle"]["preStop"], json!({"sleep": {"seconds": 7}}));
    assert_eq!(pod["terminationGracePeriodSeconds"], 7 + 33 + 10);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");
    assert!(pod["volumes"][0]["emptyDir"].is_object());
    assert_eq!(c["resources"]["requests"]["memory"], "256Mi");
    assert_eq!(c["resources"]["limits"]["cpu"], "1");
    assert_eq!(pod["serviceAccountName"], "x");
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "x-config");
    assert_eq!(dep["spec"]["replicas"], 2);
}

#[test]
fn no_prestop_when_sleep_is_zero() {
    let d = build(json!({"shutdown": {"preStopSleepSeconds": 0, "drainTimeoutSeconds": 5}}));
    let dep = j(d.deployment.as_ref().unwrap());
    assert!(dep["spec"]["template"]["spec"]["containers"][0]["lifecycle"].is_null());
    assert_eq!(
        dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        15
    );
}

#[test]
fn secrets_come_from_secret_key_refs() {
    let d = build(
        json!({"redis": {"name": "r", "key": "url"}, "backupEncryptionKey": {"name": "b", "key": "k"},
        "env": [{"name": "TZ", "value": "UTC"}]}),
    );
    let dep = j(d.deployment.as_ref().unwrap());
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let find = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        find("DATABASE_URL")["valueFrom"]["secretKeyRef"],
        json!({"name": "sec", "key": "db", "optional": false})
    );
    assert_eq!(
        find("JWT_SECRET")["valueFrom"]["secretKeyRef"]["key"],
        "jwt"
    );
    assert_eq!(find("REDIS_URL")["valueFrom"]["secretKeyRef"]["name"], "r");
    assert_eq!(
        find("BACKUP_ENCRYPTION_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "b"
    );
    assert_eq!(find("TZ")["value"], "UTC");
    let without = build(json!({}));
    let dep = j(without.deployment.as_ref().unwrap());
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!env.iter().any(|e| e["name"] == "REDIS_URL"));
}

#[test]
fn config_map_keys_follow_the_contract() {
    let d = build(
        json!({"settings": {"logLevel": "debug", "logFormat": "text",
        "instruments": [{"symbol": "BTC-USD", "tickSize": "0.01", "lotSize": "0.001", "minQty": "0.001", "maxQty": "10", "maxNotional": "100000"}],
        "rateLimits": {"perSecond": 7, "burst": 9, "loginPerMinute": 3},
        "databasePool": {"maxConnections": 4, "connectTimeoutSeconds": 2}},
        "shutdown": {"drainTimeoutSeconds": 12}}),
    );
    let data = j(d.config_map.as_ref().unwrap())["data"].clone();
    assert_eq!(data["RUST_LOG"], "debug");
    assert_eq!(data["LOG_FORMAT"], "text");
    assert_eq!(data["RATE_LIMIT_PER_SECOND"], "7");
    assert_eq!(data["RATE_LIMIT_BURST"], "9");
    assert_eq!(data["LOGIN_RATE_LIMIT_PER_MINUTE"], "3");
    assert_eq!(data["DATABASE_MAX_CONNECTIONS"], "4");
    assert_eq!(data["DATABASE_CONNECT_TIMEOUT_SECONDS"], "2");
    assert_eq!(data["DRAIN_TIMEOUT_SECONDS"], "12");
    assert_eq!(data["LISTEN_ADDR"], "0.0.0.0:8080");
    let inst: Value = serde_json::from_str(data["INSTRUMENTS"].as_str().unwrap()).unwrap();
    assert_eq!(
        inst,
        json!([{"symbol": "BTC-USD", "tickSize": "0.01", "lotSize": "0.001", "minQty": "0.001", "maxQty": "10", "maxNotional": "100000"}])
    );
    // no instruments: key absent, the platform uses its built-in list
    assert!(j(build(json!({})).config_map.as_ref().unwrap())["data"]["INSTRUMENTS"].is_null());
}

/// Four-eyes approval and the audit's large-order threshold reach the platform's variables; the
/// per-instrument threshold rides in `INSTRUMENTS` under the name the platform reads.
#[test]
fn approval_settings_reach_the_platform() {
    let d = build(json!({"settings": {
        "instruments": [{"symbol": "BTC-USD", "tickSize": "0.01", "lotSize": "0.001", "minQty": "0.001",
            "maxQty": "10", "maxNotional": "100000", "approvalNotional": "25000"}],
        "approvals": {"notionalDefault": "50000", "timeoutSeconds": 600},
        "auditLargeOrderNotional": "250000"}}));
    let data = j(d.config_map.as_ref().unwrap())["data"].clone();
    assert_eq!(data["APPROVAL_NOTIONAL_DEFAULT"], "50000");
    assert_eq!(data["APPROVAL_TIMEOUT_SECONDS"], "600");
    assert_eq!(data["APPROVAL_SWEEP_INTERVAL_SECONDS"], "10", "the default");
    assert_eq!(data["AUDIT_LARGE_ORDER_NOTIONAL"], "250000");
    let inst: Value = serde_json::from_str(data["INSTRUMENTS"].as_str().unwrap()).unwrap();
    assert_eq!(inst[0]["approvalNotional"], "25000");
    // Nothing set: no approval variables, so the platform's own defaults apply.
    let plain = j(build(json!({})).config_map.as_ref().unwrap())["data"].clone();
    assert!(plain["APPROVAL_NOTIONAL_DEFAULT"].is_null());
    assert!(plain["APPROVAL_TIMEOUT_SECONDS"].is_null());
    assert!(plain["AUDIT_LARGE_ORDER_NOTIONAL"].is_null());
}

#[test]
fn config_change_changes_the_pod_template_checksum() {
    let ann = |d: &Desired| {
        j(d.deployment.as_ref().unwrap())["spec"]["template"]["metadata"]["annotations"]
            ["tradeplane.io/config-checksum"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = ann(&build(json!({})));
    let b = ann(&build(json!({"settings": {"logLevel": "warn"}})));
    let c = ann(&build(json!({"replicas": 5})));
    assert_eq!(a.len(), 64);
    assert_ne!(a, b, "config change must roll the pods");
    assert_eq!(a, c, "non-config change must not change the checksum");
}

#[test]
fn service_type_port_and_annotations() {
    let d =
        build(json!({"service": {"type": "LoadBalancer", "port": 443, "annotations": {"a": "b"}}}));
    let s = j(d.service.as_ref().unwrap());
    assert_eq!(s["spec"]["type"], "LoadBalancer");
    assert_eq!(
        s["spec"]["ports"][0],
        json!({"name": "http", "port": 443, "targetPort": "http", "protocol": "TCP"})
    );
    assert_eq!(s["metadata"]["annotations"]["a"], "b");
    assert_eq!(
        s["spec"]["selector"]["app.kubernetes.io/component"],
        "platform"
    );
}

#[test]
fn hpa_when_enabled_and_deployment_leaves_replicas() {
    let d = build(
        json!({"replicas": 4, "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 9,
        "targetCPUUtilizationPercentage": 60, "targetMemoryUtilizationPercentage": 75,
        "podMetrics": [{"name": "http_requests_per_second", "targetAverageValue": "150"}],
        "scaleUp": {"maxPodsPerPeriod": 3, "maxPercentPerPeriod": 50, "periodSeconds": 15, "stabilizationWindowSeconds": 0},
        "scaleDown": {"maxPodsPerPeriod": 1, "periodSeconds": 90, "stabilizationWindowSeconds": 400}}}),
    );
    let dep = j(d.deployment.as_ref().unwrap());
    assert!(
        dep["spec"].get("replicas").is_none(),
        "replicas must be omitted under an HPA"
    );
    let h = j(d.hpa.as_ref().unwrap());
    assert_eq!(h["apiVersion"], "autoscaling/v2");
    assert_eq!(
        h["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"})
    );
    assert_eq!(h["spec"]["minReplicas"], 2);
    assert_eq!(h["spec"]["maxReplicas"], 9);
    let m = h["spec"]["metrics"].as_array().unwrap();
    assert_eq!(
        m[0]["resource"],
        json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}})
    );
    assert_eq!(m[1]["resource"]["name"], "memory");
    assert_eq!(
        m[2]["pods"],
        json!({"metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "150"}})
    );
    let up = &h["spec"]["behavior"]["scaleUp"];
    assert_eq!(
        up["policies"],
        json!([{"type": "Pods", "value": 3, "periodSeconds": 15}, {"type": "Percent", "value": 50, "periodSeconds": 15}])
    );
    assert_eq!(
        h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        400
    );
    assert!(build(json!({})).hpa.is_none());
}

#[test]
fn pdb_only_when_more_than_one_replica_can_run() {
    let d = build(json!({"replicas": 3, "disruptionBudget": {"minAvailable": "50%"}}));
    let p = j(d.pdb.as_ref().unwrap());
    assert_eq!(p["apiVersion"], "policy/v1");
    assert_eq!(p["spec"]["minAvailable"], "50%");
    assert!(p["spec"]["maxUnavailable"].is_null());
    assert_eq!(p["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");

    let one = build(json!({"replicas": 1}));
    assert!(one.pdb.is_none());
    assert!(
        one.pdb_skipped_reason
            .as_deref()
            .unwrap()
            .contains("block every node drain")
    );

    // autoscaling up to 4 replicas can run more than one even if replicas says 1
    let hpa = build(
        json!({"replicas": 1, "autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}}),
    );
    assert_eq!(
        hpa.pdb
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .max_unavailable,
        Some(IntOrString::Int(1))
    );
    let hpa_one = build(
        json!({"autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 1, "targetCPUUtilizationPercentage": 50}}),
    );
    assert!(hpa_one.pdb.is_none());

    let off = build(json!({"disruptionBudget": {"enabled": false, "maxUnavailable": 1}}));
    assert!(off.pdb.is_none());
    assert!(off.pdb_skipped_reason.unwrap().contains("disabled"));
}

#[test]
fn backup_cronjob_runs_the_contract_command() {
    let d = build(
        json!({"backup": {"schedule": "15 */6 * * *", "timeZone": "Etc/UTC", "suspend": true,
        "retention": {"keepDays": 14, "keepLast": 5}, "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 4,
        "storage": {"size": "20Gi", "storageClassName": "ssd"}},
        "backupEncryptionKey": {"name": "bk", "key": "k"}}),
    );
    let cj = j(d.backup_cronjob.as_ref().unwrap());
    assert_eq!(cj["apiVersion"], "batch/v1");
    assert_eq!(cj["metadata"]["name"], "x-backup");
    let s = &cj["spec"];
    assert_eq!(s["schedule"], "15 */6 * * *");
    assert_eq!(s["timeZone"], "Etc/UTC");
    assert_eq!(s["suspend"], true);
    assert_eq!(s["concurrencyPolicy"], "Forbid");
    assert_eq!(s["successfulJobsHistoryLimit"], 2);
    assert_eq!(s["failedJobsHistoryLimit"], 4);
    let pod = &s["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["command"],
        json!([
            "tradeplane-platform",
            "backup",
            "--dest",
            "/backups",
            "--keep-days",
            "14",
            "--keep-last",
            "5",
            "--result-file",
            "/dev/termination-log"
        ])
    );
    assert_eq!(c["env"][0]["name"], "DATABASE_URL");
    assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["key"], "db");
    assert_eq!(c["env"][1]["name"], "BACKUP_ENCRYPTION_KEY");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/backups");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "x-backups"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["restartPolicy"], "Never");
    let pvc = j(d.backup_claim.as_ref().unwrap());
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(pvc["spec"]["storageClassName"], "ssd");
    assert_eq!(
        pvc["metadata"]["annotations"]["tradeplane.io/retention-policy"],
        "Retain"
    );
}

#[test]
fn backup_retention_flags_are_optional() {
    let d = build(json!({"backup": {"retention": {"keepLast": 3}}}));
    let cj = j(d.backup_cronjob.as_ref().unwrap());
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"],
        json!([
            "tradeplane-platform",
            "backup",
            "--dest",
            "/backups",
            "--keep-last",
            "3",
            "--result-file",
            "/dev/termination-log"
        ])
    );
}

#[test]
fn backup_existing_claim_and_disabled() {
    let d = build(json!({"backup": {"storage": {"existingClaim": "old-backups"}}}));
    assert!(d.backup_claim.is_none());
    let cj = j(d.backup_cronjob.as_ref().unwrap());
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
            ["claimName"],
        "old-backups"
    );
    let off = build(json!({"backup": {"enabled": false}}));
    assert!(off.backup_claim.is_none() && off.backup_cronjob.is_none());
    let default_size = build(json!({}));
    assert_eq!(
        j(default_size.backup_claim.as_ref().unwrap())["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
}

#[test]
fn invalid_schedule_is_a_clear_error() {
    let err = resources::desired(&tp(json!({"backup": {"schedule": "99 * * * *"}}))).unwrap_err();
    assert!(err.to_string().contains("spec.backup.schedule"), "{err}");
}

#[test]
fn backup_now_job_uses_the_cronjob_template() {
    let mut cron = build(json!({})).backup_cronjob.unwrap();
    cron.metadata.uid = Some("cron-uid".to_string());
    let job = j(&resources::backup::backup_now_job(
        &cron,
        "2026-11-22T10:00",
    ));
    let again = j(&resources::backup::backup_now_job(
        &cron,
        "2026-11-22T10:00",
    ));
    let other = j(&resources::backup::backup_now_job(&cron, "second"));
    assert_eq!(job["metadata"]["name"], again["metadata"]["name"]);
    assert_ne!(job["metadata"]["name"], other["metadata"]["name"]);
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("x-backup-now-")
    );
    let cj = j(&cron);
    assert_eq!(
        job["spec"]["template"], cj["spec"]["jobTemplate"]["spec"]["template"],
        "same pod template as the CronJob"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "cron-uid");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
}

#[test]
fn ingress_options() {
    let d = build(
        json!({"service": {"port": 8081}, "ingress": {"enabled": true, "className": "nginx", "host": "ex.example.com", "tlsSecretName": "tls", "annotations": {"k": "v"}}}),
    );
    let i = j(d.ingress.as_ref().unwrap());
    assert_eq!(i["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        i["spec"]["tls"],
        json!([{"hosts": ["ex.example.com"], "secretName": "tls"}])
    );
    let path = &i["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(
        path["backend"]["service"],
        json!({"name": "x", "port": {"number": 8081}})
    );
    assert_eq!(i["metadata"]["annotations"]["k"], "v");
    let plain = build(json!({"ingress": {"enabled": true, "host": "ex.example.com"}}));
    assert!(j(plain.ingress.as_ref().unwrap())["spec"]["tls"].is_null());
    assert!(
        build(json!({"ingress": {"enabled": false, "host": "a.b"}}))
            .ingress
            .is_none()
    );
}

#[test]
fn network_policy_limits_ingress_to_the_http_port() {
    let d = build(json!({"networkPolicy": {"allowedNamespaceLabels": {"team": "trading"}}}));
    let np = j(d.network_policy.as_ref().unwrap());
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "trading"
    );
    let open = j(build(json!({})).network_policy.as_ref().unwrap());
    assert!(open["spec"]["ingress"][0]["from"].is_null());
    assert!(
        build(json!({"networkPolicy": {"enabled": false}}))
            .network_policy
            .is_none()
    );
}

#[test]
fn placement_options() {
    let pod = |d: &Desired| j(d.deployment.as_ref().unwrap())["spec"]["template"]["spec"].clone();
    let pref = pod(&build(json!({})));
    assert_eq!(
        pref["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    let req = pod(&build(json!({"placement": {"antiAffinity": "Required"}})));
    assert!(
        req["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_array()
    );
    let none = pod(&build(json!({"placement": {"antiAffinity": "None"}})));
    assert!(none["affinity"].is_null());
    let full = pod(&build(json!({"placement": {
        "topologySpread": {"enabled": true, "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"},
        "nodeSelector": {"pool": "trading"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "trading", "effect": "NoSchedule"}]}})));
    assert_eq!(full["topologySpreadConstraints"][0]["maxSkew"], 2);
    assert_eq!(
        full["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        full["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "DoNotSchedule"
    );
    assert_eq!(full["nodeSelector"]["pool"], "trading");
    assert_eq!(full["tolerations"][0]["key"], "dedicated");
    assert!(pref["topologySpreadConstraints"].is_null());
}

#[test]
fn image_pull_policy_secrets_and_pod_annotations() {
    let d = build(
        json!({"imagePullPolicy": "Always", "imagePullSecrets": ["regcred"], "podAnnotations": {"a": "b"}}),
    );
    let dep = j(d.deployment.as_ref().unwrap());
    let pod = &dep["spec"]["template"];
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );
    assert_eq!(pod["metadata"]["annotations"]["a"], "b");
}

#[test]
fn parse_rejects_wrong_kind_and_bad_yaml() {
    assert!(
        resources::parse_trading_platform("kind: Pod\napiVersion: v1\nmetadata: {name: a}\n")
            .unwrap_err()
            .contains("expected apiVersion tradeplane.io/v1alpha1")
    );
    assert!(resources::parse_trading_platform(": : :").is_err());
    let missing_spec =
        "apiVersion: tradeplane.io/v1alpha1\nkind: TradingPlatform\nmetadata: {name: a}\n";
    assert!(
        resources::parse_trading_platform(missing_spec)
            .unwrap_err()
            .contains("not a valid TradingPlatform")
    );
}
