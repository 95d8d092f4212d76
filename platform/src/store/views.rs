//! What the API shows of orders and fills, read from the database.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tradeplane_engine::num::{Price, Qty};

/// An order as its owner sees it. Amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Order id.
    pub id: i64,
    /// Owning account.
    pub account_id: i64,
    /// The caller's idempotency key, if given.
    pub client_order_id: Option<String>,
    /// Instrument.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// `GTC`, `IOC` or `FOK`.
    pub tif: String,
    /// Limit price.
    pub price: Option<Price>,
    /// Ordered quantity.
    pub qty: Qty,
    /// Filled so far.
    pub filled: Qty,
    /// Still resting in the book.
    pub remaining: Qty,
    /// `new`, `partially_filled`, `filled` or `cancelled`.
    pub status: String,
    /// Why it was cancelled, when it was.
    pub cancel_reason: Option<String>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// Whether the order still rests in the book.
    pub fn is_open(&self) -> bool {
        self.status == "new" || self.status == "partially_filled"
    }
}

/// One fill of the caller's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillView {
    /// Trade id.
    pub trade_id: i64,
    /// The caller's order that filled.
    pub order_id: i64,
    /// Instrument.
    pub symbol: String,
    /// The caller's side.
    pub side: String,
    /// Whether the caller's order took liquidity (`taker`) or rested (`maker`).
    pub liquidity: String,
    /// Trade price.
    pub price: Price,
    /// Trade quantity.
    pub qty: Qty,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// A public trade, for market data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeView {
    /// Trade id.
    pub id: i64,
    /// Symbol sequence number of the trade.
    pub seq: i64,
    /// Trade price.
    pub price: Price,
    /// Trade quantity.
    pub qty: Qty,
    /// Side of the order that took liquidity.
    pub taker_side: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}
