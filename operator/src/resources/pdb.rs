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

/// Builds the PDB, or `None` with the reason it was skipped (for the status).
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
    (Some(pdb), None)
}
