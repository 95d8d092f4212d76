//! Service in front of the platform pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{COMPONENT_PLATFORM, HTTP_PORT_NAME, Parent};
use crate::crd::TradingPlatformSpec;

/// Builds the Service named after the TradingPlatform, forwarding to the `http` container port.
pub fn build(parent: &Parent, spec: &TradingPlatformSpec) -> Service {
    let mut metadata = parent.meta(parent.name.clone(), COMPONENT_PLATFORM);
    if !spec.service.annotations.is_empty() {
        metadata.annotations = Some(spec.service.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.service.type_.as_str().to_string()),
            selector: Some(parent.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some(HTTP_PORT_NAME.to_string()),
                port: spec.service.port,
                target_port: Some(IntOrString::String(HTTP_PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
