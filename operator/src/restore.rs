//! `spec.restore`: bootstrapping a new TradingPlatform's database from a backup (and its
//! point-in-time archive) before the platform starts. The Job is built by
//! [`crate::resources::restore`]; this module decides whether it runs and reads its outcome.
//!
//! Order: the restore comes first, before the migration gate ([`crate::migrate`]), the
//! Deployment and the backup CronJob. `restore` refuses a database that is not empty (exit 6)
//! and migrates its target itself, to the schema of the backup, inside its one transaction;
//! a migration Job run first would create the tables and so make every restore refuse, and
//! pods or a backup started first would write to, or dump, a database that is about to be
//! replaced. After the restore the normal path runs unchanged: the migration gate migrates the
//! restored schema to `spec.image` (a no-op when the backup was taken by the same release),
//! then the Deployment and the CronJob are created.
//!
//! The restore runs once: its completion is recorded in `status.restore.completedAt`, and a
//! succeeded `<name>-restore` Job (or an existing platform Deployment) counts as completed too,
//! so a lost status does not run it again. A failed Job is never recreated by the operator: it
//! stays, with `Degraded`/`RestoreFailed` quoting its exit code and error, until the user deletes
//! it (the next reconciliation starts a new one) or replaces the TradingPlatform.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::apply::Applier;
use crate::controller::Context;
use crate::crd::{RestoreStatus, TradingPlatform};
use crate::errors::kube_error_words;
use crate::resources::migration::JobOutcome;
use crate::resources::restore::{self as builder, source_url};
use crate::resources::{BuildError, Parent};

/// Condition reason (Progressing, and Ready Unknown): the restore Job runs.
pub const REASON_RESTORING: &str = "Restoring";
/// Condition reason (Degraded): the restore Job failed.
pub const REASON_RESTORE_FAILED: &str = "RestoreFailed";
/// `status.restore.phase` values.
pub const PHASE_RUNNING: &str = "Running";
/// See [`PHASE_RUNNING`].
pub const PHASE_FAILED: &str = "Failed";
/// See [`PHASE_RUNNING`].
pub const PHASE_SUCCEEDED: &str = "Succeeded";

/// Where the restore of `spec.restore` stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No restore wanted, or it has completed: the normal path runs. The status to record.
    Done(Option<RestoreStatus>),
    /// The Job runs (or was just created, or could not be read): nothing else starts yet.
    Running(RestoreStatus),
    /// The Job failed (or cannot be used): nothing else starts; the message says why.
    Failed(RestoreStatus),
}

/// True when `tp` wants a restore that has not completed yet (no API call: the status says).
pub fn pending(tp: &TradingPlatform) -> bool {
    tp.spec.restore.is_some()
        && tp
            .status
            .as_ref()
            .and_then(|s| s.restore.as_ref())
            .and_then(|r| r.completed_at.as_ref())
            .is_none()
}

/// What the restore restores, in words: `s3://… (until …)`.
pub fn target_words(tp: &TradingPlatform) -> String {
    let Some(r) = &tp.spec.restore else {
        return String::new();
    };
    let url = source_url(r);
    match (&r.until, r.until_seq, &r.backup) {
        (Some(t), _, _) if t == "latest" => format!("{url} up to the newest archived change"),
        (Some(t), _, _) => format!("{url} up to {t}"),
        (None, Some(n), _) => format!("{url} up to restore point {n}"),
        (None, None, Some(_)) => format!("{url} (that backup alone)"),
        (None, None, None) => format!("{url} (newest backup and everything archived after it)"),
    }
}

/// The message of a running restore (also the `Progressing` condition's).
pub fn running_message(job: &str, tp: &TradingPlatform) -> String {
    format!(
        "restore Job {job} restores {}; the Deployment, the migration Job and the backup CronJob are created once it succeeded (kubectl logs -f job/{job})",
        target_words(tp)
    )
}

/// Decides the restore step, creating the Job when needed. `job` is the Job the builder made
/// (`desired.restore_job`). Call only when [`pending`].
pub async fn step(
    a: &mut Applier<'_>,
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    job: &Option<Job>,
) -> Result<Step, BuildError> {
    let parent = Parent::of(tp)?;
    let job_name = builder::job_name(&parent);
    let previous = tp.status.as_ref().and_then(|s| s.restore.clone());
    let now = ctx.now();
    let status = |phase: &str, message: String, completed: Option<Timestamp>| RestoreStatus {
        phase: Some(phase.to_string()),
        job_name: Some(job_name.clone()),
        completed_at: completed.map(Time),
        message: Some(message),
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let existing = match jobs.get_opt(&job_name).await {
        Ok(j) => j,
        Err(e) => {
            let kind = <Job as k8s_openapi::Resource>::KIND;
            a.fail(kind, &job_name, kube_error_words(&e)).await;
            let keep = previous
                .unwrap_or_else(|| status(PHASE_RUNNING, running_message(&job_name, tp), None));
            return Ok(Step::Running(keep));
        }
    };
    let uid = tp.uid();
    let live = match existing {
        Some(j)
            if !j
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref()) =>
        {
            return Ok(Step::Failed(status(
                PHASE_FAILED,
                format!(
                    "Job {job_name} exists but is not owned by this TradingPlatform (a leftover of an earlier one?): delete it (kubectl delete job {job_name}) and the restore starts"
                ),
                None,
            )));
        }
        Some(j) => j,
        None => {
            // The platform ran already (the status that said so was lost): never restore over it.
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            if let Ok(Some(_)) = deployments.get_opt(&parent.name).await {
                info!("the platform Deployment exists: the restore counts as completed");
                return Ok(Step::Done(Some(status(
                    PHASE_SUCCEEDED,
                    format!(
                        "the platform Deployment {} exists already: the restore is taken as done",
                        parent.name
                    ),
                    Some(now),
                ))));
            }
            let Some(created) = a.apply(job).await else {
                return Ok(Step::Running(status(
                    PHASE_RUNNING,
                    format!(
                        "cannot create restore Job {job_name} yet (see the Degraded condition)"
                    ),
                    None,
                )));
            };
            info!(job = %job_name, "started the restore Job");
            ctx.event(
                tp,
                EventType::Normal,
                "RestoreStarted",
                "Restore",
                format!("started restore Job {job_name}: {}", target_words(tp)),
            )
            .await;
            created
        }
    };
    match builder::outcome(&live) {
        JobOutcome::Running => Ok(Step::Running(status(
            PHASE_RUNNING,
            running_message(&job_name, tp),
            None,
        ))),
        JobOutcome::Succeeded => {
            let message = format!("restored {}", target_words(tp));
            ctx.event(
                tp,
                EventType::Normal,
                "Restored",
                "Restore",
                format!("restore Job {job_name} succeeded: {message}; starting the platform"),
            )
            .await;
            Ok(Step::Done(Some(status(
                PHASE_SUCCEEDED,
                message,
                Some(now),
            ))))
        }
        JobOutcome::Failed(condition) => {
            // The pod is read once per failure; later reconciliations reuse the message.
            if let Some(p) = previous.filter(|p| {
                p.phase.as_deref() == Some(PHASE_FAILED)
                    && p.job_name.as_deref() == Some(job_name.as_str())
                    && p.message.is_some()
            }) {
                return Ok(Step::Failed(p));
            }
            let selector = format!("batch.kubernetes.io/job-name={job_name}");
            let why = match Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(pods) => builder::failure_message(&condition, &pods.items),
                Err(e) => format!(
                    "{condition} (cannot read its pod for the exit code: {})",
                    kube_error_words(&e)
                ),
            };
            Ok(Step::Failed(status(PHASE_FAILED, why, None)))
        }
    }
}

/// The `Degraded` message of a failed restore.
pub fn failed_message(job: &str, why: &str) -> String {
    format!(
        "restore Job {job} failed: {why}. Nothing else is started. The operator does not retry: check its logs (kubectl logs job/{job}); to retry with the same spec delete the Job (kubectl delete job {job}); to restore something else, delete this TradingPlatform and create a new one"
    )
}
