//! Optional Ingress routing a host to the Service.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::{COMPONENT_PLATFORM, Parent};
use crate::crd::TradingPlatformSpec;

/// Builds the Ingress, or `None` when disabled or without a host.
pub fn build(parent: &Parent, spec: &TradingPlatformSpec) -> Option<Ingress> {
    let i = &spec.ingress;
    if !i.enabled {
        return None;
    }
    let host = i.host.clone()?;
    let mut metadata = parent.meta(parent.name.clone(), COMPONENT_PLATFORM);
    if !i.annotations.is_empty() {
        metadata.annotations = Some(i.annotations.clone());
    }
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: i.class_name.clone(),
            tls: i.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_string()),
                        path_type: "Prefix".to_string(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: parent.name.clone(),
                                port: Some(ServiceBackendPort {
                                    number: Some(spec.service.port),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            default_backend: None,
        }),
        ..Default::default()
    })
}
