//! The matcher task: batches commands and runs each batch in one transaction.
//!
//! A batch's life: start only the commands whose clients still wait ([`super::Ticket`]); lock
//! the symbols; refresh the accounts another writer changed (versions); look up idempotency
//! keys and allocate ids; plan everything in memory ([`super::batch::Plan`]); lock the changed
//! accounts in id order and check that none moved; write; commit. On failure:
//! - stale state (an account or order another writer changed, a constraint a concurrent
//!   replica tripped): reload and run the same commands again, nothing having been committed;
//! - the connection failed before COMMIT: run once more on a fresh connection, then declare
//!   the database down — every queued and new command is answered 503 at once — and probe it
//!   until it answers;
//! - the COMMIT got no reply: ask PostgreSQL (`pg_xact_status`) whether the transaction
//!   committed before anything else runs; the engine keeps or drops the batch accordingly, so
//!   no order is ever executed twice;
//! - anything else: run the commands one by one, so only the culprit fails.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tradeplane_engine::Engine;
use tradeplane_engine::engine::{LastTrade, MarketState};
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::AccountId;

use super::batch::{Loaded, Plan};
use super::market::MarketEvent;
use super::metrics::TradingMetrics;
use super::{Command, Done, MAX_BATCH, Refusal, Request};
use crate::store::NewAuditEvent;
use crate::store::market::{SymbolRow, status_from_str};
use crate::store::matching::{BatchWrites, CommitOutcome, Fence, MatchError, MatchPool, MatchTx};

/// How often a down database is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the matcher on a thread of its own, with a single-threaded runtime.
///
/// A batch's latency is the matcher's throughput limit (the next batch waits for the previous
/// commit), and every `await` in a batch (each SQL statement, the commit) wakes the matcher
/// again. On the shared multi-threaded runtime each wake-up queued behind the HTTP handlers'
/// tasks; on its own thread the kernel runs it as soon as its I/O completes. Measured on SQLite,
/// whose statements each wake the matcher from a worker thread, at 16 clients: +12–29 % orders/s
/// (docs/benchmarks.md); on PostgreSQL within the noise. Everything it talks to is
/// runtime-agnostic (tokio channels, sqlx connections it opens itself).
pub(super) fn spawn(matcher: Matcher) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("tradeplane-matcher")
        .build()?;
    std::thread::Builder::new()
        .name("tradeplane-matcher".into())
        .spawn(move || runtime.block_on(matcher.run()))?;
    Ok(())
}

/// Owns the engine; see the module documentation.
pub(super) struct Matcher {
    engine: Engine,
    pool: MatchPool,
    rx: mpsc::Receiver<Command>,
    events: broadcast::Sender<Arc<MarketEvent>>,
    metrics: TradingMetrics,
    origin: String,
    down: Arc<DbFlag>,
    db_timeout: Duration,
    /// The stored version of each account as the engine's copy reflects it.
    versions: HashMap<i64, i64>,
    /// Whether every instrument has its `symbols` row (checked once per process).
    symbols_created: bool,
    /// Which symbols this replica matches, and under which lease.
    ownership: super::ownership::Ownership,
    /// How long a held order waits for approval.
    approval_timeout: chrono::Duration,
    /// Each symbol's row as the last committed batch left it (see [`optimistic`]).
    symbol_rows: HashMap<String, SymbolRow>,
    /// Order ids fetched ahead for optimistic batches, in sequence order.
    order_ids: std::collections::VecDeque<i64>,
    /// Set when an optimistic write failed: the next attempt reads before it plans.
    full_next: bool,
}

mod optimistic;

/// What a committed batch produced.
struct Committed {
    plan: Plan,
    statements: u32,
}

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Another writer changed what the batch read: reload and run again.
    Stale,
    /// The database could not be reached or dropped the connection.
    Connection,
    /// Anything else: a bug or a command the database refuses.
    Other,
}

fn classify(e: &MatchError) -> Failure {
    match e {
        MatchError::Stale(_) => Failure::Stale,
        MatchError::Timeout(_) => Failure::Connection,
        MatchError::Corrupt(_) => Failure::Other,
        MatchError::Db(e) => match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Failure::Connection,
            sqlx::Error::Database(d) => {
                use sqlx::error::ErrorKind;
                let code = d.code().unwrap_or_default();
                match d.kind() {
                    // A concurrent writer won a race the batch's reads could not see.
                    ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::CheckViolation => Failure::Stale,
                    _ if code.starts_with("08")
                        || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300") =>
                    {
                        Failure::Connection
                    }
                    // Serialization failure, deadlock, SQLite busy/locked: transient.
                    _ if matches!(&*code, "40001" | "40P01" | "5" | "6" | "517") => Failure::Stale,
                    _ => Failure::Other,
                }
            }
            _ => Failure::Other,
        },
    }
}

/// Bounds a PostgreSQL call by `limit` (SQLite's run on a local file and are not cut off).
async fn timed<T, E>(
    postgres: bool,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, MatchError>
where
    MatchError: From<E>,
{
    if postgres {
        match tokio::time::timeout(limit, f).await {
            Ok(r) => r.map_err(MatchError::from),
            Err(_) => Err(MatchError::Timeout(limit)),
        }
    } else {
        f.await.map_err(MatchError::from)
    }
}

/// Whether the matcher sees its database as down, with a signal when it answers again (the
/// HTTP database breaker closes on it, so orders flow as soon as the matcher takes them).
#[derive(Default)]
pub struct DbFlag {
    down: AtomicBool,
    back: tokio::sync::Notify,
}

impl DbFlag {
    /// Whether the database is down.
    pub fn load(&self, order: Ordering) -> bool {
        self.down.load(order)
    }

    /// Sets the flag, returning the previous value; wakes [`DbFlag::back`]'s waiters when it
    /// goes from down to up.
    pub fn swap(&self, down: bool, order: Ordering) -> bool {
        let was = self.down.swap(down, order);
        if was && !down {
            self.back.notify_waiters();
        }
        was
    }

    /// Sets the flag (see [`DbFlag::swap`]).
    pub fn store(&self, down: bool, order: Ordering) {
        self.swap(down, order);
    }

    /// Resolves the next time the database comes back.
    pub async fn back(&self) {
        self.back.notified().await;
    }
}

/// Commands of a batch with their index in it.
type Indexed<'a> = Vec<(usize, &'a Request)>;

/// How often one batch is planned again in its transaction because accounts moved under it
/// (each round locks what moved, so a second round rarely finds anything new).
const MAX_REPLANS: u32 = 3;

/// Reads the heads of `ids` and loads into the engine (with positions) those whose version
/// differs from the cached one; returns the ids that exist.
async fn refresh_accounts(
    engine: &mut Engine,
    versions: &mut HashMap<i64, i64>,
    tx: &mut MatchTx,
    ids: &[i64],
    (postgres, limit): (bool, Duration),
) -> Result<HashSet<i64>, MatchError> {
    let heads = timed(postgres, limit, tx.account_heads(ids)).await?;
    let present: HashSet<i64> = heads.iter().map(|h| h.id).collect();
    let changed: Vec<i64> = heads
        .iter()
        .filter(|h| versions.get(&h.id) != Some(&h.version))
        .map(|h| h.id)
        .collect();
    if !changed.is_empty() {
        let positions = timed(postgres, limit, tx.positions(&changed)).await?;
        let mut by_account: HashMap<i64, BTreeMap<String, _>> = HashMap::new();
        for (account, symbol, position) in positions {
            by_account
                .entry(account)
                .or_default()
                .insert(symbol, position);
        }
        for head in heads.into_iter().filter(|h| changed.contains(&h.id)) {
            let mut account = head.account;
            account.positions = by_account.remove(&head.id).unwrap_or_default();
            engine.put_account(AccountId(id_u64(head.id)), account);
            versions.insert(head.id, head.version);
        }
    }
    Ok(present)
}

fn id_u64(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

impl Matcher {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        engine: Engine,
        pool: MatchPool,
        rx: mpsc::Receiver<Command>,
        events: broadcast::Sender<Arc<MarketEvent>>,
        metrics: TradingMetrics,
        origin: String,
        down: Arc<DbFlag>,
        db_timeout: Duration,
        ownership: super::ownership::Ownership,
        approval_timeout: Duration,
    ) -> Matcher {
        Matcher {
            engine,
            pool,
            rx,
            events,
            metrics,
            origin,
            down,
            db_timeout,
            versions: HashMap::new(),
            symbols_created: false,
            ownership,
            approval_timeout: chrono::Duration::from_std(approval_timeout)
                .unwrap_or(chrono::Duration::MAX),
            symbol_rows: HashMap::new(),
            order_ids: std::collections::VecDeque::new(),
            full_next: false,
        }
    }

    /// Receives commands until every sender is gone, handling them in batches.
    pub(super) async fn run(mut self) {
        loop {
            if self.down.load(Ordering::Acquire) && !self.wait_for_database().await {
                return;
            }
            let Some(first) = self.rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.handle(batch).await;
        }
    }

    /// Takes the commands whose clients still wait; answers the expired ones.
    fn start(&self, commands: Vec<Command>) -> Vec<Command> {
        let now = tokio::time::Instant::now();
        let mut live = Vec::with_capacity(commands.len());
        for c in commands {
            if now >= c.deadline {
                if c.ticket.abandon() {
                    self.metrics.commands_expired.inc();
                    let _ = c.reply.send(Err(Refusal::Expired));
                }
            } else if c.ticket.start() {
                // The wait in the queue ends here.
                let mut c = c;
                c.trace.wait = tracing::Span::none();
                live.push(c);
            } else {
                self.metrics.commands_expired.inc();
            }
        }
        live
    }

    async fn handle(&mut self, commands: Vec<Command>) {
        let commands = self.start(commands);
        // Barriers are answered after everything queued before them has run.
        let (barriers, commands): (Vec<Command>, Vec<Command>) = commands
            .into_iter()
            .partition(|c| matches!(c.request, Request::Barrier));
        // Asset credits change positions outside the engine: each runs in a transaction of its
        // own, so no order in the same transaction matches against the stale cached position.
        let (credits, orders): (Vec<Command>, Vec<Command>) = commands
            .into_iter()
            .partition(|c| matches!(c.request, Request::Credit { .. }));
        for credit in credits {
            self.execute(vec![credit]).await;
        }
        if !orders.is_empty() {
            self.execute(orders).await;
        }
        for barrier in barriers {
            let _ = barrier.reply.send(Ok(Done::Status));
        }
    }

    /// Runs commands as one batch; if that fails for a reason other than stale state or the
    /// connection, runs each alone.
    async fn execute(&mut self, mut commands: Vec<Command>) {
        use tracing::Instrument;
        // One span per batch, in the trace of its first command and linked to the others'.
        let span = match commands.first() {
            Some(first) if crate::telemetry::otel::enabled() => {
                let span = tracing::info_span!(
                    parent: &first.trace.origin,
                    "matcher.batch",
                    batch.size = commands.len(),
                    batch.statements = tracing::field::Empty,
                );
                for c in &commands[1..] {
                    crate::telemetry::otel::link(&span, &c.trace.origin);
                }
                span
            }
            _ => tracing::Span::none(),
        };
        let result = self.attempt(&mut commands).instrument(span.clone()).await;
        if let Ok(done) = &result {
            span.record("batch.statements", done.statements);
        }
        drop(span);
        match result {
            Ok(done) => self.finish(commands, done),
            Err((Failure::Other, e)) if commands.len() > 1 => {
                tracing::warn!(error = %e, size = commands.len(), "batch failed; running its commands one by one");
                for command in commands {
                    let mut one = vec![command];
                    match self.attempt(&mut one).await {
                        Ok(done) => self.finish(one, done),
                        Err((failure, e)) => self.fail(one, failure, &e),
                    }
                }
            }
            Err((failure, e)) => self.fail(commands, failure, &e),
        }
    }

    /// Runs `commands` until they commit or fail for good: stale state is reloaded and run
    /// again, a broken connection replaced once. Commands whose deadline passes meanwhile are
    /// answered 408 and dropped (nothing of theirs was committed).
    async fn attempt(
        &mut self,
        commands: &mut Vec<Command>,
    ) -> Result<Committed, (Failure, MatchError)> {
        let mut stale_retries = 0;
        let mut connection_retries = 0;
        loop {
            let started = Instant::now();
            let result = {
                let requests: Vec<&Request> = commands.iter().map(|c| &c.request).collect();
                match requests.as_slice() {
                    [credit @ Request::Credit { .. }] => self.run_credit(credit).await,
                    _ => self.run_batch(&requests).await,
                }
            };
            let e = match result {
                Ok(done) => {
                    self.metrics
                        .match_latency
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(done);
                }
                Err(e) => e,
            };
            let failure = classify(&e);
            let retry = match failure {
                Failure::Stale if stale_retries < 3 => {
                    stale_retries += 1;
                    "stale"
                }
                Failure::Connection if connection_retries < 1 => {
                    // One broken connection (a restarted server, an idle connection cut) is
                    // worth a retry on a fresh one, but only if the server answers at all: a
                    // pool would keep retrying a refused connection until its timeout.
                    connection_retries += 1;
                    let limit = self.db_timeout.min(Duration::from_millis(500));
                    self.pool = self.pool.fresh();
                    if !matches!(
                        tokio::time::timeout(limit, self.pool.probe()).await,
                        Ok(Ok(()))
                    ) {
                        return Err((failure, e));
                    }
                    "connection"
                }
                _ => return Err((failure, e)),
            };
            tracing::debug!(error = %e, reason = retry, "batch not committed; running it again");
            self.metrics.batch_retries.with_label_values(&[retry]).inc();
            let now = tokio::time::Instant::now();
            let (keep, expired): (Vec<Command>, Vec<Command>) = std::mem::take(commands)
                .into_iter()
                .partition(|c| now < c.deadline && !c.reply.is_closed());
            for c in expired {
                self.metrics.commands_expired.inc();
                let _ = c.reply.send(Err(Refusal::Expired));
            }
            *commands = keep;
            if commands.is_empty() {
                return Err((failure, e));
            }
        }
    }

    fn fail(&mut self, commands: Vec<Command>, failure: Failure, error: &MatchError) {
        let refusal = match failure {
            Failure::Connection => {
                self.mark_down(error);
                Refusal::DatabaseDown(
                    "the database is unreachable; nothing was executed, retry later".into(),
                )
            }
            Failure::Stale => {
                tracing::warn!(error = %error, "batch kept meeting concurrent changes; nothing was applied");
                Refusal::Unavailable(
                    "the order met concurrent changes of the same account too often; nothing was \
                     applied"
                        .into(),
                )
            }
            Failure::Other => {
                tracing::error!(error = %error, "command failed; nothing was applied");
                Refusal::Internal(format!("the matcher could not commit: {error}"))
            }
        };
        for command in commands {
            let _ = command.reply.send(Err(refusal.clone()));
        }
    }

    /// Declares the database down: new commands are refused by [`super::Trading`] at once, the
    /// queued ones here.
    fn mark_down(&mut self, error: &MatchError) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(error = %error, "the matcher lost its database; refusing orders until it answers");
            self.metrics.database_down.set(1);
        }
        self.pool = self.pool.fresh();
        self.refuse_queued();
    }

    fn refuse_queued(&mut self) {
        self.link().refuse_queued();
    }

    /// The parts of the matcher that talk to the database and the queue, apart from the engine
    /// (which a running batch borrows).
    fn link(&mut self) -> Link<'_> {
        Link {
            pool: &mut self.pool,
            rx: &mut self.rx,
            down: &self.down,
            metrics: &self.metrics,
            db_timeout: self.db_timeout,
        }
    }

    /// Refuses commands while probing the database; returns false when every sender is gone.
    async fn wait_for_database(&mut self) -> bool {
        let limit = self.db_timeout.min(Duration::from_millis(500));
        // A fixed cadence: commands arriving meanwhile must not postpone the next probe.
        let mut probes = tokio::time::interval(PROBE_INTERVAL);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.rx.recv() => match command {
                    Some(c) => refuse(c),
                    None => return false,
                },
                _ = probes.tick() => {
                    if let Ok(Ok(())) = tokio::time::timeout(limit, self.pool.probe()).await {
                        tracing::info!("the matcher's database answers again; accepting orders");
                        self.down.store(false, Ordering::Release);
                        self.metrics.database_down.set(0);
                        return true;
                    }
                }
            }
        }
    }

    async fn run_batch(&mut self, requests: &[&Request]) -> Result<Committed, MatchError> {
        let postgres = self.pool.is_postgres();
        let limit = self.db_timeout;
        let tx = timed(postgres, limit, MatchTx::begin(&self.pool)).await?;
        let mut tx = match self.optimistic(tx, requests).await? {
            optimistic::Attempt::Done(committed) => return Ok(*committed),
            optimistic::Attempt::Full(tx) => tx,
        };
        if !self.symbols_created {
            let all: Vec<String> = self
                .engine
                .instruments()
                .map(|i| i.symbol.clone())
                .collect();
            timed(postgres, limit, tx.ensure_symbols(&all)).await?;
        }
        // 1. Lock the symbols this replica owns, with their leases' fencing tokens (sorted, so
        // replicas never deadlock on them), and catch up.
        let symbols: Vec<(String, i64)> = requests
            .iter()
            .map(|r| r.symbol())
            .filter(|s| self.engine.instrument(s).is_some())
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .filter_map(|s| Some((s.to_owned(), self.ownership.token(s)?)))
            .collect();
        let leased = self
            .ownership
            .is_leased()
            .then(|| self.ownership.me().id.clone());
        let places = requests
            .iter()
            .filter(|r| matches!(r, Request::Place { .. }))
            .count();
        let rows = timed(
            postgres,
            limit,
            tx.lock_symbols(&symbols, leased.as_deref(), places),
        )
        .await?;
        for (symbol, row) in &rows {
            if self.engine.seq(symbol) != Some(id_u64(row.seq)) {
                timed(postgres, limit * 10, self.catch_up(&mut tx, symbol, row)).await?;
            }
        }
        // 2. The submitting accounts: reload those another writer changed.
        let takers: Vec<i64> = requests
            .iter()
            .filter_map(|r| r.account())
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect();
        let present = refresh_accounts(
            &mut self.engine,
            &mut self.versions,
            &mut tx,
            &takers,
            (postgres, limit),
        )
        .await?;
        // 3. Idempotency keys and order ids, one statement each.
        let mut keys: Vec<(i64, String)> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Place { account, order, .. } if present.contains(account) => order
                    .client_order_id
                    .as_ref()
                    .map(|k| (*account, k.clone())),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        let existing: HashMap<(i64, String), _> =
            timed(postgres, limit, tx.orders_by_client_ids(&keys))
                .await?
                .into_iter()
                .filter_map(|o| {
                    let key = o.client_order_id.clone()?;
                    Some(((o.account_id, key), o))
                })
                .collect();
        // On PostgreSQL the ids came with the symbol lock; this sends nothing there.
        let ids = timed(postgres, limit, tx.allocate_order_ids(places)).await?;

        // 4. Match in memory what this replica still owns; the rest goes back to be routed.
        let (mine, others): (Indexed, Indexed) =
            requests.iter().copied().enumerate().partition(|(_, r)| {
                self.engine.instrument(r.symbol()).is_none() || rows.contains_key(r.symbol())
            });
        let requests: Vec<&Request> = mine.iter().map(|(_, r)| *r).collect();
        let requests = requests.as_slice();
        let now = chrono::Utc::now();
        let missing = |a: i64| !present.contains(&a);
        let Matcher {
            engine,
            origin,
            versions,
            pool,
            rx,
            down,
            metrics,
            db_timeout,
            approval_timeout,
            ..
        } = self;
        // 5. Lock what changes, in id order, and check nobody moved it since it was loaded.
        // Accounts that did move (another replica's matcher changed them: makers are never
        // reloaded up front) are read again under the lock just taken, where they can no longer
        // move, and the batch is planned again in the same transaction.
        let mut rounds = 0;
        let (batch, mut plan, lock, locked) = loop {
            let mut batch = engine.begin_batch();
            let plan = Plan::build(
                &mut batch,
                requests,
                Loaded {
                    existing: &existing,
                    missing: &missing,
                    symbols: rows.clone(),
                    approval_timeout: *approval_timeout,
                },
                &mut ids.iter().copied(),
                origin,
                now,
            );
            let lock = optimistic::lock_set(&plan, present.iter().copied());
            let locked = timed(postgres, limit, tx.lock_accounts(&lock)).await?;
            let moved: Vec<i64> = lock
                .iter()
                .copied()
                .filter(|id| !locked.contains_key(id) || versions.get(id) != locked.get(id))
                .collect();
            if moved.is_empty() {
                break (batch, plan, lock, locked);
            }
            drop(batch);
            for id in &moved {
                versions.remove(id);
            }
            rounds += 1;
            if rounds > MAX_REPLANS || moved.iter().any(|id| !locked.contains_key(id)) {
                return Err(MatchError::Stale(format!(
                    "accounts {moved:?} changed since they were loaded"
                )));
            }
            metrics.batch_retries.with_label_values(&["replan"]).inc();
            refresh_accounts(engine, versions, &mut tx, &moved, (postgres, limit)).await?;
        };
        plan.writes.fence = fence(leased.as_deref(), &symbols);
        if let Err(e) = timed(postgres, limit, tx.write(&plan.writes, now)).await {
            drop(batch);
            return Err(e);
        }
        let statements = tx.statements() + 1;

        // 6. Commit; only then does the engine keep the batch (a lost reply is resolved first).
        let committed = Link {
            pool,
            rx,
            down,
            metrics,
            db_timeout: *db_timeout,
        }
        .commit(tx)
        .await;
        match committed {
            Ok(()) => batch.commit(),
            Err(e) => {
                batch.rollback();
                return Err(e);
            }
        }
        for id in &lock {
            if let Some(v) = locked.get(id) {
                let bumped = plan.writes.accounts.contains_key(id);
                self.versions.insert(*id, if bumped { v + 1 } else { *v });
            }
        }
        self.symbols_created = true;
        self.remember_symbols(&plan);
        if places > 0 {
            self.forget_sqlite_ids();
        }
        if !others.is_empty() {
            // Put the replies back in the batch's order, the not-owned commands refused.
            let mut merged: Vec<super::Reply> = (0..mine.len() + others.len())
                .map(|_| Err(Refusal::NotOwner))
                .collect();
            for ((index, _), reply) in mine.iter().zip(plan.replies.drain(..)) {
                merged[*index] = reply;
            }
            plan.replies = merged;
        }
        Ok(Committed { plan, statements })
    }

    /// An asset deposit, in a transaction of its own; the account is then reloaded.
    async fn run_credit(&mut self, request: &Request) -> Result<Committed, MatchError> {
        let Request::Credit {
            account,
            symbol,
            qty,
            cost,
            actor,
            request_id,
        } = request
        else {
            return Err(MatchError::Corrupt("not a credit".into()));
        };
        let postgres = self.pool.is_postgres();
        let limit = self.db_timeout;
        let mut plan = Plan::default();
        let mut tx = timed(postgres, limit, MatchTx::begin(&self.pool)).await?;
        timed(
            postgres,
            limit,
            tx.ensure_symbols(std::slice::from_ref(symbol)),
        )
        .await?;
        let leased = self
            .ownership
            .is_leased()
            .then(|| self.ownership.me().id.clone());
        let locked = match self.ownership.token(symbol) {
            Some(token) => {
                let wanted = [(symbol.clone(), token)];
                timed(
                    postgres,
                    limit,
                    tx.lock_symbols(&wanted, leased.as_deref(), 0),
                )
                .await?
            }
            None => BTreeMap::new(),
        };
        if locked.is_empty() {
            plan.replies.push(Err(Refusal::NotOwner));
            return Ok(Committed {
                plan,
                statements: tx.statements(),
            });
        }
        let cost_total = tradeplane_engine::num::notional(*cost, *qty);
        let current = timed(postgres, limit, tx.positions(&[*account]))
            .await?
            .into_iter()
            .find(|(_, s, _)| s == symbol)
            .map(|(_, _, p)| p)
            .unwrap_or_default();
        let fits = i64::try_from(cost_total.raw())
            .ok()
            .and_then(|c| {
                i64::try_from(current.cost_basis.raw())
                    .ok()?
                    .checked_add(c)
                    .map(|_| c)
            })
            .filter(|_| current.qty.raw().checked_add(qty.raw()).is_some());
        let Some(cost_total) = fits else {
            plan.replies.push(Err(Refusal::Rule {
                code: "amountTooLarge",
                message: format!(
                    "crediting {qty} {symbol} at {cost} would overflow the account's position"
                ),
            }));
            return Ok(Committed {
                plan,
                statements: tx.statements(),
            });
        };
        let credited = timed(
            postgres,
            limit,
            tx.credit_position(*account, symbol, qty.raw(), cost_total),
        )
        .await?;
        let Some(new_qty) = credited else {
            plan.replies
                .push(Err(Refusal::NotFound(format!("no account {account}"))));
            return Ok(Committed {
                plan,
                statements: tx.statements(),
            });
        };
        let writes = BatchWrites {
            audits: vec![NewAuditEvent {
                actor: actor.clone(),
                action: "account.deposit".into(),
                subject: Some(format!("account:{account}")),
                request_id: request_id.clone(),
                details: serde_json::json!({ "symbol": symbol, "qty": qty, "cost": cost }),
            }],
            ..BatchWrites::default()
        };
        timed(postgres, limit, tx.write(&writes, chrono::Utc::now())).await?;
        let reloaded = timed(postgres, limit, tx.load_accounts(&[*account])).await?;
        let statements = tx.statements() + 1;
        self.link().commit(tx).await?;
        for head in reloaded {
            self.engine
                .put_account(AccountId(id_u64(head.id)), head.account);
            self.versions.insert(head.id, head.version);
        }
        plan.replies
            .push(Ok(Done::Credited(Qty::from_raw(new_qty))));
        Ok(Committed { plan, statements })
    }

    fn finish(&self, commands: Vec<Command>, done: Committed) {
        let Committed { plan, statements } = done;
        self.metrics.batch_size.observe(commands.len() as f64);
        self.metrics.batch_statements.observe(f64::from(statements));
        for (symbol, side, kind, outcome) in &plan.outcomes {
            self.metrics
                .orders
                .with_label_values(&[symbol.as_str(), side, kind, outcome])
                .inc();
        }
        for (symbol, qty) in &plan.trades {
            self.metrics.trades.with_label_values(&[symbol]).inc();
            self.metrics
                .traded_quantity
                .with_label_values(&[symbol])
                .inc_by(qty.raw() as f64 / tradeplane_engine::num::SCALE as f64);
        }
        for symbol in plan.writes.symbols.keys() {
            if let Some(book) = self.engine.book(symbol) {
                self.metrics
                    .open_orders
                    .with_label_values(&[symbol.as_str()])
                    .set(book.len() as i64);
                self.metrics
                    .approvals
                    .pending
                    .with_label_values(&[symbol.as_str()])
                    .set(self.engine.held_orders(symbol).count() as i64);
            }
        }
        self.metrics.approvals.record(&plan.approvals);
        for (command, reply) in commands.into_iter().zip(plan.replies) {
            let _ = command.reply.send(reply);
        }
        for event in plan.public {
            let _ = self.events.send(Arc::new(event));
        }
    }

    /// Rebuilds a symbol's book from the database (another replica matched since we last did).
    async fn catch_up(
        &mut self,
        tx: &mut MatchTx,
        symbol: &str,
        row: &SymbolRow,
    ) -> Result<(), MatchError> {
        let resting = tx.resting_orders(symbol).await?;
        let held = tx.held_orders(symbol).await?;
        let owners: Vec<i64> = resting
            .iter()
            .map(|o| o.account)
            .chain(held.iter().map(|h| h.order.account))
            .map(|a| i64::try_from(a.0).unwrap_or(i64::MAX))
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect();
        for head in tx.load_accounts(&owners).await? {
            self.engine
                .put_account(AccountId(id_u64(head.id)), head.account);
            self.versions.insert(head.id, head.version);
        }
        let state = MarketState {
            resting,
            seq: id_u64(row.seq),
            md_seq: id_u64(row.md_seq),
            last_trade: row.last_trade.map(|(price, qty, seq)| LastTrade {
                price: Price::from_raw(price),
                qty: Qty::from_raw(qty),
                seq: id_u64(seq),
            }),
            status: status_from_str(&row.status),
            held,
        };
        self.engine
            .restore_market(symbol, state)
            .map_err(|e| MatchError::Corrupt(format!("stored book of {symbol}: {e}")))?;
        tracing::info!(symbol, seq = row.seq, "caught up with the stored book");
        Ok(())
    }
}

/// The fence a batch's writes carry: this replica's lease owner id and its token per symbol
/// (none without leases).
fn fence(owner: Option<&str>, symbols: &[(String, i64)]) -> Option<Fence> {
    owner.map(|owner| Fence {
        owner: owner.to_owned(),
        tokens: symbols.iter().cloned().collect(),
    })
}

/// Answers a command that was queued while the database was down: not executed, 503.
fn refuse(c: Command) {
    if c.ticket.start() {
        let _ = c.reply.send(Err(Refusal::DatabaseDown(
            "the database is unreachable; nothing was executed, retry later".into(),
        )));
    }
}

/// The matcher's connection to the database and its queue, borrowed apart from the engine.
struct Link<'a> {
    pool: &'a mut MatchPool,
    rx: &'a mut mpsc::Receiver<Command>,
    down: &'a DbFlag,
    metrics: &'a TradingMetrics,
    db_timeout: Duration,
}

impl Link<'_> {
    fn refuse_queued(&mut self) {
        while let Ok(c) = self.rx.try_recv() {
            refuse(c);
        }
    }

    /// Commits `tx`. When the COMMIT gets no answer, waits until PostgreSQL knows whether the
    /// transaction committed, refusing queued commands meanwhile (the database is as good as
    /// down until then): `Ok` means durable, `Err` means it never will be.
    async fn commit(&mut self, tx: MatchTx) -> Result<(), MatchError> {
        let postgres = self.pool.is_postgres();
        let Some(xid) = tx.xid().map(str::to_owned) else {
            return timed(postgres, self.db_timeout, tx.commit()).await;
        };
        let error = match timed(postgres, self.db_timeout, tx.commit()).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let limit = self.db_timeout.min(Duration::from_secs(1));
        let mut waited = false;
        loop {
            let pool = self.pool.fresh();
            match tokio::time::timeout(limit, pool.commit_outcome(&xid)).await {
                Ok(Ok(Some(outcome))) => {
                    tracing::warn!(xid, ?outcome, error = %error, "resolved a COMMIT whose reply was lost");
                    let label = match outcome {
                        CommitOutcome::Committed => "committed",
                        CommitOutcome::Aborted => "aborted",
                    };
                    self.metrics
                        .commit_resolutions
                        .with_label_values(&[label])
                        .inc();
                    *self.pool = pool;
                    if waited {
                        self.down.store(false, Ordering::Release);
                        self.metrics.database_down.set(0);
                    }
                    return match outcome {
                        CommitOutcome::Committed => Ok(()),
                        CommitOutcome::Aborted => Err(error),
                    };
                }
                Ok(Ok(None)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(Err(_)) | Err(_) => {
                    if !waited {
                        tracing::warn!(xid, error = %error, "a COMMIT's reply was lost and the database does not answer; waiting to learn its outcome");
                        waited = true;
                        self.down.store(true, Ordering::Release);
                        self.metrics.database_down.set(1);
                    }
                    self.refuse_queued();
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
            }
        }
    }
}
