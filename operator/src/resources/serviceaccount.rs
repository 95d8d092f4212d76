//! ServiceAccount of the platform pods: their own identity, with no API token mounted (the
//! platform never talks to the Kubernetes API).

use k8s_openapi::api::core::v1::ServiceAccount;

use super::{COMPONENT_PLATFORM, Parent};

/// Builds the ServiceAccount named after the TradingPlatform.
pub fn build(parent: &Parent) -> ServiceAccount {
    ServiceAccount {
        metadata: parent.meta(parent.name.clone(), COMPONENT_PLATFORM),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}
