//! `run`: logging, HTTP endpoints, leader election and the kube-runtime `Controller`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::controller::{Context, error_policy, reconcile};
use crate::crd::TradingPlatform;
use crate::http::{self, HttpState};
use crate::leader;
use crate::metrics::Metrics;
use crate::resources::{LABEL_MANAGED_BY, MANAGER};

/// Entry point of `run`: returns the process exit code.
pub fn main(args: RunArgs) -> ExitCode {
    init_tracing();
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
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("warning: logging already initialised: {e}");
    }
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
    let state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let addr = args.listen_addr;
    tokio::spawn(async move {
        if let Err(e) = http::serve(addr, state).await {
            error!(error = %e, %addr, "HTTP endpoint failed");
            std::process::exit(1);
        }
    });

    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
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
        return run_controller(client, &args.namespace, metrics, identity).await;
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
        r = run_controller(client, &args.namespace, metrics.clone(), identity) => r,
        _ = leader::lost_leadership(&mut election.is_leader) => Err(anyhow::anyhow!(
            "lost the leader Lease; exiting so that a restart rejoins the election and two replicas never act at once"
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
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

/// Runs the `Controller` until SIGTERM/ctrl-c.
async fn run_controller(
    client: Client,
    namespace: &str,
    metrics: Metrics,
    identity: String,
) -> anyhow::Result<()> {
    let ctx = Arc::new(Context::new(client.clone(), metrics, Some(identity)));
    let children = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    Controller::new(
        scoped::<TradingPlatform>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(
        scoped::<ServiceAccount>(&client, namespace),
        children.clone(),
    )
    .owns(scoped::<ConfigMap>(&client, namespace), children.clone())
    .owns(scoped::<Service>(&client, namespace), children.clone())
    .owns(scoped::<Deployment>(&client, namespace), children.clone())
    .owns(
        scoped::<HorizontalPodAutoscaler>(&client, namespace),
        children.clone(),
    )
    .owns(
        scoped::<PodDisruptionBudget>(&client, namespace),
        children.clone(),
    )
    .owns(
        scoped::<PersistentVolumeClaim>(&client, namespace),
        children.clone(),
    )
    .owns(scoped::<CronJob>(&client, namespace), children.clone())
    .owns(scoped::<Ingress>(&client, namespace), children.clone())
    .owns(scoped::<NetworkPolicy>(&client, namespace), children)
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
