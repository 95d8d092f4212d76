//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager), so that of several
//! operator replicas only one reconciles at a time.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Lease validity in seconds; a crashed leader is replaced after at most this long.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// The holder renews this many seconds before expiry (tolerated clock skew).
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// A running election: `is_leader` turns true once this replica holds the Lease.
pub struct Election {
    /// Current leadership state.
    pub is_leader: watch::Receiver<bool>,
    /// Background task renewing the Lease; ends (returning the manager) once `is_leader` is dropped.
    pub task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Starts competing for the Lease `name` in `namespace` as `identity`.
pub async fn start(
    client: Client,
    name: &str,
    namespace: &str,
    identity: &str,
) -> kube_lease_manager::Result<Election> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .with_field_manager(format!("tradeplane-operator-lease-{identity}"))
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}

/// Waits until this replica leads. Returns false if the election task ended first.
pub async fn wait_for_leadership(rx: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *rx.borrow_and_update() {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves once leadership is lost (or the election task ended).
pub async fn lost_leadership(rx: &mut watch::Receiver<bool>) {
    loop {
        if !*rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
