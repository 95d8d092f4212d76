//! `spec.rollout` and `status.rollout`: how a new pod template reaches the pods (types only;
//! re-exported from [`crate::crd`]). `rolling` (the default) is the Deployment's own rolling
//! update; `canary` runs the new template as a second Deployment first and analyses it (see
//! `crate::canary` for the behaviour and docs/operator.md for the reference).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a changed pod template (image, env, settings, resources …) is rolled out.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// `rolling`: the Deployment's rolling update. `canary`: a canary Deployment of the new
    /// template runs next to the stable one, is analysed step by step and promoted or rolled
    /// back automatically.
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Steps, analysis interval and thresholds of the `canary` strategy.
    #[serde(default)]
    pub canary: CanarySpec,
}

/// Rollout strategy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    /// The Deployment replaces the pods itself (maxUnavailable 0, maxSurge 25 %).
    #[default]
    Rolling,
    /// Canary Deployment first, analysed, then promoted or rolled back.
    Canary,
}

/// The canary analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Canary weights in percent: the canary runs `ceil(weight × replicas / 100)` pods next to
    /// the stable ones at each step. Strictly increasing, each 1–100, the last 100 (reaching it
    /// promotes the new template).
    #[serde(default = "default_steps")]
    #[schemars(length(min = 1, max = 10))]
    #[x_kube(validation = Rule::new("self.all(s, s >= 1 && s <= 100)").message("spec.rollout.canary.steps: each weight must be 1..100 (percent)"))]
    #[x_kube(validation = Rule::new("self[size(self) - 1] == 100").message("spec.rollout.canary.steps: the last weight must be 100"))]
    #[x_kube(validation = Rule::new("(size(self) < 2 || self[0] < self[1]) && (size(self) < 3 || self[1] < self[2]) && (size(self) < 4 || self[2] < self[3]) && (size(self) < 5 || self[3] < self[4]) && (size(self) < 6 || self[4] < self[5]) && (size(self) < 7 || self[5] < self[6]) && (size(self) < 8 || self[6] < self[7]) && (size(self) < 9 || self[7] < self[8]) && (size(self) < 10 || self[8] < self[9])").message("spec.rollout.canary.steps must be strictly increasing"))]
    pub steps: Vec<i32>,
    /// Seconds each step is analysed before it may advance.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 10, max = 86400))]
    pub interval_seconds: i32,
    /// Highest error ratio (5xx responses / all responses, health probes excluded) the canary
    /// pods may show during a step.
    #[serde(default = "default_max_error_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_ratio: f64,
    /// Highest p99 request latency, in seconds, the canary pods may show during a step.
    #[serde(default = "default_max_p99")]
    #[schemars(range(min = 0.0, max = 3600.0))]
    pub max_p99_seconds: f64,
    /// How much higher than the stable pods' error ratio the canary's may be (absolute, over
    /// the same time).
    #[serde(default = "default_over_stable")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_ratio_over_stable: f64,
    /// Container port the operator scrapes each pod's metrics on (the platform serves them on
    /// its HTTP port, 8080).
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
    /// HTTP path of the metrics (Prometheus text format).
    #[serde(default = "default_metrics_path")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[-_./a-zA-Z0-9]*$"))]
    pub metrics_path: String,
    /// Read the measurements from a Prometheus server instead of the pods' own metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusAnalysis>,
}

/// A Prometheus server answering the analysis queries (`GET <url>/api/v1/query`). Each query
/// may use `{{namespace}}`, `{{pods}}` (a regex of the analysed pods' names: the canary's, or
/// for the comparison the stable ones') and `{{window}}` (the step so far, e.g. `90s`, at least
/// `30s`); it must return one number.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAnalysis {
    /// Base URL of the server, plain HTTP (the operator's client has no TLS), e.g.
    /// `http://prometheus-operated.monitoring:9090`.
    #[schemars(length(min = 8, max = 512), regex(pattern = r"^http://[^\s?#]+$"))]
    pub url: String,
    /// Error ratio (5xx / all) of the pods; run for the canary and for the stable pods. Default:
    /// `http_requests_total` rates by `namespace` and `pod` without the health probes and
    /// `/metrics`, as the chart's ServiceMonitor labels them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub error_ratio_query: Option<String>,
    /// p99 latency in seconds of the canary pods. Default: `histogram_quantile(0.99, …)` of
    /// `http_request_duration_seconds_bucket`, labelled like the default error ratio query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub p99_query: Option<String>,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            interval_seconds: default_interval(),
            max_error_ratio: default_max_error_ratio(),
            max_p99_seconds: default_max_p99(),
            max_error_ratio_over_stable: default_over_stable(),
            metrics_port: default_metrics_port(),
            metrics_path: default_metrics_path(),
            prometheus: None,
        }
    }
}

fn default_steps() -> Vec<i32> {
    vec![10, 50, 100]
}
fn default_interval() -> i32 {
    60
}
fn default_max_error_ratio() -> f64 {
    0.01
}
fn default_max_p99() -> f64 {
    0.5
}
fn default_over_stable() -> f64 {
    0.005
}
fn default_metrics_port() -> i32 {
    8080
}
fn default_metrics_path() -> String {
    "/metrics".to_string()
}

/// Where a canary rollout stands (`status.rollout`). The operator resumes from it after a
/// restart. Every field is written on each change (`null` when not known), so a merge patch of
/// the status never leaves a value of an earlier step behind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `Stable` (nothing to roll out), `Analysing` (a canary runs), `Promoted` (the canary's
    /// template became the stable one) or `RolledBack` (the canary was removed).
    #[serde(default)]
    pub phase: String,
    /// The current step, counted from 1 (while `Analysing`).
    #[serde(default)]
    pub step: Option<i32>,
    /// The current step's weight in percent (while `Analysing`).
    #[serde(default)]
    pub weight: Option<i32>,
    /// Pods of the canary Deployment at this step.
    #[serde(default)]
    pub canary_replicas: Option<i32>,
    /// When the current step started (moved on by the time `spec.paused` froze it).
    #[serde(default)]
    pub step_started_at: Option<Time>,
    /// When `spec.paused` froze the current step; the step's clock resumes where it stopped.
    #[serde(default)]
    pub paused_at: Option<Time>,
    /// Hash of the pod template the stable Deployment runs.
    #[serde(default)]
    pub stable_revision: Option<String>,
    /// Hash of the pod template under analysis (or promoted, or rolled back).
    #[serde(default)]
    pub canary_revision: Option<String>,
    /// Canary error ratio (5xx / all) measured over the current step so far.
    #[serde(default)]
    pub canary_error_ratio: Option<f64>,
    /// Stable pods' error ratio over the same time.
    #[serde(default)]
    pub stable_error_ratio: Option<f64>,
    /// Canary p99 latency in seconds over the current step so far.
    #[serde(default)]
    pub canary_p99_seconds: Option<f64>,
    /// Requests the canary pods served during the current step so far.
    #[serde(default)]
    pub canary_requests: Option<i64>,
    /// The last decision: `SetWeight`, `Wait`, `Promote` or `RollBack`.
    #[serde(default)]
    pub decision: Option<String>,
    /// The decision or the wait in words (for `RolledBack`: why).
    #[serde(default)]
    pub message: Option<String>,
}
