//! Backup CronJob (batch/v1) running `tradeplane-platform backup`, its claim, and the one-off Job
//! that the `tradeplane.io/backup-now` annotation triggers from the same template.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, ResourceRequirements, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use sha2::{Digest, Sha256};

use super::deployment::{
    config_env_from, container_security, pod_security, pull_secrets, secret_env, tmp_volume,
};
use super::{BuildError, COMPONENT_BACKUP, Parent};
use crate::crd::{ClaimRetentionPolicy, TradingPlatformSpec};

/// Where the backup volume is mounted (contract: `--dest /backups`).
pub const BACKUP_DIR: &str = "/backups";
/// Size of the claim when `storage.size` is not set.
pub const DEFAULT_CLAIM_SIZE: &str = "10Gi";
/// Annotation on operator-created claims recording the retention policy in force.
pub const CLAIM_RETENTION_ANNOTATION: &str = "tradeplane.io/retention-policy";

/// The backup command line: `tradeplane-platform backup --dest /backups [--keep-days N] [--keep-last N]`.
pub fn command(spec: &TradingPlatformSpec) -> Vec<String> {
    let mut cmd = vec![
        "tradeplane-platform".to_string(),
        "backup".to_string(),
        "--dest".to_string(),
        BACKUP_DIR.to_string(),
    ];
    if let Some(days) = spec.backup.retention.keep_days {
        cmd.push("--keep-days".to_string());
        cmd.push(days.to_string());
    }
    if let Some(last) = spec.backup.retention.keep_last {
        cmd.push("--keep-last".to_string());
        cmd.push(last.to_string());
    }
    cmd
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
    if !b.enabled || b.storage.existing_claim.is_some() {
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
    if let Some(key) = &spec.backup_encryption_key {
        env.push(secret_env("BACKUP_ENCRYPTION_KEY", key));
    }
    let container = Container {
        name: "backup".to_string(),
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
        volume_mounts: Some(vec![
            VolumeMount {
                name: "backups".to_string(),
                mount_path: BACKUP_DIR.to_string(),
                ..Default::default()
            },
            tmp_mount,
        ]),
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
                    volumes: Some(vec![
                        Volume {
                            name: "backups".to_string(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: claim_name(parent, spec),
                                read_only: Some(false),
                            }),
                            ..Default::default()
                        },
                        tmp_vol,
                    ]),
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

/// Builds the backup CronJob, or `None` when backups are disabled.
pub fn cronjob(parent: &Parent, spec: &TradingPlatformSpec) -> Result<Option<CronJob>, BuildError> {
    let b = &spec.backup;
    if !b.enabled {
        return Ok(None);
    }
    crate::schedule::CronSchedule::parse(&b.schedule)
        .map_err(|e| BuildError::Invalid(format!("spec.backup.schedule: {e}")))?;
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
