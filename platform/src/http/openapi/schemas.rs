//! Schemas for what the API's Rust types cannot describe themselves.
//!
//! - Text rules: their patterns come from [`crate::input`], the functions that enforce them.
//! - The engine's types (amounts, sides, instruments): the engine crate stays free of HTTP and
//!   documentation concerns, so their wire form is described here, and tests check real values
//!   against these schemas.
//! - The WebSocket messages, which are not HTTP bodies.

#![allow(dead_code)] // schema-only types: never constructed, only described

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

use crate::input;

/// A string schema with a pattern, a length bound, a description and examples.
fn text(pattern: &str, max: usize, description: &str, examples: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(Some(max))
        .description(Some(description))
        .examples(examples.iter().map(|e| json!(e)))
        .into()
}

/// Declares a schema-only type whose schema is built by `$schema`.
macro_rules! described {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

/// Decimal strings as the engine parses them: optional `-`, digits, optionally `.` and digits;
/// digits past the 8th decimal must be zeros; at most 64 characters.
const SIGNED_DECIMAL: &str = "^-?[0-9]+(\\.[0-9]{1,8}0*)?$";
/// The same without a sign, except that `-0` (which is zero) is accepted too.
const UNSIGNED_DECIMAL: &str = "^(-0+(\\.0+)?|[0-9]+(\\.[0-9]{1,8}0*)?)$";

described!(
    /// A signed exact decimal (cash, P&L, short positions).
    Decimal => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(SIGNED_DECIMAL))
        .max_length(Some(64))
        .description(Some(
            "An exact decimal as a string: at most 8 significant decimal places (amounts are \
             fixed-point in 10^-8 units) and at most 64 characters; JSON numbers are refused. \
             Cash amounts range over ±1.7e30, prices and quantities over ±92233720368.54775807 \
             (a value out of range is 400).",
        ))
        .examples([json!("-12.5"), json!("10000.5"), json!("0.00000001")])
        .into()
);

described!(
    /// A non-negative exact decimal (prices, quantities).
    UnsignedDecimal => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(UNSIGNED_DECIMAL))
        .max_length(Some(64))
        .description(Some(
            "A non-negative exact decimal as a string (a `Decimal` without a sign; `-0` is zero), \
             at most 92233720368.54775807. Negative values are refused (400).",
        ))
        .examples([json!("150.25"), json!("0.0001"), json!("3")])
        .into()
);

described!(
    /// Registration usernames.
    Username => text(
        input::USERNAME_PATTERN,
        32,
        "3 to 32 ASCII letters, digits, `_`, `.`, `-` (else 422 `invalid_username`). Names are \
         unique under case folding and Unicode look-alikes (UTS #39 confusable skeletons): \
         `ADMIN`, `Admin` and `adrnin` are the same name as `admin` (409 when one exists).",
        &["alice", "bob_2"],
    )
);

described!(
    /// Passwords.
    Password => text(
        input::PASSWORD_PATTERN,
        128,
        "8 to 128 characters, no control characters (else 422 `invalid_password`).",
        &["correct horse battery"],
    )
);

described!(
    /// Free text: login names, refresh tokens.
    Text => text(
        input::TEXT_PATTERN,
        input::MAX_TEXT,
        "1 to 256 characters, no control characters (else 422 `invalid_text` naming the field).",
        &["alice"],
    )
);

described!(
    /// Instrument symbols.
    Symbol => text(
        input::SYMBOL_PATTERN,
        32,
        "An instrument symbol: 1 to 32 of `A-Z`, `0-9`, `.`, `_`, `-` (else 422 \
         `invalid_symbol`). A well-formed symbol that is not configured is 404 (paths) or 422 \
         `unknownSymbol` (orders).",
        &["BTC-USD", "AAPL"],
    )
);

described!(
    /// Idempotency keys of orders.
    ClientOrderId => text(
        input::CLIENT_ORDER_ID_PATTERN,
        64,
        "The caller's idempotency key: 1 to 64 visible ASCII characters (`!` to `~`, no space; \
         else 422 `invalidClientOrderId`).",
        &["my-order-0001"],
    )
);

described!(
    /// Timestamps.
    Timestamp => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
        .description(Some("RFC 3339 time in UTC."))
        .examples([json!("2026-01-02T15:04:05.123456Z")])
        .into()
);

/// Order side.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// Order type.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum OrderType {
    /// Rests at its price until filled or cancelled (per its time in force).
    Limit,
    /// Trades at the best prices now; never rests.
    Market,
}

/// Time in force.
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
}

/// Order status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Resting, nothing filled.
    New,
    /// Resting, partly filled.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled (see `cancel_reason`).
    Cancelled,
    /// Held for four-eyes approval: its cash or position is reserved, it is not in the book
    /// (see `GET /admin/orders/pending`).
    PendingApproval,
}

/// Whether a symbol accepts new orders.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TradingStatus {
    /// Accepts orders.
    Open,
    /// Refuses new orders; cancels still work.
    Halted,
}

/// Which side of a trade the caller's order was on.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Liquidity {
    /// Took liquidity.
    Taker,
    /// Rested in the book.
    Maker,
}

/// A tradable instrument and the rules pre-trade risk enforces for it (the wire form of the
/// engine's `Instrument`, which is also the `INSTRUMENTS` format).
#[derive(ToSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"symbol": "BTC-USD", "tickSize": "0.01", "lotSize": "0.0001", "minQty": "0.0001", "maxQty": "100", "maxNotional": "5000000", "priceBandBps": 1000, "status": "open"}))]
pub struct Instrument {
    /// Symbol.
    #[schema(value_type = Symbol)]
    pub symbol: String,
    /// Price increment.
    #[schema(value_type = UnsignedDecimal)]
    pub tick_size: String,
    /// Quantity increment.
    #[schema(value_type = UnsignedDecimal)]
    pub lot_size: String,
    /// Smallest order quantity.
    #[schema(value_type = UnsignedDecimal)]
    pub min_qty: String,
    /// Largest order quantity.
    #[schema(value_type = UnsignedDecimal)]
    pub max_qty: String,
    /// Largest price × quantity of one order.
    #[schema(value_type = Decimal)]
    pub max_notional: String,
    /// Orders may not trade more than this many basis points away from the last trade (0: no
    /// band).
    #[schema(minimum = 0)]
    pub price_band_bps: u32,
    /// Current trading status.
    #[serde(default)]
    #[schema(value_type = TradingStatus)]
    pub status: Option<String>,
    /// Orders whose notional exceeds this wait for an admin's approval (absent: never).
    #[serde(default)]
    #[schema(value_type = Option<Decimal>, nullable = false)]
    pub approval_notional: Option<String>,
}

/// A message from a WebSocket client.
#[derive(ToSchema)]
#[schema(example = json!({"op": "subscribe", "symbols": ["BTC-USD"]}))]
pub struct WsClientMessage {
    /// `subscribe` or `unsubscribe`.
    #[schema(pattern = "^(subscribe|unsubscribe)$")]
    pub op: String,
    /// Symbols to (un)subscribe.
    #[schema(value_type = Vec<Symbol>)]
    pub symbols: Vec<String>,
}

/// One aggregated price level of a snapshot.
#[derive(ToSchema)]
pub struct WsLevel {
    /// Price.
    #[schema(value_type = UnsignedDecimal)]
    pub price: String,
    /// Total resting quantity.
    #[schema(value_type = UnsignedDecimal)]
    pub qty: String,
    /// Number of orders.
    pub orders: i64,
}

/// The book of a symbol when a subscription starts.
#[derive(ToSchema)]
#[schema(example = json!({"type": "snapshot", "symbol": "BTC-USD", "md_seq": 42, "bids": [{"price": "59990", "qty": "0.5", "orders": 2}], "asks": [{"price": "60010", "qty": "0.25", "orders": 1}]}))]
pub struct WsSnapshot {
    /// Always `snapshot`.
    #[schema(rename = "type", pattern = "^snapshot$")]
    pub kind: String,
    /// Instrument.
    #[schema(value_type = Symbol)]
    pub symbol: String,
    /// The market-data sequence the snapshot is at least as new as.
    pub md_seq: i64,
    /// Up to 50 bid levels, best first.
    pub bids: Vec<WsLevel>,
    /// Up to 50 ask levels, best first.
    pub asks: Vec<WsLevel>,
}

/// `data` of a `trade` event.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsTradeData {
    /// The symbol sequence number of the trade.
    pub trade_seq: i64,
    /// Price.
    #[schema(value_type = UnsignedDecimal)]
    pub price: String,
    /// Quantity.
    #[schema(value_type = UnsignedDecimal)]
    pub qty: String,
    /// Side of the order that took liquidity.
    #[schema(value_type = Side)]
    pub taker_side: String,
}

/// `data` of a `book` event: the absolute new state of one price level (`qty` `"0"` removes it).
#[derive(ToSchema, Serialize)]
pub struct WsBookData {
    /// Side of the level.
    #[schema(value_type = Side)]
    pub side: String,
    /// Price.
    #[schema(value_type = UnsignedDecimal)]
    pub price: String,
    /// Total resting quantity.
    #[schema(value_type = UnsignedDecimal)]
    pub qty: String,
    /// Number of orders.
    pub orders: i64,
}

/// `data` of a `status` event.
#[derive(ToSchema, Serialize)]
pub struct WsStatusData {
    /// The new status.
    #[schema(value_type = TradingStatus)]
    pub status: String,
}

/// A public market-data event of a subscribed symbol.
#[derive(ToSchema)]
#[schema(example = json!({"type": "trade", "symbol": "BTC-USD", "md_seq": 43, "data": {"tradeSeq": 17, "price": "60000", "qty": "0.1", "takerSide": "buy"}}))]
pub struct WsEvent {
    /// `trade`, `book` or `status`.
    #[schema(rename = "type", pattern = "^(trade|book|status)$")]
    pub kind: String,
    /// Instrument.
    #[schema(value_type = Symbol)]
    pub symbol: String,
    /// Market-data sequence, contiguous per symbol.
    pub md_seq: i64,
    /// The event's data.
    pub data: WsEventData,
}

/// The data of a [`WsEvent`], by its `type`.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
pub enum WsEventData {
    /// A trade.
    Trade(WsTradeData),
    /// A level change.
    Book(WsBookData),
    /// A status change.
    Status(WsStatusData),
}

/// An error about one client message; the connection stays open.
#[derive(ToSchema)]
#[schema(example = json!({"type": "error", "code": "unknownSymbol", "message": "no instrument NOPE"}))]
pub struct WsError {
    /// Always `error`.
    #[schema(rename = "type", pattern = "^error$")]
    pub kind: String,
    /// `unknownSymbol` or `bad_request`.
    pub code: String,
    /// Human explanation.
    pub message: String,
}

/// Body of `POST /auth/register` (the handler reads it as `Credentials` and applies these rules
/// when it creates the account).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "password": "correct horse battery"}))]
pub struct Registration {
    /// The new login name.
    #[schema(value_type = Username)]
    pub username: String,
    /// The password.
    #[schema(value_type = Password)]
    pub password: String,
}
