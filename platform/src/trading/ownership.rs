//! Which replica matches which symbol.
//!
//! With PostgreSQL every symbol is leased to exactly one replica at a time (see
//! [`crate::store::leases`]): the lease task of each replica heartbeats into the registry, and
//! symbols are spread over the live replicas by rendezvous hashing, so each owns about the same
//! number and a join or a leave moves only the symbols it must. A replica that should no longer
//! own a symbol (another one joined, or it is shutting down) hands it over: it stops routing
//! orders for it to its own matcher, lets the matcher finish what is queued (a barrier), then
//! releases the lease so the next owner need not wait for it to expire. A replica that dies
//! holding leases loses them when they expire (`SYMBOL_LEASE_SECONDS`); its symbols then go to
//! the next winner. The lease's fencing token, checked by every batch under the symbol's row
//! lock, guarantees that a replica which lost a lease never writes for that symbol again.
//!
//! Why lease rows in PostgreSQL rather than advisory locks or `coordination.k8s.io` Leases: the
//! fence must be enforced by the database that holds the data, in the same transaction as the
//! writes; an advisory lock belongs to one connection (the matcher's pool changes connections),
//! and a Kubernetes Lease cannot stop a stale writer's SQL. The rows also carry the owners'
//! addresses, so forwarding needs no other discovery.
//!
//! With SQLite one process serves the file and owns every symbol; nothing is leased.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::leases::{self, Lease, Replica};

/// Where a symbol's commands go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This replica matches it, under the lease with this fencing token (0 without leases).
    Local(i64),
    /// Another replica does: forward to its internal endpoint at this address.
    Remote(String),
    /// Nobody right now (a handover or a failover is under way): wait for a change.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Me(i64),
    /// Being handed over: nothing new goes to the local matcher.
    Releasing,
    Other(String),
    Nobody,
}

/// The replica's view of symbol ownership; cheap to clone.
#[derive(Clone)]
pub struct Ownership {
    me: Arc<Replica>,
    leased: bool,
    owners: Arc<RwLock<HashMap<String, Owner>>>,
    changes: watch::Sender<u64>,
}

/// Settings of the lease task.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    /// How long a lease lasts without renewal (`SYMBOL_LEASE_SECONDS`).
    pub lease: Duration,
}

impl LeaseOptions {
    /// How often leases are renewed and the registry read: a sixth of the lease.
    fn tick(&self) -> Duration {
        (self.lease / 6).max(Duration::from_millis(100))
    }
}

/// The rendezvous weight of `replica` for `symbol`: the highest weight wins. A hash with a
/// fixed definition (not `std`'s, which may change between builds) so every replica agrees.
fn weight(symbol: &str, replica: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(symbol.as_bytes())
        .chain_update([0])
        .chain_update(replica.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The live replica that should own `symbol`.
pub fn winner<'a>(symbol: &str, live: &'a [Replica]) -> Option<&'a Replica> {
    live.iter()
        .max_by_key(|r| (weight(symbol, &r.id), r.id.as_str()))
}

impl Ownership {
    /// Every symbol is local (SQLite: one process serves the file).
    pub fn single(me: Replica) -> Ownership {
        Ownership {
            me: Arc::new(me),
            leased: false,
            owners: Arc::default(),
            changes: watch::channel(0).0,
        }
    }

    /// Ownership by leases (PostgreSQL); nothing is owned until [`Ownership::spawn_leases`]'
    /// task has run.
    pub fn leased(me: Replica) -> Ownership {
        Ownership {
            leased: true,
            ..Ownership::single(me)
        }
    }

    /// This replica.
    pub fn me(&self) -> &Replica {
        &self.me
    }

    /// Whether symbols are leased (several replicas may run).
    pub fn is_leased(&self) -> bool {
        self.leased
    }

    /// Where `symbol`'s commands go now.
    pub fn route(&self, symbol: &str) -> Route {
        if !self.leased {
            return Route::Local(0);
        }
        let owners = self.owners.read().unwrap_or_else(|p| p.into_inner());
        match owners.get(symbol) {
            Some(Owner::Me(token)) => Route::Local(*token),
            Some(Owner::Other(address)) => Route::Remote(address.clone()),
            _ => Route::Unknown,
        }
    }

    /// The fencing token of a symbol this replica owns (0 without leases).
    pub fn token(&self, symbol: &str) -> Option<i64> {
        match self.route(symbol) {
            Route::Local(token) => Some(token),
            _ => None,
        }
    }

    /// How many symbols this replica owns.
    pub fn owned(&self) -> usize {
        let owners = self.owners.read().unwrap_or_else(|p| p.into_inner());
        owners
            .values()
            .filter(|o| matches!(o, Owner::Me(_)))
            .count()
    }

    /// A receiver that changes whenever ownership does, to wait out a handover.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn set(&self, symbol: &str, owner: Owner) {
        let changed = {
            let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
            owners.insert(symbol.to_owned(), owner.clone()) != Some(owner)
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    fn get(&self, symbol: &str) -> Owner {
        let owners = self.owners.read().unwrap_or_else(|p| p.into_inner());
        owners.get(symbol).cloned().unwrap_or(Owner::Nobody)
    }

    /// Starts the lease task for `symbols`: heartbeats, renews, acquires what this replica
    /// should own and hands over what it should not. `barrier` resolves once the matcher has
    /// run everything queued before it. When `leaving` fires (a graceful shutdown) every lease is
    /// handed over; the task ends when `stop` fires.
    pub fn spawn_leases<B, F>(
        &self,
        pool: sqlx::PgPool,
        symbols: Vec<String>,
        options: LeaseOptions,
        barrier: B,
        leaving: CancellationToken,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()>
    where
        B: Fn() -> F + Send + Sync + 'static,
        F: std::future::Future<Output = ()> + Send,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let mut task = LeaseTask {
                ownership: this,
                pool,
                symbols,
                options,
                contenders: HashMap::new(),
                failing: None,
            };
            let mut ticks = tokio::time::interval(options.tick());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                task.round(leaving.is_cancelled(), &barrier).await;
            }
        })
    }
}

/// The state of the lease task between rounds.
struct LeaseTask {
    ownership: Ownership,
    pool: sqlx::PgPool,
    symbols: Vec<String>,
    options: LeaseOptions,
    /// Rounds in a row that another replica has been the winner of a symbol this one holds:
    /// a handover waits for two, so a replica that flickers in the registry moves nothing.
    contenders: HashMap<String, u32>,
    /// Since when rounds have failed, and whether that was said: a round fails harmlessly
    /// while the database is still being migrated at start-up.
    failing: Option<(std::time::Instant, bool)>,
}

impl LeaseTask {
    async fn round<B, F>(&mut self, leaving: bool, barrier: &B)
    where
        B: Fn() -> F,
        F: std::future::Future<Output = ()>,
    {
        match self.try_round(leaving, barrier).await {
            Err(e) => {
                let (since, said) = self
                    .failing
                    .get_or_insert((std::time::Instant::now(), false));
                if !*said && since.elapsed() >= self.options.lease {
                    tracing::warn!(error = %e, "symbol leases: the database does not answer; held leases run out");
                    *said = true;
                }
            }
            Ok(()) => {
                if let Some((_, true)) = self.failing {
                    tracing::info!("symbol leases: the database answers again");
                }
                self.failing = None;
            }
        }
    }

    async fn try_round<B, F>(&mut self, leaving: bool, barrier: &B) -> Result<(), sqlx::Error>
    where
        B: Fn() -> F,
        F: std::future::Future<Output = ()>,
    {
        let own = self.ownership.clone();
        let me = own.me().clone();
        let lease = self.options.lease;
        let (live, stored) = leases::round(&self.pool, &me, leaving, lease).await?;
        let stored: HashMap<&str, &Lease> = stored.iter().map(|l| (l.symbol.as_str(), l)).collect();
        let missing: Vec<String> = self
            .symbols
            .iter()
            .filter(|s| !stored.contains_key(s.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            leases::ensure_symbols(&self.pool, &missing).await?;
        }

        // Renew what we hold; whatever is not renewed was lost (it expired and was taken).
        let held: Vec<(String, i64)> = self
            .symbols
            .iter()
            .filter_map(|s| match own.get(s) {
                Owner::Me(token) => Some((s.clone(), token)),
                _ => None,
            })
            .collect();
        let renewed = leases::renew(&self.pool, &me.id, &held, lease).await?;
        for (symbol, _) in &held {
            if !renewed.contains(symbol) {
                tracing::warn!(
                    symbol,
                    "lost the lease of a symbol; another replica matches it now"
                );
                own.set(symbol, Owner::Nobody);
            }
        }

        let addresses: HashMap<&str, &str> = live
            .iter()
            .map(|r| (r.id.as_str(), r.address.as_str()))
            .collect();
        for symbol in &self.symbols.clone() {
            let winner = winner(symbol, &live).map(|r| r.id.as_str());
            let lease = stored.get(symbol.as_str());
            match own.get(symbol) {
                Owner::Me(token) => {
                    let contended = leaving || winner.is_some_and(|w| w != me.id);
                    let rounds = self.contenders.entry(symbol.clone()).or_default();
                    *rounds = if contended { *rounds + 1 } else { 0 };
                    if leaving || *rounds >= 2 {
                        self.hand_over(symbol, token, barrier).await?;
                    }
                }
                Owner::Releasing => {}
                _ => {
                    self.contenders.remove(symbol);
                    let free = lease.is_none_or(|l| l.owner.is_none() || !l.valid);
                    if !leaving
                        && winner == Some(me.id.as_str())
                        && free
                        && let Some(token) =
                            leases::acquire(&self.pool, &me.id, symbol, self.options.lease).await?
                    {
                        tracing::info!(symbol, token, "acquired the lease of a symbol");
                        own.set(symbol, Owner::Me(token));
                        continue;
                    }
                    let owner = lease
                        .filter(|l| l.valid)
                        .and_then(|l| l.owner.as_deref())
                        .filter(|o| *o != me.id)
                        .and_then(|o| addresses.get(o))
                        .map_or(Owner::Nobody, |a| Owner::Other((*a).to_owned()));
                    own.set(symbol, owner);
                }
            }
        }
        Ok(())
    }

    /// Stops sending `symbol` to the local matcher, lets it finish what is queued, releases.
    async fn hand_over<B, F>(
        &mut self,
        symbol: &str,
        token: i64,
        barrier: &B,
    ) -> Result<(), sqlx::Error>
    where
        B: Fn() -> F,
        F: std::future::Future<Output = ()>,
    {
        self.ownership.set(symbol, Owner::Releasing);
        barrier().await;
        let released = leases::release(&self.pool, &self.ownership.me().id, symbol, token).await;
        self.ownership.set(symbol, Owner::Nobody);
        self.contenders.remove(symbol);
        if released? {
            tracing::info!(symbol, "handed the lease of a symbol over");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(ids: &[&str]) -> Vec<Replica> {
        ids.iter()
            .map(|id| Replica {
                id: (*id).to_owned(),
                address: format!("{id}:8080"),
            })
            .collect()
    }

    #[test]
    fn symbols_spread_over_replicas_and_a_join_moves_only_its_share() {
        let symbols: Vec<String> = (0..600).map(|i| format!("S{i}")).collect();
        let two = replicas(&["a", "b"]);
        let three = replicas(&["a", "b", "c"]);
        let owner = |live: &[Replica], s: &str| winner(s, live).expect("a winner").id.clone();
        let mut counts = HashMap::new();
        let mut moved = 0;
        for s in &symbols {
            let before = owner(&two, s);
            let after = owner(&three, s);
            *counts.entry(after.clone()).or_insert(0) += 1;
            if before != after {
                assert_eq!(after, "c", "a join only takes symbols for the newcomer");
                moved += 1;
            }
        }
        for id in ["a", "b", "c"] {
            let n = counts[id];
            assert!((150..=250).contains(&n), "{id} owns {n} of 600");
        }
        assert_eq!(moved, counts["c"]);
        // The same inputs give the same answer in any order (every replica agrees).
        let reversed: Vec<Replica> = three.iter().rev().cloned().collect();
        assert!(
            symbols
                .iter()
                .all(|s| owner(&three, s) == owner(&reversed, s))
        );
        assert!(winner("S1", &[]).is_none());
    }

    #[test]
    fn single_ownership_routes_everything_locally() {
        let o = Ownership::single(Replica {
            id: "me".into(),
            address: "me:8080".into(),
        });
        assert_eq!(o.route("ANY"), Route::Local(0));
        assert_eq!(o.token("ANY"), Some(0));
        let leased = Ownership::leased(o.me().clone());
        assert_eq!(leased.route("ANY"), Route::Unknown);
        leased.set("ANY", Owner::Other("peer:8080".into()));
        assert_eq!(leased.route("ANY"), Route::Remote("peer:8080".into()));
        let rx = leased.subscribe();
        leased.set("ANY", Owner::Me(7));
        assert!(rx.has_changed().expect("open"));
        assert_eq!(leased.token("ANY"), Some(7));
        assert_eq!(leased.owned(), 1);
    }
}
