//! Backup CronJob (batch/v1) running `tradeplane-platform backup`, its claim, and the one-off Job
//! that the `tradeplane.io/backup-now` annotation triggers from the same template.
//!
//! With `spec.backup.storage.s3` there is no claim: the Job writes to `--dest s3://bucket/prefix`
//! with the client settings as `AWS_*` variables ([`s3_env`]). Either way the Job writes its
//! result as one JSON line to its termination message (`--result-file /dev/termination-log`),
//! which the operator reads back for its backup metrics (`crate::backup_metrics`).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use sha2::{Digest, Sha256};

use super::deployment::{
    backup_key_env, config_env_from, container_security, plain_env, pod_security, pull_secrets,
    secret_env, tmp_volume,
};
use super::{BuildError, COMPONENT_BACKUP, Parent};
use crate::crd::{ClaimRetentionPolicy, S3Storage, TradingPlatformSpec};

/// Where the backup volume is mounted (contract: `--dest /backups`).
pub const BACKUP_DIR: &str = "/backups";
/// Size of the claim when `storage.size` is not set.
pub const DEFAULT_CLAIM_SIZE: &str = "10Gi";
/// Annotation on operator-created claims recording the retention policy in force.
pub const CLAIM_RETENTION_ANNOTATION: &str = "tradeplane.io/retention-policy";
/// Where the backup container writes its result (the Kubernetes default termination message
/// path; the kubelet keeps the file's content, at most 4096 bytes, in the pod's status).
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Name of the backup container (the operator finds its termination message by it).
pub const CONTAINER_NAME: &str = "backup";

/// Where the backups go: `/backups` (the claim) or `s3://bucket/prefix`.
pub fn destination(spec: &TradingPlatformSpec) -> String {
    match &spec.backup.storage.s3 {
        Some(s3) => s3.url(),
        None => BACKUP_DIR.to_string(),
    }
}

/// The backup command line: `tradeplane-platform backup --dest /backups|s3://… [--keep-days N]
/// [--keep-last N] --result-file /dev/termination-log`.
pub fn command(spec: &TradingPlatformSpec) -> Vec<String> {
    let mut cmd = vec![
        "tradeplane-platform".to_string(),
        "backup".to_string(),
        "--dest".to_string(),
        destination(spec),
    ];
    if let Some(days) = spec.backup.retention.keep_days {
        cmd.push("--keep-days".to_string());
        cmd.push(days.to_string());
    }
    if let Some(last) = spec.backup.retention.keep_last {
        cmd.push("--keep-last".to_string());
        cmd.push(last.to_string());
    }
    cmd.push("--result-file".to_string());
    cmd.push(TERMINATION_MESSAGE_PATH.to_string());
    cmd
}

/// The `AWS_*` variables the platform's object-store client reads (platform/src/backup/s3.rs)
/// for `s3`: endpoint, region, addressing style, server-side encryption, and the access keys
/// from their Secrets. The backup Job and, with `spec.backup.archive`, the platform container
/// (`super::deployment::archive_env`) get them.
pub fn s3_env(s3: &S3Storage) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(endpoint) = &s3.endpoint {
        env.push(plain_env("AWS_ENDPOINT_URL", endpoint));
        if endpoint.starts_with("http://") {
            env.push(plain_env("AWS_ALLOW_HTTP", "true"));
        }
    }
    if let Some(region) = &s3.region {
        env.push(plain_env("AWS_REGION", region));
    }
    if !s3.force_path_style {
        env.push(plain_env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true"));
    }
    if let Some(sse) = s3.server_side_encryption {
        env.push(plain_env("AWS_SERVER_SIDE_ENCRYPTION", sse.as_str()));
    }
    if let Some(kms) = &s3.kms_key_id {
        env.push(plain_env("AWS_SSE_KMS_KEY_ID", kms));
    }
    if let Some(c) = &s3.credentials {
        env.push(secret_env("AWS_ACCESS_KEY_ID", &c.access_key_id));
        env.push(secret_env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key));
        if let Some(t) = &c.session_token {
            env.push(secret_env("AWS_SESSION_TOKEN", t));
        }
    }
    env
}

/// Name of the claim the backups go to (existing or operator-created).
pub fn claim_name(parent: &Parent, spec: &TradingPlatformSpec) -> String {
    spec.backup
        .storage
        .existing_claim
        .clone()
        .unwrap_or_else(|| parent.backup_claim_name())
}

/// Builds the backup claim, or `None` when backups are off or an existing claim is used.
///
/// The claim has no owner reference: whether it outlives the TradingPlatform is decided by
/// `storage.retentionPolicy` at deletion time, by the operator's finalizer (an owner reference
/// would always delete it, taking every backup with it).
pub fn claim(
    parent: &Parent,
    spec: &TradingPlatformSpec,
) -> Result<Option<PersistentVolumeClaim>, BuildError> {
    let b = &spec.backup;
    if !b.enabled || b.storage.existing_claim.is_some() || b.storage.s3.is_some() {
        return Ok(None);
    }
    let size = b
        .storage
        .size
        .clone()
        .unwrap_or_else(|| Quantity(DEFAULT_CLAIM_SIZE.to_string()));
    if size.0.trim().is_empty() {
        return Err(BuildError::Invalid(
            "spec.backup.storage.size is empty".to_string(),
        ));
    }
    let mut metadata = parent.unowned_meta(parent.backup_claim_name(), COMPONENT_BACKUP);
    metadata.annotations = Some(BTreeMap::from([(
        CLAIM_RETENTION_ANNOTATION.to_string(),
        match b.storage.retention_policy {
            ClaimRetentionPolicy::Retain => "Retain",
            ClaimRetentionPolicy::Delete => "Delete",
        }
        .to_string(),
    )]));
    Ok(Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: b.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                limits: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The Job template shared by the CronJob and by `backup-now` Jobs.
pub fn job_template(parent: &Parent, spec: &TradingPlatformSpec) -> JobTemplateSpec {
    let (tmp_vol, tmp_mount) = tmp_volume();
    let mut env = vec![secret_env("DATABASE_URL", &spec.database)];
    env.extend(backup_key_env(spec));
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    match &spec.backup.storage.s3 {
        Some(s3) => env.extend(s3_env(s3)),
        None => {
            mounts.push(VolumeMount {
                name: "backups".to_string(),
                mount_path: BACKUP_DIR.to_string(),
                ..Default::default()
            });
            volumes.push(Volume {
                name: "backups".to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(parent, spec),
                    read_only: Some(false),
                }),
                ..Default::default()
            });
        }
    }
    mounts.push(tmp_mount);
    volumes.push(tmp_vol);
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().to_string()),
        command: Some(command(spec)),
        env: Some(env),
        env_from: Some(vec![config_env_from(parent)]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".to_string())),
                ("memory".to_string(), Quantity("128Mi".to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("512Mi".to_string()),
            )])),
            ..Default::default()
        }),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Default::default()
    };
    let labels = parent.labels(COMPONENT_BACKUP);
    JobTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_string()),
                    service_account_name: Some(parent.name.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: (!spec.placement.node_selector.is_empty())
                        .then(|| spec.placement.node_selector.clone()),
                    tolerations: (!spec.placement.tolerations.is_empty())
                        .then(|| spec.placement.tolerations.clone()),
                    image_pull_secrets: pull_secrets(spec),
                    enable_service_links: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
    }
}

/// Refuses a `spec.backup.timeZone` that is well formed (the CRD checks the shape) but names no
/// zone of the IANA database, which the API server would refuse when the CronJob is applied.
/// The database is the one bundled into the operator (jiff's `tzdb-bundle-always`), so the check
/// does not depend on the image's or the machine's zoneinfo files.
pub fn check_time_zone(zone: &str) -> Result<(), BuildError> {
    jiff::tz::TimeZone::get(zone).map(|_| ()).map_err(|_| {
        BuildError::Invalid(format!(
            "spec.backup.timeZone {zone:?} is not a time zone of the IANA database; use a name such as UTC, Europe/Berlin or America/New_York (see `timedatectl list-timezones`)"
        ))
    })
}

/// Builds the backup CronJob, or `None` when backups are disabled.
pub fn cronjob(parent: &Parent, spec: &TradingPlatformSpec) -> Result<Option<CronJob>, BuildError> {
    let b = &spec.backup;
    if !b.enabled {
        return Ok(None);
    }
    crate::schedule::CronSchedule::parse(&b.schedule)
        .map_err(|e| BuildError::Invalid(format!("spec.backup.schedule: {e}")))?;
    if let Some(zone) = &b.time_zone {
        check_time_zone(zone)?;
    }
    Ok(Some(CronJob {
        metadata: parent.meta(parent.backup_name(), COMPONENT_BACKUP),
        spec: CronJobSpec {
            schedule: b.schedule.clone(),
            time_zone: b.time_zone.clone(),
            suspend: Some(b.suspend),
            concurrency_policy: Some("Forbid".to_string()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(b.successful_jobs_history_limit),
            failed_jobs_history_limit: Some(b.failed_jobs_history_limit),
            job_template: job_template(parent, spec),
        },
        ..Default::default()
    }))
}

/// Makes the backup CronJob (and so every backup-now Job built from it) run `image`: while a
/// new image waits for its migration Job, backups keep running the image that passed its
/// migration, never a binary newer than the schema it would dump.
pub fn set_image(cronjob: &mut CronJob, image: &str) {
    let containers = cronjob
        .spec
        .job_template
        .spec
        .as_mut()
        .and_then(|j| j.template.spec.as_mut())
        .map(|p| p.containers.iter_mut());
    for c in containers.into_iter().flatten() {
        if c.name == CONTAINER_NAME {
            c.image = Some(image.to_string());
        }
    }
}

/// Builds the one-off Job for a `tradeplane.io/backup-now` request value from the live CronJob's
/// `jobTemplate` (as `kubectl create job --from=cronjob/…` does), owned by the CronJob so it is
/// one of the CronJob's Jobs (the operator also suspends the CronJob while it runs, and never
/// starts it while another backup Job runs). The name derives from the request value, so
/// re-reconciling the same request never creates a second Job.
pub fn backup_now_job(cronjob: &CronJob, request: &str) -> Job {
    let digest = Sha256::digest(request.as_bytes());
    let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let template = cronjob.spec.job_template.clone();
    let template_meta = template.metadata.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.extend(cronjob.metadata.labels.clone().unwrap_or_default());
    let metadata = ObjectMeta {
        name: Some(format!(
            "{}-now-{suffix}",
            cronjob.metadata.name.clone().unwrap_or_default()
        )),
        namespace: cronjob.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([
            (
                "cronjob.kubernetes.io/instantiate".to_string(),
                "manual".to_string(),
            ),
            (
                crate::crd::BACKUP_NOW_ANNOTATION.to_string(),
                request.to_string(),
            ),
        ])),
        owner_references: cronjob.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    let mut job_spec = template.spec.unwrap_or_default();
    // One-off Jobs are not pruned by the CronJob's history limits; let the TTL controller do it.
    job_spec.ttl_seconds_after_finished = Some(7 * 24 * 3600);
    Job {
        metadata,
        spec: Some(job_spec),
        ..Default::default()
    }
}
