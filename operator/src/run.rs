//! `run`: logging, HTTP endpoints, leader election and the kube-runtime `Controller`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::fmt::Debug;
use std::time::Duration;

use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::controller::{Context, error_policy, reconcile};
use crate::crd::TradingPlatform;
use crate::feed::WatchFeed;
use crate::http::{self, HttpState};
use crate::leader;
use crate::metrics::Metrics;
use crate::resources::{LABEL_MANAGED_BY, MANAGER};
use crate::watch::{WatchHealth, guarded};

/// `User-Agent` of every request, so audit logs tell the operator's requests apart.
pub fn user_agent() -> String {
    format!("{MANAGER}/{}", env!("CARGO_PKG_VERSION"))
}

/// Adds the operator's `User-Agent` to a client configuration.
pub fn with_user_agent(mut config: Config) -> Config {
    if let Ok(v) = axum::http::HeaderValue::from_str(&user_agent()) {
        config
            .headers
            .retain(|(k, _)| k != axum::http::header::USER_AGENT);
        config.headers.push((axum::http::header::USER_AGENT, v));
    }
    config
}

/// Entry point of `run`: returns the process exit code.
pub fn main(args: RunArgs) -> ExitCode {
    // Dropped when main returns, after the runtime: flushes the last spans.
    let _otel = init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = format!("{e:#}"), "operator failed");
            ExitCode::FAILURE
        }
    }
}

/// Logs as JSON when `LOG_FORMAT=json`, text otherwise; level from `RUST_LOG` (default info).
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, reconcile spans are exported too ([`crate::otel`]);
/// the returned guard flushes them when dropped.
pub fn init_tracing() -> Option<crate::otel::Guard> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let (otel, guard) = match crate::otel::layer() {
        Ok(Some((layer, guard))) => (Some(layer), Some(guard)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("warning: OpenTelemetry exporter: {e}; not exporting traces");
            (None, None)
        }
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer()).try_init()
    };
    if let Err(e) = result {
        eprintln!("warning: logging already initialised: {e}");
    }
    guard
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new().context("cannot register metrics")?;
    let ready = Arc::new(AtomicBool::new(false));
    let health = WatchHealth::with_metrics(metrics.clone());
    let stale_bound = Duration::from_secs(args.watch_stale_seconds);
    let state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        watches: health.clone(),
        stale_bound,
    };
    let addr = args.listen_addr;
    tokio::spawn(async move {
        if let Err(e) = http::serve(addr, state).await {
            error!(error = %e, %addr, "HTTP endpoint failed");
            std::process::exit(1);
        }
    });

    let config = Config::infer()
        .await
        .context("cannot find a Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let client =
        Client::try_from(with_user_agent(config)).context("cannot build a Kubernetes client")?;
    let probe: Api<TradingPlatform> = if args.namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &args.namespace)
    };
    probe
        .list(&ListParams::default().limit(1))
        .await
        .context("cannot list TradingPlatforms: is the CRD installed (crds/tradingplatform.yaml) and is the RBAC in place?")?;
    ready.store(true, Ordering::Relaxed);

    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("{MANAGER}-{}", std::process::id()));

    if !args.leader_election {
        warn!("leader election disabled: run only one replica");
        metrics.leader.set(1);
        return tokio::select! {
            r = run_controller(client, &args.namespace, metrics, identity, health.clone()) => r,
            w = health.wait_stale_beyond(stale_bound) => Err(anyhow::anyhow!(
                "{w}, longer than {}s; exiting so that a restart starts from a fresh list", stale_bound.as_secs()
            )),
        };
    }

    let lease_namespace = args
        .pod_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let mut election = leader::start(
        client.clone(),
        &args.lease_name,
        &lease_namespace,
        &identity,
    )
    .await
    .context("cannot start leader election")?;
    info!(lease = %args.lease_name, namespace = %lease_namespace, %identity, "waiting for the leader Lease");
    tokio::select! {
        led = leader::wait_for_leadership(&mut election.is_leader) => {
            if !led {
                anyhow::bail!("leader election task ended before acquiring the Lease");
            }
        }
        _ = shutdown_signal() => return Ok(()),
    }
    info!(%identity, "acquired the leader Lease; reconciling");
    metrics.leader.set(1);
    let result = tokio::select! {
        r = run_controller(client, &args.namespace, metrics.clone(), identity, health.clone()) => r,
        _ = leader::lost_leadership(&mut election.is_leader) => Err(anyhow::anyhow!(
            "lost the leader Lease; exiting so that a restart rejoins the election and two replicas never act at once"
        )),
        w = health.wait_stale_beyond(stale_bound) => Err(anyhow::anyhow!(
            "{w}, longer than {}s; releasing the Lease and exiting so that a standby takes over", stale_bound.as_secs()
        )),
    };
    metrics.leader.set(0);
    drop(election.is_leader);
    match election.task.await {
        Ok(Ok(manager)) => {
            if let Err(e) = manager.release().await {
                warn!(error = %e, "cannot release the Lease; it expires on its own");
            }
        }
        Ok(Err(e)) => warn!(error = %e, "lease manager ended with an error"),
        Err(e) => warn!(error = %e, "lease manager task failed"),
    }
    result
}

fn scoped<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

/// Adds a metadata-only watch of an owned kind, with its own backoff (see `watch`).
/// With `feed`, every item of the watch (a change, a relist, an error) is reported there first.
fn owns<K>(
    c: Controller<TradingPlatform>,
    client: &Client,
    namespace: &str,
    health: &WatchHealth,
    feed: &Option<Arc<WatchFeed>>,
) -> Controller<TradingPlatform>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = scoped(client, namespace);
    let cfg = watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"))
        .page_size(LIST_PAGE_SIZE);
    let stream = guarded(
        <K as k8s_openapi::Resource>::KIND,
        health.clone(),
        move || watcher(api.clone(), cfg.clone()),
    )
    .inspect({
        let feed = feed.clone();
        move |item| {
            if let Some(f) = &feed {
                f.observe(<K as k8s_openapi::Resource>::KIND, item);
            }
        }
    });
    c.owns_stream(stream.touched_objects())
}

/// Drops from a cached TradingPlatform what the reconciler never reads and a real API server
/// makes large: `managedFields` (one entry per field manager, each a tree of every field it set)
/// and kubectl's `last-applied-configuration` annotation (the whole applied object again). On a
/// real cluster these are most of an object's size, and the cache holds every TradingPlatform
/// (kube-rs's "pruning fields" advice; `scripts/bench-operator.sh` gives its objects both).
fn prune(tp: &mut TradingPlatform) {
    tp.metadata.managed_fields = None;
    if let Some(annotations) = tp.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The annotation `kubectl apply` (client-side) writes.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Objects per page of a watch's (re)list. kube-runtime's default is 500: a page of 500
/// TradingPlatforms as a real server returns them (with `managedFields` and kubectl's annotation,
/// pruned only once parsed) is several MiB of JSON and objects at once, and an API-server restart
/// relists every watch together; 100 keeps that peak small for a few more requests
/// (`scripts/bench-operator.sh` measures the relist).
pub const LIST_PAGE_SIZE: u32 = 100;

/// Reconciliations running at once (see `scripts/bench-operator.sh` for the effect at 1,000).
pub const RECONCILE_CONCURRENCY: u16 = 16;

/// The Controller with one guarded watch per kind: TradingPlatforms (full objects, cached) and
/// every owned kind (metadata only, not cached: the reconciler reads children from the API).
/// `feed` is the context's [`Context::feed`]: the watches report versions and Job events there,
/// so unchanged children are not applied again (see `crate::feed`).
pub fn build_controller(
    client: &Client,
    namespace: &str,
    health: &WatchHealth,
    feed: Option<Arc<WatchFeed>>,
) -> Controller<TradingPlatform> {
    let (reader, writer) = reflector::store();
    let api: Api<TradingPlatform> = scoped(client, namespace);
    let main = guarded("TradingPlatform", health.clone(), move || {
        watcher(
            api.clone(),
            watcher::Config::default().page_size(LIST_PAGE_SIZE),
        )
    })
    .modify(prune)
    .reflect(writer)
    .applied_objects();
    // At most RECONCILE_CONCURRENCY reconciliations at once: without a bound, a start with 1,000
    // TradingPlatforms holds 1,000 reconciliations (their desired objects and API answers) in
    // memory at the same time, for no gain against one API server.
    let mut c = Controller::for_stream(main, reader).with_config(
        kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
    );
    c = owns::<ServiceAccount>(c, client, namespace, health, &feed);
    c = owns::<ConfigMap>(c, client, namespace, health, &feed);
    c = owns::<Service>(c, client, namespace, health, &feed);
    c = owns::<Deployment>(c, client, namespace, health, &feed);
    c = owns::<HorizontalPodAutoscaler>(c, client, namespace, health, &feed);
    c = owns::<PodDisruptionBudget>(c, client, namespace, health, &feed);
    c = owns::<PersistentVolumeClaim>(c, client, namespace, health, &feed);
    c = owns::<CronJob>(c, client, namespace, health, &feed);
    // Migration and restore Jobs (owned by the TradingPlatform): their end opens the rollout
    // (or, for the restore, starts the platform).
    c = owns::<Job>(c, client, namespace, health, &feed);
    c = owns::<Ingress>(c, client, namespace, health, &feed);
    owns::<NetworkPolicy>(c, client, namespace, health, &feed)
}

/// Runs the `Controller` until SIGTERM/ctrl-c.
async fn run_controller(
    client: Client,
    namespace: &str,
    metrics: Metrics,
    identity: String,
    health: WatchHealth,
) -> anyhow::Result<()> {
    let ctx = Arc::new(Context::new(client.clone(), metrics, Some(identity)).with_watch_feed());
    build_controller(&client, namespace, &health, ctx.feed.clone())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(tp = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error (requeued)"),
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_carries_the_operator_user_agent() {
        let mut config = Config::new("https://127.0.0.1:6443".parse().expect("uri"));
        config.headers.push((
            axum::http::header::USER_AGENT,
            axum::http::HeaderValue::from_static("other"),
        ));
        let config = with_user_agent(config);
        let agents: Vec<_> = config
            .headers
            .iter()
            .filter(|(k, _)| k == axum::http::header::USER_AGENT)
            .map(|(_, v)| v.to_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            agents,
            [format!("tradeplane-operator/{}", env!("CARGO_PKG_VERSION"))]
        );
    }

    #[test]
    fn the_cache_keeps_what_the_reconciler_reads_and_drops_the_rest() {
        let mut tp: TradingPlatform = serde_json::from_value(serde_json::json!({
            "apiVersion": "tradeplane.io/v1alpha1", "kind": "TradingPlatform",
            "metadata": {"name": "tp", "namespace": "ns", "finalizers": ["f"],
                "annotations": {LAST_APPLIED: "{\"spec\": {}}", "tradeplane.io/backup-now": "1"},
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"image": "img:1", "database": {"name": "s", "key": "db"},
                "jwtSecret": {"name": "s", "key": "jwt"}}
        }))
        .expect("a TradingPlatform");
        let spec = serde_json::to_value(&tp.spec).expect("spec");
        prune(&mut tp);
        assert_eq!(tp.metadata.managed_fields, None);
        let annotations = tp.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["tradeplane.io/backup-now"]
        );
        assert_eq!(tp.metadata.finalizers, Some(vec!["f".to_string()]));
        assert_eq!(serde_json::to_value(&tp.spec).expect("spec"), spec);
    }
}
