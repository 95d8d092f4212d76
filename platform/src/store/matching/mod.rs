//! The matcher's transaction: a small, fixed set of set-based statements per batch.
//!
//! A batch of N orders costs the same number of round trips whatever N is, and whatever the
//! number of trades or accounts it produces: the symbols are locked in one statement (on
//! PostgreSQL it also allocates the batch's order ids), the submitting accounts' versions read in
//! one, all idempotency keys looked up in one, every touched account locked in one (sorted, so two
//! transactions can never deadlock on accounts), and the writes sent as one statement.
//! PostgreSQL gets the rows as arrays (`UNNEST`), SQLite as JSON documents (`json_each`),
//! because SQLite has no array parameters and caps the number of bound variables. In steady
//! state the matcher skips the reads (it plans from memory, see
//! `trading/matcher/optimistic.rs`) and the write checks what the plan assumed.
//!
//! The writes are in [`write`], which sends [`write_pg`]'s one statement of data-modifying CTEs
//! (PostgreSQL) or [`write_sqlite`]'s one insert into the `batch_apply` view, whose trigger runs
//! the per-table statements inside SQLite.
//!
//! [`MatchTx::statements`] counts what was sent, for the `match_batch_statements` metric.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{ConnectOptions, PgPool, Row, SqlitePool};
use tradeplane_engine::book::RestingOrder;
use tradeplane_engine::ledger::{Account, Position};
use tradeplane_engine::num::{Cash, Price, Qty};
use tradeplane_engine::order::{AccountId, OrderId, Side};

use super::Store;
use super::audit::NewAuditEvent;
use super::market::{ORDER_COLUMNS, SYMBOL_COLUMNS, SymbolRow, order_from_row, symbol_from_row};
use super::telemetry::{Observation, Op};
use super::views::OrderView;

/// The matcher's own small pool: batches never queue behind API reads for a connection, and a
/// database outage is noticed within the short acquire timeout instead of the API's.
#[derive(Debug, Clone)]
pub enum MatchPool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// The matcher's connections plan each statement with its parameters (`plan_cache_mode =
/// force_custom_plan`). sqlx prepares a statement once per connection, and PostgreSQL would
/// otherwise switch to a generic plan after five executions and keep it until the next ANALYZE
/// of the table. On a new database that plan is made while `orders` holds a few hundred rows, and
/// it kept reading the whole table (a sequential scan, or every resting order through the
/// partial index) long after it held 25,000: measured on the benchmark, 3,000–3,200 orders/s
/// against 4,200 with fresh plans and 4,800 with a generic plan made after ANALYZE. A few
/// statements per batch pay their planning, which is small next to the risk.
fn pg_matcher_pool(options: PgConnectOptions, acquire_timeout: Duration) -> PgPool {
    let options = options.options([("plan_cache_mode", "force_custom_plan")]);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(acquire_timeout)
        // A broken connection fails the batch's first statement, and the matcher then starts
        // over on a fresh pool; pinging before every batch would cost a round trip per batch.
        .test_before_acquire(false)
        .connect_lazy_with(options)
}

/// What happened to a transaction whose COMMIT got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// It committed: its effects are durable.
    Committed,
    /// It did not commit, and never will.
    Aborted,
}

impl Store {
    /// A pool for the matcher: at most two connections (one for batches, one to find out what a
    /// lost COMMIT did), `acquire_timeout` to connect.
    pub fn matcher_pool(&self, acquire_timeout: Duration) -> MatchPool {
        match self {
            Store::Postgres(pool) => {
                let options = (*pool.connect_options()).clone();
                MatchPool::Postgres(pg_matcher_pool(
                    options.application_name("tradeplane-matcher"),
                    acquire_timeout,
                ))
            }
            Store::Sqlite(pool) => {
                let options = (*pool.connect_options()).clone();
                MatchPool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(acquire_timeout)
                        // The file is local: a ping before every batch is a hand-off to the
                        // connection's worker thread for nothing.
                        .test_before_acquire(false)
                        .connect_lazy_with(options),
                )
            }
        }
    }
}

/// A stored account without its positions, and the version it was read at.
#[derive(Debug, Clone)]
pub struct AccountHead {
    /// Account id.
    pub id: i64,
    /// Row version (bumped by a trigger on every change).
    pub version: i64,
    /// Balances and limits (positions empty).
    pub account: Account,
}

/// An order row to insert, in its final state after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderRow {
    pub id: i64,
    pub account_id: i64,
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: &'static str,
    pub order_type: &'static str,
    pub tif: &'static str,
    pub price: Option<i64>,
    pub qty: i64,
    pub filled: i64,
    pub remaining: i64,
    pub status: &'static str,
    pub cancel_reason: Option<&'static str>,
    pub priority: Option<i64>,
    /// Set when the order is held for approval (status `pending`): when it expires, what it
    /// reserved in cash and its notional (see [`held`]).
    pub approval: Option<HeldRow>,
}

/// The approval columns of a held order's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRow {
    pub expires_at: DateTime<Utc>,
    pub reserved_cash: i64,
    pub notional: i64,
}

/// The change of an order that was already resting before the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub id: i64,
    /// Quantity filled in this batch (added to the stored `filled`).
    pub filled: i64,
    /// Remaining quantity afterwards.
    pub remaining: i64,
    pub status: &'static str,
    pub cancel_reason: Option<&'static str>,
}

/// A trade row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRow {
    pub symbol: String,
    pub seq: i64,
    pub price: i64,
    pub qty: i64,
    pub taker_side: &'static str,
    pub taker_order_id: i64,
    pub maker_order_id: i64,
    pub taker_account_id: i64,
    pub maker_account_id: i64,
}

/// An account's net balance change in a batch. Cash is written as a delta: another symbol's
/// matcher may move the same account concurrently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub cash: i64,
    pub cash_reserved: i64,
    pub open_orders: i64,
}

/// Everything a batch writes, merged per row: each order, account, position and symbol appears
/// once however many fills touched it.
#[derive(Debug, Clone, Default)]
pub struct BatchWrites {
    pub new_orders: Vec<NewOrderRow>,
    pub order_changes: Vec<OrderChange>,
    pub trades: Vec<TradeRow>,
    pub accounts: BTreeMap<i64, AccountChange>,
    /// Final positions, written as absolute values: only the matcher of a symbol changes them.
    pub positions: BTreeMap<(i64, String), Position>,
    pub audits: Vec<NewAuditEvent>,
    pub symbols: BTreeMap<String, SymbolRow>,
    /// Held orders decided in this batch (approved, rejected, expired, cancelled).
    pub held_changes: Vec<HeldChange>,
    /// With leases (PostgreSQL replicas): the writing replica and the fencing token it holds
    /// for each symbol. The symbols' rows are then only updated where that lease is still
    /// held, so a batch of a replica that lost a lease fails whole, written nowhere, even if the
    /// locks that were taken first had somehow not fenced it.
    pub fence: Option<Fence>,
}

/// See [`BatchWrites::fence`].
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// The replica's lease owner id.
    pub owner: String,
    /// The fencing token of each symbol's lease.
    pub tokens: BTreeMap<String, i64>,
}

/// Why a matcher transaction failed, beyond the database's own errors.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// The database failed or refused a statement.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A row the matcher expected (a resting order, an account) was not as it remembered:
    /// another writer changed it. Nothing was committed; reload and run again.
    #[error("stored state changed under the matcher: {0}")]
    Stale(String),
    /// Stored data that cannot be right (a negative id, a malformed resting order).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database did not answer in time; nothing was committed.
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
}

fn id_u64(id: i64, what: &str) -> Result<u64, MatchError> {
    u64::try_from(id).map_err(|_| MatchError::Corrupt(format!("{what} id {id} is negative")))
}

/// One matcher transaction on either backend.
pub struct MatchTx {
    tx: Tx,
    statements: u32,
    xid: Option<String>,
    /// Order ids allocated by [`MatchTx::lock_symbols`] for [`MatchTx::allocate_order_ids`].
    reserved_ids: Vec<i64>,
}

enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection of either backend, counting
/// one statement, timed under `$op` (see [`super::telemetry`]; an error returned through `?`
/// counts as `error`: the matcher's own `MATCHER_DB_TIMEOUT_MS` cuts a batch statement long
/// before the server's statement timeout would). The body is compiled once per backend.
macro_rules! on_tx {
    ($self:ident, $op:ident, $conn:ident, pg => $pg:expr, sqlite => $sqlite:expr) => {{
        $self.statements += 1;
        let observation = Observation::start(Op::$op);
        let value = match &mut $self.tx {
            Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $pg
            }
            Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $sqlite
            }
        };
        observation.succeed();
        value
    }};
}

/// Runs `$body` with `$conn` bound to the SQLite connection, counting one statement timed under
/// `batch_write` (the SQLite side of a batch's writes, see [`write`]).
macro_rules! sqlite {
    ($self:ident, $conn:ident, $body:expr) => {{
        let Tx::Sqlite(tx) = &mut $self.tx else {
            return Err(MatchError::Corrupt(
                "an SQLite batch statement was sent on a PostgreSQL transaction".into(),
            ));
        };
        $self.statements += 1;
        let observation = Observation::start(Op::BatchWrite);
        let $conn = &mut **tx;
        let value = $body;
        observation.succeed();
        value
    }};
}

mod guard;
mod held;
pub use guard::Guarded;
pub use held::HeldChange;
pub use write_pg::Expect;

/// [`SYMBOL_COLUMNS`] qualified by a table alias (`s.symbol, s.seq, …`), for joins.
fn symbol_columns_of(alias: &str) -> String {
    SYMBOL_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_ids(ids: &[i64]) -> String {
    Value::from(ids.to_vec()).to_string()
}

impl MatchTx {
    /// Starts a transaction. SQLite's is `BEGIN IMMEDIATE`: it takes the write lock up front,
    /// so an API write committed between our reads and our writes cannot fail the batch.
    pub async fn begin(pool: &MatchPool) -> Result<MatchTx, sqlx::Error> {
        let observation = Observation::start(Op::BatchBegin);
        let tx = match pool {
            MatchPool::Postgres(p) => Tx::Postgres(p.begin().await?),
            MatchPool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        };
        observation.succeed();
        Ok(MatchTx {
            tx,
            statements: 1,
            xid: None,
            reserved_ids: Vec::new(),
        })
    }

    /// Statements sent so far, BEGIN included (COMMIT adds one).
    pub fn statements(&self) -> u32 {
        self.statements
    }

    /// The PostgreSQL transaction id, known after [`MatchTx::lock_symbols`].
    pub fn xid(&self) -> Option<&str> {
        self.xid.as_deref()
    }

    /// Locks the symbols' rows in sorted order (they serialize matching of a symbol across
    /// replicas) and, on PostgreSQL, assigns and returns the transaction id, so that a lost
    /// COMMIT reply can be resolved with [`MatchPool::commit_outcome`]. With `owner`, only the
    /// rows whose lease `owner` still holds under the given fencing token are locked and
    /// returned: a replica that lost a lease gets nothing back for that symbol and writes
    /// nothing for it.
    ///
    /// The same statement allocates `order_ids` order ids (an uncorrelated subquery, run once),
    /// which [`MatchTx::allocate_order_ids`] then hands out without a round trip of its own.
    pub async fn lock_symbols(
        &mut self,
        symbols: &[(String, i64)],
        owner: Option<&str>,
        order_ids: usize,
    ) -> Result<BTreeMap<String, SymbolRow>, sqlx::Error> {
        let mut out = BTreeMap::new();
        let names: Vec<&str> = symbols.iter().map(|s| s.0.as_str()).collect();
        let tokens: Vec<i64> = symbols.iter().map(|s| s.1).collect();
        let count = i32::try_from(order_ids).unwrap_or(i32::MAX);
        let mut reserved = Vec::new();
        let xid = on_tx!(self, BatchLock, c,
            pg => {
                let cols = symbol_columns_of("s");
                let sql = format!(
                    "SELECT {cols}, pg_current_xact_id()::text AS xid, \
                     ARRAY(SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, $4)) AS order_ids \
                     FROM symbols s \
                     JOIN UNNEST($1::text[], $2::bigint[]) AS k(symbol, token) ON s.symbol = k.symbol \
                     WHERE $3::text IS NULL OR (s.owner = $3 AND s.lease_token = k.token) \
                     ORDER BY s.symbol FOR UPDATE OF s"
                );
                let rows = sqlx::query(&sql).bind(&names).bind(&tokens).bind(owner).bind(count)
                    .fetch_all(&mut *c).await?;
                let mut xid = None;
                for r in &rows {
                    out.insert(r.try_get("symbol")?, symbol_from_row(r)?);
                    xid = Some(r.try_get::<String, _>("xid")?);
                    if reserved.is_empty() {
                        reserved = r.try_get::<Vec<i64>, _>("order_ids")?;
                    }
                }
                match xid {
                    Some(x) => Some(x),
                    None => Some(sqlx::query("SELECT pg_current_xact_id()::text").fetch_one(&mut *c).await?.try_get(0)?),
                }
            },
            sqlite => {
                let sql = format!(
                    "SELECT {SYMBOL_COLUMNS} FROM symbols WHERE symbol IN (SELECT value FROM json_each($1)) ORDER BY symbol"
                );
                let list = Value::from(names.clone()).to_string();
                for r in &sqlx::query(&sql).bind(list).fetch_all(&mut *c).await? {
                    out.insert(r.try_get("symbol")?, symbol_from_row(r)?);
                }
                None
            }
        );
        self.xid = xid;
        self.reserved_ids = reserved;
        Ok(out)
    }

    /// The accounts' balances and versions, without locking them.
    pub async fn account_heads(&mut self, ids: &[i64]) -> Result<Vec<AccountHead>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        const COLS: &str =
            "id, version, cash, cash_reserved, allow_short, max_open_orders, open_orders";
        let rows = on_tx!(self, BatchRead, c,
            pg => sqlx::query(&format!("SELECT {COLS} FROM accounts WHERE id = ANY($1)"))
                .bind(ids).fetch_all(&mut *c).await?.iter().map(head_from_row).collect::<Result<Vec<_>, _>>()?,
            sqlite => sqlx::query(&format!("SELECT {COLS} FROM accounts WHERE id IN (SELECT value FROM json_each($1))"))
                .bind(json_ids(ids)).fetch_all(&mut *c).await?.iter().map(head_from_row).collect::<Result<Vec<_>, _>>()?
        );
        Ok(rows)
    }

    /// The positions of the given accounts.
    pub async fn positions(
        &mut self,
        ids: &[i64],
    ) -> Result<Vec<(i64, String, Position)>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        const COLS: &str = "account_id, symbol, qty, reserved, cost_basis, realized_pnl";
        let rows = on_tx!(self, BatchRead, c,
            pg => sqlx::query(&format!("SELECT {COLS} FROM positions WHERE account_id = ANY($1)"))
                .bind(ids).fetch_all(&mut *c).await?.iter().map(position_from_row).collect::<Result<Vec<_>, _>>()?,
            sqlite => sqlx::query(&format!("SELECT {COLS} FROM positions WHERE account_id IN (SELECT value FROM json_each($1))"))
                .bind(json_ids(ids)).fetch_all(&mut *c).await?.iter().map(position_from_row).collect::<Result<Vec<_>, _>>()?
        );
        Ok(rows)
    }

    /// Accounts with their positions (two statements whatever their number).
    pub async fn load_accounts(&mut self, ids: &[i64]) -> Result<Vec<AccountHead>, sqlx::Error> {
        let mut heads = self.account_heads(ids).await?;
        let positions = self.positions(ids).await?;
        let index: BTreeMap<i64, usize> =
            heads.iter().enumerate().map(|(i, h)| (h.id, i)).collect();
        for (account, symbol, position) in positions {
            if let Some(&i) = index.get(&account) {
                heads[i].account.positions.insert(symbol, position);
            }
        }
        Ok(heads)
    }

    /// The orders that the given (account, client_order_id) keys already name.
    pub async fn orders_by_client_ids(
        &mut self,
        keys: &[(i64, String)],
    ) -> Result<Vec<OrderView>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let cols = ORDER_COLUMNS
            .split(", ")
            .map(|c| format!("o.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = on_tx!(self, BatchRead, c,
            pg => {
                let accounts: Vec<i64> = keys.iter().map(|k| k.0).collect();
                let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
                // One unique-index probe per key (see `guard.rs` for why not a join).
                let sql = format!(
                    "SELECT {cols} FROM UNNEST($1::bigint[], $2::text[]) AS k(account_id, client_order_id) \
                     CROSS JOIN LATERAL (SELECT * FROM orders o WHERE o.account_id = k.account_id \
                     AND o.client_order_id = k.client_order_id LIMIT 1) AS o"
                );
                sqlx::query(&sql).bind(accounts).bind(ids).fetch_all(&mut *c).await?
                    .iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?
            },
            sqlite => {
                let doc = Value::from(keys.iter().map(|k| json!([k.0, k.1])).collect::<Vec<_>>()).to_string();
                let sql = format!(
                    "SELECT {cols} FROM orders o JOIN (SELECT value->>0 AS account_id, value->>1 AS client_order_id FROM json_each($1)) AS k \
                     ON o.account_id = k.account_id AND o.client_order_id = k.client_order_id"
                );
                sqlx::query(&sql).bind(doc).fetch_all(&mut *c).await?
                    .iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?
            }
        );
        Ok(rows)
    }

    /// Allocates `n` order ids in one statement. On SQLite (one writer, the matcher) they follow
    /// the largest stored id.
    pub async fn allocate_order_ids(&mut self, n: usize) -> Result<Vec<i64>, sqlx::Error> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.reserved_ids.len() >= n {
            let rest = self.reserved_ids.split_off(n);
            return Ok(std::mem::replace(&mut self.reserved_ids, rest));
        }
        let count = i32::try_from(n).unwrap_or(i32::MAX);
        on_tx!(self, BatchRead, c,
            pg => {
                let rows = sqlx::query("SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, $1)")
                    .bind(count).fetch_all(&mut *c).await?;
                rows.iter().map(|r| r.try_get::<i64, _>(0)).collect()
            },
            sqlite => {
                let max: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM orders").fetch_one(&mut *c).await?.try_get(0)?;
                Ok((1..=i64::from(count)).map(|i| max + i).collect())
            }
        )
    }

    /// Locks every account the batch changes, in id order (so no two transactions can deadlock
    /// on them), and returns their versions.
    pub async fn lock_accounts(&mut self, ids: &[i64]) -> Result<BTreeMap<i64, i64>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        on_tx!(self, BatchLock, c,
            pg => sqlx::query("SELECT id, version FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
                .bind(ids).fetch_all(&mut *c).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect(),
            sqlite => sqlx::query("SELECT id, version FROM accounts WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id")
                .bind(json_ids(ids)).fetch_all(&mut *c).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
        )
    }
}

/// A row of `orders` as a book rebuild reads it: id, account, side, price, qty, remaining,
/// priority.
type RestingRow = (i64, i64, String, Option<i64>, i64, i64, Option<i64>);

impl MatchTx {
    /// Commits.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.statements += 1;
        let observation = Observation::start(Op::BatchCommit);
        let done = match self.tx {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        };
        observation.finish(done)
    }

    /// Creates the rows of symbols that have none yet (a new instrument).
    pub async fn ensure_symbols(&mut self, symbols: &[String]) -> Result<(), sqlx::Error> {
        on_tx!(self, BatchWrite, c,
            pg => sqlx::query("INSERT INTO symbols (symbol) SELECT * FROM UNNEST($1::text[]) ON CONFLICT (symbol) DO NOTHING")
                .bind(symbols).execute(&mut *c).await?.rows_affected(),
            sqlite => sqlx::query("INSERT INTO symbols (symbol) SELECT value FROM json_each($1) WHERE true ON CONFLICT (symbol) DO NOTHING")
                .bind(Value::from(symbols.to_vec()).to_string()).execute(&mut *c).await?.rows_affected()
        );
        Ok(())
    }

    /// A symbol's resting orders, for rebuilding its book.
    pub async fn resting_orders(&mut self, symbol: &str) -> Result<Vec<RestingOrder>, MatchError> {
        const SQL: &str = "SELECT id, account_id, side, price, qty, remaining, priority FROM orders \
                           WHERE symbol = $1 AND status IN ('new', 'partially_filled')";
        let rows: Vec<RestingRow> = on_tx!(self, BatchRead, c,
            pg => sqlx::query_as(SQL).bind(symbol).fetch_all(&mut *c).await?,
            sqlite => sqlx::query_as(SQL).bind(symbol).fetch_all(&mut *c).await?
        );
        rows.into_iter()
            .map(|(id, account, side, price, qty, remaining, priority)| {
                let bad =
                    || MatchError::Corrupt(format!("resting order {id} has no price or priority"));
                Ok(RestingOrder {
                    id: OrderId(id_u64(id, "order")?),
                    account: AccountId(id_u64(account, "account")?),
                    side: if side == "buy" { Side::Buy } else { Side::Sell },
                    price: Price::from_raw(price.ok_or_else(bad)?),
                    qty: Qty::from_raw(qty),
                    remaining: Qty::from_raw(remaining),
                    priority: id_u64(priority.ok_or_else(bad)?, "priority")?,
                })
            })
            .collect()
    }

    /// Adds units (and their cost) to a position. Returns the new quantity, or `None` when the
    /// account does not exist. The account row is touched so that its version moves.
    pub async fn credit_position(
        &mut self,
        account: i64,
        symbol: &str,
        qty: i64,
        cost: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        const TOUCH: &str = "UPDATE accounts SET cash = cash WHERE id = $1";
        const UPSERT: &str = "INSERT INTO positions (account_id, symbol, qty, cost_basis) VALUES ($1, $2, $3, $4) \
                              ON CONFLICT (account_id, symbol) DO UPDATE SET qty = positions.qty + excluded.qty, \
                              cost_basis = positions.cost_basis + excluded.cost_basis RETURNING qty";
        let touched = on_tx!(self, BatchWrite, c,
            pg => sqlx::query(TOUCH).bind(account).execute(&mut *c).await?.rows_affected(),
            sqlite => sqlx::query(TOUCH).bind(account).execute(&mut *c).await?.rows_affected()
        );
        if touched == 0 {
            return Ok(None);
        }
        let qty: i64 = on_tx!(self, BatchWrite, c,
            pg => sqlx::query(UPSERT).bind(account).bind(symbol).bind(qty).bind(cost).fetch_one(&mut *c).await?.try_get(0)?,
            sqlite => sqlx::query(UPSERT).bind(account).bind(symbol).bind(qty).bind(cost).fetch_one(&mut *c).await?.try_get(0)?
        );
        Ok(Some(qty))
    }
}

impl MatchPool {
    /// Whether the transaction `xid` committed, once it is no longer in progress; `None` while
    /// the server still runs it (a COMMIT it received but has not finished).
    pub async fn commit_outcome(&self, xid: &str) -> Result<Option<CommitOutcome>, sqlx::Error> {
        let MatchPool::Postgres(pool) = self else {
            return Ok(Some(CommitOutcome::Aborted));
        };
        let observation = Observation::start(Op::BatchRecovery);
        let row = sqlx::query("SELECT pg_xact_status($1::xid8)")
            .bind(xid)
            .fetch_one(pool)
            .await;
        let status: Option<String> = observation.finish(row)?.try_get(0)?;
        Ok(match status.as_deref() {
            Some("committed") => Some(CommitOutcome::Committed),
            Some("in progress") => None,
            // "aborted", or NULL: an id older than the commit log keeps (never for a lost
            // reply, which is resolved within seconds).
            _ => Some(CommitOutcome::Aborted),
        })
    }

    /// Opens a new connection outside the pool and closes it: how the matcher learns that
    /// the database is back (a pool would retry connecting until its own timeout).
    pub async fn probe(&self) -> Result<(), sqlx::Error> {
        match self {
            MatchPool::Postgres(p) => {
                let conn = p.connect_options().connect().await?;
                sqlx::Connection::close(conn).await
            }
            MatchPool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        }
    }

    /// The same pool with no connections: after an outage every old connection is broken.
    pub fn fresh(&self) -> MatchPool {
        match self {
            MatchPool::Postgres(p) => MatchPool::Postgres(pg_matcher_pool(
                (*p.connect_options()).clone(),
                p.options().get_acquire_timeout(),
            )),
            MatchPool::Sqlite(p) => MatchPool::Sqlite(p.clone()),
        }
    }

    /// Whether this is PostgreSQL (whose calls the matcher bounds by a timeout; SQLite's run on
    /// a local file and cannot be abandoned half-way).
    pub fn is_postgres(&self) -> bool {
        matches!(self, MatchPool::Postgres(_))
    }
}

fn head_from_row<R: Row>(row: &R) -> Result<AccountHead, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    i32: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    bool: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    let count = |v: i32| u32::try_from(v).unwrap_or(0);
    Ok(AccountHead {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        account: Account {
            cash: Cash::from_raw(i128::from(row.try_get::<i64, _>("cash")?)),
            cash_reserved: Cash::from_raw(i128::from(row.try_get::<i64, _>("cash_reserved")?)),
            positions: BTreeMap::new(),
            allow_short: row.try_get("allow_short")?,
            max_open_orders: count(row.try_get("max_open_orders")?),
            open_orders: count(row.try_get("open_orders")?),
        },
    })
}

fn position_from_row<R: Row>(row: &R) -> Result<(i64, String, Position), sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    Ok((
        row.try_get("account_id")?,
        row.try_get("symbol")?,
        Position {
            qty: Qty::from_raw(row.try_get("qty")?),
            reserved: Qty::from_raw(row.try_get("reserved")?),
            cost_basis: Cash::from_raw(i128::from(row.try_get::<i64, _>("cost_basis")?)),
            realized_pnl: Cash::from_raw(i128::from(row.try_get::<i64, _>("realized_pnl")?)),
        },
    ))
}

/// Converts an engine amount to the stored `BIGINT`; the engine's risk limits keep every
/// amount far inside it, so failing here means a limit is misconfigured.
pub fn to_i64(cash: Cash) -> Result<i64, MatchError> {
    i64::try_from(cash.raw())
        .map_err(|_| MatchError::Corrupt(format!("amount {cash} does not fit in 64 bits")))
}

mod write;
mod write_pg;
mod write_sqlite;
