//! SQL for trading: the operations the matcher runs inside its batch transaction
//! ([`TradingTx`], implemented once for both backends by a macro) and the read queries the API
//! serves from (`impl Store`).

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tradeplane_engine::book::RestingOrder;
use tradeplane_engine::events::{BalanceChange, Trade};
use tradeplane_engine::instrument::TradingStatus;
use tradeplane_engine::ledger::{Account, Position};
use tradeplane_engine::num::{Cash, Price, Qty};
use tradeplane_engine::order::{AccountId, OrderId, Side};

use super::views::{FillView, OrderView, TradeView};
use crate::store::{NewAuditEvent, Store, with_pool};

/// The stored state of a symbol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolRow {
    /// Last event sequence number.
    pub seq: i64,
    /// Last market-data sequence number.
    pub md_seq: i64,
    /// `open` or `halted`.
    pub status: String,
    /// Last trade price, quantity and sequence.
    pub last_trade: Option<(i64, i64, i64)>,
}

/// A new order row, before the engine has seen it.
#[derive(Debug, Clone)]
pub struct PendingOrder<'a> {
    pub account: i64,
    pub client_order_id: Option<&'a str>,
    pub symbol: &'a str,
    pub side: &'static str,
    pub order_type: &'static str,
    pub tif: &'static str,
    pub price: Option<i64>,
    pub qty: i64,
    pub now: DateTime<Utc>,
}

/// An order row's new state.
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    pub id: i64,
    pub status: &'static str,
    pub filled: i64,
    pub remaining: i64,
    pub priority: Option<i64>,
    pub cancel_reason: Option<&'static str>,
    pub now: DateTime<Utc>,
}

/// A batch's net effect on one account: cash deltas summed, final positions of the symbols it
/// traded. Written once per batch instead of once per fill.
#[derive(Debug, Clone, Default)]
pub struct AccountDelta {
    pub cash: Cash,
    pub cash_reserved: Cash,
    pub open_orders: i64,
    pub positions: std::collections::BTreeMap<String, Position>,
}

impl AccountDelta {
    /// Folds one engine balance change in.
    pub fn add(&mut self, c: &BalanceChange) {
        self.cash += c.cash_delta;
        self.cash_reserved += c.cash_reserved_delta;
        self.open_orders += c.open_orders_delta;
        self.positions.insert(c.symbol.clone(), c.position);
    }
}

/// Converts an engine amount to the stored `BIGINT`, refusing what does not fit.
pub fn to_i64(cash: Cash) -> Result<i64, sqlx::Error> {
    i64::try_from(cash.raw())
        .map_err(|_| sqlx::Error::Protocol(format!("amount {cash} does not fit in 64 bits")))
}

/// `Side` as stored.
pub fn side_str(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// Everything the matcher does inside one transaction.
pub trait TradingTx: Send {
    /// Locks (creating if needed) the symbol's row; this serializes matching across replicas.
    fn lock_symbol(
        &mut self,
        symbol: &str,
    ) -> impl Future<Output = Result<SymbolRow, sqlx::Error>> + Send;
    /// Resting orders of a symbol, for rebuilding its book.
    fn resting_orders(
        &mut self,
        symbol: &str,
    ) -> impl Future<Output = Result<Vec<RestingOrder>, sqlx::Error>> + Send;
    /// An account with all its positions, locked for the rest of the transaction if `lock`.
    fn load_account(
        &mut self,
        id: i64,
        lock: bool,
    ) -> impl Future<Output = Result<Option<Account>, sqlx::Error>> + Send;
    /// The order an idempotency key already names.
    fn order_by_client_id(
        &mut self,
        account: i64,
        client_order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderView>, sqlx::Error>> + Send;
    /// An order by id.
    fn order(
        &mut self,
        id: i64,
    ) -> impl Future<Output = Result<Option<OrderView>, sqlx::Error>> + Send;
    /// Inserts an order as `pending` and returns its id (the engine's order id).
    fn insert_pending(
        &mut self,
        order: &PendingOrder<'_>,
    ) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;
    /// Removes a pending order the engine rejected.
    fn delete_pending(&mut self, id: i64) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Sets an order's state.
    fn update_order(
        &mut self,
        update: &OrderUpdate,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Records a fill of a resting (maker) order.
    fn fill_maker(
        &mut self,
        id: i64,
        qty: i64,
        remaining: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Marks a resting order cancelled (self-trade prevention, or a requested cancel).
    fn cancel_resting(
        &mut self,
        id: i64,
        reason: &'static str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Adds units (and their cost) to a position and bumps the symbol's stored sequence, so that
    /// every replica reloads the book and its owners before matching this symbol again.
    /// Returns the new quantity, or `None` if the account does not exist.
    fn credit_position(
        &mut self,
        account: i64,
        symbol: &str,
        qty: i64,
        cost: i64,
    ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send;
    /// Records a trade.
    fn insert_trade(
        &mut self,
        symbol: &str,
        seq: i64,
        trade: &Trade,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Applies an account's net change for a batch: cash as deltas (another symbol may move the
    /// same account on another replica), positions as absolute values (only this symbol's lock
    /// changes them).
    fn apply_delta(
        &mut self,
        account: i64,
        delta: &AccountDelta,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Stores a symbol's sequence numbers, status and last trade.
    fn update_symbol(
        &mut self,
        symbol: &str,
        row: &SymbolRow,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Appends audit records in one statement.
    fn audit_many(
        &mut self,
        events: &[NewAuditEvent],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Reads an [`OrderView`] from a row of `ORDER_COLUMNS`.
fn order_from_row<R: Row>(row: &R) -> Result<OrderView, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    Option<i64>: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    Option<String>: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    DateTime<Utc>: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    Ok(OrderView {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        client_order_id: row.try_get("client_order_id")?,
        symbol: row.try_get("symbol")?,
        side: row.try_get("side")?,
        order_type: row.try_get("order_type")?,
        tif: row.try_get("tif")?,
        price: row.try_get::<Option<i64>, _>("price")?.map(Price::from_raw),
        qty: Qty::from_raw(row.try_get("qty")?),
        filled: Qty::from_raw(row.try_get("filled")?),
        remaining: Qty::from_raw(row.try_get("remaining")?),
        status: row.try_get("status")?,
        cancel_reason: row.try_get("cancel_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The query of a symbol's row; a macro so that the locking variant can `concat!` to it.
macro_rules! symbol_select {
    () => {
        "SELECT seq, md_seq, status, last_price, last_qty, last_trade_seq FROM symbols WHERE symbol = $1"
    };
}
const SYMBOL_SELECT: &str = symbol_select!();

/// Reads a [`SymbolRow`] from a row of `SYMBOL_SELECT`.
fn symbol_from_row<R: Row>(row: &R) -> Result<SymbolRow, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    Option<i64>: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    let last: (Option<i64>, Option<i64>, Option<i64>) = (
        row.try_get("last_price")?,
        row.try_get("last_qty")?,
        row.try_get("last_trade_seq")?,
    );
    Ok(SymbolRow {
        seq: row.try_get("seq")?,
        md_seq: row.try_get("md_seq")?,
        status: row.try_get("status")?,
        last_trade: match last {
            (Some(p), Some(q), Some(s)) => Some((p, q, s)),
            _ => None,
        },
    })
}

const ORDER_COLUMNS: &str = "id, account_id, client_order_id, symbol, side, order_type, tif, price, qty, filled, \
                             remaining, status, cancel_reason, created_at, updated_at";

macro_rules! impl_trading_tx {
    ($db:ty, $for_update:literal) => {
        impl<'c> TradingTx for sqlx::Transaction<'c, $db> {
            async fn lock_symbol(&mut self, symbol: &str) -> Result<SymbolRow, sqlx::Error> {
                sqlx::query("INSERT INTO symbols (symbol) VALUES ($1) ON CONFLICT (symbol) DO NOTHING")
                    .bind(symbol)
                    .execute(&mut **self)
                    .await?;
                let row = sqlx::query(concat!(symbol_select!(), $for_update))
                .bind(symbol)
                .fetch_one(&mut **self)
                .await?;
                symbol_from_row(&row)
            }

            async fn resting_orders(&mut self, symbol: &str) -> Result<Vec<RestingOrder>, sqlx::Error> {
                let rows = sqlx::query(
                    "SELECT id, account_id, side, price, qty, remaining, priority FROM orders \
                     WHERE symbol = $1 AND status IN ('new', 'partially_filled')",
                )
                .bind(symbol)
                .fetch_all(&mut **self)
                .await?;
                rows.iter()
                    .map(|r| {
                        let side: String = r.try_get("side")?;
                        let id: i64 = r.try_get("id")?;
                        let bad = || sqlx::Error::Protocol(format!("resting order {id} is malformed"));
                        Ok(RestingOrder {
                            id: OrderId(u64::try_from(id).map_err(|_| bad())?),
                            account: AccountId(u64::try_from(r.try_get::<i64, _>("account_id")?).map_err(|_| bad())?),
                            side: if side == "buy" { Side::Buy } else { Side::Sell },
                            price: Price::from_raw(r.try_get::<Option<i64>, _>("price")?.ok_or_else(bad)?),
                            qty: Qty::from_raw(r.try_get("qty")?),
                            remaining: Qty::from_raw(r.try_get("remaining")?),
                            priority: u64::try_from(r.try_get::<Option<i64>, _>("priority")?.ok_or_else(bad)?)
                                .map_err(|_| bad())?,
                        })
                    })
                    .collect()
            }

            async fn load_account(&mut self, id: i64, lock: bool) -> Result<Option<Account>, sqlx::Error> {
                let sql = if lock {
                    concat!(
                        "SELECT cash, cash_reserved, allow_short, max_open_orders, open_orders FROM accounts WHERE id = $1",
                        $for_update
                    )
                } else {
                    "SELECT cash, cash_reserved, allow_short, max_open_orders, open_orders FROM accounts WHERE id = $1"
                };
                let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&mut **self).await? else {
                    return Ok(None);
                };
                let positions = sqlx::query(
                    "SELECT symbol, qty, reserved, cost_basis, realized_pnl FROM positions WHERE account_id = $1",
                )
                .bind(id)
                .fetch_all(&mut **self)
                .await?
                .iter()
                .map(|p| {
                    Ok((
                        p.try_get::<String, _>("symbol")?,
                        Position {
                            qty: Qty::from_raw(p.try_get("qty")?),
                            reserved: Qty::from_raw(p.try_get("reserved")?),
                            cost_basis: Cash::from_raw(i128::from(p.try_get::<i64, _>("cost_basis")?)),
                            realized_pnl: Cash::from_raw(i128::from(p.try_get::<i64, _>("realized_pnl")?)),
                        },
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?;
                let count = |v: i32| u32::try_from(v).unwrap_or(0);
                Ok(Some(Account {
                    cash: Cash::from_raw(i128::from(row.try_get::<i64, _>("cash")?)),
                    cash_reserved: Cash::from_raw(i128::from(row.try_get::<i64, _>("cash_reserved")?)),
                    positions,
                    allow_short: row.try_get("allow_short")?,
                    max_open_orders: count(row.try_get("max_open_orders")?),
                    open_orders: count(row.try_get("open_orders")?),
                }))
            }

            async fn order_by_client_id(&mut self, account: i64, client_order_id: &str) -> Result<Option<OrderView>, sqlx::Error> {
                let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND client_order_id = $2");
                let row = sqlx::query(&sql).bind(account).bind(client_order_id).fetch_optional(&mut **self).await?;
                row.as_ref().map(order_from_row).transpose()
            }

            async fn order(&mut self, id: i64) -> Result<Option<OrderView>, sqlx::Error> {
                let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **self).await?;
                row.as_ref().map(order_from_row).transpose()
            }

            async fn insert_pending(&mut self, o: &PendingOrder<'_>) -> Result<i64, sqlx::Error> {
                let now = o.now;
                sqlx::query(
                    "INSERT INTO orders (account_id, client_order_id, symbol, side, order_type, tif, price, qty, \
                     status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9) RETURNING id",
                )
                .bind(o.account)
                .bind(o.client_order_id)
                .bind(o.symbol)
                .bind(o.side)
                .bind(o.order_type)
                .bind(o.tif)
                .bind(o.price)
                .bind(o.qty)
                .bind(now)
                .fetch_one(&mut **self)
                .await?
                .try_get(0)
            }

            async fn delete_pending(&mut self, id: i64) -> Result<(), sqlx::Error> {
                sqlx::query("DELETE FROM orders WHERE id = $1 AND status = 'pending'")
                    .bind(id)
                    .execute(&mut **self)
                    .await
                    .map(|_| ())
            }

            async fn update_order(&mut self, u: &OrderUpdate) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "UPDATE orders SET status = $2, filled = $3, remaining = $4, priority = COALESCE($5, priority), \
                     cancel_reason = COALESCE($6, cancel_reason), updated_at = $7 WHERE id = $1",
                )
                .bind(u.id)
                .bind(u.status)
                .bind(u.filled)
                .bind(u.remaining)
                .bind(u.priority)
                .bind(u.cancel_reason)
                .bind(u.now)
                .execute(&mut **self)
                .await
                .map(|_| ())
            }

            async fn fill_maker(&mut self, id: i64, qty: i64, remaining: i64) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "UPDATE orders SET filled = filled + $2, remaining = $3, \
                     status = CASE WHEN $3 = 0 THEN 'filled' ELSE 'partially_filled' END, updated_at = $4 \
                     WHERE id = $1 AND status IN ('new', 'partially_filled')",
                )
                .bind(id)
                .bind(qty)
                .bind(remaining)
                .bind(Utc::now())
                .execute(&mut **self)
                .await
                .and_then(|r| {
                    if r.rows_affected() == 1 {
                        Ok(())
                    } else {
                        Err(sqlx::Error::Protocol(format!("maker order {id} is not resting in the database")))
                    }
                })
            }

            async fn cancel_resting(&mut self, id: i64, reason: &'static str) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "UPDATE orders SET status = 'cancelled', remaining = 0, cancel_reason = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(reason)
                .bind(Utc::now())
                .execute(&mut **self)
                .await
                .map(|_| ())
            }

            async fn credit_position(&mut self, account: i64, symbol: &str, qty: i64, cost: i64) -> Result<Option<i64>, sqlx::Error> {
                let exists = sqlx::query("SELECT id FROM accounts WHERE id = $1").bind(account).fetch_optional(&mut **self).await?;
                if exists.is_none() {
                    return Ok(None);
                }
                let row = sqlx::query(
                    "INSERT INTO positions (account_id, symbol, qty, cost_basis) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account_id, symbol) DO UPDATE SET qty = positions.qty + excluded.qty, \
                     cost_basis = positions.cost_basis + excluded.cost_basis RETURNING qty",
                )
                .bind(account)
                .bind(symbol)
                .bind(qty)
                .bind(cost)
                .fetch_one(&mut **self)
                .await?;
                sqlx::query("UPDATE symbols SET seq = seq + 1 WHERE symbol = $1").bind(symbol).execute(&mut **self).await?;
                Ok(Some(row.try_get(0)?))
            }

            async fn insert_trade(&mut self, symbol: &str, seq: i64, t: &Trade) -> Result<(), sqlx::Error> {
                let id = |o: OrderId| i64::try_from(o.0).unwrap_or(i64::MAX);
                let acct = |a: AccountId| i64::try_from(a.0).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO trades (symbol, seq, price, qty, taker_side, taker_order_id, maker_order_id, \
                     taker_account_id, maker_account_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(symbol)
                .bind(seq)
                .bind(t.price.raw())
                .bind(t.qty.raw())
                .bind(side_str(t.taker_side))
                .bind(id(t.taker_order))
                .bind(id(t.maker_order))
                .bind(acct(t.taker_account))
                .bind(acct(t.maker_account))
                .bind(Utc::now())
                .execute(&mut **self)
                .await
                .map(|_| ())
            }

            async fn apply_delta(&mut self, account: i64, d: &AccountDelta) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "UPDATE accounts SET cash = cash + $2, cash_reserved = cash_reserved + $3, \
                     open_orders = open_orders + $4 WHERE id = $1",
                )
                .bind(account)
                .bind(to_i64(d.cash)?)
                .bind(to_i64(d.cash_reserved)?)
                .bind(d.open_orders)
                .execute(&mut **self)
                .await?;
                for (symbol, p) in &d.positions {
                    sqlx::query(
                        "INSERT INTO positions (account_id, symbol, qty, reserved, cost_basis, realized_pnl) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, symbol) DO UPDATE SET \
                         qty = excluded.qty, reserved = excluded.reserved, cost_basis = excluded.cost_basis, \
                         realized_pnl = excluded.realized_pnl",
                    )
                    .bind(account)
                    .bind(symbol)
                    .bind(p.qty.raw())
                    .bind(p.reserved.raw())
                    .bind(to_i64(p.cost_basis)?)
                    .bind(to_i64(p.realized_pnl)?)
                    .execute(&mut **self)
                    .await?;
                }
                Ok(())
            }

            async fn update_symbol(&mut self, symbol: &str, row: &SymbolRow) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "UPDATE symbols SET seq = $2, md_seq = $3, status = $4, last_price = $5, last_qty = $6, \
                     last_trade_seq = $7 WHERE symbol = $1",
                )
                .bind(symbol)
                .bind(row.seq)
                .bind(row.md_seq)
                .bind(&row.status)
                .bind(row.last_trade.map(|t| t.0))
                .bind(row.last_trade.map(|t| t.1))
                .bind(row.last_trade.map(|t| t.2))
                .execute(&mut **self)
                .await
                .map(|_| ())
            }

            async fn audit_many(&mut self, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
                if events.is_empty() {
                    return Ok(());
                }
                let now = Utc::now();
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO audit_events (occurred_at, actor, action, subject, request_id, details) ",
                );
                q.push_values(events, |mut row, e| {
                    row.push_bind(now)
                        .push_bind(e.actor.clone())
                        .push_bind(e.action.clone())
                        .push_bind(e.subject.clone())
                        .push_bind(e.request_id.clone())
                        .push_bind(e.details.to_string());
                });
                q.build().execute(&mut **self).await.map(|_| ())
            }
        }
    };
}

impl_trading_tx!(sqlx::Postgres, " FOR UPDATE");
impl_trading_tx!(sqlx::Sqlite, "");

/// Parses a stored status.
pub fn status_from_str(s: &str) -> TradingStatus {
    if s == "halted" {
        TradingStatus::Halted
    } else {
        TradingStatus::Open
    }
}

impl Store {
    /// An order by id.
    pub async fn order(&self, id: i64) -> Result<Option<OrderView>, sqlx::Error> {
        let sql =
            format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND status <> 'pending'");
        with_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(order_from_row).transpose()
        })
    }

    /// An account's orders, newest first, optionally filtered.
    pub async fn orders(
        &self,
        account: i64,
        status: Option<&str>,
        symbol: Option<&str>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<OrderView>, sqlx::Error> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND status <> 'pending' \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR symbol = $3) AND id < $4 ORDER BY id DESC LIMIT $5"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(account)
                .bind(status)
                .bind(symbol)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(order_from_row).collect()
        })
    }

    /// An account's fills, newest first.
    pub async fn fills(
        &self,
        account: i64,
        symbol: Option<&str>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<FillView>, sqlx::Error> {
        let sql = "SELECT id, symbol, price, qty, taker_side, created_at, \
                   CASE WHEN taker_account_id = $1 THEN taker_order_id ELSE maker_order_id END AS order_id, \
                   CASE WHEN taker_account_id = $1 THEN 'taker' ELSE 'maker' END AS liquidity \
                   FROM trades WHERE (taker_account_id = $1 OR maker_account_id = $1) \
                   AND ($2 IS NULL OR symbol = $2) AND id < $3 ORDER BY id DESC LIMIT $4";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(account)
                .bind(symbol)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    let liquidity: String = r.try_get("liquidity")?;
                    let taker_side: String = r.try_get("taker_side")?;
                    let side = match (liquidity.as_str(), taker_side.as_str()) {
                        ("taker", s) => s.to_owned(),
                        (_, "buy") => "sell".to_owned(),
                        _ => "buy".to_owned(),
                    };
                    Ok(FillView {
                        trade_id: r.try_get("id")?,
                        order_id: r.try_get("order_id")?,
                        symbol: r.try_get("symbol")?,
                        side,
                        liquidity,
                        price: Price::from_raw(r.try_get("price")?),
                        qty: Qty::from_raw(r.try_get("qty")?),
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }

    /// A symbol's most recent trades, newest first.
    pub async fn recent_trades(
        &self,
        symbol: &str,
        limit: u32,
    ) -> Result<Vec<TradeView>, sqlx::Error> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, seq, price, qty, taker_side, created_at FROM trades WHERE symbol = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(symbol)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(TradeView {
                        id: r.try_get("id")?,
                        seq: r.try_get("seq")?,
                        price: Price::from_raw(r.try_get("price")?),
                        qty: Qty::from_raw(r.try_get("qty")?),
                        taker_side: r.try_get("taker_side")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }

    /// Aggregated book levels of one side from the stored resting orders: (price, qty, orders).
    pub async fn depth_side(
        &self,
        symbol: &str,
        side: Side,
        levels: u32,
    ) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
        let order = if side == Side::Buy { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT price, CAST(SUM(remaining) AS BIGINT) AS qty, COUNT(*) AS n FROM orders WHERE symbol = $1 AND side = $2 \
             AND status IN ('new', 'partially_filled') GROUP BY price ORDER BY price {order} LIMIT $3"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(symbol).bind(side_str(side)).bind(i64::from(levels)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<Option<i64>, _>("price")?.unwrap_or(0), r.try_get("qty")?, r.try_get("n")?)))
                .collect()
        })
    }

    /// A symbol's stored state (sequence numbers, status, last trade), if it ever traded.
    pub async fn symbol_state(&self, symbol: &str) -> Result<Option<SymbolRow>, sqlx::Error> {
        with_pool!(self, pool => {
            let row = sqlx::query(SYMBOL_SELECT).bind(symbol).fetch_optional(pool).await?;
            row.as_ref().map(symbol_from_row).transpose()
        })
    }

    /// Quantity traded in a symbol since `since`.
    pub async fn volume_since(
        &self,
        symbol: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) AS v FROM trades WHERE symbol = $1 AND created_at >= $2")
                .bind(symbol)
                .bind(since)
                .fetch_one(pool)
                .await?;
            row.try_get::<i64, _>("v")
        })
    }
}
