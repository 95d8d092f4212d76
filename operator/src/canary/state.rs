//! The pure parts of the rollout step: the state machine's settings from the spec, the stored
//! state from `status.rollout` and back, the measuring period, the status changes it asks for.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;

use super::REASON_CANARY_FAILED;
use crate::controller::set_condition;
use crate::crd::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CanarySpec, RolloutStatus, TradingPlatformStatus,
};
use crate::rollout::{CanaryConfig, RolloutState};

/// What the rollout step asks of the status and the requeue.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// `status.rollout`.
    pub status: Option<RolloutStatus>,
    /// Set `Degraded`/`CanaryFailed` with this message.
    pub degraded: Option<String>,
    /// Set `Progressing` to this (reason, message).
    pub progressing: Option<(&'static str, String)>,
    /// Re-check after this long (the analysis period).
    pub requeue: Option<Duration>,
}

impl Outcome {
    /// Writes the rollout into the status derived from the children.
    pub fn write(
        self,
        status: &mut TradingPlatformStatus,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        status.rollout = self.status;
        if let Some((reason, message)) = self.progressing {
            set_condition(
                &mut status.conditions,
                CONDITION_PROGRESSING,
                "True",
                reason,
                &message,
                generation,
                now,
            );
            if status.phase.as_deref() != Some("Degraded") {
                status.phase = Some("Progressing".to_string());
            }
        }
        if let Some(message) = self.degraded {
            set_condition(
                &mut status.conditions,
                CONDITION_DEGRADED,
                "True",
                REASON_CANARY_FAILED,
                &message,
                generation,
                now,
            );
            status.phase = Some("Degraded".to_string());
        }
    }
}

/// The state machine's settings from the spec.
pub fn config(c: &CanarySpec) -> CanaryConfig {
    CanaryConfig {
        steps: c
            .steps
            .iter()
            .map(|s| u8::try_from((*s).clamp(1, 100)).unwrap_or(100))
            .collect(),
        interval_seconds: i64::from(c.interval_seconds),
        max_error_ratio: c.max_error_ratio,
        max_p99_seconds: c.max_p99_seconds,
        max_error_ratio_over_stable: c.max_error_ratio_over_stable,
    }
}

/// The stored state, from `status.rollout`.
pub fn state_of(s: &RolloutStatus) -> RolloutState {
    match s.phase.as_str() {
        "Analysing" => RolloutState::Analysing {
            step: usize::try_from(s.step.unwrap_or(1).max(1) - 1).unwrap_or(0),
            since: s
                .step_started_at
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0),
        },
        "Promoted" => RolloutState::Promoted,
        "RolledBack" => RolloutState::RolledBack {
            reason: s.message.clone().unwrap_or_default(),
        },
        _ => RolloutState::Stable,
    }
}

pub(super) fn phase_of(s: &RolloutState) -> &'static str {
    match s {
        RolloutState::Stable => "Stable",
        RolloutState::Analysing { .. } => "Analysing",
        RolloutState::Promoted => "Promoted",
        RolloutState::RolledBack { .. } => "RolledBack",
    }
}

/// How often a running canary is measured: a quarter of the interval, 5–30 s.
pub fn period(cfg: &CanaryConfig) -> Duration {
    Duration::from_secs(u64::try_from((cfg.interval_seconds / 4).clamp(5, 30)).unwrap_or(30))
}

/// A Deployment whose rollout finished: every pod runs the current template and is available.
pub fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas.unwrap_or(0) >= want
        && s.replicas.unwrap_or(0) == s.updated_replicas.unwrap_or(0)
        && s.available_replicas.unwrap_or(0) >= want
}

/// `spec.paused` freezes a running step: the first paused reconciliation records when.
pub fn freeze(status: &mut TradingPlatformStatus, now: Timestamp) {
    if let Some(r) = status.rollout.as_mut()
        && r.phase == "Analysing"
        && r.paused_at.is_none()
    {
        r.paused_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    }
}

/// After a pause: the step started that much later, so its interval resumes where it stopped.
pub fn thaw(mut prev: RolloutStatus, now: Timestamp) -> RolloutStatus {
    if let (Some(paused), Some(started)) = (prev.paused_at.take(), prev.step_started_at.as_mut()) {
        let frozen = now.as_second() - paused.0.as_second();
        if let Ok(t) = Timestamp::from_second(started.0.as_second() + frozen.max(0)) {
            started.0 = t;
        }
    }
    prev
}
