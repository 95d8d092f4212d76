//! NetworkPolicy admitting ingress traffic to the platform pods only on the HTTP port.
//!
//! The platform's own pods are always admitted on that port: a replica forwards an order for a
//! symbol it does not own to the owner's advertised address (`POST /internal/v1/commands`).

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{COMPONENT_PLATFORM, HTTP_PORT, Parent};
use crate::crd::TradingPlatformSpec;

/// Builds the NetworkPolicy, or `None` when disabled.
pub fn build(parent: &Parent, spec: &TradingPlatformSpec) -> Option<NetworkPolicy> {
    let np = &spec.network_policy;
    if !np.enabled {
        return None;
    }
    // No `from`: any source may connect (the own pods included). With a namespace restriction,
    // the own pods are added as a second peer, since their namespace may not carry those labels.
    let from = if np.allowed_namespace_labels.is_empty() {
        None
    } else {
        Some(vec![
            NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(np.allowed_namespace_labels.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(parent.selector_labels()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ])
    };
    Some(NetworkPolicy {
        metadata: parent.meta(parent.name.clone(), COMPONENT_PLATFORM),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(parent.selector_labels()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from,
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(HTTP_PORT)),
                    protocol: Some("TCP".to_string()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    })
}
