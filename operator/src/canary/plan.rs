//! Before anything is applied: the stable Deployment and the revisions to compare, so the
//! controller knows whether the shared ConfigMap must keep its data ([`Plan::holds_config`]).

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use crate::apply::Applier;
use crate::controller::Context;
use crate::crd::{RolloutStrategy, TradingPlatform};
use crate::errors::kube_error_words;
use crate::resources::canary::{recorded_revision, revision};
use crate::resources::{BuildError, Parent};

/// What the rollout step found before anything is applied.
#[derive(Clone, Debug)]
pub enum Plan {
    /// The rolling strategy.
    Rolling,
    /// No Deployment is wanted.
    Skip,
    /// The stable Deployment could not be read (reported as a child failure).
    ReadFailed,
    /// No stable Deployment yet: it is created with the spec's template, revision `hn`.
    Install {
        /// Revision of the spec's template.
        hn: String,
    },
    /// A stable Deployment runs revision `stable_rev`; the spec asks for `new` (revision `hn`).
    Live {
        /// The live stable Deployment.
        stable: Box<Deployment>,
        /// The Deployment the spec asks for.
        new: Box<Deployment>,
        /// Its revision.
        hn: String,
        /// The stable revision (`None`: unknown, not adopted).
        stable_rev: Option<String>,
    },
}

impl Plan {
    /// A rollout is wanted: the shared ConfigMap keeps its data (the stable pods' settings)
    /// until the promotion, and the canary gets its own.
    pub fn holds_config(&self) -> bool {
        matches!(self, Plan::Live { hn, stable_rev, .. } if stable_rev.as_deref() != Some(hn.as_str()))
    }
}

pub(super) fn deployments(ctx: &Context, ns: &str) -> Api<Deployment> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// Reads the stable Deployment and compares its revision with the spec's (`new`: the Deployment
/// the spec asks for, before the migration gate held its image back). Runs before the ConfigMap
/// is applied, see [`Plan::holds_config`].
pub async fn plan(
    a: &mut Applier<'_>,
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    new: Option<Deployment>,
) -> Result<Plan, BuildError> {
    if tp.spec.rollout.strategy == RolloutStrategy::Rolling {
        return Ok(Plan::Rolling);
    }
    let Some(new) = new else {
        return Ok(Plan::Skip);
    };
    let parent = Parent::of(tp)?;
    let hn = revision(&new);
    let stable = match deployments(ctx, ns).get_opt(&parent.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(Plan::Install { hn }),
        Err(e) => {
            let why = format!(
                "cannot read it for the canary rollout: {}",
                kube_error_words(&e)
            );
            a.fail("Deployment", &parent.name, why).await;
            return Ok(Plan::ReadFailed);
        }
    };
    let stable_rev = recorded_revision(&stable).or_else(|| {
        (crate::migrate::live_image(&stable).as_deref() == Some(tp.spec.image.as_str()))
            .then(|| hn.clone())
    });
    Ok(Plan::Live {
        stable: Box::new(stable),
        new: Box::new(new),
        hn,
        stable_rev,
    })
}
