//! The `TradingPlatform` custom resource (`tradeplane.io/v1alpha1`): types only.
//!
//! Every field carries a doc comment because schemars turns it into the OpenAPI `description`
//! that `kubectl explain` shows. Defaults live in the schema (through `#[serde(default)]`) so the
//! apiserver stores the defaulted object, and cross-field rules are CEL `x-kubernetes-validations`
//! so invalid resources are refused at admission instead of failing later in the reconciler.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::crd_rollout::{
    CanarySpec, PrometheusAnalysis, RolloutSpec, RolloutStatus, RolloutStrategy,
};
pub use crate::crd_s3::{S3Credentials, S3Storage, ServerSideEncryption};

/// API group of the custom resource (contract).
pub const GROUP: &str = "tradeplane.io";
/// Annotation that asks the operator for an immediate backup Job (contract).
pub const BACKUP_NOW_ANNOTATION: &str = "tradeplane.io/backup-now";

/// Condition type: the platform serves traffic with the desired number of ready replicas.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a rollout or scale is in progress.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: the operator cannot converge (API errors, invalid references, failed rollout).
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition type: scheduled backups succeed often enough.
pub const CONDITION_BACKUP_HEALTHY: &str = "BackupHealthy";
/// Condition type: with `spec.backup.archive.enabled`, the platform pods ship the change log.
pub const CONDITION_ARCHIVE_HEALTHY: &str = "ArchiveHealthy";

/// Desired state of one Tradeplane trading platform installation.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tradeplane.io",
    version = "v1alpha1",
    kind = "TradingPlatform",
    plural = "tradingplatforms",
    shortname = "tp",
    category = "tradeplane",
    namespaced,
    status = "TradingPlatformStatus",
    derive = "PartialEq",
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 45").message("metadata.name must be a DNS label of at most 45 characters (children append suffixes such as -backup)"),
    doc = "A Tradeplane trading platform: the operator turns it into a Deployment, Service, ConfigMap, autoscaler, disruption budget, backup CronJob, Ingress and NetworkPolicy, and reports their state back.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas", description = "Desired replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Ready replicas"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase", description = "Summary of the conditions"),
    printcolumn(name = "Last Backup", type_ = "date", json_path = ".status.lastSuccessfulBackup", description = "Time of the last successful backup"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.restore) == has(oldSelf.restore) && (!has(self.restore) || self.restore == oldSelf.restore)").message("spec.restore cannot be added, changed or removed after creation: a restore bootstraps a new, empty database once; to restore again, create a new TradingPlatform (with its own database) with spec.restore").field_path(".restore").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.restore) || !has(self.backup) || !has(self.backup.archive) || !self.backup.archive.enabled || !has(self.backup.storage) || !has(self.backup.storage.s3) || self.backup.storage.s3.bucket != self.restore.source.bucket || (has(self.backup.storage.s3.prefix) ? self.backup.storage.s3.prefix : '') != (has(self.restore.source.prefix) ? self.restore.source.prefix : '') || (has(self.backup.storage.s3.endpoint) ? self.backup.storage.s3.endpoint : '') != (has(self.restore.source.endpoint) ? self.restore.source.endpoint : '')").message("spec.backup.storage.s3 must not be the bucket and prefix of spec.restore.source while spec.backup.archive is enabled: the restored database starts a new archive, and the platform refuses to archive into a place holding another database's archive; give the new platform its own prefix (e.g. tradeplane/prod-restored)").field_path(".backup.storage.s3.prefix").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.backup) || !has(self.backup.archive) || !self.backup.archive.enabled || !has(self.env) || self.env.all(e, !(e.name in ['ARCHIVE_DEST', 'ARCHIVE_INTERVAL_SECONDS', 'ARCHIVE_MARK_INTERVAL_MS', 'AWS_ENDPOINT_URL', 'AWS_ALLOW_HTTP', 'AWS_REGION', 'AWS_VIRTUAL_HOSTED_STYLE_REQUEST', 'AWS_SERVER_SIDE_ENCRYPTION', 'AWS_SSE_KMS_KEY_ID', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']))").message("with spec.backup.archive.enabled the operator sets ARCHIVE_DEST, ARCHIVE_INTERVAL_SECONDS, ARCHIVE_MARK_INTERVAL_MS and the AWS_* settings of spec.backup.storage.s3 on the platform container: remove them from spec.env").field_path(".env").reason(Reason::FieldValueForbidden))]
pub struct TradingPlatformSpec {
    /// Container image of the platform, e.g. `ghcr.io/tradeplane/tradeplane:0.1.0`. The same image
    /// runs the service and the backup CronJob (`tradeplane-platform backup`).
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?([.][a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$')").message("spec.image must be an image reference: [registry[:port]/]path[:tag][@sha256:digest], path in lower case, no spaces (e.g. ghcr.io/tradeplane/tradeplane:0.1.0)"))]
    pub image: String,

    /// When the kubelet pulls the image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,

    /// Names of Secrets (type `kubernetes.io/dockerconfigjson`) used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,

    /// Number of platform pods when autoscaling is disabled. Ignored while `autoscaling.enabled`
    /// (the HorizontalPodAutoscaler owns the replica count then). `kubectl scale tp/NAME` sets it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the platform container.
    #[serde(default = "default_resources")]
    #[x_kube(validation = Rule::new("!has(self.requests) || !('cpu' in self.requests) || isQuantity(string(self.requests['cpu']))").message("spec.resources.requests.cpu must be a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.requests) || !('memory' in self.requests) || isQuantity(string(self.requests['memory']))").message("spec.resources.requests.memory must be a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.requests) || !('ephemeral-storage' in self.requests) || isQuantity(string(self.requests['ephemeral-storage']))").message("spec.resources.requests.ephemeral-storage must be a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.limits) || !('cpu' in self.limits) || isQuantity(string(self.limits['cpu']))").message("spec.resources.limits.cpu must be a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.limits) || !('memory' in self.limits) || isQuantity(string(self.limits['memory']))").message("spec.resources.limits.memory must be a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.limits) || !('ephemeral-storage' in self.limits) || isQuantity(string(self.limits['ephemeral-storage']))").message("spec.resources.limits.ephemeral-storage must be a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.requests) || !has(self.limits) || !('cpu' in self.requests) || !('cpu' in self.limits) || !isQuantity(string(self.requests['cpu'])) || !isQuantity(string(self.limits['cpu'])) || quantity(string(self.requests['cpu'])).compareTo(quantity(string(self.limits['cpu']))) <= 0").message("spec.resources.requests.cpu must be less than or equal to spec.resources.limits.cpu").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.requests) || !has(self.limits) || !('memory' in self.requests) || !('memory' in self.limits) || !isQuantity(string(self.requests['memory'])) || !isQuantity(string(self.limits['memory'])) || quantity(string(self.requests['memory'])).compareTo(quantity(string(self.limits['memory']))) <= 0").message("spec.resources.requests.memory must be less than or equal to spec.resources.limits.memory").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!has(self.requests) || !has(self.limits) || !('ephemeral-storage' in self.requests) || !('ephemeral-storage' in self.limits) || !isQuantity(string(self.requests['ephemeral-storage'])) || !isQuantity(string(self.limits['ephemeral-storage'])) || quantity(string(self.requests['ephemeral-storage'])).compareTo(quantity(string(self.limits['ephemeral-storage']))) <= 0").message("spec.resources.requests.ephemeral-storage must be less than or equal to spec.resources.limits.ephemeral-storage").reason(Reason::FieldValueInvalid))]
    pub resources: ResourceRequirements,

    /// Secret key holding the database URL (`postgres://…` or `sqlite://…`), passed as `DATABASE_URL`.
    pub database: SecretKeyRef,

    /// Secret key holding the Redis URL, passed as `REDIS_URL`. Without it the platform runs
    /// without Redis (in-process fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<SecretKeyRef>,

    /// Secret key holding the JWT signing secret, passed as `JWT_SECRET`.
    pub jwt_secret: SecretKeyRef,

    /// Secret key holding a base64 32-byte key, passed as `BACKUP_ENCRYPTION_KEY` to the platform
    /// and the backup job; backups are encrypted when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_encryption_key: Option<SecretKeyRef>,

    /// Horizontal pod autoscaling (autoscaling/v2).
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,

    /// PodDisruptionBudget protecting the platform during voluntary disruptions (node drains).
    #[serde(default)]
    pub disruption_budget: DisruptionBudgetSpec,

    /// Tuning of the startup, liveness and readiness probes.
    #[serde(default)]
    pub probes: ProbesSpec,

    /// Graceful shutdown timing: pause before SIGTERM, then drain time.
    #[serde(default)]
    pub shutdown: ShutdownSpec,

    /// Scheduled database backups (a CronJob running `tradeplane-platform backup`).
    #[serde(default)]
    pub backup: BackupSpec,

    /// The Service in front of the platform pods.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Optional Ingress exposing the Service over HTTP(S).
    #[serde(default)]
    pub ingress: IngressSpec,

    /// Where the pods may run: anti-affinity, topology spread, node selector, tolerations.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// NetworkPolicy that admits traffic only on the platform's HTTP port.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// Extra environment variables for the platform container. `DATABASE_URL`, `REDIS_URL` and
    /// `JWT_SECRET` are reserved: set them through `database`, `redis` and `jwtSecret`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(e, !(e.name in ['DATABASE_URL', 'REDIS_URL', 'JWT_SECRET', 'BACKUP_ENCRYPTION_KEY']))").message("DATABASE_URL, REDIS_URL, JWT_SECRET and BACKUP_ENCRYPTION_KEY are set from spec.database, spec.redis, spec.jwtSecret and spec.backupEncryptionKey").reason(Reason::FieldValueForbidden))]
    pub env: Vec<EnvVar>,

    /// Platform settings written into the ConfigMap the pods load with `envFrom`.
    #[serde(default)]
    pub settings: PlatformSettings,

    /// Extra annotations on the pod template (e.g. for a service mesh).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// How a changed pod template is rolled out: the Deployment's rolling update (default) or
    /// an analysed canary with automatic rollback.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// Stop all writes for this resource: the operator leaves every child as it is and only
    /// reports `Paused` in the status (a canary rollout is frozen where it stands). Useful during
    /// a manual restore.
    #[serde(default)]
    pub paused: bool,

    /// Bootstrap this new platform's (empty) database from a backup and its point-in-time
    /// archive before anything else runs: the operator runs `tradeplane-platform restore` once
    /// as the Job `<name>-restore` and creates the Deployment, the migration Job and the backup
    /// CronJob only after it succeeded (`status.restore`). Immutable: set it when creating the
    /// TradingPlatform; to restore again, create a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
}

/// `spec.restore`: where the backup and archive to restore come from, and which point to restore.
/// Without `backup`, `until` and `untilSeq`: the newest backup of `source` and everything archived
/// after it; with `backup` alone: that backup only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.until) || !has(self.untilSeq)").message("spec.restore: set at most one of until and untilSeq (a time or a restore point number)").field_path(".untilSeq"))]
pub struct RestoreSpec {
    /// The bucket and prefix holding the backups and their `wal/` archive, as the source
    /// platform's `spec.backup.storage.s3` names them (bucket, prefix, endpoint, region,
    /// addressing style, credentials). The restore Job gets its `AWS_*` settings from here.
    pub source: S3Storage,
    /// One backup's name in `source` (`tradeplane-backup-<UTC timestamp>.tpb`, as `tradeplane-platform
    /// backup list` prints it) to restore from, instead of the newest fitting one. Alone it is
    /// restored as it is; with `until` or `untilSeq` the archive after it is replayed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^tradeplane-backup-[0-9]{8}T[0-9]{6}(\.[0-9]{1,9})?Z\.tpb$")
    )]
    pub backup: Option<String>,
    /// Point-in-time target: the newest restore point at or before this RFC 3339 time (e.g.
    /// `2026-12-03T14:05:00Z`), or `latest` for everything archived (`restore --until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == 'latest' || self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$')").message("spec.restore.until must be an RFC 3339 time with a zone, such as 2026-12-03T14:05:00Z or 2026-12-03T15:05:00+01:00, or latest"))]
    pub until: Option<String>,
    /// Point-in-time target: the restore point with this number (`restore --until-seq`, as
    /// `tradeplane-platform archive restore-point` printed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub until_seq: Option<i64>,
}

fn default_replicas() -> i32 {
    2
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("250m".into())),
            ("memory".to_string(), Quantity("256Mi".into())),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("1".into())),
            ("memory".to_string(), Quantity("512Mi".into())),
        ])),
        ..Default::default()
    }
}

/// Image pull policy of the platform container.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling, for the container's `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A key of a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Horizontal pod autoscaling of the platform Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must be less than or equal to maxReplicas").field_path(".minReplicas"))]
#[x_kube(validation = Rule::new("!self.enabled || has(self.targetCPUUtilizationPercentage) || has(self.targetMemoryUtilizationPercentage) || size(self.podMetrics) > 0").message("autoscaling needs at least one target: CPU, memory or a pod metric"))]
pub struct AutoscalingSpec {
    /// Create a HorizontalPodAutoscaler; the Deployment's replica count is then left to it.
    #[serde(default)]
    pub enabled: bool,
    /// Lower bound of the replica count.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    /// Upper bound of the replica count.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Target average CPU utilization, percent of the CPU request (e.g. 70).
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Target average memory utilization, percent of the memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory_utilization_percentage: Option<i32>,
    /// Custom per-pod metrics (served by a metrics adapter, e.g. `http_requests_per_second`).
    #[serde(default)]
    #[schemars(length(max = 10))]
    pub pod_metrics: Vec<PodMetric>,
    /// Scale-up speed limits.
    #[serde(default = "default_scale_up")]
    pub scale_up: ScalingPolicy,
    /// Scale-down speed limits.
    #[serde(default = "default_scale_down")]
    pub scale_down: ScalingPolicy,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_cpu_utilization_percentage: None,
            target_memory_utilization_percentage: None,
            pod_metrics: Vec::new(),
            scale_up: default_scale_up(),
            scale_down: default_scale_down(),
        }
    }
}

fn default_min_replicas() -> i32 {
    2
}
fn default_max_replicas() -> i32 {
    6
}
fn default_scale_up() -> ScalingPolicy {
    ScalingPolicy {
        stabilization_window_seconds: 0,
        max_pods_per_period: Some(4),
        max_percent_per_period: Some(100),
        period_seconds: 30,
    }
}
fn default_scale_down() -> ScalingPolicy {
    ScalingPolicy {
        stabilization_window_seconds: 300,
        max_pods_per_period: Some(1),
        max_percent_per_period: None,
        period_seconds: 60,
    }
}

/// A per-pod custom metric and its target average value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetric {
    /// Metric name as the custom metrics API serves it.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    )]
    pub name: String,
    /// Target average value per pod (a quantity, e.g. `100` or `500m`).
    pub target_average_value: Quantity,
}

/// How fast the autoscaler may change the replica count in one direction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxPodsPerPeriod) || has(self.maxPercentPerPeriod)").message("set maxPodsPerPeriod, maxPercentPerPeriod or both"))]
pub struct ScalingPolicy {
    /// Seconds of past recommendations considered before scaling (damps flapping).
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: i32,
    /// At most this many pods added or removed per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_pods_per_period: Option<i32>,
    /// At most this percentage of the current replicas added or removed per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_percent_per_period: Option<i32>,
    /// Length of a period, in seconds.
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

fn default_period() -> i32 {
    60
}

/// PodDisruptionBudget settings. Exactly one of `minAvailable` and `maxUnavailable` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable)").message("set exactly one of minAvailable and maxUnavailable"))]
pub struct DisruptionBudgetSpec {
    /// Create the PodDisruptionBudget. It is skipped anyway when at most one replica can run,
    /// because it would then block every node drain.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods (number or percentage) that must stay available during a disruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("string(self).matches('^([0-9]+|([0-9]|[1-9][0-9]|100)%)$')").message("spec.disruptionBudget.minAvailable must be a number >= 0 or a percentage from 0% to 100%"))]
    pub min_available: Option<IntOrString>,
    /// Pods (number or percentage) that may be unavailable during a disruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("string(self).matches('^([0-9]+|([0-9]|[1-9][0-9]|100)%)$')").message("spec.disruptionBudget.maxUnavailable must be a number >= 0 or a percentage from 0% to 100%"))]
    pub max_unavailable: Option<IntOrString>,
}

impl Default for DisruptionBudgetSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            min_available: None,
            max_unavailable: Some(IntOrString::Int(1)),
        }
    }
}

fn default_true() -> bool {
    true
}

/// Tuning of the three probes; the paths are fixed by the platform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbesSpec {
    /// Startup probe on `/health/startup`: gives a slow start (migrations) time before liveness counts.
    #[serde(default = "default_startup_probe")]
    pub startup: ProbeTuning,
    /// Liveness probe on `/health/live`: restarts a wedged container.
    #[serde(default = "default_liveness_probe")]
    pub liveness: ProbeTuning,
    /// Readiness probe on `/health/ready`: takes a pod out of the Service while it cannot serve.
    #[serde(default = "default_readiness_probe")]
    pub readiness: ProbeTuning,
}

impl Default for ProbesSpec {
    fn default() -> Self {
        Self {
            startup: default_startup_probe(),
            liveness: default_liveness_probe(),
            readiness: default_readiness_probe(),
        }
    }
}

fn default_startup_probe() -> ProbeTuning {
    ProbeTuning {
        initial_delay_seconds: 0,
        period_seconds: 2,
        timeout_seconds: 2,
        failure_threshold: 60,
        success_threshold: 1,
    }
}
fn default_liveness_probe() -> ProbeTuning {
    ProbeTuning {
        initial_delay_seconds: 0,
        period_seconds: 10,
        timeout_seconds: 2,
        failure_threshold: 3,
        success_threshold: 1,
    }
}
fn default_readiness_probe() -> ProbeTuning {
    ProbeTuning {
        initial_delay_seconds: 0,
        period_seconds: 5,
        timeout_seconds: 2,
        failure_threshold: 2,
        success_threshold: 1,
    }
}

/// Timing of one probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTuning {
    /// Seconds after container start before the first probe.
    #[serde(default)]
    #[schemars(range(min = 0, max = 600))]
    pub initial_delay_seconds: i32,
    /// Seconds between probes.
    #[serde(default = "default_probe_period")]
    #[schemars(range(min = 1, max = 300))]
    pub period_seconds: i32,
    /// Seconds after which one probe counts as failed.
    #[serde(default = "default_probe_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,
    /// Consecutive failures before the probe is considered failed.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: i32,
    /// Consecutive successes before the probe is considered passing again (readiness only; the
    /// others must be 1, as Kubernetes requires).
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 10))]
    pub success_threshold: i32,
}

fn default_probe_period() -> i32 {
    10
}
fn default_probe_timeout() -> i32 {
    2
}
fn default_failure_threshold() -> i32 {
    3
}
fn default_success_threshold() -> i32 {
    1
}

/// Graceful shutdown. Termination grace period = `preStopSleepSeconds` + `drainTimeoutSeconds` + 10.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownSpec {
    /// Seconds the container keeps serving after being told to stop (native `sleep` preStop
    /// action), so endpoints and load balancers stop routing to it first.
    #[serde(default = "default_prestop")]
    #[schemars(range(min = 0, max = 120))]
    pub pre_stop_sleep_seconds: i32,
    /// Seconds the platform waits for in-flight requests after SIGTERM (`DRAIN_TIMEOUT_SECONDS`).
    #[serde(default = "default_drain")]
    #[schemars(range(min = 1, max = 600))]
    pub drain_timeout_seconds: i32,
}

impl Default for ShutdownSpec {
    fn default() -> Self {
        Self {
            pre_stop_sleep_seconds: default_prestop(),
            drain_timeout_seconds: default_drain(),
        }
    }
}

fn default_prestop() -> i32 {
    5
}
fn default_drain() -> i32 {
    20
}

/// Scheduled backups of the platform database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.schedule.matches('(?i)^(@(yearly|annually|monthly|weekly|daily|hourly)|(\\\\*|[0-5]?[0-9])(-[0-5]?[0-9])?(/[0-9]+)?(,(\\\\*|[0-5]?[0-9])(-[0-5]?[0-9])?(/[0-9]+)?)* +(\\\\*|[01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?(/[0-9]+)?(,(\\\\*|[01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?(/[0-9]+)?)* +(\\\\*|\\\\?|0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?(/[0-9]+)?(,(\\\\*|\\\\?|0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?(/[0-9]+)?)* +(\\\\*|0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?(/[0-9]+)?(,(\\\\*|0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?(/[0-9]+)?)* +(\\\\*|\\\\?|[0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?(/[0-9]+)?(,(\\\\*|\\\\?|[0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?(/[0-9]+)?)*)$')").message("spec.backup.schedule must be a 5-field cron expression (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT; *, lists, ranges and /steps) or @hourly/@daily/@weekly/@monthly/@yearly").field_path(".schedule"))]
#[x_kube(validation = Rule::new("!has(self.archive) || !self.archive.enabled || (has(self.storage) && has(self.storage.s3))").message("spec.backup.archive needs spec.backup.storage.s3: the platform pods ship the change log to the bucket (a claim is mounted only by the backup Job)").field_path(".archive.enabled"))]
#[x_kube(validation = Rule::new("!has(self.archive) || !self.archive.enabled || self.enabled").message("spec.backup.archive needs spec.backup.enabled: a point-in-time restore starts from a backup and replays the change log archived after it").field_path(".archive.enabled"))]
pub struct BackupSpec {
    /// Create the backup CronJob (and its claim).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cron schedule, 5 fields, e.g. `0 2 * * *` (daily at 02:00).
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// IANA time zone of the schedule (e.g. `Europe/Berlin`); the controller manager's zone if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^(UTC|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9][A-Za-z0-9_+-]*){1,2})$')").message("spec.backup.timeZone must be an IANA time zone name such as UTC or Europe/Berlin (a well-formed name that is not in the IANA database is reported by the operator: condition Degraded, reason InvalidSpec)"))]
    pub time_zone: Option<String>,
    /// Stop scheduling new backups without deleting anything.
    #[serde(default)]
    pub suspend: bool,
    /// Which old backups the backup command prunes.
    #[serde(default)]
    pub retention: BackupRetention,
    /// Where backups are written: a claim mounted at `/backups` (the default) or a bucket.
    #[serde(default)]
    pub storage: BackupStorage,
    /// Continuous archiving of the change log for point-in-time restore (PostgreSQL only): the
    /// platform pods ship every change to `<bucket>/<prefix>/wal/`, next to the backups, so
    /// `tradeplane-platform restore --until <time>` can replay past the newest backup. Needs
    /// `storage.s3` and `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<BackupArchive>,
    /// Finished successful Jobs kept for inspection.
    #[serde(default = "default_success_history")]
    #[schemars(range(min = 0, max = 20))]
    pub successful_jobs_history_limit: i32,
    /// Finished failed Jobs kept for inspection.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 20))]
    pub failed_jobs_history_limit: i32,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: default_schedule(),
            time_zone: None,
            suspend: false,
            retention: BackupRetention::default(),
            storage: BackupStorage::default(),
            archive: None,
            successful_jobs_history_limit: default_success_history(),
            failed_jobs_history_limit: default_failed_history(),
        }
    }
}

fn default_schedule() -> String {
    "0 2 * * *".to_string()
}
fn default_success_history() -> i32 {
    3
}
fn default_failed_history() -> i32 {
    3
}

/// Point-in-time archiving of the change log (`spec.backup.archive`): the platform container
/// gets `ARCHIVE_DEST` (the backups' `--dest`), `ARCHIVE_INTERVAL_SECONDS` and
/// `ARCHIVE_MARK_INTERVAL_MS`, with the bucket's `AWS_*` settings and `BACKUP_ENCRYPTION_KEY`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupArchive {
    /// Ship the change log from the platform pods to the backup bucket (`ARCHIVE_DEST`). The
    /// database must be PostgreSQL: with SQLite the platform refuses to start. Turning it off
    /// again stops the shipping; the database stays archived (every change logged) until
    /// `tradeplane-platform archive disable` is run.
    #[serde(default)]
    pub enabled: bool,
    /// A segment of the change log is shipped at least this often, in seconds
    /// (`ARCHIVE_INTERVAL_SECONDS`): at most this much is lost with the whole database.
    #[serde(default = "default_archive_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
    /// How often an automatic restore point is written, in milliseconds
    /// (`ARCHIVE_MARK_INTERVAL_MS`): the precision of `restore --until <time>`.
    #[serde(default = "default_archive_mark_interval")]
    #[schemars(range(min = 100, max = 60000))]
    pub mark_interval_ms: i32,
}

impl Default for BackupArchive {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_seconds: default_archive_interval(),
            mark_interval_ms: default_archive_mark_interval(),
        }
    }
}

fn default_archive_interval() -> i32 {
    5
}
fn default_archive_mark_interval() -> i32 {
    1000
}

/// Retention of backup files (`--keep-days`, `--keep-last`); at least one is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.keepDays) || has(self.keepLast)").message("set keepDays, keepLast or both, otherwise backups accumulate forever"))]
pub struct BackupRetention {
    /// Delete backups older than this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub keep_days: Option<i32>,
    /// Always keep at least the newest this-many backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub keep_last: Option<i32>,
}

impl Default for BackupRetention {
    fn default() -> Self {
        Self {
            keep_days: Some(30),
            keep_last: None,
        }
    }
}

/// Where backups go, exactly one of: a new claim (size, storage class; the default), an
/// existing claim, or an S3-compatible bucket (`s3`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.existingClaim) || (!has(self.size) && !has(self.storageClassName))").message("existingClaim cannot be combined with size or storageClassName"))]
#[x_kube(validation = Rule::new("!has(self.s3) || (!has(self.existingClaim) && !has(self.size) && !has(self.storageClassName))").message("exactly one backup storage: s3 cannot be combined with existingClaim, size or storageClassName").field_path(".s3"))]
pub struct BackupStorage {
    /// Size of the claim the operator creates (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))").message("spec.backup.storage.size must be a positive Kubernetes quantity such as 10Gi").reason(Reason::FieldValueInvalid))]
    pub size: Option<Quantity>,
    /// Storage class of the claim the operator creates; the cluster default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Use this existing PersistentVolumeClaim instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub existing_claim: Option<String>,
    /// What happens to a claim the operator created when backups are disabled, the storage
    /// moves to `s3`, or the TradingPlatform is deleted: `Retain` keeps it (the backups
    /// survive), `Delete` removes it. Objects in a bucket are never deleted by the operator.
    #[serde(default)]
    pub retention_policy: ClaimRetentionPolicy,
    /// Write backups to this S3-compatible bucket instead of a claim (`--dest s3://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
}

impl Default for BackupStorage {
    fn default() -> Self {
        Self {
            size: None,
            storage_class_name: None,
            existing_claim: None,
            retention_policy: ClaimRetentionPolicy::Retain,
            s3: None,
        }
    }
}

/// Fate of the operator-created backup claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClaimRetentionPolicy {
    /// Keep the claim and its backups.
    #[default]
    Retain,
    /// Delete the claim and its backups.
    Delete,
}

/// The Service in front of the pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service listens on (it forwards to the container port `http`, 8080).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Extra annotations on the Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::ClusterIP,
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

fn default_service_port() -> i32 {
    80
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Optional Ingress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || has(self.host)").message("ingress.host is required when the ingress is enabled").field_path(".host"))]
pub struct IngressSpec {
    /// Create the Ingress.
    #[serde(default)]
    pub enabled: bool,
    /// IngressClass name (e.g. `nginx`); the cluster default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// Host name routed to the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
        )
    )]
    pub host: Option<String>,
    /// Secret (type `kubernetes.io/tls`) with the certificate for `host`; plain HTTP if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
    /// Extra annotations on the Ingress (e.g. cert-manager issuer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Pod placement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Spread pods of this platform over nodes: `Preferred` (soft), `Required` (hard), `None`.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// Topology spread across zones (or another topology key).
    #[serde(default)]
    pub topology_spread: TopologySpread,
    /// Node labels a node must carry to run the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl Default for PlacementSpec {
    fn default() -> Self {
        Self {
            anti_affinity: AntiAffinity::Preferred,
            topology_spread: TopologySpread::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }
}

/// Pod anti-affinity mode across nodes (`kubernetes.io/hostname`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AntiAffinity {
    /// No anti-affinity.
    None,
    /// Prefer different nodes.
    #[default]
    Preferred,
    /// Require different nodes (pods stay Pending when nodes run out).
    Required,
}

/// Topology spread constraint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologySpread {
    /// Add the constraint.
    #[serde(default)]
    pub enabled: bool,
    /// Node label whose values form the domains (zones by default).
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
    /// Largest allowed difference in pod count between two domains.
    #[serde(default = "default_max_skew")]
    #[schemars(range(min = 1, max = 100))]
    pub max_skew: i32,
    /// What to do when the constraint cannot be met.
    #[serde(default)]
    pub when_unsatisfiable: WhenUnsatisfiable,
}

impl Default for TopologySpread {
    fn default() -> Self {
        Self {
            enabled: false,
            topology_key: default_topology_key(),
            max_skew: default_max_skew(),
            when_unsatisfiable: WhenUnsatisfiable::ScheduleAnyway,
        }
    }
}

fn default_topology_key() -> String {
    "topology.kubernetes.io/zone".to_string()
}
fn default_max_skew() -> i32 {
    1
}

/// Behaviour of an unsatisfiable topology spread constraint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WhenUnsatisfiable {
    /// Schedule anyway, preferring less skew.
    #[default]
    ScheduleAnyway,
    /// Keep the pod Pending.
    DoNotSchedule,
}

impl WhenUnsatisfiable {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnsatisfiable::ScheduleAnyway => "ScheduleAnyway",
            WhenUnsatisfiable::DoNotSchedule => "DoNotSchedule",
        }
    }
}

/// NetworkPolicy for the platform pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create a NetworkPolicy that admits ingress traffic only on the HTTP port (8080).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Namespaces (by label selector match labels) allowed to connect; empty: any namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allowed_namespace_labels: BTreeMap<String, String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_namespace_labels: BTreeMap::new(),
        }
    }
}

/// Platform settings that become ConfigMap keys (environment variables of the platform).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSettings {
    /// Log level (`RUST_LOG`).
    #[serde(default)]
    pub log_level: LogLevel,
    /// Log format (`LOG_FORMAT`).
    #[serde(default)]
    pub log_format: LogFormat,
    /// Tradable instruments (`INSTRUMENTS`, JSON), unique by symbol; the platform's built-in list
    /// if omitted (an empty list is refused: the platform would trade nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 500), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["symbol"]))]
    pub instruments: Vec<Instrument>,
    /// API rate limits.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Database connection pool.
    #[serde(default)]
    pub database_pool: DatabasePool,
    /// Seconds a replica's lease on a symbol lasts without renewal (`SYMBOL_LEASE_SECONDS`,
    /// PostgreSQL only). Each symbol is matched by exactly one replica holding its lease; when
    /// that replica dies, another takes the symbol over after at most this long, so it bounds
    /// the failover time. Shorter means faster failover but more lease renewals.
    #[serde(default = "default_symbol_lease_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub symbol_lease_seconds: i32,
    /// Four-eyes approval of large orders; off unless a threshold is set here or per instrument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Approvals>,
    /// Order, approval or deposit value (whole units of the quote currency) from which the audit
    /// trail scores an event as large (`AUDIT_LARGE_ORDER_NOTIONAL`; the platform's default, 1000000,
    /// when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,18}$"))]
    pub audit_large_order_notional: Option<String>,
}

fn default_symbol_lease_seconds() -> i32 {
    3
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_format: LogFormat::Json,
            instruments: Vec::new(),
            rate_limits: RateLimits::default(),
            database_pool: DatabasePool::default(),
            symbol_lease_seconds: default_symbol_lease_seconds(),
            approvals: None,
            audit_large_order_notional: None,
        }
    }
}

/// Log level of the platform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// The `RUST_LOG` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log format of the platform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// The `LOG_FORMAT` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

/// One tradable instrument.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instrument {
    /// Symbol, upper case, e.g. `BTC-USD`.
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[A-Z0-9]+(-[A-Z0-9]+)*$")
    )]
    pub symbol: String,
    /// Smallest price increment, a positive decimal string, e.g. `0.01`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub tick_size: String,
    /// Smallest quantity increment, a positive decimal string, e.g. `0.0001`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub lot_size: String,
    /// Smallest accepted order quantity, a multiple of `lotSize`, e.g. `0.0001`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub min_qty: String,
    /// Largest accepted order quantity, a multiple of `lotSize`, e.g. `100`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub max_qty: String,
    /// Largest accepted order notional (price times quantity) in quote currency, e.g. `5000000`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub max_notional: String,
    /// Maximum distance of a limit price from the last trade, in basis points (1000 = 10%);
    /// 0 disables the band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9999))]
    pub price_band_bps: Option<i32>,
    /// Orders of a larger notional wait for four-eyes approval by a second admin
    /// (`approvalNotional` in `INSTRUMENTS`), a decimal in quote currency; `0` turns approval
    /// off for this instrument whatever `settings.approvals.notionalDefault` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub approval_notional: Option<String>,
}

/// Four-eyes approval of large orders (issue 16): the defaults for instruments without their own
/// `approvalNotional`, and how long a held order waits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvals {
    /// Notional above which an order waits for approval, for every instrument without its own
    /// `approvalNotional` (`APPROVAL_NOTIONAL_DEFAULT`); unset or `0`: no approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub notional_default: Option<String>,
    /// Seconds a held order waits before it expires and its reservation is released
    /// (`APPROVAL_TIMEOUT_SECONDS`).
    #[serde(default = "default_approval_timeout")]
    #[schemars(range(min = 1, max = 2592000))]
    pub timeout_seconds: i32,
    /// How often each replica looks for expired held orders of its symbols
    /// (`APPROVAL_SWEEP_INTERVAL_SECONDS`).
    #[serde(default = "default_approval_sweep")]
    #[schemars(range(min = 1, max = 3600))]
    pub sweep_interval_seconds: i32,
}

fn default_approval_timeout() -> i32 {
    3600
}

fn default_approval_sweep() -> i32 {
    10
}

/// API rate limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.burst >= self.perSecond").message("burst must be at least perSecond").field_path(".burst"))]
pub struct RateLimits {
    /// Sustained requests per second per client (`RATE_LIMIT_PER_SECOND`).
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 100000))]
    pub per_second: i32,
    /// Burst size (`RATE_LIMIT_BURST`).
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: i32,
    /// Login attempts per minute per client (`LOGIN_RATE_LIMIT_PER_MINUTE`).
    #[serde(default = "default_login_rate")]
    #[schemars(range(min = 1, max = 10000))]
    pub login_per_minute: i32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_second: default_rate(),
            burst: default_burst(),
            login_per_minute: default_login_rate(),
        }
    }
}

fn default_rate() -> i32 {
    50
}
fn default_burst() -> i32 {
    100
}
fn default_login_rate() -> i32 {
    10
}

/// Database connection pool of each pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabasePool {
    /// Maximum connections per pod (`DATABASE_MAX_CONNECTIONS`).
    #[serde(default = "default_max_conn")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_connections: i32,
    /// Connect timeout in seconds (`DATABASE_CONNECT_TIMEOUT_SECONDS`).
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub connect_timeout_seconds: i32,
}

impl Default for DatabasePool {
    fn default() -> Self {
        Self {
            max_connections: default_max_conn(),
            connect_timeout_seconds: default_connect_timeout(),
        }
    }
}

fn default_max_conn() -> i32 {
    10
}
fn default_connect_timeout() -> i32 {
    5
}

/// Observed state, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradingPlatformStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary: `Ready`, `Progressing`, `Degraded` or `Paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Ready`, `Progressing`, `Degraded` and `BackupHealthy` conditions.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of the Deployment (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Pods passing readiness.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Label selector of the pods, as a string (for the scale subresource and HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// When the backup CronJob last started a Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_backup: Option<Time>,
    /// When a backup Job last completed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<Time>,
    /// The last `tradeplane.io/backup-now` value the operator has turned into a Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_now_request: Option<String>,
    /// The image whose database migration (`tradeplane-platform migrate`, a Job) has succeeded,
    /// or that the pods already ran; the Deployment gets a new image only once it is here, and an
    /// operator restart does not migrate it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_image: Option<String>,
    /// The canary rollout (`spec.rollout.strategy: canary`): phase, step, measurements, decision.
    /// `null` with the rolling strategy.
    #[serde(default)]
    pub rollout: Option<RolloutStatus>,
    /// The restore of `spec.restore` (the Job `<name>-restore`): running, failed or completed.
    /// Once `completedAt` is set the restore never runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// The point-in-time archiving of `spec.backup.archive`, from the platform pods' `/metrics`
    /// (read at most once a minute). `null` while archiving is off.
    #[serde(default)]
    pub archive: Option<ArchiveStatus>,
}

/// `status.archive`: what the platform pods report about shipping the change log.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    /// When a pod last shipped a segment (`archive_last_shipped_timestamp_seconds`, the newest
    /// over the pods); unset before the first shipment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_shipped_at: Option<Time>,
    /// The number of the newest segment shipped (`archive_last_shipped_segment`, the highest
    /// over the pods); unset before the first shipment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_shipped_segment: Option<i64>,
    /// True when some pod reports `archive_up 1` and the last shipment is at most five
    /// `intervalSeconds` old (the `ArchiveHealthy` condition says why not).
    #[serde(default)]
    pub healthy: bool,
}

/// `status.restore`: where the bootstrap restore of `spec.restore` stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// `Running`, `Failed` or `Succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The restore Job (`<name>-restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When the operator saw the restore Job succeed; the platform starts only after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// What happened, in words (on failure: the exit code's meaning and the restore's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
