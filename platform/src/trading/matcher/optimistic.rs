//! The optimistic batch: plan from memory first, then check and write.
//!
//! The full path ([`Matcher::run_batch`]) reads before it plans: lock the symbols, read the
//! submitting accounts' versions, look the idempotency keys up, then lock the changed accounts.
//! Each of those is a round trip that the one matcher waits for, and a batch's latency is its
//! throughput limit. In steady state, though, the matcher already holds everything those reads
//! return: the book is at the stored sequence, the accounts are at their stored versions (no
//! other writer changes them while this replica owns their symbols), the new orders' keys are
//! new. So this path plans first, from memory, and then sends one statement that locks what the
//! plan read and changed, checks it against the plan and writes only if none of it moved
//! ([`crate::store::matching::Expect`]): BEGIN, that write, COMMIT.
//!
//! When something did move, nothing is written and [`MatchTx::guard`] (under the same locks)
//! says what. Accounts moved (another replica's matcher traded them on a symbol it owns, an
//! admin deposit): they are already locked, so they are read again and the batch is planned
//! again in the same transaction, as the full path would. A lease or a book moved: the plan is
//! dropped from the engine unwritten and the full path runs in the same transaction, under the
//! locks already taken. A new order's idempotency key is taken for new; when it is a client's
//! retry of an order committed earlier, the unique constraint fails the write (nothing is
//! written) and the batch's next attempt takes the full path, which looks the keys up
//! ([`MatchTx::guard`] says why the guard does not).
//!
//! Every assumption the plan makes is checked under a lock by the guard, so this path can only
//! be slower than the full one, never different: the symbol rows (sequence, market-data
//! sequence, status, last trade) equal the cached ones and the engine is at that sequence, every
//! account read or changed exists at the cached version, and no key is taken (the constraint).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use tradeplane_engine::Engine;
use tradeplane_engine::engine::Batch;

use super::{Committed, Link, Matcher, fence, id_u64, timed};
use crate::store::matching::{Expect, MatchError, MatchTx};
use crate::trading::Request;
use crate::trading::batch::{Loaded, Plan};

/// How many order ids are fetched from the sequence at a time for optimistic batches (one extra
/// round trip per this many orders; ids left unused when the process stops are skipped, as a
/// sequence's are anyway).
const ID_BLOCK: usize = 512;

/// What the optimistic attempt did.
pub(super) enum Attempt {
    /// Committed.
    Done(Box<Committed>),
    /// Not tried, or something had moved: run the full path in this transaction.
    Full(MatchTx),
}

impl Matcher {
    /// Plans `requests` from memory and commits them if [`MatchTx::guard`] finds nothing moved;
    /// see the module documentation.
    pub(super) async fn optimistic(
        &mut self,
        mut tx: MatchTx,
        requests: &[&Request],
    ) -> Result<Attempt, MatchError> {
        let full = std::mem::take(&mut self.full_next);
        let Some(symbols) = self.plannable(requests).filter(|_| !full) else {
            self.metrics
                .optimistic
                .with_label_values(&["skipped"])
                .inc();
            return Ok(Attempt::Full(tx));
        };
        let postgres = self.pool.is_postgres();
        let limit = self.db_timeout;
        let places = requests
            .iter()
            .filter(|r| matches!(r, Request::Place { .. }))
            .count();
        if self.order_ids.len() < places {
            self.forget_sqlite_ids();
            let more = timed(postgres, limit, tx.allocate_order_ids(places.max(ID_BLOCK))).await?;
            self.order_ids.extend(more);
        }
        let takers: BTreeSet<i64> = requests.iter().filter_map(|r| r.account()).collect();
        let rows: BTreeMap<String, _> = symbols
            .iter()
            .filter_map(|(s, _)| Some((s.clone(), self.symbol_rows.get(s)?.clone())))
            .collect();
        let leased = self
            .ownership
            .is_leased()
            .then(|| self.ownership.me().id.clone());
        let now = chrono::Utc::now();
        let existing = HashMap::new();
        let loaded = || Loaded {
            existing: &existing,
            missing: &|_| false,
            symbols: rows.clone(),
            approval_timeout: self.approval_timeout,
        };
        let (mut batch, mut plan, mut used) = plan_batch(
            &mut self.engine,
            requests,
            loaded(),
            &self.order_ids,
            &self.origin,
            now,
        );
        let mut lock = lock_set(&plan, takers.iter().copied());
        plan.writes.fence = fence(leased.as_deref(), &symbols);
        // First the write with its guard in the same statement: BEGIN, this, COMMIT.
        let planned: Vec<(i64, i64)> = lock
            .iter()
            .filter_map(|id| Some((*id, *self.versions.get(id)?)))
            .collect();
        let written = if planned.len() == lock.len() {
            let expect = Expect {
                symbols: &symbols,
                owner: leased.as_deref(),
                rows: &rows,
                versions: &planned,
            };
            match timed(
                postgres,
                limit,
                tx.write_guarded(&plan.writes, now, &expect),
            )
            .await
            {
                Ok(written) => written,
                Err(e) => {
                    // Most likely a retried `client_order_id` (the unique constraint refused
                    // the write): the next attempt takes the full path, which looks keys up.
                    drop(batch);
                    self.full_next = true;
                    self.forget_sqlite_ids();
                    return Err(e);
                }
            }
        } else {
            false
        };
        let mut rounds = 0;
        let locked: BTreeMap<i64, i64> = if written {
            planned.into_iter().collect()
        } else {
            // Something moved; the locks are held. Ask what, under them.
            let guarded = match timed(
                postgres,
                limit,
                tx.guard(&symbols, leased.as_deref(), &lock),
            )
            .await
            {
                Ok(g) => g,
                Err(e) => {
                    drop(batch);
                    return Err(e);
                }
            };
            if guarded.symbols != rows || lock.iter().any(|id| !guarded.versions.contains_key(id)) {
                // A lease or a book moved, or an account is gone: the full path sorts that out.
                drop(batch);
                for (symbol, row) in &rows {
                    if guarded.symbols.get(symbol) != Some(row) {
                        self.symbol_rows.remove(symbol);
                    }
                }
                self.metrics.optimistic.with_label_values(&["missed"]).inc();
                return Ok(Attempt::Full(tx));
            }
            // Accounts another writer changed (another replica's matcher traded them on a symbol it
            // owns, an admin deposit): they are locked now, so read them again and plan again, as
            // the full path does; accounts the new plan adds are locked in turn.
            let mut locked = guarded.versions;
            loop {
                let moved: Vec<i64> = lock
                    .iter()
                    .copied()
                    .filter(|id| locked.get(id) != self.versions.get(id))
                    .collect();
                if moved.is_empty() {
                    break;
                }
                drop(batch);
                rounds += 1;
                if rounds > super::MAX_REPLANS {
                    self.metrics.optimistic.with_label_values(&["missed"]).inc();
                    return Ok(Attempt::Full(tx));
                }
                self.metrics
                    .batch_retries
                    .with_label_values(&["replan"])
                    .inc();
                let present = super::refresh_accounts(
                    &mut self.engine,
                    &mut self.versions,
                    &mut tx,
                    &moved,
                    (postgres, limit),
                )
                .await?;
                if present.len() != moved.len() {
                    self.metrics.optimistic.with_label_values(&["missed"]).inc();
                    return Ok(Attempt::Full(tx));
                }
                (batch, plan, used) = plan_batch(
                    &mut self.engine,
                    requests,
                    loaded(),
                    &self.order_ids,
                    &self.origin,
                    now,
                );
                lock = lock_set(&plan, takers.iter().copied());
                let new: Vec<i64> = lock
                    .iter()
                    .copied()
                    .filter(|id| !locked.contains_key(id))
                    .collect();
                if !new.is_empty() {
                    match timed(postgres, limit, tx.lock_accounts(&new)).await {
                        Ok(more) => locked.extend(more),
                        Err(e) => {
                            drop(batch);
                            return Err(e);
                        }
                    }
                    if new.iter().any(|id| !locked.contains_key(id)) {
                        drop(batch);
                        self.metrics.optimistic.with_label_values(&["missed"]).inc();
                        return Ok(Attempt::Full(tx));
                    }
                }
            }
            plan.writes.fence = fence(leased.as_deref(), &symbols);
            if let Err(e) = timed(postgres, limit, tx.write(&plan.writes, now)).await {
                drop(batch);
                self.full_next = true;
                self.forget_sqlite_ids();
                return Err(e);
            }
            locked
        };
        let statements = tx.statements() + 1;
        let committed = Link {
            pool: &mut self.pool,
            rx: &mut self.rx,
            down: &self.down,
            metrics: &self.metrics,
            db_timeout: self.db_timeout,
        }
        .commit(tx)
        .await;
        if let Err(e) = committed {
            batch.rollback();
            return Err(e);
        }
        batch.commit();
        self.order_ids.drain(..used);
        for id in &lock {
            if let Some(v) = locked.get(id) {
                let bumped = plan.writes.accounts.contains_key(id);
                self.versions.insert(*id, if bumped { v + 1 } else { *v });
            }
        }
        self.remember_symbols(&plan);
        let outcome = match (written, rounds) {
            (true, _) => "hit",
            (false, 0) => "guarded",
            (false, _) => "replanned",
        };
        self.metrics.optimistic.with_label_values(&[outcome]).inc();
        Ok(Attempt::Done(Box::new(Committed { plan, statements })))
    }

    /// The batch's symbols with their fencing tokens when the batch can be planned from memory:
    /// every symbol this replica's and cached at the engine's sequence, every submitting
    /// account cached.
    fn plannable(&self, requests: &[&Request]) -> Option<Vec<(String, i64)>> {
        if !self.symbols_created {
            return None;
        }
        let mut symbols = BTreeMap::new();
        for r in requests {
            let symbol = r.symbol();
            if self.engine.instrument(symbol).is_none() {
                continue;
            }
            let token = self.ownership.token(symbol)?;
            let row = self.symbol_rows.get(symbol)?;
            if self.engine.seq(symbol) != Some(id_u64(row.seq)) {
                return None;
            }
            symbols.insert(symbol.to_owned(), token);
            if let Some(account) = r.account() {
                self.versions.get(&account)?;
            }
        }
        Some(symbols.into_iter().collect())
    }

    /// Drops the queued order ids on SQLite, where they were allocated after the highest stored
    /// id: after a write that failed (possibly on one of them) or a full-path batch (which
    /// allocated its own) they may be taken, and a new block would start where the queue does.
    /// PostgreSQL's come from a sequence and stay valid.
    pub(super) fn forget_sqlite_ids(&mut self) {
        if !self.pool.is_postgres() {
            self.order_ids.clear();
        }
    }

    /// Keeps the symbols' rows as a committed batch left them, for the next optimistic plan.
    pub(super) fn remember_symbols(&mut self, plan: &Plan) {
        for (symbol, row) in &plan.writes.symbols {
            self.symbol_rows.insert(symbol.clone(), row.clone());
        }
    }
}

/// Plans `requests` over a new engine batch with ids from `ids` (in order); returns the batch,
/// the plan and how many ids it used.
fn plan_batch<'e>(
    engine: &'e mut Engine,
    requests: &[&Request],
    loaded: Loaded<'_>,
    ids: &VecDeque<i64>,
    origin: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> (Batch<'e>, Plan, usize) {
    let mut batch = engine.begin_batch();
    let mut next = ids.iter().copied();
    let plan = Plan::build(&mut batch, requests, loaded, &mut next, origin, now);
    let used = ids.len() - next.len();
    (batch, plan, used)
}

/// Every account a plan reads or changes, sorted: the submitting accounts and the changed ones.
pub(super) fn lock_set(plan: &Plan, takers: impl IntoIterator<Item = i64>) -> Vec<i64> {
    plan.writes
        .accounts
        .keys()
        .copied()
        .chain(takers)
        .collect::<BTreeSet<i64>>()
        .into_iter()
        .collect()
}
