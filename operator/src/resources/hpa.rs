//! HorizontalPodAutoscaler (autoscaling/v2), only when `spec.autoscaling.enabled`.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget, PodsMetricSource, ResourceMetricSource,
};

use super::{COMPONENT_PLATFORM, Parent};
use crate::crd::{ScalingPolicy, TradingPlatformSpec};

/// Builds the HPA targeting the platform Deployment, or `None` when autoscaling is off.
pub fn build(parent: &Parent, spec: &TradingPlatformSpec) -> Option<HorizontalPodAutoscaler> {
    let a = &spec.autoscaling;
    if !a.enabled {
        return None;
    }
    let mut metrics = Vec::new();
    let resource = |name: &str, pct: i32| MetricSpec {
        type_: "Resource".to_string(),
        resource: Some(ResourceMetricSource {
            name: name.to_string(),
            target: MetricTarget {
                type_: "Utilization".to_string(),
                average_utilization: Some(pct),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    if let Some(cpu) = a.target_cpu_utilization_percentage {
        metrics.push(resource("cpu", cpu));
    }
    if let Some(mem) = a.target_memory_utilization_percentage {
        metrics.push(resource("memory", mem));
    }
    for m in &a.pod_metrics {
        metrics.push(MetricSpec {
            type_: "Pods".to_string(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: m.name.clone(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".to_string(),
                    average_value: Some(m.target_average_value.clone()),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    Some(HorizontalPodAutoscaler {
        metadata: parent.meta(parent.name.clone(), COMPONENT_PLATFORM),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: parent.name.clone(),
            },
            // The schema keeps min <= max; clamp anyway so a bad object never reaches the API.
            min_replicas: Some(a.min_replicas.min(a.max_replicas)),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(rules(&a.scale_up, "Max")),
                scale_down: Some(rules(&a.scale_down, "Min")),
            }),
        },
        ..Default::default()
    })
}

fn rules(p: &ScalingPolicy, select: &str) -> HPAScalingRules {
    let mut policies = Vec::new();
    if let Some(pods) = p.max_pods_per_period {
        policies.push(HPAScalingPolicy {
            type_: "Pods".to_string(),
            value: pods,
            period_seconds: p.period_seconds,
        });
    }
    if let Some(pct) = p.max_percent_per_period {
        policies.push(HPAScalingPolicy {
            type_: "Percent".to_string(),
            value: pct,
            period_seconds: p.period_seconds,
        });
    }
    HPAScalingRules {
        stabilization_window_seconds: Some(p.stabilization_window_seconds),
        select_policy: Some(select.to_string()),
        policies: Some(policies),
        ..Default::default()
    }
}
