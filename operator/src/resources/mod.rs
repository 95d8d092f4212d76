//! Pure builders: one module per child kind, `TradingPlatform` in, Kubernetes object out, no I/O.
//!
//! Keeping them pure lets `render` preview exactly what `run` applies and lets tests check every
//! option without an API server.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::TradingPlatform;

pub mod backup;
pub mod canary;
pub mod configmap;
pub mod deployment;
pub mod hpa;
pub mod ingress;
pub mod migration;
pub mod networkpolicy;
pub mod pdb;
pub mod restore;
pub mod service;
pub mod serviceaccount;

/// Field manager of every server-side apply, and the `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "tradeplane-operator";
/// `app.kubernetes.io/name` of everything the operator creates.
pub const APP_NAME: &str = "tradeplane";
/// `app.kubernetes.io/part-of` of everything the operator creates.
pub const PART_OF: &str = "tradeplane";
/// Container port of the platform (contract: named `http`, 8080).
pub const HTTP_PORT: i32 = 8080;
/// Name of the container port (contract).
pub const HTTP_PORT_NAME: &str = "http";
/// Pod-template annotation carrying the ConfigMap checksum, so config changes roll the pods.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "tradeplane.io/config-checksum";

/// Label key for the instance (the TradingPlatform name).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label key for the component.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label key for the manager.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label key for the app name.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label key for the larger application.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Label key for the version of the platform (from the image tag or digest).
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";

/// How a one-shot Job (the migration gate, the restore) ended, from its conditions: `Ok(true)`
/// succeeded (`Complete` or `SuccessCriteriaMet`), `Err(condition)` its `Failed` condition,
/// `Ok(false)` still running.
pub fn job_finished(job: &Job) -> Result<bool, &k8s_openapi::api::batch::v1::JobCondition> {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete").is_some() || is("SuccessCriteriaMet").is_some() {
        return Ok(true);
    }
    match is("Failed") {
        Some(failed) => Err(failed),
        None => Ok(false),
    }
}

/// `app.kubernetes.io/version` for an image reference: its tag (`…:0.1.0` → `0.1.0`), else the
/// first 12 hex digits of its digest (`…@sha256:ab…` → `sha256-ab…`), else `latest`; cut to a
/// valid label value (63 characters, alphanumeric at both ends).
pub fn image_version(image: &str) -> String {
    let raw = if let Some((_, digest)) = image.split_once('@') {
        let (algo, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        format!("{algo}-{}", hex.chars().take(12).collect::<String>())
    } else {
        let last = image.rsplit('/').next().unwrap_or(image);
        match last.split_once(':') {
            Some((_, tag)) => tag.to_string(),
            None => "latest".to_string(),
        }
    };
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "latest".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Why a TradingPlatform cannot be turned into objects.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The resource has no `metadata.name`.
    #[error("the TradingPlatform has no metadata.name")]
    MissingName,
    /// A value the API would refuse later; caught here with a clear message.
    #[error("invalid spec: {0}")]
    Invalid(String),
}

/// Identity of the parent used by every builder: names, namespace, labels, owner reference.
#[derive(Clone, Debug)]
pub struct Parent {
    /// TradingPlatform name (also the `app.kubernetes.io/instance` label).
    pub name: String,
    /// Namespace, if known (absent when rendering a file without one).
    pub namespace: Option<String>,
    /// Owner reference to the TradingPlatform, if it has a uid (absent when rendering).
    pub owner: Option<OwnerReference>,
    /// `app.kubernetes.io/version` of every child ([`image_version`] of the image).
    pub version: Option<String>,
}

impl Parent {
    /// Extracts the identity, failing clearly on an unnamed resource.
    pub fn of(tp: &TradingPlatform) -> Result<Self, BuildError> {
        let name = tp.metadata.name.clone().ok_or(BuildError::MissingName)?;
        Ok(Self {
            name,
            namespace: tp.metadata.namespace.clone(),
            owner: tp.controller_owner_ref(&()),
            version: Some(image_version(&tp.spec.image)),
        })
    }

    /// Labels of a child of `component`.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_string(), APP_NAME.to_string()),
            (LABEL_INSTANCE.to_string(), self.name.clone()),
            (LABEL_COMPONENT.to_string(), component.to_string()),
            (LABEL_PART_OF.to_string(), PART_OF.to_string()),
            (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        ]);
        if let Some(v) = &self.version {
            labels.insert(LABEL_VERSION.to_string(), v.clone());
        }
        labels
    }

    /// The immutable selector of the platform pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), APP_NAME.to_string()),
            (LABEL_INSTANCE.to_string(), self.name.clone()),
            (LABEL_COMPONENT.to_string(), COMPONENT_PLATFORM.to_string()),
        ])
    }

    /// Metadata of an owned child.
    pub fn meta(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.clone(),
            labels: Some(self.labels(component)),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..Default::default()
        }
    }

    /// Metadata of a child that must outlive the TradingPlatform (no owner reference).
    pub fn unowned_meta(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: None,
            ..self.meta(name, component)
        }
    }

    /// Label selector string that finds every object of this instance made by the operator.
    pub fn instance_selector(&self) -> String {
        format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={MANAGER}",
            self.name
        )
    }

    /// The pod selector as `kubectl`/scale subresource string.
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Name of the ConfigMap.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }
    /// Name of the backup CronJob.
    pub fn backup_name(&self) -> String {
        format!("{}-backup", self.name)
    }
    /// Name of the backup claim the operator creates.
    pub fn backup_claim_name(&self) -> String {
        format!("{}-backups", self.name)
    }
}

/// Component label of the platform pods and their direct companions.
pub const COMPONENT_PLATFORM: &str = "platform";
/// Component label of the backup CronJob, its Jobs and claim.
pub const COMPONENT_BACKUP: &str = "backup";

/// Everything the operator wants to exist for one TradingPlatform.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// The pods' identity (no API token mounted).
    pub service_account: Option<ServiceAccount>,
    /// Platform settings (envFrom).
    pub config_map: Option<ConfigMap>,
    /// Stable address of the pods.
    pub service: Option<Service>,
    /// The one-shot restore Job of `spec.restore`; run (once) before the Deployment exists.
    pub restore_job: Option<Job>,
    /// The platform pods.
    pub deployment: Option<Deployment>,
    /// Autoscaler, when enabled.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Disruption budget, when enabled and more than one replica can run.
    pub pdb: Option<PodDisruptionBudget>,
    /// Why there is no disruption budget, or why it was tightened, for the status.
    pub pdb_skipped_reason: Option<String>,
    /// Backup claim, when backups are enabled and no existing claim is named.
    pub backup_claim: Option<PersistentVolumeClaim>,
    /// Backup CronJob, when backups are enabled.
    pub backup_cronjob: Option<CronJob>,
    /// Ingress, when enabled.
    pub ingress: Option<Ingress>,
    /// NetworkPolicy, when enabled.
    pub network_policy: Option<NetworkPolicy>,
}

/// Builds every object the operator wants for `tp`.
pub fn desired(tp: &TradingPlatform) -> Result<Desired, BuildError> {
    let parent = Parent::of(tp)?;
    let spec = &tp.spec;
    let config_map = configmap::build(&parent, spec)?;
    let checksum = configmap::checksum(&config_map);
    let (pdb, pdb_skipped_reason) = pdb::build(&parent, spec);
    Ok(Desired {
        service_account: Some(serviceaccount::build(&parent)),
        deployment: Some(deployment::build(&parent, spec, &checksum)?),
        config_map: Some(config_map),
        service: Some(service::build(&parent, spec)),
        restore_job: restore::job(&parent, spec)?,
        hpa: hpa::build(&parent, spec),
        pdb,
        pdb_skipped_reason,
        backup_claim: backup::claim(&parent, spec)?,
        backup_cronjob: backup::cronjob(&parent, spec)?,
        ingress: ingress::build(&parent, spec),
        network_policy: networkpolicy::build(&parent, spec),
    })
}

/// The platform Deployment as `desired` builds it, but running `image` (and labelled with its
/// version): what the operator applies while the migration of a new `spec.image` is not done, so
/// other spec changes still apply and the pods keep the image they run.
pub fn deployment_with_image(tp: &TradingPlatform, image: &str) -> Result<Deployment, BuildError> {
    let mut parent = Parent::of(tp)?;
    parent.version = Some(image_version(image));
    let mut spec = tp.spec.clone();
    spec.image = image.to_string();
    let checksum = configmap::checksum(&configmap::build(&parent, &spec)?);
    deployment::build(&parent, &spec, &checksum)
}

/// The kinds of children counted by `tradeplane_operator_managed_objects{kind}`, in the order of
/// [`Desired::managed`].
pub const MANAGED_KINDS: [&str; 10] = [
    <ServiceAccount as k8s_openapi::Resource>::KIND,
    <ConfigMap as k8s_openapi::Resource>::KIND,
    <Service as k8s_openapi::Resource>::KIND,
    <Deployment as k8s_openapi::Resource>::KIND,
    <HorizontalPodAutoscaler as k8s_openapi::Resource>::KIND,
    <PodDisruptionBudget as k8s_openapi::Resource>::KIND,
    <PersistentVolumeClaim as k8s_openapi::Resource>::KIND,
    <CronJob as k8s_openapi::Resource>::KIND,
    <Ingress as k8s_openapi::Resource>::KIND,
    <NetworkPolicy as k8s_openapi::Resource>::KIND,
];

impl Desired {
    /// Which of [`MANAGED_KINDS`] this set has an object of.
    pub fn managed(&self) -> [bool; MANAGED_KINDS.len()] {
        [
            self.service_account.is_some(),
            self.config_map.is_some(),
            self.service.is_some(),
            self.deployment.is_some(),
            self.hpa.is_some(),
            self.pdb.is_some(),
            self.backup_claim.is_some(),
            self.backup_cronjob.is_some(),
            self.ingress.is_some(),
            self.network_policy.is_some(),
        ]
    }

    /// Every object as JSON, in apply order (dependencies first).
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        let mut out = Vec::new();
        push(&mut out, &self.service_account)?;
        push(&mut out, &self.config_map)?;
        push(&mut out, &self.service)?;
        push(&mut out, &self.restore_job)?;
        push(&mut out, &self.deployment)?;
        push(&mut out, &self.hpa)?;
        push(&mut out, &self.pdb)?;
        push(&mut out, &self.backup_claim)?;
        push(&mut out, &self.backup_cronjob)?;
        push(&mut out, &self.ingress)?;
        push(&mut out, &self.network_policy)?;
        Ok(out)
    }

    /// Every object as one multi-document YAML stream (what `render` prints).
    pub fn to_yaml(&self) -> Result<String, String> {
        let mut out = String::new();
        for v in self.to_values().map_err(|e| e.to_string())? {
            out.push_str("---\n");
            let doc = serde_yaml_ng::to_string(&v).map_err(|e| e.to_string())?;
            out.push_str(&quote_timestamps(&doc));
        }
        Ok(out)
    }
}

/// Single-quotes the plain scalars that a YAML 1.1 parser (PyYAML, so kubernetes-validate and
/// many scripts) would read as a timestamp rather than a string, e.g. a restore Job's
/// `--until 2026-12-03T14:05:00Z` argument: serde_yaml_ng quotes only what YAML 1.2 would
/// misread. A plain scalar starting with `DDDD-D` and made only of digits and `-:.+TtZz ` is
/// quoted (quoting a string never changes it); block scalars' contents are left alone.
pub fn quote_timestamps(yaml: &str) -> String {
    fn looks_like_time(v: &str) -> bool {
        let b = v.as_bytes();
        b.len() >= 6
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5].is_ascii_digit()
            && v.chars()
                .all(|c| c.is_ascii_digit() || "-:.+TtZz ".contains(c))
    }
    let mut out = String::with_capacity(yaml.len());
    let mut block_parent: Option<usize> = None;
    for line in yaml.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = body.len() - body.trim_start().len();
        if let Some(parent) = block_parent {
            if body.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block_parent = None;
        }
        let mut start = indent;
        while body[start..].starts_with("- ") {
            start += 2;
        }
        if let Some(i) = body[start..].find(": ") {
            start += i + 2;
        }
        let value = &body[start..];
        if value.starts_with('|') || value.starts_with('>') {
            block_parent = Some(indent);
            out.push_str(line);
        } else if looks_like_time(value) {
            out.push_str(&body[..start]);
            out.push('\'');
            out.push_str(value);
            out.push('\'');
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

fn push<K: serde::Serialize>(
    out: &mut Vec<serde_json::Value>,
    obj: &Option<K>,
) -> Result<(), serde_json::Error> {
    if let Some(o) = obj {
        out.push(serde_json::to_value(o)?);
    }
    Ok(())
}

/// Reads a TradingPlatform from YAML (one document), as `render -f` does.
pub fn parse_trading_platform(yaml: &str) -> Result<TradingPlatform, String> {
    let value: serde_json::Value =
        serde_yaml_ng::from_str(yaml).map_err(|e| format!("not valid YAML: {e}"))?;
    let api_version = TradingPlatform::api_version(&());
    let kind = TradingPlatform::kind(&());
    let found_version = value.get("apiVersion").and_then(|v| v.as_str());
    let found_kind = value.get("kind").and_then(|v| v.as_str());
    if found_version != Some(api_version.as_ref()) || found_kind != Some(kind.as_ref()) {
        return Err(format!(
            "expected apiVersion {api_version} and kind {kind}, found {} {}",
            found_version.unwrap_or("<none>"),
            found_kind.unwrap_or("<none>")
        ));
    }
    let tp: TradingPlatform =
        serde_json::from_value(value).map_err(|e| format!("not a valid TradingPlatform: {e}"))?;
    if tp.name_any().is_empty() {
        return Err("metadata.name is required".to_string());
    }
    Ok(tp)
}
