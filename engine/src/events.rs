//! What the engine reports: every state change as an ordered, sequenced event.
//!
//! The platform stores the events of a submit/cancel (or a whole batch) in one database
//! transaction. Every event carries the symbol's `seq` (contiguous over all events of the
//! symbol; resting orders' time priority is the `seq` of their acceptance). Public market
//! data events (trades, book levels, status) also carry `md_seq`, contiguous over public
//! events only, so a market-data subscriber that sees a jump knows it missed something.

use serde::{Deserialize, Serialize};

use crate::book::RestingOrder;
use crate::instrument::TradingStatus;
use crate::ledger::Position;
use crate::num::{Cash, Price, Qty};
use crate::order::{AccountId, OrderId, OrderType, Side, TimeInForce};

/// One sequenced event of one symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Per-symbol sequence number over all events, strictly increasing by one.
    pub seq: u64,
    /// Per-symbol sequence number over public market-data events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_seq: Option<u64>,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    /// An order passed risk checks; its `seq` is its time priority.
    OrderAccepted(AcceptedOrder),
    /// Two orders traded (public).
    Trade(Trade),
    /// (The rest of) an order was cancelled.
    OrderCancelled(CancelledOrder),
    /// An order's remainder now rests in the book.
    OrderRested(RestingOrder),
    /// The aggregated quantity at a price level changed (public); `qty` zero = level gone.
    BookLevel(BookLevel),
    /// An account's cash, reservations or position changed.
    Balance(BalanceChange),
    /// An order passed risk checks and was held for approval: its cash or position is
    /// reserved, but it is not in the book (private).
    OrderHeld(AcceptedOrder),
    /// A held order left the hold: approved (an `OrderAccepted` follows), or released with
    /// its reservation (private).
    HoldReleased(ReleasedOrder),
    /// The symbol was halted or resumed (public).
    Status {
        /// The new status.
        status: TradingStatus,
    },
}

impl EventKind {
    /// True for events that belong on the public market-data feed.
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            EventKind::Trade(_) | EventKind::BookLevel(_) | EventKind::Status { .. }
        )
    }
}

/// An accepted order, as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedOrder {
    /// Order id.
    pub id: OrderId,
    /// Owning account.
    pub account: AccountId,
    /// Side.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price, if any.
    pub price: Option<Price>,
    /// Ordered quantity.
    pub qty: Qty,
    /// Time in force.
    pub tif: TimeInForce,
}

/// A trade between an incoming (taker) and a resting (maker) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    /// Trade id: the event's `seq` (unique within the symbol).
    pub trade_id: u64,
    /// Execution price (the maker's price).
    pub price: Price,
    /// Executed quantity.
    pub qty: Qty,
    /// Side of the taker (the aggressor).
    pub taker_side: Side,
    /// Incoming order.
    pub taker_order: OrderId,
    /// Incoming order's account.
    pub taker_account: AccountId,
    /// Resting order.
    pub maker_order: OrderId,
    /// Resting order's account.
    pub maker_account: AccountId,
    /// Taker's quantity still unfilled after this trade.
    pub taker_remaining: Qty,
    /// Maker's quantity still resting after this trade (zero = fully filled).
    pub maker_remaining: Qty,
}

/// Why an order (or its remainder) was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CancelReason {
    /// The owner asked for it.
    Requested,
    /// A resting order was cancelled because an order of the same account would trade with it.
    SelfTradePrevention,
    /// The unfilled remainder of an IOC order.
    IocRemainder,
    /// A FOK order that could not be filled completely.
    FokUnfillable,
    /// The unfilled remainder of a market order (book empty or beyond the price band).
    MarketRemainder,
}

/// Why a held order left the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseReason {
    /// An admin approved it; it enters matching now.
    Approved,
    /// An admin approved it but it failed the risk check at that moment; released.
    RiskRejected,
    /// An admin rejected it; released.
    Rejected,
    /// Nobody decided in time; released.
    Expired,
    /// Its owner cancelled it; released.
    Cancelled,
}

/// A held order leaving the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedOrder {
    /// Order id.
    pub id: OrderId,
    /// Owning account.
    pub account: AccountId,
    /// Side.
    pub side: Side,
    /// Why.
    pub reason: ReleaseReason,
}

/// A cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelledOrder {
    /// Order id.
    pub id: OrderId,
    /// Owning account.
    pub account: AccountId,
    /// Side.
    pub side: Side,
    /// Quantity that was cancelled.
    pub cancelled: Qty,
    /// Why.
    pub reason: CancelReason,
}

/// New aggregate of one price level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookLevel {
    /// Bid (buy) or ask (sell) side.
    pub side: Side,
    /// Level price.
    pub price: Price,
    /// Total remaining quantity now at the level.
    pub qty: Qty,
    /// Number of orders now at the level.
    pub orders: u32,
}

/// The net change of one account caused by one submit or cancel, with the resulting values.
///
/// Across replicas, apply cash as deltas (`cash = cash + cashDelta`): another symbol may have
/// moved the same account's cash concurrently. The position row of `symbol` is only ever
/// changed under that symbol's lock, so `position` can be written as an absolute value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceChange {
    /// The account.
    pub account: AccountId,
    /// The symbol whose position is reported.
    pub symbol: String,
    /// Change of total cash.
    pub cash_delta: Cash,
    /// Change of reserved cash.
    pub cash_reserved_delta: Cash,
    /// Change of the open (resting) order count.
    pub open_orders_delta: i64,
    /// Total cash afterwards (as the engine knows it).
    pub cash: Cash,
    /// Reserved cash afterwards (as the engine knows it).
    pub cash_reserved: Cash,
    /// Position in `symbol` afterwards.
    pub position: Position,
}
