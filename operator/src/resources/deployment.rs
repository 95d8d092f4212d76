//! Deployment of the platform pods: probes, graceful drain, restricted security, placement.
//!
//! With `spec.backup.archive.enabled` (and backups in `storage.s3`) the platform container also
//! gets the point-in-time archiving settings ([`archive_env`]): `ARCHIVE_DEST`, the bucket the
//! backup Job writes to, its intervals, and the same `AWS_*` variables as the backup Job
//! ([`super::backup::s3_env`]). They are plain env vars of the pod template, so changing them
//! rolls the pods like any other template change. The migration Job does not get them: it
//! ships nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    LocalObjectReference, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecurityContext, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    BuildError, COMPONENT_PLATFORM, CONFIG_CHECKSUM_ANNOTATION, HTTP_PORT, HTTP_PORT_NAME, Parent,
};
use crate::crd::{AntiAffinity, ProbeTuning, S3Storage, SecretKeyRef, TradingPlatformSpec};

/// Name of the platform container.
pub const CONTAINER_NAME: &str = "platform";
/// UID/GID the pods run as (the distroless `nonroot` user); `runAsNonRoot` needs a numeric user.
pub const RUN_AS_USER: i64 = 65532;
/// Seconds added to preStop sleep + drain for the termination grace period.
pub const GRACE_MARGIN_SECONDS: i64 = 10;

/// Termination grace period: long enough for the preStop pause, the drain and a margin.
pub fn termination_grace_seconds(spec: &TradingPlatformSpec) -> i64 {
    i64::from(spec.shutdown.pre_stop_sleep_seconds)
        + i64::from(spec.shutdown.drain_timeout_seconds)
        + GRACE_MARGIN_SECONDS
}

/// An env var read from a Secret key.
pub fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An env var with a literal value.
pub fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// `BACKUP_ENCRYPTION_KEY` from `spec.backupEncryptionKey`, if set: the platform container and
/// the backup Job get it the same way (backups and archived change-log segments are encrypted
/// with it).
pub fn backup_key_env(spec: &TradingPlatformSpec) -> Option<EnvVar> {
    spec.backup_encryption_key
        .as_ref()
        .map(|key| secret_env("BACKUP_ENCRYPTION_KEY", key))
}

/// The bucket the platform pods ship the change log to: `spec.backup.storage.s3` when backups
/// and `spec.backup.archive` are enabled (the CRD refuses archiving without either).
pub fn archive_storage(spec: &TradingPlatformSpec) -> Option<&S3Storage> {
    let b = &spec.backup;
    let archive = b.archive.as_ref()?;
    if !(b.enabled && archive.enabled) {
        return None;
    }
    b.storage.s3.as_ref()
}

/// The point-in-time archiving env of the platform container, empty unless [`archive_storage`]:
/// `ARCHIVE_DEST` (exactly the backup Job's `--dest`, `s3://bucket[/prefix]`),
/// `ARCHIVE_INTERVAL_SECONDS`, `ARCHIVE_MARK_INTERVAL_MS` and the bucket's `AWS_*` settings as
/// the backup Job gets them. `BACKUP_ENCRYPTION_KEY` is already among the platform's secrets
/// ([`platform_secret_env`]).
pub fn archive_env(spec: &TradingPlatformSpec) -> Vec<EnvVar> {
    let (Some(s3), Some(archive)) = (archive_storage(spec), spec.backup.archive.as_ref()) else {
        return Vec::new();
    };
    let mut env = vec![
        plain_env("ARCHIVE_DEST", &super::backup::destination(spec)),
        plain_env(
            "ARCHIVE_INTERVAL_SECONDS",
            &archive.interval_seconds.to_string(),
        ),
        plain_env(
            "ARCHIVE_MARK_INTERVAL_MS",
            &archive.mark_interval_ms.to_string(),
        ),
    ];
    env.extend(super::backup::s3_env(s3));
    env
}

/// `envFrom` entry loading the platform ConfigMap.
pub fn config_env_from(parent: &Parent) -> EnvFromSource {
    EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: parent.config_map_name(),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

/// Restricted-profile container security context (no shell needed, nothing writable but /tmp).
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// Restricted-profile pod security context.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}

/// The writable `/tmp` (the root filesystem is read-only).
pub fn tmp_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("256Mi".to_string())),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".to_string(),
            mount_path: "/tmp".to_string(),
            ..Default::default()
        },
    )
}

/// Secret env vars of the platform (database, JWT, optional Redis and backup key).
pub fn platform_secret_env(spec: &TradingPlatformSpec) -> Vec<EnvVar> {
    let mut env = vec![
        secret_env("DATABASE_URL", &spec.database),
        secret_env("JWT_SECRET", &spec.jwt_secret),
    ];
    if let Some(redis) = &spec.redis {
        env.push(secret_env("REDIS_URL", redis));
    }
    env.extend(backup_key_env(spec));
    env
}

/// Name of the env var carrying the pod's IP (contract: the platform advertises
/// `$POD_IP:<port>` to the other replicas, which forward orders for the symbols it owns there).
pub const POD_IP_ENV: &str = "POD_IP";

/// `POD_IP` from the downward API (`status.podIP`).
pub fn pod_ip_env() -> EnvVar {
    EnvVar {
        name: POD_IP_ENV.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_string()),
                field_path: "status.podIP".to_string(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The env of the migration Job's container: `POD_IP` first (so `spec.env` values may refer to
/// it as `$(POD_IP)`), the secrets, then `spec.env`. The platform container has the same list
/// plus [`archive_env`] before `spec.env` ([`platform_container_env`]).
pub fn platform_env(spec: &TradingPlatformSpec) -> Vec<EnvVar> {
    env_with(spec, Vec::new())
}

/// The env of the platform container: [`platform_env`] with [`archive_env`] between the secrets
/// and `spec.env`. A `spec.env` name the archiving sets too is an error (the CRD refuses it; a
/// duplicate name would make the server-side apply fail).
pub fn platform_container_env(spec: &TradingPlatformSpec) -> Result<Vec<EnvVar>, BuildError> {
    let archive = archive_env(spec);
    if let Some(e) = spec
        .env
        .iter()
        .find(|e| archive.iter().any(|a| a.name == e.name))
    {
        return Err(BuildError::Invalid(format!(
            "spec.env sets {}, which spec.backup.archive sets on the platform container",
            e.name
        )));
    }
    Ok(env_with(spec, archive))
}

fn env_with(spec: &TradingPlatformSpec, extra: Vec<EnvVar>) -> Vec<EnvVar> {
    let mut env = vec![pod_ip_env()];
    env.extend(platform_secret_env(spec));
    env.extend(extra);
    env.extend(spec.env.iter().cloned());
    env
}

/// The pod of a one-shot Job of the platform image (the migration gate, the restore): never
/// restarted, the platform's service account without its token, the restricted security
/// profile, the platform's placement and pull secrets, one container and its volumes.
pub fn one_shot_pod(
    parent_name: &str,
    spec: &TradingPlatformSpec,
    container: k8s_openapi::api::core::v1::Container,
    volumes: Vec<k8s_openapi::api::core::v1::Volume>,
) -> k8s_openapi::api::core::v1::PodSpec {
    k8s_openapi::api::core::v1::PodSpec {
        restart_policy: Some("Never".to_string()),
        service_account_name: Some(parent_name.to_owned()),
        automount_service_account_token: Some(false),
        security_context: Some(pod_security()),
        containers: vec![container],
        volumes: Some(volumes),
        node_selector: (!spec.placement.node_selector.is_empty())
            .then(|| spec.placement.node_selector.clone()),
        tolerations: (!spec.placement.tolerations.is_empty())
            .then(|| spec.placement.tolerations.clone()),
        image_pull_secrets: pull_secrets(spec),
        enable_service_links: Some(false),
        ..Default::default()
    }
}

/// Image pull secrets as local references.
pub fn pull_secrets(spec: &TradingPlatformSpec) -> Option<Vec<LocalObjectReference>> {
    (!spec.image_pull_secrets.is_empty()).then(|| {
        spec.image_pull_secrets
            .iter()
            .map(|n| LocalObjectReference { name: n.clone() })
            .collect()
    })
}

fn probe(path: &str, t: &ProbeTuning, success_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(HTTP_PORT_NAME.to_string()),
            scheme: Some("HTTP".to_string()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(t.initial_delay_seconds),
        period_seconds: Some(t.period_seconds),
        timeout_seconds: Some(t.timeout_seconds),
        failure_threshold: Some(t.failure_threshold),
        success_threshold: Some(success_threshold),
        ..Default::default()
    }
}

fn affinity(parent: &Parent, mode: AntiAffinity) -> Option<Affinity> {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(parent.selector_labels()),
            ..Default::default()
        }),
        topology_key: "kubernetes.io/hostname".to_string(),
        ..Default::default()
    };
    let anti = match mode {
        AntiAffinity::None => return None,
        AntiAffinity::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..Default::default()
        },
        AntiAffinity::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(anti),
        ..Default::default()
    })
}

/// Builds the platform Deployment. `config_checksum` is the ConfigMap checksum.
///
/// When autoscaling is enabled `replicas` is left out, so the applied object does not claim the
/// field and the HPA owns it (otherwise each apply would reset the HPA's decision).
pub fn build(
    parent: &Parent,
    spec: &TradingPlatformSpec,
    config_checksum: &str,
) -> Result<Deployment, BuildError> {
    if spec.image.trim().is_empty() {
        return Err(BuildError::Invalid("spec.image is empty".to_string()));
    }
    let env = platform_container_env(spec)?;

    let (tmp_vol, tmp_mount) = tmp_volume();
    let lifecycle = (spec.shutdown.pre_stop_sleep_seconds > 0).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: i64::from(spec.shutdown.pre_stop_sleep_seconds),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });

    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().to_string()),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.to_string()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        env: Some(env),
        env_from: Some(vec![config_env_from(parent)]),
        resources: Some(spec.resources.clone()),
        startup_probe: Some(probe("/health/startup", &spec.probes.startup, 1)),
        liveness_probe: Some(probe("/health/live", &spec.probes.liveness, 1)),
        readiness_probe: Some(probe(
            "/health/ready",
            &spec.probes.readiness,
            spec.probes.readiness.success_threshold,
        )),
        lifecycle,
        security_context: Some(container_security()),
        volume_mounts: Some(vec![tmp_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Default::default()
    };

    let mut annotations: BTreeMap<String, String> = spec.pod_annotations.clone();
    annotations.insert(
        CONFIG_CHECKSUM_ANNOTATION.to_string(),
        config_checksum.to_string(),
    );
    let mut pod_labels = parent.labels(COMPONENT_PLATFORM);
    pod_labels.extend(parent.selector_labels());

    let ts = &spec.placement.topology_spread;
    let topology = ts.enabled.then(|| {
        vec![TopologySpreadConstraint {
            max_skew: ts.max_skew,
            topology_key: ts.topology_key.clone(),
            when_unsatisfiable: ts.when_unsatisfiable.as_str().to_string(),
            label_selector: Some(LabelSelector {
                match_labels: Some(parent.selector_labels()),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });

    let pod = PodSpec {
        service_account_name: Some(parent.name.clone()),
        automount_service_account_token: Some(false),
        security_context: Some(pod_security()),
        termination_grace_period_seconds: Some(termination_grace_seconds(spec)),
        containers: vec![container],
        volumes: Some(vec![tmp_vol]),
        affinity: affinity(parent, spec.placement.anti_affinity),
        topology_spread_constraints: topology,
        node_selector: (!spec.placement.node_selector.is_empty())
            .then(|| spec.placement.node_selector.clone()),
        tolerations: (!spec.placement.tolerations.is_empty())
            .then(|| spec.placement.tolerations.clone()),
        image_pull_secrets: pull_secrets(spec),
        enable_service_links: Some(false),
        ..Default::default()
    };

    Ok(Deployment {
        metadata: parent.meta(parent.name.clone(), COMPONENT_PLATFORM),
        spec: DeploymentSpec {
            replicas: (!spec.autoscaling.enabled).then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(parent.selector_labels()),
                ..Default::default()
            },
            revision_history_limit: Some(5),
            // Never below the current count during a rollout: a new pod must be ready (and able to
            // take symbol leases) before an old one stops, so some replica always owns each symbol.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".to_string())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}
