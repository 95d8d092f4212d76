//! Command line of `tradeplane-operator`: `crd`, `render -f FILE`, `run` (flags per the contract).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kube::CustomResourceExt;

use crate::crd::TradingPlatform;
use crate::resources;

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "tradeplane-operator",
    version,
    about = "Kubernetes operator for Tradeplane TradingPlatform resources"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinition YAML (identical to crds/tradingplatform.yaml).
    Crd,
    /// Print every object the operator would create for a TradingPlatform, without a cluster.
    Render {
        /// TradingPlatform YAML file (`-` for stdin).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Reconcile TradingPlatform resources in the cluster.
    Run(RunArgs),
}

/// Flags of `run`; each is also an environment variable (contract).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Take a coordination.k8s.io Lease before reconciling, so only one replica acts.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "tradeplane-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (downward API); defaults to the in-cluster namespace or `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Holder identity in the Lease and event reporter instance (downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Address serving `/metrics`, `/health/live` and `/health/ready`.
    #[arg(long, env = "OPERATOR_LISTEN_ADDR", default_value = "0.0.0.0:8081")]
    pub listen_addr: SocketAddr,
    /// Seconds a watch may stay not current (failing, relisting) before `/health/live` fails and
    /// the leader steps down so a standby takes over. `/health/ready` fails at once.
    #[arg(long, env = "WATCH_STALE_SECONDS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub watch_stale_seconds: u64,
}

/// Text of the CRD, as printed by `crd` and committed in `crds/tradingplatform.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&TradingPlatform::crd())
}

/// Renders the objects for the TradingPlatform in `yaml`, as `render` prints them.
pub fn render_yaml(yaml: &str) -> Result<String, String> {
    let tp = resources::parse_trading_platform(yaml)?;
    let desired = resources::desired(&tp).map_err(|e| e.to_string())?;
    desired.to_yaml()
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &PathBuf) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}
