//! The restore Job of `spec.restore`: `tradeplane-platform restore s3://bucket/prefix[/backup]
//! [--until TIME|latest | --until-seq N]`, run once into the new platform's empty database before
//! the platform starts (the controller side is `crate::restore`).
//!
//! The Job is built like the backup Job (same image, service account, security context,
//! `DATABASE_URL`, `BACKUP_ENCRYPTION_KEY`, ConfigMap), but its `AWS_*` settings come from
//! `spec.restore.source` ([`super::backup::s3_env`]) instead of `spec.backup.storage.s3`: it
//! reads another place than the one the new platform backs up to. It never retries by itself
//! (`backoffLimit: 0`; the operator does not recreate a failed one either): a failed restore
//! wrote nothing, and the user decides what changes before the next try. A pod killed by a
//! disruption (drain, preemption) is not counted, so the Job starts another pod: the restore
//! runs in one transaction, so an interrupted one left nothing behind. `restore` has no result
//! file; with `FallbackToLogsOnError` a failed container's termination message is the tail of its
//! output, ending with `tradeplane-platform restore: <error>`, which the operator quotes.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Pod, PodTemplateSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::deployment::{
    backup_key_env, config_env_from, container_security, one_shot_pod, secret_env,
};
use super::migration::JobOutcome;
use super::{BuildError, Parent};
use crate::crd::{RestoreSpec, TradingPlatformSpec};

/// Component label of the restore Job.
pub const COMPONENT_RESTORE: &str = "restore";
/// Name of the Job's container (the operator finds its termination message by it).
pub const CONTAINER_NAME: &str = "restore";
/// The prefix of the error line `restore` prints to stderr on failure (contract).
pub const ERROR_PREFIX: &str = "tradeplane-platform restore: ";

/// `<name>-restore`: one per TradingPlatform (a restore runs once).
pub fn job_name(parent: &Parent) -> String {
    format!("{}-restore", parent.name)
}

/// What `restore` reads: the place `s3://bucket/prefix`, or one backup in it
/// `s3://bucket/prefix/<backup>`.
pub fn source_url(restore: &RestoreSpec) -> String {
    let place = restore.source.url();
    match &restore.backup {
        Some(b) => format!("{place}/{b}"),
        None => place,
    }
}

/// The restore command line (contract): `tradeplane-platform restore PLACE|BACKUP
/// [--until TIME|latest | --until-seq N]`.
pub fn command(restore: &RestoreSpec) -> Vec<String> {
    let mut cmd = vec![
        "tradeplane-platform".to_string(),
        "restore".to_string(),
        source_url(restore),
    ];
    if let Some(until) = &restore.until {
        cmd.push("--until".to_string());
        cmd.push(until.clone());
    } else if let Some(seq) = restore.until_seq {
        cmd.push("--until-seq".to_string());
        cmd.push(seq.to_string());
    }
    cmd
}

/// Builds the restore Job, or `None` without `spec.restore`.
pub fn job(parent: &Parent, spec: &TradingPlatformSpec) -> Result<Option<Job>, BuildError> {
    let Some(restore) = &spec.restore else {
        return Ok(None);
    };
    if spec.image.trim().is_empty() {
        return Err(BuildError::Invalid("spec.image is empty".to_string()));
    }
    if restore.until.is_some() && restore.until_seq.is_some() {
        return Err(BuildError::Invalid(
            "spec.restore: set at most one of until and untilSeq".to_string(),
        ));
    }
    let mut env = vec![secret_env("DATABASE_URL", &spec.database)];
    env.extend(backup_key_env(spec));
    env.extend(super::backup::s3_env(&restore.source));
    // The backup's payload is downloaded to /tmp before it is verified and applied, so /tmp
    // has no size limit here (the node's ephemeral storage must hold one backup).
    let tmp_vol = Volume {
        name: "tmp".to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let tmp_mount = VolumeMount {
        name: "tmp".to_string(),
        mount_path: "/tmp".to_string(),
        ..Default::default()
    };
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().to_string()),
        command: Some(command(restore)),
        env: Some(env),
        env_from: Some(vec![config_env_from(parent)]),
        resources: Some(spec.resources.clone()),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![tmp_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Default::default()
    };
    let labels = parent.labels(COMPONENT_RESTORE);
    let pod = one_shot_pod(&parent.name, spec, container, vec![tmp_vol]);
    let disruption = PodFailurePolicyRule {
        action: "Ignore".to_string(),
        on_exit_codes: None,
        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
            type_: "DisruptionTarget".to_string(),
            status: Some("True".to_string()),
        }]),
    };
    Ok(Some(Job {
        metadata: parent.meta(job_name(parent), COMPONENT_RESTORE),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![disruption],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        "tradeplane.io/restore-source".to_string(),
                        source_url(restore),
                    )])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// What an exit code of `restore` means (contract).
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "internal error",
        2 => "usage: the command line or the configuration is wrong",
        3 => {
            "verification failed: a backup or archive segment is corrupt, missing or encrypted with another key; nothing was written"
        }
        4 => {
            "the database failed (unreachable, query or migration error); the restore was rolled back"
        }
        5 => "I/O or object storage failed (bucket, prefix or backup not found, store unreachable)",
        6 => {
            "refused: the target database is not empty, or the target point is outside the archive; nothing was written"
        }
        7 => {
            "access denied by the object store (wrong, expired or missing credentials, or a bucket policy)"
        }
        _ => "unexpected exit code",
    }
}

/// Reads the restore Job's conditions.
pub fn outcome(job: &Job) -> JobOutcome {
    match super::job_finished(job) {
        Ok(true) => JobOutcome::Succeeded,
        Ok(false) => JobOutcome::Running,
        Err(f) => JobOutcome::Failed(format!(
            "{}: {}",
            f.reason.as_deref().unwrap_or("Failed"),
            f.message.as_deref().unwrap_or("no message")
        )),
    }
}

/// The failure of a restore Job in words, from its `Failed` condition (`condition`) and the
/// restore container of its newest terminated pod: the exit code with its meaning and the
/// error `restore` printed (the line starting with [`ERROR_PREFIX`] in the termination
/// message, else the message's last lines).
pub fn failure_message(condition: &str, pods: &[Pod]) -> String {
    let terminated = pods
        .iter()
        .filter_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            statuses
                .iter()
                .find(|c| c.name == CONTAINER_NAME)?
                .state
                .as_ref()?
                .terminated
                .clone()
        })
        .max_by_key(|t| t.finished_at.as_ref().map(|t| t.0));
    let Some(t) = terminated else {
        return format!("{condition} (the pod is gone: its exit code and error are not known)");
    };
    let code = t.exit_code;
    let error = t
        .message
        .as_deref()
        .map(quote_error)
        .filter(|e| !e.is_empty());
    match error {
        Some(e) => format!("exit code {code} ({}): {e}", exit_meaning(code)),
        None => format!("exit code {code} ({}); {condition}", exit_meaning(code)),
    }
}

/// The error line of a termination message, without the prefix; else its last three lines.
fn quote_error(message: &str) -> String {
    if let Some(line) = message
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(ERROR_PREFIX.trim_end()))
    {
        return truncate(line.trim(), 1024);
    }
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    truncate(&tail, 1024)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TradingPlatform;
    use serde_json::{Value, json};

    fn tp(restore: Value) -> TradingPlatform {
        serde_json::from_value(json!({
            "apiVersion": "tradeplane.io/v1alpha1",
            "kind": "TradingPlatform",
            "metadata": {"name": "x", "namespace": "ns", "uid": "tp-uid"},
            "spec": {
                "image": "img:2",
                "imagePullSecrets": ["pull"],
                "database": {"name": "sec", "key": "db"},
                "jwtSecret": {"name": "sec", "key": "jwt"},
                "backupEncryptionKey": {"name": "sec", "key": "backup-key"},
                "backup": {"storage": {"s3": {"bucket": "new-bucket", "prefix": "mine",
                    "region": "us-east-2", "forcePathStyle": true}}},
                "restore": restore
            }
        }))
        .expect("valid")
    }

    fn source() -> Value {
        json!({"bucket": "old-bucket", "prefix": "prod/eu", "endpoint": "http://minio:9000",
            "forcePathStyle": true, "credentials": {
                "accessKeyId": {"name": "s3", "key": "id"},
                "secretAccessKey": {"name": "s3", "key": "secret"}}})
    }

    fn job_of(restore: Value) -> Value {
        let tp = tp(restore);
        let parent = Parent::of(&tp).unwrap();
        serde_json::to_value(job(&parent, &tp.spec).unwrap().expect("a Job")).unwrap()
    }

    fn cmd(restore: Value) -> Vec<String> {
        serde_json::from_value(
            job_of(restore)["spec"]["template"]["spec"]["containers"][0]["command"].clone(),
        )
        .unwrap()
    }

    #[test]
    fn the_command_line_for_each_target() {
        let base = ["tradeplane-platform", "restore"];
        let c = |extra: &[&str]| {
            base.iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cmd(json!({"source": source()})),
            c(&["s3://old-bucket/prod/eu"])
        );
        let mut s = source();
        s.as_object_mut().unwrap().remove("prefix");
        assert_eq!(cmd(json!({"source": s})), c(&["s3://old-bucket"]));
        assert_eq!(
            cmd(
                json!({"source": source(), "backup": "tradeplane-backup-20261122T020005.123Z.tpb"})
            ),
            c(&["s3://old-bucket/prod/eu/tradeplane-backup-20261122T020005.123Z.tpb"])
        );
        assert_eq!(
            cmd(json!({"source": source(), "until": "2026-12-03T14:05:00Z"})),
            c(&["s3://old-bucket/prod/eu", "--until", "2026-12-03T14:05:00Z"])
        );
        assert_eq!(
            cmd(json!({"source": source(), "until": "latest"})),
            c(&["s3://old-bucket/prod/eu", "--until", "latest"])
        );
        assert_eq!(
            cmd(json!({"source": source(), "untilSeq": 42})),
            c(&["s3://old-bucket/prod/eu", "--until-seq", "42"])
        );
        assert_eq!(
            cmd(
                json!({"source": source(), "backup": "tradeplane-backup-20261122T020005.123Z.tpb", "untilSeq": 7})
            ),
            c(&[
                "s3://old-bucket/prod/eu/tradeplane-backup-20261122T020005.123Z.tpb",
                "--until-seq",
                "7"
            ])
        );
    }

    #[test]
    fn the_env_reads_the_source_not_the_backup_bucket() {
        let j = job_of(json!({"source": source()}));
        let env = &j["spec"]["template"]["spec"]["containers"][0]["env"];
        let names: Vec<&str> = env
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "DATABASE_URL",
                "BACKUP_ENCRYPTION_KEY",
                "AWS_ENDPOINT_URL",
                "AWS_ALLOW_HTTP",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY"
            ]
        );
        assert_eq!(env[2]["value"], "http://minio:9000");
        assert_eq!(
            env[0]["valueFrom"]["secretKeyRef"],
            json!({"name": "sec", "key": "db", "optional": false})
        );
        assert_eq!(
            env[1]["valueFrom"]["secretKeyRef"],
            json!({"name": "sec", "key": "backup-key", "optional": false})
        );
        assert!(
            !env.to_string().contains("us-east-2"),
            "not the backup bucket's region"
        );
    }

    #[test]
    fn the_job_is_owned_runs_once_and_looks_like_the_backup_job() {
        let t = tp(json!({"source": source()}));
        let parent = Parent::of(&t).unwrap();
        let j = serde_json::to_value(job(&parent, &t.spec).unwrap().unwrap()).unwrap();
        assert_eq!(j["metadata"]["name"], "x-restore");
        assert_eq!(j["metadata"]["ownerReferences"][0]["uid"], "tp-uid");
        assert_eq!(j["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            j["metadata"]["labels"]["app.kubernetes.io/component"],
            "restore"
        );
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert!(
            j["spec"]["ttlSecondsAfterFinished"].is_null(),
            "the succeeded Job is the record"
        );
        assert_eq!(
            j["spec"]["podFailurePolicy"]["rules"][0],
            json!({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
        );
        let cron = super::super::backup::cronjob(&parent, &t.spec)
            .unwrap()
            .unwrap();
        let cron = serde_json::to_value(cron).unwrap();
        let bpod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let pod = &j["spec"]["template"]["spec"];
        for k in [
            "serviceAccountName",
            "automountServiceAccountToken",
            "securityContext",
            "restartPolicy",
            "imagePullSecrets",
            "enableServiceLinks",
        ] {
            assert_eq!(pod[k], bpod[k], "{k}");
        }
        let (c, bc) = (&pod["containers"][0], &bpod["containers"][0]);
        for k in [
            "image",
            "imagePullPolicy",
            "securityContext",
            "envFrom",
            "terminationMessagePolicy",
        ] {
            assert_eq!(c[k], bc[k], "{k}");
        }
        assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
        assert_eq!(bc["env"][0], c["env"][0], "same DATABASE_URL");
        assert!(job(&parent, &tp(Value::Null).spec).unwrap().is_none());
    }

    #[test]
    fn failures_quote_the_exit_code_and_the_error_line() {
        let pod = |code: i32, message: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
                {"name": "restore", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": code, "message": message,
                    "finishedAt": "2026-11-22T11:30:00Z"}}}]}}),
            )
            .unwrap()
        };
        let m = failure_message(
            "BackoffLimitExceeded: Job has reached the specified backoff limit",
            &[pod(
                6,
                "restoring s3://b/p\ntradeplane-platform restore: the target database is not empty (12 tables)\n",
            )],
        );
        assert_eq!(
            m,
            "exit code 6 (refused: the target database is not empty, or the target point is outside the archive; nothing was written): the target database is not empty (12 tables)"
        );
        let m = failure_message("BackoffLimitExceeded: x", &[pod(7, "a\nb\nc\nd")]);
        assert!(m.starts_with("exit code 7 (access denied"), "{m}");
        assert!(m.ends_with(": b / c / d"), "{m}");
        let m = failure_message("BackoffLimitExceeded: x", &[]);
        assert!(m.contains("pod is gone"), "{m}");
        assert_eq!(
            exit_meaning(3).split(':').next(),
            Some("verification failed")
        );
    }
}
