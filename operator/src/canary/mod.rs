//! The canary rollout step of a reconciliation (`spec.rollout.strategy: canary`), around the
//! pure state machine of [`crate::rollout`].
//!
//! Decisions, and why:
//! - **Revisions.** A revision is the hash of the pod template as the builder makes it
//!   ([`crate::resources::canary::revision`]). The stable one is recorded on the stable Deployment
//!   (annotation `tradeplane.io/revision`), so it comes from the cluster, not from a status that
//!   may lag behind a failed write. A Deployment without it (made before the canary strategy was
//!   chosen) is adopted as the new revision when it already runs `spec.image`.
//! - **Replicas.** The canary runs `ceil(weight % × stable replicas)` pods *next to* the stable
//!   ones; the stable Deployment is not scaled down. A rollback then only deletes the canary and
//!   never leaves the platform short of capacity, and with the HPA on, the HPA keeps owning the
//!   stable replica count (the canary follows the live count; the HPA does not scale the canary).
//!   The cost is up to `weight %` extra pods during a step, and a traffic share of
//!   `canary / (stable + canary)`, below the weight (Flagger and Argo Rollouts without a mesh
//!   also split by replica counts).
//! - **Stable untouched.** While a rollout is wanted the stable Deployment is applied with its
//!   live pod template, so other fields (replicas, strategy) still follow the spec but no pod is
//!   replaced. It gets the new template only when promoted; the canary is deleted once that
//!   rollout of the stable Deployment finished, so the new revision serves throughout.
//! - **Gate.** The canary starts only once the migration gate ([`crate::migrate`]) is open.
//! - **Analysis.** Each step is measured from a baseline taken at its first scrape, pod by pod,
//!   in memory (see [`crate::analysis`]). After an operator restart the step resumes from the
//!   status (`stepStartedAt` is kept, the interval is not restarted) and the first scrape takes a
//!   new baseline: the decision waits one scrape longer. A step without requests to the canary
//!   does not advance (no evidence is not a pass); promote by hand if that is intended.
//! - **Overrides.** `tradeplane.io/abort=true` rolls back, `tradeplane.io/promote=true` promotes
//!   without analysis (abort wins). A rolled-back revision is not retried until the pod template
//!   changes.
//! - **Pause.** `spec.paused` freezes everything (the paused reconciliation does not get here)
//!   and stops the step's clock: [`freeze`] records `pausedAt`, [`thaw`] moves `stepStartedAt`
//!   on by the time paused, so a step is never cut short or advanced by a pause.
//! - **Settings.** The canary loads its own ConfigMap (`<name>-canary-config`); the shared one is
//!   held at the stable pods' settings while a rollout is wanted ([`Plan::holds_config`]) and
//!   gets the new ones at the promotion, so a rollback leaves the stable pods' settings alone.
//! - **Prometheus.** With `canary.prometheus`, the measurements are queries instead of scrapes
//!   ([`prometheus`]); readiness still comes from the pods.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

mod measure;
mod plan;
pub mod prometheus;
mod state;

pub use measure::{Baseline, Baselines};
use measure::{Measured, measure};
use plan::deployments;
pub use plan::{Plan, plan};
use state::phase_of;
pub use state::{Outcome, config, freeze, period, rolled_out, state_of, thaw};

use crate::apply::Applier;
use crate::controller::Context;
use crate::crd::{RolloutStatus, TradingPlatform};
use crate::errors::kube_error_words;
use crate::metrics::Series;
use crate::resources::canary::{self as canary_res, annotate};
use crate::resources::{BuildError, Desired, Parent};
use crate::rollout::{self, Decision, Observation, RolloutState};

/// Annotation: `true` promotes the canary at once, without analysis.
pub const PROMOTE_ANNOTATION: &str = "tradeplane.io/promote";
/// Annotation: `true` rolls the canary back at once.
pub const ABORT_ANNOTATION: &str = "tradeplane.io/abort";
/// Condition reason (Degraded): the canary was rolled back.
pub const REASON_CANARY_FAILED: &str = "CanaryFailed";
/// Condition reason (Progressing): a canary is analysed.
pub const REASON_CANARY_ANALYSING: &str = "CanaryAnalysing";
/// Condition reason (Progressing): the canary was promoted; the stable Deployment rolls.
pub const REASON_CANARY_PROMOTING: &str = "CanaryPromoting";

fn annotation_true(tp: &TradingPlatform, key: &str) -> bool {
    tp.annotations().get(key).is_some_and(|v| v == "true")
}

pub(crate) fn key(tp: &TradingPlatform) -> String {
    format!("{}/{}", tp.namespace().unwrap_or_default(), tp.name_any())
}

/// The rollout step: decides what the stable Deployment (`desired.deployment`) gets, applies or
/// deletes the canary (and its ConfigMap), and says what the status should show.
pub async fn reconcile(
    a: &mut Applier<'_>,
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    plan: Plan,
    gate_open: bool,
    desired: &mut Desired,
) -> Result<Outcome, BuildError> {
    let prev = tp.status.as_ref().and_then(|s| s.rollout.clone());
    let (parent, api) = (Parent::of(tp)?, deployments(ctx, ns));
    let (stable, new, hn, stable_rev) = match plan {
        Plan::Rolling => {
            if prev.is_some() {
                // Switched back to rolling: the Deployment rolls itself; no canary any more.
                delete_canary(a, ctx, tp, &api, &parent).await;
                forget(ctx, tp);
            }
            return Ok(Outcome::default());
        }
        Plan::Skip => return Ok(Outcome::default()),
        Plan::ReadFailed => {
            desired.deployment = None; // unknown stable revision: leave it alone this time
            return Ok(Outcome {
                status: prev,
                ..Outcome::default()
            });
        }
        Plan::Install { hn } => {
            // First install: nothing serves yet, so there is nothing to compare with.
            if gate_open && let Some(d) = desired.deployment.as_mut() {
                annotate(d, &hn);
            }
            let status = RolloutStatus {
                phase: "Stable".into(),
                stable_revision: Some(hn),
                ..Default::default()
            };
            return Ok(Outcome {
                status: Some(status),
                ..Outcome::default()
            });
        }
        Plan::Live {
            stable,
            new,
            hn,
            stable_rev,
        } => (stable, *new, hn, stable_rev),
    };
    let cfg = config(&tp.spec.rollout.canary);
    let prev = thaw(prev.unwrap_or_default(), ctx.now());
    let canary_may_run = prev.canary_replicas.is_some();
    let mut state = state_of(&prev);
    let same_canary = prev.canary_revision.as_deref() == Some(hn.as_str());
    if !same_canary
        && matches!(
            state,
            RolloutState::Analysing { .. } | RolloutState::RolledBack { .. }
        )
    {
        state = RolloutState::Stable; // a newer template starts over
    }
    let mut out = RolloutStatus {
        phase: phase_of(&state).to_string(),
        stable_revision: stable_rev.clone(),
        canary_revision: prev.canary_revision.clone(),
        canary_replicas: prev.canary_replicas,
        ..Default::default()
    };

    if stable_rev.as_deref() == Some(hn.as_str()) {
        // The stable Deployment runs (or was just given) the spec's template.
        let mut d = new;
        annotate(&mut d, &hn);
        desired.deployment = Some(d);
        if state == RolloutState::Promoted && canary_may_run && !rolled_out(&stable) {
            out.decision = Some("Wait".into());
            out.message = Some("promoted: the stable Deployment rolls to the new revision; the canary is removed once it finished".into());
            let progressing = (
                REASON_CANARY_PROMOTING,
                out.message.clone().unwrap_or_default(),
            );
            record(ctx, tp, &out);
            return Ok(Outcome {
                status: Some(out),
                progressing: Some(progressing),
                requeue: Some(period(&cfg)),
                ..Outcome::default()
            });
        }
        if canary_may_run && delete_canary(a, ctx, tp, &api, &parent).await {
            out.canary_replicas = None;
        }
        if state != RolloutState::Promoted {
            out.phase = "Stable".into();
        }
        record(ctx, tp, &out);
        return Ok(Outcome {
            status: Some(out),
            ..Outcome::default()
        });
    }

    // A rollout is wanted: the stable Deployment keeps its live template.
    if let Some(d) = desired.deployment.as_mut() {
        keep_template(d, &stable, stable_rev.as_deref());
    }
    if !same_canary && canary_may_run && delete_canary(a, ctx, tp, &api, &parent).await {
        out.canary_replicas = None; // the canary of an older template
    }
    if !gate_open {
        out.decision = Some("Wait".into());
        out.message =
            Some("waiting for the migration Job of the new image before the canary starts".into());
        return Ok(Outcome {
            status: Some(out),
            ..Outcome::default()
        });
    }
    let now = ctx.now().as_second();
    let total = if tp.spec.autoscaling.enabled {
        stable
            .spec
            .replicas
            .unwrap_or(tp.spec.autoscaling.min_replicas)
    } else {
        tp.spec.replicas
    };
    let (analysis, note, measured) = match &state {
        RolloutState::Analysing { step, since } => {
            let want = prev.canary_replicas.unwrap_or(1);
            Box::pin(measure(
                ctx,
                tp,
                &parent,
                &tp.spec.rollout.canary,
                (&hn, *step),
                now - since,
                want,
            ))
            .await
        }
        _ => (None, String::new(), Measured::default()),
    };
    let obs = Observation {
        now,
        new_revision: true,
        analysis,
        promote: annotation_true(tp, PROMOTE_ANNOTATION),
        abort: annotation_true(tp, ABORT_ANNOTATION),
        paused: false,
    };
    let (next, decision) = if state == RolloutState::Promoted && same_canary {
        (RolloutState::Promoted, Decision::Promote) // the promotion's apply did not land yet
    } else {
        rollout::next(&cfg, &state, &obs)
    };
    measured.fill(&mut out);
    out.phase = phase_of(&next).to_string();
    out.canary_revision = Some(hn.clone());
    if let RolloutState::Analysing { step, since } = &next {
        out.step = i32::try_from(step + 1).ok();
        out.weight = cfg.steps.get(*step).map(|w| i32::from(*w));
        out.step_started_at = Timestamp::from_second(*since).ok().map(Time);
    }
    let mut result = Outcome::default();
    match decision {
        Decision::SetWeight(w) => {
            decided(ctx, "step");
            let n = canary_res::replicas(w, total);
            if apply_canary(a, &parent, &new, desired.config_map.as_ref(), n).await {
                out.canary_replicas = Some(n);
            }
            let step = out.step.unwrap_or(1);
            let msg = format!(
                "canary of revision {hn} at step {step} ({w} %): {n} pod(s) next to {total} stable"
            );
            info!(revision = %hn, weight = w, replicas = n, "canary step");
            ctx.event(tp, EventType::Normal, "CanaryStep", "Rollout", msg.clone())
                .await;
            out.decision = Some("SetWeight".into());
            out.message = Some(msg.clone());
            result.progressing = Some((REASON_CANARY_ANALYSING, msg));
            result.requeue = Some(period(&cfg));
        }
        Decision::Wait => {
            out.decision = Some("Wait".into());
            if let RolloutState::Analysing { .. } = next {
                let n = canary_res::replicas(
                    out.weight.and_then(|w| u8::try_from(w).ok()).unwrap_or(1),
                    total,
                );
                if apply_canary(a, &parent, &new, desired.config_map.as_ref(), n).await {
                    out.canary_replicas = Some(n);
                }
                let msg = if note.is_empty() {
                    "analysing the canary".to_string()
                } else {
                    note
                };
                out.message = Some(msg.clone());
                result.progressing = Some((REASON_CANARY_ANALYSING, msg));
                result.requeue = Some(period(&cfg));
            } else if obs.abort && matches!(next, RolloutState::Stable | RolloutState::Promoted) {
                out.message = Some(format!(
                    "{ABORT_ANNOTATION}=true is set: revision {hn} does not start; remove the annotation to roll it out"
                ));
            } else if let RolloutState::RolledBack { reason } = &next {
                if out.canary_replicas.is_some() && delete_canary(a, ctx, tp, &api, &parent).await {
                    out.canary_replicas = None;
                }
                out.message = Some(reason.clone());
                result.degraded = Some(rolled_back_words(&hn, reason));
            }
        }
        Decision::Promote => {
            // The shared ConfigMap gets the new settings before any stable pod of the new
            // template starts (the controller held it back during the rollout).
            a.apply(&desired.config_map).await;
            let mut d = new;
            annotate(&mut d, &hn);
            desired.deployment = Some(d);
            let msg = if obs.promote && !obs.abort {
                format!("revision {hn} promoted by {PROMOTE_ANNOTATION}=true")
            } else {
                format!("revision {hn} passed every step; promoted")
            };
            if state != RolloutState::Promoted {
                decided(ctx, "promote");
                ctx.event(
                    tp,
                    EventType::Normal,
                    "CanaryPromoted",
                    "Rollout",
                    msg.clone(),
                )
                .await;
            }
            out.decision = Some("Promote".into());
            out.message = Some(msg.clone());
            result.progressing = Some((REASON_CANARY_PROMOTING, msg));
            result.requeue = Some(period(&cfg));
        }
        Decision::RollBack(reason) => {
            decided(ctx, "rollback");
            if delete_canary(a, ctx, tp, &api, &parent).await {
                out.canary_replicas = None;
            }
            let words = rolled_back_words(&hn, &reason);
            ctx.event(
                tp,
                EventType::Warning,
                "CanaryRolledBack",
                "Rollout",
                words.clone(),
            )
            .await;
            out.decision = Some("RollBack".into());
            out.message = Some(reason);
            result.degraded = Some(words);
        }
    }
    record(ctx, tp, &out);
    result.status = Some(out);
    Ok(result)
}

fn record(ctx: &Context, tp: &TradingPlatform, out: &RolloutStatus) {
    let (ns, name) = (tp.namespace().unwrap_or_default(), tp.name_any());
    let w = if out.phase == "Analysing" || out.canary_replicas.is_some() {
        out.weight.unwrap_or(0)
    } else {
        0
    };
    ctx.metrics
        .platforms
        .set(Series::CanaryWeight, &ns, &name, f64::from(w));
}

fn decided(ctx: &Context, decision: &str) {
    ctx.metrics
        .canary_decisions
        .with_label_values(&[decision])
        .inc();
}

/// Forgets a deleted TradingPlatform: its step baseline and its weight gauge.
pub fn forget(ctx: &Context, tp: &TradingPlatform) {
    if let Ok(mut b) = ctx.canary_baselines.lock() {
        b.remove(&key(tp));
    }
    let (ns, name) = (tp.namespace().unwrap_or_default(), tp.name_any());
    ctx.metrics
        .platforms
        .clear(Series::CanaryWeight, &ns, &name);
}

fn rolled_back_words(rev: &str, reason: &str) -> String {
    format!(
        "canary of revision {rev} rolled back: {reason}. The stable revision keeps serving; this revision is not retried until the pod template changes again"
    )
}

/// `d` (the Deployment the spec asks for) with the live pod template of the stable Deployment
/// and its recorded revision, so applying it replaces no pod.
fn keep_template(d: &mut Deployment, stable: &Deployment, rev: Option<&str>) {
    d.spec.template = stable.spec.template.clone();
    if let Some(r) = rev {
        annotate(d, r);
    }
}

/// Applies the canary's ConfigMap (the spec's settings) and then the canary Deployment.
async fn apply_canary(
    a: &mut Applier<'_>,
    parent: &Parent,
    new: &Deployment,
    config: Option<&ConfigMap>,
    n: i32,
) -> bool {
    if let Some(cm) = config
        && a.apply(&Some(canary_res::config_map(parent, cm)))
            .await
            .is_none()
    {
        return false;
    }
    a.apply(&Some(canary_res::deployment(parent, new, n)))
        .await
        .is_some()
}

/// Deletes the canary Deployment (a missing one is fine); false when the deletion failed.
async fn delete_canary(
    a: &mut Applier<'_>,
    ctx: &Context,
    tp: &TradingPlatform,
    api: &Api<Deployment>,
    parent: &Parent,
) -> bool {
    if let Ok(mut b) = ctx.canary_baselines.lock() {
        b.remove(&key(tp));
    }
    let name = canary_res::name(parent);
    let deleted = match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {
            info!(%name, "deleted the canary Deployment");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(("Deployment", name, e)),
    };
    let cm_name = canary_res::config_map_name(parent);
    let cms: Api<ConfigMap> =
        Api::namespaced(ctx.client.clone(), &tp.namespace().unwrap_or_default());
    let cm = match cms.delete(&cm_name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(("ConfigMap", cm_name, e)),
    };
    let mut ok = true;
    for r in [deleted, cm] {
        if let Err((kind, name, e)) = r {
            let why = format!("cannot delete the canary's: {}", kube_error_words(&e));
            a.fail(kind, &name, why).await;
            ok = false;
        }
    }
    ok
}
