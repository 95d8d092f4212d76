//! `spec.backup.storage.s3`: the CronJob writes to the bucket with the `AWS_*` settings and the
//! Secret's keys, no claim is created, and admission accepts exactly one storage.

use crate::common;

use common::{cel, structural};
use serde_json::{Value, json};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::resources;

fn object(storage: Value) -> Value {
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": "x", "namespace": "ns", "uid": "1234-uid"},
        "spec": {
            "image": "img:1",
            "database": {"name": "sec", "key": "db"},
            "jwtSecret": {"name": "sec", "key": "jwt"},
            "backup": {"retention": {"keepDays": 30}, "storage": storage}
        }
    })
}

fn full_s3() -> Value {
    json!({"s3": {
        "bucket": "tp-backups",
        "prefix": "prod/eu",
        "endpoint": "http://minio.storage:9000",
        "region": "eu-west-1",
        "forcePathStyle": true,
        "serverSideEncryption": "aws:kms",
        "kmsKeyId": "alias/backups",
        "credentials": {
            "accessKeyId": {"name": "s3", "key": "id"},
            "secretAccessKey": {"name": "s3", "key": "secret"},
            "sessionToken": {"name": "s3", "key": "token"}
        }
    }})
}

fn env_of(c: &Value) -> Vec<(String, Value)> {
    c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let v = if e["value"].is_string() {
                e["value"].clone()
            } else {
                e["valueFrom"]["secretKeyRef"].clone()
            };
            (e["name"].as_str().expect("name").to_owned(), v)
        })
        .collect()
}

#[test]
fn the_cronjob_writes_to_the_bucket_with_its_settings() {
    let tp: TradingPlatform = serde_json::from_value(object(full_s3())).expect("valid");
    let d = resources::desired(&tp).expect("builds");
    assert!(d.backup_claim.is_none(), "a bucket needs no claim");
    let cj = serde_json::to_value(d.backup_cronjob.as_ref().expect("cronjob")).expect("json");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["command"],
        json!([
            "tradeplane-platform",
            "backup",
            "--dest",
            "s3://tp-backups/prod/eu",
            "--keep-days",
            "30",
            "--result-file",
            "/dev/termination-log"
        ])
    );
    let env = env_of(c);
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(
        get("AWS_ENDPOINT_URL"),
        Some(json!("http://minio.storage:9000"))
    );
    assert_eq!(get("AWS_ALLOW_HTTP"), Some(json!("true")));
    assert_eq!(get("AWS_REGION"), Some(json!("eu-west-1")));
    assert_eq!(get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST"), None, "path style");
    assert_eq!(get("AWS_SERVER_SIDE_ENCRYPTION"), Some(json!("aws:kms")));
    assert_eq!(get("AWS_SSE_KMS_KEY_ID"), Some(json!("alias/backups")));
    assert_eq!(
        get("AWS_ACCESS_KEY_ID"),
        Some(json!({"name": "s3", "key": "id", "optional": false}))
    );
    assert_eq!(
        get("AWS_SECRET_ACCESS_KEY"),
        Some(json!({"name": "s3", "key": "secret", "optional": false}))
    );
    assert_eq!(
        get("AWS_SESSION_TOKEN"),
        Some(json!({"name": "s3", "key": "token", "optional": false}))
    );
    assert_eq!(
        get("DATABASE_URL").map(|v| v["key"].clone()),
        Some(json!("db"))
    );
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    assert_eq!(volumes, ["tmp"], "no backups volume");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
}

#[test]
fn aws_defaults_use_virtual_hosted_style_and_the_pod_identity() {
    let tp: TradingPlatform =
        serde_json::from_value(object(json!({"s3": {"bucket": "tp-backups"}}))).expect("valid");
    let d = resources::desired(&tp).expect("builds");
    let cj = serde_json::to_value(d.backup_cronjob.as_ref().expect("cronjob")).expect("json");
    let c = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][3], "s3://tp-backups");
    let names: Vec<String> = env_of(c).into_iter().map(|(k, _)| k).collect();
    assert!(names.contains(&"AWS_VIRTUAL_HOSTED_STYLE_REQUEST".to_owned()));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("KEY") && n.starts_with("AWS_")),
        "no keys without credentials: {names:?}"
    );
}

#[test]
fn admission_wants_exactly_one_storage() {
    let ok = object(full_s3());
    cel(&ok).expect("s3 alone passes");
    assert!(structural(&ok).is_empty(), "{:?}", structural(&ok));
    for extra in [
        json!({"existingClaim": "old"}),
        json!({"size": "5Gi"}),
        json!({"storageClassName": "ssd"}),
    ] {
        let mut storage = full_s3();
        for (k, v) in extra.as_object().expect("object") {
            storage[k] = v.clone();
        }
        let err = cel(&object(storage)).expect_err("two storages");
        assert!(err.contains("exactly one backup storage"), "{err}");
    }
    let pvc = object(json!({"size": "5Gi"}));
    cel(&pvc).expect("a claim alone passes");
}

#[test]
fn admission_checks_the_s3_fields() {
    let refused = |s3: Value, part: &str| {
        let obj = object(json!({ "s3": s3 }));
        // The API server reports both the schema's and the rules' errors.
        let mut errors = structural(&obj);
        errors.extend(cel(&obj).err());
        assert!(!errors.is_empty(), "{obj} should be refused");
        let err = errors.join("; ");
        assert!(err.contains(part), "{err}");
    };
    refused(json!({"bucket": "Upper_Case"}), "does not match");
    refused(json!({"bucket": "b1", "prefix": "x"}), "shorter than 3");
    refused(json!({"bucket": "bkt", "prefix": "a//b"}), "does not match");
    refused(
        json!({"bucket": "bkt", "prefix": "a/../b"}),
        "does not match",
    );
    refused(
        json!({"bucket": "bkt", "endpoint": "minio:9000"}),
        "does not match",
    );
    refused(
        json!({"bucket": "bkt", "serverSideEncryption": "rot13"}),
        "not in",
    );
    refused(
        json!({"bucket": "bkt", "kmsKeyId": "k", "serverSideEncryption": "AES256"}),
        "kmsKeyId needs serverSideEncryption aws:kms",
    );
    refused(
        json!({"bucket": "bkt", "endpoint": "https://minio.example"}),
        "forcePathStyle",
    );
    refused(
        json!({"bucket": "bkt", "credentials": {"accessKeyId": {"name": "s", "key": "id"}}}),
        "secretAccessKey: required",
    );
    // Virtual-hosted style with an endpoint that names the bucket is fine.
    let ok = object(json!({"s3": {"bucket": "bkt", "endpoint": "https://bkt.storage.example"}}));
    cel(&ok).expect("virtual-hosted endpoint");
    assert!(structural(&ok).is_empty());
}
