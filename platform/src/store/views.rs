//! What the API shows of orders and fills, read from the database.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tradeplane_engine::num::{Price, Qty};

/// An order as its owner sees it. Amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Order, example = json!({"id": 42, "account_id": 2, "client_order_id": "my-order-0001", "symbol": "BTC-USD", "side": "buy", "type": "limit", "tif": "GTC", "price": "60000", "qty": "0.01", "filled": "0.004", "remaining": "0.006", "status": "partially_filled", "cancel_reason": null, "created_at": "2026-01-02T15:04:05.123456Z", "updated_at": "2026-01-02T15:04:05.123456Z"}))]
pub struct OrderView {
    /// Order id.
    pub id: i64,
    /// Owning account.
    pub account_id: i64,
    /// The caller's idempotency key, if given.
    #[schema(value_type = Option<crate::http::openapi::ClientOrderId>, required = true)]
    pub client_order_id: Option<String>,
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
    /// Filled so far.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub filled: Qty,
    /// Still resting in the book.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub remaining: Qty,
    /// `new`, `partially_filled`, `filled`, `cancelled`, or `pending_approval` (held for
    /// four-eyes approval: reserved, not in the book).
    #[schema(value_type = crate::http::openapi::OrderStatus)]
    pub status: String,
    /// Why it was cancelled: `requested`, `self_trade_prevention`, `ioc_remainder`,
    /// `fok_unfillable`, `market_remainder`; for an order that waited for approval also
    /// `approval_rejected`, `approval_expired` or `risk_rejected` (approved, but refused by the
    /// risk check at approval) (null while not cancelled).
    #[schema(required = true)]
    pub cancel_reason: Option<String>,
    /// When it was accepted.
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// Whether the order still rests in the book.
    pub fn is_open(&self) -> bool {
        self.status == "new" || self.status == "partially_filled"
    }
}

/// One fill of the caller's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Fill, example = json!({"trade_id": 17, "order_id": 42, "symbol": "BTC-USD", "side": "buy", "liquidity": "taker", "price": "60000", "qty": "0.004", "created_at": "2026-01-02T15:04:05.123456Z"}))]
pub struct FillView {
    /// Trade id.
    pub trade_id: i64,
    /// The caller's order that filled.
    pub order_id: i64,
    /// Instrument.
    #[schema(value_type = crate::http::openapi::Symbol)]
    pub symbol: String,
    /// The caller's side.
    #[schema(value_type = crate::http::openapi::Side)]
    pub side: String,
    /// Whether the caller's order took liquidity (`taker`) or rested (`maker`).
    #[schema(value_type = crate::http::openapi::Liquidity)]
    pub liquidity: String,
    /// Trade price.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub price: Price,
    /// Trade quantity.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub qty: Qty,
    /// When it happened.
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub created_at: DateTime<Utc>,
}

/// A public trade, for market data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Trade, example = json!({"id": 17, "seq": 120, "price": "60000", "qty": "0.004", "taker_side": "buy", "created_at": "2026-01-02T15:04:05.123456Z"}))]
pub struct TradeView {
    /// Trade id.
    pub id: i64,
    /// Symbol sequence number of the trade.
    pub seq: i64,
    /// Trade price.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub price: Price,
    /// Trade quantity.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub qty: Qty,
    /// Side of the order that took liquidity.
    #[schema(value_type = crate::http::openapi::Side)]
    pub taker_side: String,
    /// When it happened.
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub created_at: DateTime<Utc>,
}
