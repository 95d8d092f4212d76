//! PodDisruptionBudget (policy/v1), only when it cannot block every node drain.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{COMPONENT_PLATFORM, Parent};
use crate::crd::TradingPlatformSpec;

/// The most replicas that can run: the HPA maximum when autoscaling, else `replicas`.
pub fn max_possible_replicas(spec: &TradingPlatformSpec) -> i32 {
    if spec.autoscaling.enabled {
        spec.autoscaling.max_replicas
    } else {
        spec.replicas
    }
}

/// The fewest replicas that can run: `autoscaling.minReplicas` when autoscaling, else `replicas`.
pub fn min_possible_replicas(spec: &TradingPlatformSpec) -> i32 {
    if spec.autoscaling.enabled {
        spec.autoscaling.min_replicas
    } else {
        spec.replicas
    }
}

/// Pods a budget lets go at once out of `n`, as the disruption controller counts
/// (`maxUnavailable` percentages round up, `minAvailable` percentages round up too).
fn evictable(
    min_available: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    n: i32,
) -> i32 {
    let pct = |s: &str| s.trim_end_matches('%').parse::<i64>().unwrap_or(100);
    let ceil = |p: i64| ((p * i64::from(n) + 99) / 100) as i32;
    match (min_available, max_unavailable) {
        (Some(IntOrString::Int(m)), _) => n - m,
        (Some(IntOrString::String(p)), _) => n - ceil(pct(p)),
        (None, Some(IntOrString::Int(m))) => *m,
        (None, Some(IntOrString::String(p))) => ceil(pct(p)),
        (None, None) => 1,
    }
}

/// Builds the PDB, or `None` with the reason it was skipped (for the status).
///
/// The budget always keeps at least one replica: each symbol is matched by one replica holding
/// its lease, so evicting every pod at once would stop trading. A budget from the spec that would
/// let every pod of the smallest possible count go (`minAvailable: 0`, `maxUnavailable: 100%`,
/// `maxUnavailable` ≥ the replicas) is tightened to `maxUnavailable: <smallest count - 1>`, and
/// the second value says so (for the status).
pub fn build(
    parent: &Parent,
    spec: &TradingPlatformSpec,
) -> (Option<PodDisruptionBudget>, Option<String>) {
    let b = &spec.disruption_budget;
    if !b.enabled {
        return (
            None,
            Some("disruption budget disabled in spec.disruptionBudget.enabled".to_string()),
        );
    }
    let max = max_possible_replicas(spec);
    if max <= 1 {
        return (
            None,
            Some(format!(
                "no PodDisruptionBudget: at most {max} replica can run, and a budget would block every node drain"
            )),
        );
    }
    let (min_available, max_unavailable) = match (&b.min_available, &b.max_unavailable) {
        (Some(min), _) => (Some(min.clone()), None),
        (None, Some(max)) => (None, Some(max.clone())),
        (None, None) => (None, Some(IntOrString::Int(1))),
    };
    // With an autoscaler starting at 1 the budget is judged at 2 pods (at 1 any budget that
    // allows a drain lets the only pod go, which is why no budget is made when at most 1 runs).
    let floor = min_possible_replicas(spec).max(2);
    let (min_available, max_unavailable, note) = if evictable(
        min_available.as_ref(),
        max_unavailable.as_ref(),
        floor,
    ) >= floor
    {
        let keep = floor - 1;
        (
            None,
            Some(IntOrString::Int(keep)),
            Some(format!(
                "spec.disruptionBudget would let all {floor} replicas be evicted at once; the PodDisruptionBudget uses maxUnavailable: {keep} so at least one replica keeps serving"
            )),
        )
    } else {
        (min_available, max_unavailable, None)
    };
    let pdb = PodDisruptionBudget {
        metadata: parent.meta(parent.name.clone(), COMPONENT_PLATFORM),
        spec: Some(PodDisruptionBudgetSpec {
            min_available,
            max_unavailable,
            selector: Some(LabelSelector {
                match_labels: Some(parent.selector_labels()),
                ..Default::default()
            }),
            // Pods that are not ready anyway may always be evicted (GA since 1.31), so a crash
            // looping pod never blocks a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
        }),
        ..Default::default()
    };
    (Some(pdb), note)
}
