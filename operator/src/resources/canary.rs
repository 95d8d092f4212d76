//! The canary Deployment (`<name>-canary`) of a canary rollout, its replica count and the
//! revision hash of a pod template. Pure, like every builder.
//!
//! The canary's pods carry the labels the Service selects plus `tradeplane.io/track: canary`,
//! and its selector adds that label, so the Service sends them traffic while the two Deployments
//! never claim each other's ReplicaSets. The stable Deployment's selector is immutable and stays
//! as it is: it is a subset of the canary's labels, which Kubernetes tolerates because ReplicaSets
//! and pods carry a controller owner reference and the controllers adopt orphans only. The stable
//! pods are told apart by `tradeplane.io/track!=canary` (they get no label of their own: adding
//! one to the stable template would restart every stable pod at the start of each rollout).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::Parent;

/// Label on the canary Deployment, its selector and its pods.
pub const TRACK_LABEL: &str = "tradeplane.io/track";
/// Value of [`TRACK_LABEL`] on the canary.
pub const TRACK_CANARY: &str = "canary";
/// Annotation on the stable (and canary) Deployment: the revision hash of the pod template the
/// operator gave it, so the stable revision is known from the cluster itself.
pub const REVISION_ANNOTATION: &str = "tradeplane.io/revision";

/// Name of the canary Deployment.
pub fn name(parent: &Parent) -> String {
    format!("{}-canary", parent.name)
}

/// Name of the canary's ConfigMap: the spec's settings while the shared one keeps the stable
/// pods' settings (a rollback then leaves them as they were).
pub fn config_map_name(parent: &Parent) -> String {
    format!("{}-canary-config", parent.name)
}

/// The canary's ConfigMap: `cm` (the spec's settings) under [`config_map_name`].
pub fn config_map(parent: &Parent, cm: &ConfigMap) -> ConfigMap {
    let mut c = cm.clone();
    c.metadata.name = Some(config_map_name(parent));
    c.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TRACK_LABEL.to_string(), TRACK_CANARY.to_string());
    c
}

/// The revision of a Deployment's pod template: the first 10 hex digits of the SHA-256 of its
/// JSON. The template as the operator builds it (never the live one, which the API server has
/// defaulted), so the same spec always gives the same revision.
pub fn revision(d: &Deployment) -> String {
    let json = serde_json::to_vec(&d.spec.template).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// The revision the operator recorded on a live Deployment, if any.
pub fn recorded_revision(d: &Deployment) -> Option<String> {
    d.metadata
        .annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)
        .cloned()
}

/// Records `revision` on a Deployment to apply.
pub fn annotate(d: &mut Deployment, revision: &str) {
    d.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_ANNOTATION.to_string(), revision.to_string());
}

/// Canary pods at `weight` percent of `total` (the stable Deployment's replicas): rounded up,
/// at least 1. They run next to the stable pods (the stable Deployment is not scaled down), so
/// the canary's share of the traffic is `canary / (total + canary)`.
pub fn replicas(weight: u8, total: i32) -> i32 {
    let total = i64::from(total.max(0));
    let n = (total * i64::from(weight) + 99) / 100;
    i32::try_from(n.max(1)).unwrap_or(i32::MAX)
}

/// The canary Deployment: the new Deployment (`new`, as the builder made it for the spec) under
/// the canary's name, with the track label on it, its selector and its pods, `replicas`, and its
/// own ConfigMap ([`config_map`]) instead of the shared one.
pub fn deployment(parent: &Parent, new: &Deployment, replicas: i32) -> Deployment {
    let mut d = new.clone();
    let rev = revision(new);
    d.metadata.name = Some(name(parent));
    d.metadata.annotations = None;
    d.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TRACK_LABEL.to_string(), TRACK_CANARY.to_string());
    annotate(&mut d, &rev);
    let spec = &mut d.spec;
    spec.replicas = Some(replicas);
    spec.selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TRACK_LABEL.to_string(), TRACK_CANARY.to_string());
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TRACK_LABEL.to_string(), TRACK_CANARY.to_string());
    let (shared, own) = (parent.config_map_name(), config_map_name(parent));
    if let Some(pod) = spec.template.spec.as_mut() {
        for c in &mut pod.containers {
            for from in c.env_from.iter_mut().flatten() {
                if let Some(r) = from.config_map_ref.as_mut()
                    && r.name == shared
                {
                    r.name = own.clone();
                }
            }
        }
    }
    d
}

/// Label selector of the canary pods.
pub fn canary_pods(parent: &Parent) -> String {
    format!("{},{TRACK_LABEL}={TRACK_CANARY}", parent.selector_string())
}

/// Label selector of the stable pods.
pub fn stable_pods(parent: &Parent) -> String {
    format!("{},{TRACK_LABEL}!={TRACK_CANARY}", parent.selector_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_round_up_and_never_reach_zero() {
        assert_eq!(replicas(10, 2), 1);
        assert_eq!(replicas(50, 2), 1);
        assert_eq!(replicas(50, 3), 2);
        assert_eq!(replicas(10, 20), 2);
        assert_eq!(replicas(99, 10), 10);
        assert_eq!(replicas(10, 0), 1);
    }
}
