//! Reads of orders held for four-eyes approval: the admin listing and the expiry sweep. The
//! decisions themselves are written by the matcher ([`super::matching::HeldChange`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tradeplane_engine::num::{Cash, Price, Qty};

use super::{Store, with_pool};

/// An order waiting for an admin's approval, as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = PendingOrder, example = json!({"id": 42, "account_id": 2, "trader": "alice", "symbol": "AAPL", "side": "buy", "type": "limit", "tif": "GTC", "price": "150", "qty": "1000", "notional": "150000", "requested_at": "2026-01-02T15:04:05.123456Z", "expires_at": "2026-01-02T16:04:05.123456Z"}))]
pub struct PendingOrderView {
    /// Order id.
    pub id: i64,
    /// The trader's account.
    pub account_id: i64,
    /// The trader's username.
    #[schema(value_type = crate::http::openapi::Username)]
    pub trader: String,
    /// Instrument.
    #[schema(value_type = crate::http::openapi::Symbol)]
    pub symbol: String,
    /// `buy` or `sell`.
    #[schema(value_type = crate::http::openapi::Side)]
    pub side: String,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    #[schema(value_type = crate::http::openapi::OrderType)]
    pub order_type: String,
    /// `GTC`, `IOC` or `FOK`.
    #[schema(value_type = crate::http::openapi::TimeInForce)]
    pub tif: String,
    /// Limit price (null for market orders).
    #[schema(value_type = Option<crate::http::openapi::UnsignedDecimal>, required = true)]
    pub price: Option<Price>,
    /// Ordered quantity.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub qty: Qty,
    /// Notional when it was placed (limit × quantity, or a market order's cost against the book).
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub notional: Cash,
    /// When it was placed and held.
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub requested_at: DateTime<Utc>,
    /// When it expires unless decided (`APPROVAL_TIMEOUT_SECONDS` after `requested_at`).
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub expires_at: DateTime<Utc>,
}

/// A held order past its expiry: what the sweep needs to send the expire command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredHold {
    /// Order id.
    pub id: i64,
    /// The trader's account.
    pub account_id: i64,
    /// Instrument.
    pub symbol: String,
    /// When it was held.
    pub requested_at: DateTime<Utc>,
}

/// The columns [`pending_from_row`] reads (orders `o`, users `u`).
const PENDING_COLUMNS: &str = "o.id, o.account_id, u.username, o.symbol, o.side, o.order_type, o.tif, o.price, \
                               o.qty, o.approval_notional, o.approval_requested_at, o.expires_at";

fn pending_from_row<R: Row>(r: &R) -> Result<PendingOrderView, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'q> sqlx::Decode<'q, R::Database>,
    Option<i64>: sqlx::Type<R::Database> + for<'q> sqlx::Decode<'q, R::Database>,
    String: sqlx::Type<R::Database> + for<'q> sqlx::Decode<'q, R::Database>,
    DateTime<Utc>: sqlx::Type<R::Database> + for<'q> sqlx::Decode<'q, R::Database>,
{
    Ok(PendingOrderView {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        trader: r.try_get("username")?,
        symbol: r.try_get("symbol")?,
        side: r.try_get("side")?,
        order_type: r.try_get("order_type")?,
        tif: r.try_get("tif")?,
        price: r.try_get::<Option<i64>, _>("price")?.map(Price::from_raw),
        qty: Qty::from_raw(r.try_get("qty")?),
        notional: Cash::from_raw(i128::from(
            r.try_get::<Option<i64>, _>("approval_notional")?
                .unwrap_or(0),
        )),
        requested_at: r.try_get("approval_requested_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

const PENDING: &str = "o.status = 'pending' AND o.approval_requested_at IS NOT NULL";

impl Store {
    /// Held orders, soonest to expire first, optionally of one symbol.
    pub async fn pending_orders(
        &self,
        symbol: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingOrderView>, sqlx::Error> {
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM orders o \
             JOIN accounts a ON a.id = o.account_id JOIN users u ON u.id = a.user_id \
             WHERE {PENDING} AND ($1 IS NULL OR o.symbol = $1) ORDER BY o.expires_at, o.id LIMIT $2"
        );
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
            let rows = sqlx::query(&sql).bind(symbol).bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter().map(pending_from_row).collect()
        })
    }

    /// One held order as the listing shows it, or `None` when it is not held (any more).
    pub async fn pending_order(&self, id: i64) -> Result<Option<PendingOrderView>, sqlx::Error> {
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM orders o \
             JOIN accounts a ON a.id = o.account_id JOIN users u ON u.id = a.user_id \
             WHERE {PENDING} AND o.id = $1"
        );
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(pending_from_row)
            .transpose()
        })
    }

    /// Held orders whose expiry is at or before `now`, oldest first.
    pub async fn expired_holds(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiredHold>, sqlx::Error> {
        let sql = format!(
            "SELECT o.id, o.account_id, o.symbol, o.approval_requested_at FROM orders o \
             WHERE {PENDING} AND o.expires_at <= $1 ORDER BY o.expires_at, o.id LIMIT $2"
        );
        with_pool!(self, super::telemetry::Op::MarketRead, pool => {
            let rows = sqlx::query(&sql).bind(now).bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(ExpiredHold {
                        id: r.try_get("id")?,
                        account_id: r.try_get("account_id")?,
                        symbol: r.try_get("symbol")?,
                        requested_at: r.try_get("approval_requested_at")?,
                    })
                })
                .collect()
        })
    }
}
