//! Reads the API serves from the trading tables: orders, fills, trades, depth and the stored
//! state of each symbol. The matcher's writes are in [`super::matching`].

use chrono::{DateTime, Utc};
use sqlx::Row;
use tradeplane_engine::instrument::TradingStatus;
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::Side;

use super::views::{FillView, OrderView, TradeView};
use super::{Store, with_pool};

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

/// `Side` as stored.
pub fn side_str(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// Reads an [`OrderView`] from a row of `ORDER_COLUMNS`.
pub(crate) fn order_from_row<R: Row>(row: &R) -> Result<OrderView, sqlx::Error>
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
        status: shown_status(row.try_get("status")?),
        cancel_reason: row.try_get("cancel_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The status the API shows for a stored one: a held order (stored `pending`, see
/// [`super::matching::HeldChange`]) is `pending_approval`.
fn shown_status(stored: String) -> String {
    if stored == "pending" {
        PENDING_APPROVAL.to_owned()
    } else {
        stored
    }
}

/// The API's status of an order held for approval.
pub const PENDING_APPROVAL: &str = "pending_approval";

/// Rows the API shows: everything but a `pending` row that is not held for approval (no build
/// writes one; older builds skipped them all).
const SHOWN: &str = "(status <> 'pending' OR approval_requested_at IS NOT NULL)";

/// The columns of a symbol's row, as [`symbol_from_row`] reads them.
pub(crate) const SYMBOL_COLUMNS: &str =
    "symbol, seq, md_seq, status, last_price, last_qty, last_trade_seq";
const SYMBOL_SELECT: &str = "SELECT symbol, seq, md_seq, status, last_price, last_qty, last_trade_seq FROM symbols WHERE symbol = $1";

/// Reads a [`SymbolRow`] from a row of [`SYMBOL_COLUMNS`].
pub(crate) fn symbol_from_row<R: Row>(row: &R) -> Result<SymbolRow, sqlx::Error>
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

pub(crate) const ORDER_COLUMNS: &str = "id, account_id, client_order_id, symbol, side, order_type, tif, price, qty, filled, \
                             remaining, status, cancel_reason, created_at, updated_at";

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
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND {SHOWN}");
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
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
        let status = status.map(|s| if s == PENDING_APPROVAL { "pending" } else { s });
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND {SHOWN} \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR symbol = $3) AND id < $4 ORDER BY id DESC LIMIT $5"
        );
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
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
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
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
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
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
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
            let rows = sqlx::query(&sql).bind(symbol).bind(side_str(side)).bind(i64::from(levels)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<Option<i64>, _>("price")?.unwrap_or(0), r.try_get("qty")?, r.try_get("n")?)))
                .collect()
        })
    }

    /// A symbol's stored state (sequence numbers, status, last trade), if it ever traded.
    pub async fn symbol_state(&self, symbol: &str) -> Result<Option<SymbolRow>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
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
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
            let row = sqlx::query("SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) AS v FROM trades WHERE symbol = $1 AND created_at >= $2")
                .bind(symbol)
                .bind(since)
                .fetch_one(pool)
                .await?;
            row.try_get::<i64, _>("v")
        })
    }
}
