//! `spec.backup.archive`: the platform pods get the point-in-time archiving settings (the backup
//! Job's `--dest` and `AWS_*` settings), nothing changes without it, and admission refuses
//! archiving without a bucket or without backups.

use crate::common;

use common::{cel, structural};
use serde_json::{Value, json};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::resources::{self, BuildError, Parent, canary, migration};

fn object(backup: Value) -> Value {
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": "x", "namespace": "ns", "uid": "1234-uid"},
        "spec": {
            "image": "img:1",
            "database": {"name": "sec", "key": "db"},
            "jwtSecret": {"name": "sec", "key": "jwt"},
            "backupEncryptionKey": {"name": "sec", "key": "backup-key"},
            "env": [{"name": "TZ", "value": "UTC"}],
            "backup": backup
        }
    })
}

fn full_s3() -> Value {
    json!({
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
    })
}

fn archived(archive: Value) -> Value {
    object(json!({
        "retention": {"keepDays": 30},
        "archive": archive,
        "storage": {"s3": full_s3()}
    }))
}

fn tp(obj: Value) -> TradingPlatform {
    serde_json::from_value(obj).expect("valid TradingPlatform")
}

fn deployment(obj: Value) -> Value {
    let d = resources::desired(&tp(obj)).expect("builds");
    serde_json::to_value(d.deployment.as_ref().expect("deployment")).expect("json")
}

fn platform_container(dep: &Value) -> Value {
    dep["spec"]["template"]["spec"]["containers"][0].clone()
}

/// `(name, value or secretKeyRef or fieldRef)` of a container's env, in order.
fn env_of(c: &Value) -> Vec<(String, Value)> {
    c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let v = if e["value"].is_string() {
                e["value"].clone()
            } else if e["valueFrom"]["secretKeyRef"].is_object() {
                e["valueFrom"]["secretKeyRef"].clone()
            } else {
                e["valueFrom"].clone()
            };
            (e["name"].as_str().expect("name").to_owned(), v)
        })
        .collect()
}

fn names(env: &[(String, Value)]) -> Vec<&str> {
    env.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn archiving_pods_get_the_destination_intervals_and_bucket_settings() {
    let obj = archived(json!({"enabled": true, "intervalSeconds": 10, "markIntervalMs": 250}));
    let env = env_of(&platform_container(&deployment(obj.clone())));
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(get("ARCHIVE_DEST"), Some(json!("s3://tp-backups/prod/eu")));
    assert_eq!(get("ARCHIVE_INTERVAL_SECONDS"), Some(json!("10")));
    assert_eq!(get("ARCHIVE_MARK_INTERVAL_MS"), Some(json!("250")));
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
        get("BACKUP_ENCRYPTION_KEY"),
        Some(json!({"name": "sec", "key": "backup-key", "optional": false}))
    );
    let n = names(&env);
    assert_eq!(
        n.iter().filter(|k| **k == "BACKUP_ENCRYPTION_KEY").count(),
        1,
        "the key once: {n:?}"
    );
    // After the secrets, before spec.env (which may refer to them as $(NAME)).
    let pos = |k: &str| n.iter().position(|x| *x == k).expect(k);
    assert!(pos("BACKUP_ENCRYPTION_KEY") < pos("ARCHIVE_DEST"));
    assert_eq!(n.last(), Some(&"TZ"));
}

/// `ARCHIVE_DEST`, the `AWS_*` settings and `BACKUP_ENCRYPTION_KEY` are exactly the backup Job's.
#[test]
fn archiving_uses_exactly_the_backup_jobs_place_and_settings() {
    for s3 in [
        full_s3(),
        json!({"bucket": "tp-backups"}),
        json!({"bucket": "tp-backups", "prefix": "a/b", "serverSideEncryption": "AES256"}),
    ] {
        let obj = object(json!({
            "retention": {"keepDays": 30},
            "archive": {"enabled": true},
            "storage": {"s3": s3}
        }));
        let d = resources::desired(&tp(obj)).expect("builds");
        let cj = serde_json::to_value(d.backup_cronjob.as_ref().expect("cronjob")).expect("json");
        let job = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        let pod = env_of(&platform_container(
            &serde_json::to_value(d.deployment.as_ref().expect("deployment")).expect("json"),
        ));
        let dest = &job["command"][3];
        assert_eq!(
            pod.iter()
                .find(|(k, _)| k == "ARCHIVE_DEST")
                .map(|(_, v)| v),
            Some(dest),
            "ARCHIVE_DEST is the backup Job's --dest"
        );
        let shared = |env: Vec<(String, Value)>| -> Vec<(String, Value)> {
            env.into_iter()
                .filter(|(k, _)| k.starts_with("AWS_") || k == "BACKUP_ENCRYPTION_KEY")
                .collect()
        };
        let from_job = shared(env_of(job));
        let mut from_pod = shared(pod);
        // The platform's secrets (with the key) come before the archive settings.
        from_pod.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sorted_job = from_job.clone();
        sorted_job.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(from_pod, sorted_job);
        assert!(from_job.iter().any(|(k, _)| k == "BACKUP_ENCRYPTION_KEY"));
    }
}

/// Without archiving (absent, disabled, or backups off) the Deployment is the one built before
/// the field existed: the same env and pod template.
#[test]
fn without_archiving_the_deployment_is_unchanged() {
    let plain = deployment(object(json!({
        "retention": {"keepDays": 30},
        "storage": {"s3": full_s3()}
    })));
    let env = env_of(&platform_container(&plain));
    assert_eq!(
        names(&env),
        [
            "POD_IP",
            "DATABASE_URL",
            "JWT_SECRET",
            "BACKUP_ENCRYPTION_KEY",
            "TZ"
        ]
    );
    for archive in [json!({}), json!({"enabled": false, "intervalSeconds": 60})] {
        assert_eq!(deployment(archived(archive.clone())), plain, "{archive}");
    }
    // Backups off: no archive either (the CRD refuses this combination; the builder agrees).
    let off = object(
        json!({"enabled": false, "archive": {"enabled": true}, "storage": {"s3": full_s3()}}),
    );
    let env = env_of(&platform_container(&deployment(off)));
    assert!(
        !names(&env)
            .iter()
            .any(|k| k.starts_with("ARCHIVE_") || k.starts_with("AWS_")),
        "{env:?}"
    );
    // A claim instead of a bucket: nothing to ship to (refused by the CRD too).
    let claim = object(json!({"archive": {"enabled": true}}));
    let env = env_of(&platform_container(&deployment(claim)));
    assert!(
        !names(&env).iter().any(|k| k.starts_with("ARCHIVE_")),
        "{env:?}"
    );
}

/// The settings are in the pod template, so turning archiving on or changing an interval rolls
/// the pods (a new template revision) without touching the ConfigMap checksum.
#[test]
fn changing_the_archive_rolls_the_pods() {
    let revision = |obj: Value| {
        let d = resources::desired(&tp(obj)).expect("builds");
        canary::revision(d.deployment.as_ref().expect("deployment"))
    };
    let off = revision(archived(json!({"enabled": false})));
    let on = revision(archived(json!({"enabled": true})));
    let slower = revision(archived(json!({"enabled": true, "intervalSeconds": 30})));
    let coarser = revision(archived(json!({"enabled": true, "markIntervalMs": 5000})));
    assert_ne!(off, on);
    assert_ne!(on, slower);
    assert_ne!(on, coarser);
    assert_eq!(on, revision(archived(json!({"enabled": true}))), "stable");
}

/// The migration Job ships nothing: it keeps the platform env without the archive settings.
#[test]
fn the_migration_job_does_not_archive() {
    let t = tp(archived(json!({"enabled": true})));
    let job = migration::job(&Parent::of(&t).expect("parent"), &t.spec).expect("job");
    let job = serde_json::to_value(&job).expect("json");
    let env = env_of(&job["spec"]["template"]["spec"]["containers"][0]);
    assert!(
        !names(&env)
            .iter()
            .any(|k| k.starts_with("ARCHIVE_") || k.starts_with("AWS_")),
        "{env:?}"
    );
}

/// A `spec.env` entry the archiving sets too would be a duplicate env name (the server-side apply
/// of the Deployment fails on it): the builder says so, as admission does.
#[test]
fn spec_env_may_not_set_what_the_archiving_sets() {
    let mut obj = archived(json!({"enabled": true}));
    obj["spec"]["env"] = json!([{"name": "AWS_REGION", "value": "us-east-2"}]);
    let err = resources::desired(&tp(obj.clone())).expect_err("duplicate env");
    assert!(
        matches!(&err, BuildError::Invalid(m) if m.contains("AWS_REGION")),
        "{err}"
    );
    let err = cel(&obj).expect_err("refused at admission");
    assert!(err.contains("remove them from spec.env"), "{err}");
    // Without archiving the same env is the user's business.
    let mut plain = archived(json!({"enabled": false}));
    plain["spec"]["env"] = json!([{"name": "AWS_REGION", "value": "us-east-2"}]);
    cel(&plain).expect("no archive, no conflict");
    resources::desired(&tp(plain)).expect("builds");
}

#[test]
fn admission_accepts_archiving_to_a_bucket() {
    for archive in [
        json!({"enabled": true}),
        json!({"enabled": true, "intervalSeconds": 1, "markIntervalMs": 100}),
        json!({"enabled": true, "intervalSeconds": 3600, "markIntervalMs": 60000}),
        json!({"enabled": false}),
    ] {
        let obj = archived(archive.clone());
        cel(&obj).unwrap_or_else(|e| panic!("{archive}: {e}"));
        assert!(
            structural(&obj).is_empty(),
            "{archive}: {:?}",
            structural(&obj)
        );
    }
}

#[test]
fn admission_refuses_archiving_without_a_bucket() {
    // The default storage (a claim) and an existing claim.
    for storage in [json!({}), json!({"existingClaim": "backups"})] {
        let obj = object(json!({"archive": {"enabled": true}, "storage": storage}));
        let err = cel(&obj).expect_err("no bucket");
        assert!(
            err.contains("spec.backup.archive needs spec.backup.storage.s3"),
            "{err}"
        );
    }
    // Disabled archiving needs no bucket.
    cel(&object(json!({"archive": {"enabled": false}}))).expect("disabled");
}

#[test]
fn admission_refuses_archiving_without_backups() {
    let obj = object(json!({
        "enabled": false,
        "archive": {"enabled": true},
        "storage": {"s3": full_s3()}
    }));
    let err = cel(&obj).expect_err("backups disabled");
    assert!(
        err.contains("spec.backup.archive needs spec.backup.enabled"),
        "{err}"
    );
    let obj = object(json!({"enabled": false, "archive": {"enabled": false}}));
    cel(&obj).expect("archiving off, backups off");
}

#[test]
fn admission_checks_the_intervals() {
    for (archive, part) in [
        (json!({"enabled": true, "intervalSeconds": 0}), "minimum"),
        (json!({"enabled": true, "intervalSeconds": 3601}), "maximum"),
        (json!({"enabled": true, "markIntervalMs": 99}), "minimum"),
        (json!({"enabled": true, "markIntervalMs": 60001}), "maximum"),
        (json!({"enabled": true, "retain": true}), "unknown field"),
    ] {
        let errs = structural(&archived(archive.clone()));
        assert!(errs.iter().any(|e| e.contains(part)), "{archive}: {errs:?}");
    }
}
