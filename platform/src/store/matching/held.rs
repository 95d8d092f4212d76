//! The matcher's statements for orders held for four-eyes approval (issue 16).
//!
//! A held order is an `orders` row with status `pending` and `approval_requested_at` set
//! (migration `0040_expand_approvals`; the API shows it as `pending_approval`). Its decision
//! is one multi-row `UPDATE` per batch, guarded by `status = 'pending'`: a row some other
//! writer already decided makes the batch stale (nothing committed, reloaded, run again), so
//! an approval, rejection, expiry or cancel is applied at most once. A book rebuild
//! ([`MatchTx::held_orders`]) restores the held set with the reservations the rows record.

use chrono::{DateTime, Utc};
use tradeplane_engine::engine::HeldOrder;
use tradeplane_engine::num::{Cash, Price, Qty};
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, OrderType, Side, TimeInForce};

use super::super::telemetry::{Observation, Op};
use super::{MatchError, MatchTx, Tx, id_u64};

/// How a held order was decided in a batch: its final row values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldChange {
    pub id: i64,
    /// `new`, `partially_filled`, `filled` (approved) or `cancelled`.
    pub status: &'static str,
    /// Filled in this batch (the order was never matched before).
    pub filled: i64,
    pub remaining: i64,
    /// `approval_rejected`, `approval_expired`, `requested` (the owner's cancel),
    /// `risk_rejected`, or the engine's reason for an approved order's remainder.
    pub cancel_reason: Option<&'static str>,
    /// Time priority, when the approved order was accepted into matching.
    pub priority: Option<i64>,
    /// The approving admin (user id).
    pub approved_by: Option<i64>,
    /// The rejecting admin (user id).
    pub rejected_by: Option<i64>,
    /// The admin's reason, or the risk rule an approval broke.
    pub rejected_reason: Option<String>,
}

/// The columns a decision sets (PostgreSQL's write; SQLite's batch trigger, migration
/// `0080_expand_batch_apply`, sets the same).
pub(super) const HELD_SET: &str = "status = d.status, filled = d.filled, remaining = d.remaining, \
    cancel_reason = d.cancel_reason, priority = d.priority, approved_by = d.approved_by, \
    rejected_by = d.rejected_by, rejected_reason = d.rejected_reason";
/// Only a row still held is decided: one decided elsewhere makes the batch stale (the SQLite
/// trigger has the same condition).
pub(super) const HELD_PENDING: &str =
    "orders.id = d.id AND orders.status = 'pending' AND orders.approval_requested_at IS NOT NULL";

/// A timestamp as SQLite's driver writes one (so that text comparisons order correctly).
pub(crate) fn sqlite_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// A stored held order: id, account, symbol, side, type, tif, price, qty, reserved cash,
/// notional.
type HeldRowTuple = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
);

fn held_from_row(r: HeldRowTuple) -> Result<HeldOrder, MatchError> {
    let (id, account, symbol, side, order_type, tif, price, qty, reserved, notional) = r;
    let side = if side == "buy" { Side::Buy } else { Side::Sell };
    let order_type = if order_type == "market" {
        OrderType::Market
    } else {
        OrderType::Limit
    };
    let tif = match tif.as_str() {
        "IOC" => TimeInForce::Ioc,
        "FOK" => TimeInForce::Fok,
        _ => TimeInForce::Gtc,
    };
    let qty = Qty::from_raw(qty);
    Ok(HeldOrder {
        order: NewOrder {
            id: OrderId(id_u64(id, "order")?),
            account: AccountId(id_u64(account, "account")?),
            symbol,
            side,
            order_type,
            price: price.map(Price::from_raw),
            qty,
            tif,
        },
        cash_reserved: match side {
            Side::Buy => Cash::from_raw(i128::from(reserved.unwrap_or(0))),
            Side::Sell => Cash::ZERO,
        },
        qty_reserved: match side {
            Side::Buy => Qty::ZERO,
            Side::Sell => qty,
        },
        notional: Cash::from_raw(i128::from(notional.unwrap_or(0))),
    })
}

impl MatchTx {
    /// A symbol's held orders, for rebuilding its market.
    pub async fn held_orders(&mut self, symbol: &str) -> Result<Vec<HeldOrder>, MatchError> {
        const SQL: &str = "SELECT id, account_id, symbol, side, order_type, tif, price, qty, \
                           approval_reserved_cash, approval_notional FROM orders \
                           WHERE symbol = $1 AND status = 'pending' AND approval_requested_at IS NOT NULL";
        let rows: Vec<HeldRowTuple> = on_tx!(self, BatchRead, c,
            pg => sqlx::query_as(SQL).bind(symbol).fetch_all(&mut *c).await?,
            sqlite => sqlx::query_as(SQL).bind(symbol).fetch_all(&mut *c).await?
        );
        rows.into_iter().map(held_from_row).collect()
    }
}
