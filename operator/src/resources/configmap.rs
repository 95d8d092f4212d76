//! ConfigMap with the platform settings, loaded by the pods with `envFrom` (keys per the contract).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{BuildError, COMPONENT_PLATFORM, HTTP_PORT, Parent};
use crate::crd::TradingPlatformSpec;

/// The key/value pairs the platform reads from its environment.
pub fn data(
    parent: &Parent,
    spec: &TradingPlatformSpec,
) -> Result<BTreeMap<String, String>, BuildError> {
    let s = &spec.settings;
    let mut data = BTreeMap::from([
        ("LISTEN_ADDR".to_string(), format!("0.0.0.0:{HTTP_PORT}")),
        ("LOG_FORMAT".to_string(), s.log_format.as_str().to_string()),
        ("RUST_LOG".to_string(), s.log_level.as_str().to_string()),
        (
            "DRAIN_TIMEOUT_SECONDS".to_string(),
            spec.shutdown.drain_timeout_seconds.to_string(),
        ),
        (
            "DATABASE_MAX_CONNECTIONS".to_string(),
            s.database_pool.max_connections.to_string(),
        ),
        (
            "DATABASE_CONNECT_TIMEOUT_SECONDS".to_string(),
            s.database_pool.connect_timeout_seconds.to_string(),
        ),
        (
            "RATE_LIMIT_PER_SECOND".to_string(),
            s.rate_limits.per_second.to_string(),
        ),
        (
            "RATE_LIMIT_BURST".to_string(),
            s.rate_limits.burst.to_string(),
        ),
        (
            "LOGIN_RATE_LIMIT_PER_MINUTE".to_string(),
            s.rate_limits.login_per_minute.to_string(),
        ),
        (
            "SYMBOL_LEASE_SECONDS".to_string(),
            s.symbol_lease_seconds.to_string(),
        ),
    ]);
    if !s.instruments.is_empty() {
        let json = serde_json::to_string(&s.instruments)
            .map_err(|e| BuildError::Invalid(format!("settings.instruments: {e}")))?;
        data.insert("INSTRUMENTS".to_string(), json);
    }
    if let Some(a) = &s.approvals {
        if let Some(n) = &a.notional_default {
            data.insert("APPROVAL_NOTIONAL_DEFAULT".to_string(), n.clone());
        }
        data.insert(
            "APPROVAL_TIMEOUT_SECONDS".to_string(),
            a.timeout_seconds.to_string(),
        );
        data.insert(
            "APPROVAL_SWEEP_INTERVAL_SECONDS".to_string(),
            a.sweep_interval_seconds.to_string(),
        );
    }
    if let Some(n) = &s.audit_large_order_notional {
        data.insert("AUDIT_LARGE_ORDER_NOTIONAL".to_string(), n.clone());
    }
    if spec.redis.is_some() {
        data.insert("REDIS_KEY_PREFIX".to_string(), redis_key_prefix(parent));
    }
    Ok(data)
}

/// Every Redis key and channel of this platform starts with `tradeplane:<namespace>/<name>:`, so
/// that platforms sharing one Redis never see each other's rate limits, sessions or market data.
pub fn redis_key_prefix(parent: &Parent) -> String {
    match &parent.namespace {
        Some(ns) => format!("tradeplane:{ns}/{}:", parent.name),
        None => format!("tradeplane:{}:", parent.name),
    }
}

/// Builds the ConfigMap `<name>-config`.
pub fn build(parent: &Parent, spec: &TradingPlatformSpec) -> Result<ConfigMap, BuildError> {
    Ok(ConfigMap {
        metadata: parent.meta(parent.config_map_name(), COMPONENT_PLATFORM),
        data: Some(data(parent, spec)?),
        ..Default::default()
    })
}

/// SHA-256 of the ConfigMap data (sorted keys), put on the pod template so a change rolls the pods.
pub fn checksum(cm: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
