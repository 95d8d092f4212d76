//! The canary rollout state machine (issue 13 "Level 5"), pure: state and observations in,
//! next state and decision out, no I/O, so every transition is unit-tested and a restarted
//! operator resumes from the state it wrote into the status.
//!
//! `crate::canary` runs it for `spec.rollout.strategy: canary`: it stores the state in
//! `status.rollout`, feeds it the measurements of `crate::analysis`, and carries out the
//! decisions (docs/operator.md, "Canary rollouts").

use serde::{Deserialize, Serialize};

/// Settings of a canary rollout (from `spec.rollout.canary`).
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryConfig {
    /// Canary weights in percent of the replicas, increasing, the last one 100.
    pub steps: Vec<u8>,
    /// Seconds each step is analysed before it may advance.
    pub interval_seconds: i64,
    /// Highest error ratio (5xx / all requests) the canary may show.
    pub max_error_ratio: f64,
    /// Highest p99 latency, in seconds, the canary may show.
    pub max_p99_seconds: f64,
    /// How much worse than the stable pods the canary's error ratio may be (absolute).
    pub max_error_ratio_over_stable: f64,
}

/// Where a rollout stands; stored in the status so a restart resumes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum RolloutState {
    /// Nothing to roll out: every pod runs the stable revision.
    Stable,
    /// The canary runs at `steps[step]` percent since `since` (Unix seconds).
    Analysing {
        /// Index into the steps.
        step: usize,
        /// When the step started.
        since: i64,
    },
    /// The new revision became the stable one.
    Promoted,
    /// The canary was removed; the stable revision keeps serving.
    RolledBack {
        /// Why, in words (for the status and the `Degraded` condition).
        reason: String,
    },
}

/// What the canary pods measured during the current step.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Canary error ratio (5xx / all) over the step.
    pub error_ratio: f64,
    /// Canary p99 latency in seconds over the step.
    pub p99_seconds: f64,
    /// Stable pods' error ratio over the same time.
    pub stable_error_ratio: f64,
    /// All canary pods pass readiness.
    pub ready: bool,
}

/// One observation of the world.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Now, Unix seconds.
    pub now: i64,
    /// The pod template differs from the stable revision (a rollout is wanted).
    pub new_revision: bool,
    /// The measurements, if the canary has any yet.
    pub analysis: Option<Analysis>,
    /// `tradeplane.io/promote=true`.
    pub promote: bool,
    /// `tradeplane.io/abort=true`.
    pub abort: bool,
    /// `spec.paused`.
    pub paused: bool,
}

/// What the reconciler should do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing to change now.
    Wait,
    /// Run the canary at this weight (percent).
    SetWeight(u8),
    /// Make the new revision stable (all replicas) and remove the canary.
    Promote,
    /// Remove the canary; the reason goes into `Degraded`.
    RollBack(String),
}

/// The verdict on one step's measurements: `Err(reason)` when a threshold is crossed.
pub fn judge(cfg: &CanaryConfig, a: &Analysis) -> Result<(), String> {
    if !a.ready {
        return Err("the canary pods are not ready".to_string());
    }
    if a.error_ratio > cfg.max_error_ratio {
        return Err(format!(
            "canary error ratio {:.4} is above the threshold {:.4}",
            a.error_ratio, cfg.max_error_ratio
        ));
    }
    if a.error_ratio - a.stable_error_ratio > cfg.max_error_ratio_over_stable {
        return Err(format!(
            "canary error ratio {:.4} exceeds the stable pods' {:.4} by more than {:.4}",
            a.error_ratio, a.stable_error_ratio, cfg.max_error_ratio_over_stable
        ));
    }
    if a.p99_seconds > cfg.max_p99_seconds {
        return Err(format!(
            "canary p99 latency {:.3} s is above the threshold {:.3} s",
            a.p99_seconds, cfg.max_p99_seconds
        ));
    }
    Ok(())
}

/// The next state and decision. Pause freezes everything (even a due rollback: the user owns the
/// platform while paused); abort beats promote; a failed analysis rolls back at once; a step
/// advances only after its full interval with passing measurements.
pub fn next(
    cfg: &CanaryConfig,
    state: &RolloutState,
    obs: &Observation,
) -> (RolloutState, Decision) {
    if obs.paused {
        return (state.clone(), Decision::Wait);
    }
    match state {
        RolloutState::Stable | RolloutState::Promoted | RolloutState::RolledBack { .. } => {
            let fresh = matches!(state, RolloutState::Stable | RolloutState::Promoted);
            if obs.abort {
                // Abort still set from an earlier rollout: no canary starts until it is removed
                // (the revision is not marked failed, so removing it starts the rollout).
                return (state.clone(), Decision::Wait);
            }
            match (obs.new_revision, fresh, cfg.steps.first()) {
                // A rolled-back revision is not retried until the template changes again
                // (the reconciler resets the state to Stable on a new template).
                (true, true, Some(&w)) => (
                    RolloutState::Analysing {
                        step: 0,
                        since: obs.now,
                    },
                    Decision::SetWeight(w),
                ),
                _ => (state.clone(), Decision::Wait),
            }
        }
        RolloutState::Analysing { step, since } => {
            if obs.abort {
                let reason = "aborted by tradeplane.io/abort=true".to_string();
                return (
                    RolloutState::RolledBack {
                        reason: reason.clone(),
                    },
                    Decision::RollBack(reason),
                );
            }
            if obs.promote {
                return (RolloutState::Promoted, Decision::Promote);
            }
            if let Some(a) = &obs.analysis
                && let Err(reason) = judge(cfg, a)
            {
                let reason = format!(
                    "step {} ({} %): {reason}",
                    step + 1,
                    cfg.steps.get(*step).copied().unwrap_or(0)
                );
                return (
                    RolloutState::RolledBack {
                        reason: reason.clone(),
                    },
                    Decision::RollBack(reason),
                );
            }
            if obs.now - since < cfg.interval_seconds || obs.analysis.is_none() {
                return (state.clone(), Decision::Wait);
            }
            match cfg.steps.get(step + 1) {
                Some(&w) if w < 100 => (
                    RolloutState::Analysing {
                        step: step + 1,
                        since: obs.now,
                    },
                    Decision::SetWeight(w),
                ),
                _ => (RolloutState::Promoted, Decision::Promote),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CanaryConfig {
        CanaryConfig {
            steps: vec![10, 50, 100],
            interval_seconds: 60,
            max_error_ratio: 0.01,
            max_p99_seconds: 0.5,
            max_error_ratio_over_stable: 0.005,
        }
    }

    fn good() -> Analysis {
        Analysis {
            error_ratio: 0.001,
            p99_seconds: 0.1,
            stable_error_ratio: 0.001,
            ready: true,
        }
    }

    fn obs(now: i64) -> Observation {
        Observation {
            now,
            new_revision: true,
            analysis: Some(good()),
            promote: false,
            abort: false,
            paused: false,
        }
    }

    fn at(step: usize, since: i64) -> RolloutState {
        RolloutState::Analysing { step, since }
    }

    #[test]
    fn a_new_revision_starts_at_the_first_weight() {
        assert_eq!(
            next(&cfg(), &RolloutState::Stable, &obs(0)),
            (at(0, 0), Decision::SetWeight(10))
        );
        let none = Observation {
            new_revision: false,
            ..obs(0)
        };
        assert_eq!(
            next(&cfg(), &RolloutState::Stable, &none),
            (RolloutState::Stable, Decision::Wait)
        );
    }

    #[test]
    fn a_step_advances_only_after_its_interval_with_measurements() {
        assert_eq!(
            next(&cfg(), &at(0, 0), &obs(59)),
            (at(0, 0), Decision::Wait)
        );
        let blind = Observation {
            analysis: None,
            ..obs(120)
        };
        assert_eq!(next(&cfg(), &at(0, 0), &blind), (at(0, 0), Decision::Wait));
        assert_eq!(
            next(&cfg(), &at(0, 0), &obs(60)),
            (at(1, 60), Decision::SetWeight(50))
        );
    }

    #[test]
    fn the_last_step_promotes() {
        assert_eq!(
            next(&cfg(), &at(1, 60), &obs(120)),
            (RolloutState::Promoted, Decision::Promote)
        );
        // Promoted is stable again for the next revision.
        assert_eq!(
            next(&cfg(), &RolloutState::Promoted, &obs(200)).1,
            Decision::SetWeight(10)
        );
    }

    #[test]
    fn each_threshold_rolls_back_at_once() {
        let cases = [
            (
                Analysis {
                    ready: false,
                    ..good()
                },
                "not ready",
            ),
            (
                Analysis {
                    error_ratio: 0.02,
                    stable_error_ratio: 0.02,
                    ..good()
                },
                "above the threshold 0.0100",
            ),
            (
                Analysis {
                    error_ratio: 0.008,
                    stable_error_ratio: 0.001,
                    ..good()
                },
                "exceeds the stable pods'",
            ),
            (
                Analysis {
                    p99_seconds: 0.7,
                    ..good()
                },
                "p99 latency 0.700 s",
            ),
        ];
        for (a, words) in cases {
            let o = Observation {
                analysis: Some(a.clone()),
                ..obs(10)
            };
            let (s, d) = next(&cfg(), &at(1, 0), &o);
            let RolloutState::RolledBack { reason } = s else {
                panic!("{a:?}")
            };
            assert!(
                reason.starts_with("step 2 (50 %)") && reason.contains(words),
                "{reason}"
            );
            assert_eq!(d, Decision::RollBack(reason));
        }
    }

    #[test]
    fn within_thresholds_is_not_a_rollback() {
        let edge = Analysis {
            error_ratio: 0.006,
            stable_error_ratio: 0.001,
            p99_seconds: 0.5,
            ready: true,
        };
        assert!(judge(&cfg(), &edge).is_ok());
    }

    #[test]
    fn promote_and_abort_override_and_abort_wins() {
        let promote = Observation {
            promote: true,
            ..obs(1)
        };
        assert_eq!(
            next(&cfg(), &at(0, 0), &promote),
            (RolloutState::Promoted, Decision::Promote)
        );
        let both = Observation {
            promote: true,
            abort: true,
            ..obs(1)
        };
        let (s, d) = next(&cfg(), &at(0, 0), &both);
        assert!(matches!(s, RolloutState::RolledBack { ref reason } if reason.contains("abort")));
        assert!(matches!(d, Decision::RollBack(_)));
    }

    #[test]
    fn pause_freezes_every_state() {
        let bad = Observation {
            paused: true,
            abort: true,
            analysis: Some(Analysis {
                ready: false,
                ..good()
            }),
            ..obs(500)
        };
        for s in [RolloutState::Stable, at(1, 0), RolloutState::Promoted] {
            assert_eq!(next(&cfg(), &s, &bad), (s.clone(), Decision::Wait));
        }
    }

    #[test]
    fn a_rolled_back_revision_is_not_retried() {
        let s = RolloutState::RolledBack { reason: "x".into() };
        assert_eq!(next(&cfg(), &s, &obs(1000)), (s.clone(), Decision::Wait));
    }

    #[test]
    fn a_single_full_step_runs_once_then_promotes() {
        let one = CanaryConfig {
            steps: vec![100],
            ..cfg()
        };
        assert_eq!(
            next(&one, &RolloutState::Stable, &obs(0)),
            (at(0, 0), Decision::SetWeight(100))
        );
        assert_eq!(
            next(&one, &at(0, 0), &obs(60)),
            (RolloutState::Promoted, Decision::Promote)
        );
    }

    #[test]
    fn annotations_do_nothing_without_a_running_canary() {
        let both = Observation {
            new_revision: false,
            promote: true,
            abort: true,
            ..obs(5)
        };
        for s in [
            RolloutState::Stable,
            RolloutState::Promoted,
            RolloutState::RolledBack { reason: "x".into() },
        ] {
            assert_eq!(next(&cfg(), &s, &both), (s.clone(), Decision::Wait));
        }
    }

    #[test]
    fn a_standing_abort_keeps_a_new_revision_from_starting() {
        let abort = Observation {
            abort: true,
            ..obs(5)
        };
        for s in [RolloutState::Stable, RolloutState::Promoted] {
            assert_eq!(next(&cfg(), &s, &abort), (s.clone(), Decision::Wait));
        }
        assert_eq!(
            next(&cfg(), &RolloutState::Stable, &obs(6)).1,
            Decision::SetWeight(10),
            "removing it starts the rollout"
        );
    }

    #[test]
    fn a_restart_resumes_from_the_stored_state() {
        let stored = serde_json::to_string(&at(1, 60)).unwrap();
        assert_eq!(stored, r#"{"phase":"analysing","step":1,"since":60}"#);
        let resumed: RolloutState = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            next(&cfg(), &resumed, &obs(90)),
            (at(1, 60), Decision::Wait),
            "the interval is not restarted"
        );
        assert_eq!(next(&cfg(), &resumed, &obs(120)).1, Decision::Promote);
    }
}
