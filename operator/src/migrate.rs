//! The migration gate of a rollout: a new `spec.image` reaches the Deployment only after its
//! migration Job (`tradeplane-platform migrate`, see `resources::migration`) has succeeded.
//!
//! While the Job runs the Deployment keeps the image it runs (`Progressing`/`Migrating`); when it
//! fails the old version keeps serving and the status says why (`Degraded`/`MigrationFailed`).
//! The migrated image is recorded in `status.migratedImage`, so nothing is re-run after an
//! operator restart. The reconciler asks [`gate`] once per reconciliation, before the Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::apply::Applier;
use crate::controller::Context;
use crate::crd::TradingPlatform;
use crate::errors::kube_error_words;
use crate::resources::deployment::CONTAINER_NAME;
use crate::resources::migration::{self, JobOutcome};
use crate::resources::{BuildError, Parent};

/// Condition reason (Progressing): the migration Job of the new image runs.
pub const REASON_MIGRATING: &str = "Migrating";
/// Condition reason (Degraded): the migration Job of the new image failed.
pub const REASON_MIGRATION_FAILED: &str = "MigrationFailed";

/// Where the migration of `spec.image` stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `spec.image` is migrated: the Deployment may run it.
    Open,
    /// The Job runs (or was just created, or could not be read): the Deployment keeps `live`.
    Migrating {
        /// The Job's name.
        job: String,
        /// The image the Deployment runs now (`None`: there is no Deployment yet).
        live: Option<String>,
    },
    /// The Job failed: the Deployment keeps `live`.
    Failed {
        /// The Job's name.
        job: String,
        /// The Job's failure in words.
        message: String,
        /// The image the Deployment runs now.
        live: Option<String>,
    },
}

impl Gate {
    /// The image the Deployment should keep instead of `spec.image`, if it must not change.
    pub fn held(&self) -> Option<Option<&str>> {
        match self {
            Gate::Open => None,
            Gate::Migrating { live, .. } | Gate::Failed { live, .. } => Some(live.as_deref()),
        }
    }

    /// The condition (type, reason, message) the status gets while the gate is closed.
    pub fn condition(&self, image: &str) -> Option<(&'static str, &'static str, String)> {
        let keeps = |live: &Option<String>| match live {
            Some(l) => format!("the Deployment keeps {l}"),
            None => "the Deployment is created once it succeeds".to_string(),
        };
        match self {
            Gate::Open => None,
            Gate::Migrating { job, live } => Some((
                crate::crd::CONDITION_PROGRESSING,
                REASON_MIGRATING,
                format!(
                    "migration Job {job} runs `tradeplane-platform migrate` for {image}; {}",
                    keeps(live)
                ),
            )),
            Gate::Failed { job, message, live } => Some((
                crate::crd::CONDITION_DEGRADED,
                REASON_MIGRATION_FAILED,
                format!(
                    "migration Job {job} for {image} failed: {message}. {} and serves. Check its logs (kubectl logs job/{job}); to retry, delete the Job or set another image",
                    keeps(live)
                ),
            )),
        }
    }
}

/// The image of the platform container of a Deployment.
pub fn live_image(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .and_then(|c| c.image.clone())
}

/// Decides whether `spec.image` may reach the Deployment, creating its migration Job when
/// needed. Returns the gate and the image to record in `status.migratedImage`.
pub async fn gate(
    a: &mut Applier<'_>,
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
) -> Result<(Gate, Option<String>), BuildError> {
    let parent = Parent::of(tp)?;
    let image = tp.spec.image.clone();
    let recorded = tp.status.as_ref().and_then(|s| s.migrated_image.clone());
    if recorded.as_deref() == Some(image.as_str()) {
        return Ok((Gate::Open, recorded));
    }
    let job_name = migration::job_name(&parent, &image);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let live = match deployments.get_opt(&parent.name).await {
        Ok(d) => d.as_ref().and_then(live_image),
        Err(e) => {
            let kind = <Deployment as k8s_openapi::Resource>::KIND;
            let why = format!(
                "cannot read it to check the image migration: {}",
                kube_error_words(&e)
            );
            a.fail(kind, &parent.name, why).await;
            // Unknown live image: leave the Deployment alone this time.
            return Ok((
                Gate::Migrating {
                    job: job_name,
                    live: None,
                },
                recorded,
            ));
        }
    };
    // The pods run this image already (e.g. installed before the operator migrated): adopt it.
    if live.as_deref() == Some(image.as_str()) {
        return Ok((Gate::Open, Some(image)));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let existing = match jobs.get_opt(&job_name).await {
        Ok(j) => j,
        Err(e) => {
            let kind = <Job as k8s_openapi::Resource>::KIND;
            a.fail(kind, &job_name, kube_error_words(&e)).await;
            return Ok((
                Gate::Migrating {
                    job: job_name,
                    live,
                },
                recorded,
            ));
        }
    };
    let job = match existing {
        Some(job) => job,
        None => {
            let wanted = Some(migration::job(&parent, &tp.spec)?);
            let Some(created) = a.apply(&wanted).await else {
                return Ok((
                    Gate::Migrating {
                        job: job_name,
                        live,
                    },
                    recorded,
                ));
            };
            info!(job = %job_name, %image, "started the migration Job");
            ctx.event(
                tp,
                EventType::Normal,
                "MigrationStarted",
                "Migrate",
                format!(
                    "started migration Job {job_name} (`tradeplane-platform migrate` of {image}) before the rollout"
                ),
            )
            .await;
            created // normally running; read like any other
        }
    };
    match migration::outcome(&job) {
        JobOutcome::Running => Ok((
            Gate::Migrating {
                job: job_name,
                live,
            },
            recorded,
        )),
        JobOutcome::Failed(message) => Ok((
            Gate::Failed {
                job: job_name,
                message,
                live,
            },
            recorded,
        )),
        JobOutcome::Succeeded => {
            ctx.event(
                tp,
                EventType::Normal,
                "Migrated",
                "Migrate",
                format!("migration Job {job_name} succeeded; rolling out {image}"),
            )
            .await;
            delete_older_jobs(ctx, tp, ns, &parent, &job_name).await;
            Ok((Gate::Open, Some(image)))
        }
    }
}

/// Deletes this instance's migration Jobs other than `keep` (best effort: a leftover Job only
/// takes space, so a failure is logged, not reported).
async fn delete_older_jobs(
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    parent: &Parent,
    keep: &str,
) {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let list = match jobs
        .list(&ListParams::default().labels(&migration::selector(parent)))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %kube_error_words(&e), "cannot list old migration Jobs");
            return;
        }
    };
    let uid = tp.uid();
    for j in list.items {
        let name = j.name_any();
        let owned = j
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == uid.as_ref());
        if name == keep || !owned {
            continue;
        }
        if let Err(e) = jobs.delete(&name, &DeleteParams::background()).await {
            tracing::warn!(job = %name, error = %kube_error_words(&e), "cannot delete an old migration Job");
        }
    }
}
