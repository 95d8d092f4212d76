//! The migration Job: `tradeplane-platform migrate` from the new image, run before the Deployment
//! gets that image, so no new pod starts on a schema it does not know yet (issue 13).
//!
//! The Job has the platform container's env (`POD_IP`, the secrets, `spec.env`) and its ConfigMap,
//! so it reaches the same database the pods do. Its name carries a hash of the image, so each image
//! is migrated once and a new image gets a new Job (a Job's template is immutable).

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::deployment::{
    config_env_from, container_security, one_shot_pod, platform_env, tmp_volume,
};
use super::{BuildError, LABEL_COMPONENT, Parent};
use crate::crd::TradingPlatformSpec;

/// Component label of the migration Jobs.
pub const COMPONENT_MIGRATE: &str = "migrate";
/// Name of the Job's container.
pub const CONTAINER_NAME: &str = "migrate";
/// Exit code of `migrate` when the database failed (contract); retried up to the backoff limit.
pub const EXIT_DATABASE: i32 = 4;
/// Exit code of `migrate` when it refuses (a newer release contracted the schema; contract).
/// Retrying cannot help, so the Job fails at once.
pub const EXIT_REFUSED: i32 = 6;
/// Retries of a failed migration pod (database failures may be transient).
pub const BACKOFF_LIMIT: i32 = 3;
/// A migration running longer than this fails (and is reported).
pub const ACTIVE_DEADLINE_SECONDS: i64 = 900;

/// The migration command line (contract).
pub fn command() -> Vec<String> {
    vec!["tradeplane-platform".to_string(), "migrate".to_string()]
}

/// `<name>-migrate-<first 10 hex digits of SHA-256(image)>`.
pub fn job_name(parent: &Parent, image: &str) -> String {
    let digest = Sha256::digest(image.as_bytes());
    let short: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{}-migrate-{short}", parent.name)
}

/// The label selector of every migration Job of this instance.
pub fn selector(parent: &Parent) -> String {
    format!(
        "{},{LABEL_COMPONENT}={COMPONENT_MIGRATE}",
        parent.instance_selector()
    )
}

/// Builds the migration Job for `spec.image`.
pub fn job(parent: &Parent, spec: &TradingPlatformSpec) -> Result<Job, BuildError> {
    if spec.image.trim().is_empty() {
        return Err(BuildError::Invalid("spec.image is empty".to_string()));
    }
    let (tmp_vol, tmp_mount) = tmp_volume();
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().to_string()),
        command: Some(command()),
        env: Some(platform_env(spec)),
        env_from: Some(vec![config_env_from(parent)]),
        resources: Some(spec.resources.clone()),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![tmp_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Default::default()
    };
    let pod = one_shot_pod(&parent.name, spec, container, vec![tmp_vol]);
    let refused = PodFailurePolicyRule {
        action: "FailJob".to_string(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: Some(CONTAINER_NAME.to_string()),
            operator: "In".to_string(),
            values: vec![EXIT_REFUSED],
        }),
        on_pod_conditions: None,
    };
    Ok(Job {
        metadata: parent.meta(job_name(parent, &spec.image), COMPONENT_MIGRATE),
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![refused],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parent.labels(COMPONENT_MIGRATE)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What a migration Job's status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Not finished yet.
    Running,
    /// Condition `Complete`.
    Succeeded,
    /// Condition `Failed`: the reason and message of the condition, with a hint for the
    /// contract's exit codes when the message names one.
    Failed(String),
}

/// Reads a migration Job's conditions.
pub fn outcome(job: &Job) -> JobOutcome {
    let failed = match super::job_finished(job) {
        Ok(true) => return JobOutcome::Succeeded,
        Ok(false) => return JobOutcome::Running,
        Err(failed) => failed,
    };
    let reason = failed.reason.as_deref().unwrap_or("Failed");
    let message = failed.message.as_deref().unwrap_or("no message");
    let hint = if message.contains(&format!("exit code {EXIT_REFUSED}")) {
        " (exit 6: refused, a newer release has contracted the schema; this image is older than the database: deploy a newer image)"
    } else if message.contains(&format!("exit code {EXIT_DATABASE}")) {
        " (exit 4: the database failed: check DATABASE_URL, the database and the Job's logs)"
    } else {
        ""
    };
    JobOutcome::Failed(format!("{reason}: {message}{hint}"))
}
