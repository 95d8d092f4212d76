//! Order identifiers and the order a client submits.

use serde::{Deserialize, Serialize};

use crate::num::{Price, Qty};

/// Identifies an order. Assigned by the caller (e.g. a database sequence) so the platform can
/// persist the order before or with its events; must be unique per symbol among resting orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub u64);

/// Identifies a brokerage account (the platform's account primary key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub u64);

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Buys the instrument, pays cash.
    Buy,
    /// Sells the instrument, receives cash.
    Sell,
}

impl Side {
    /// The side an order of this side trades against.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Limit (trade at the price or better) or market (trade at whatever the book offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    /// Needs a price; may rest in the book when its time in force is GTC.
    Limit,
    /// Has no price; never rests (time in force must be IOC or FOK).
    Market,
}

/// How long the unfilled part of an order lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests in the book.
    Gtc,
    /// Immediate or cancel: fill what is possible now, cancel the rest.
    Ioc,
    /// Fill or kill: fill the whole quantity now or nothing at all.
    Fok,
}

/// An order as submitted to [`crate::Engine::submit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrder {
    /// Caller-assigned id.
    pub id: OrderId,
    /// The account placing the order.
    pub account: AccountId,
    /// Instrument symbol.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price; required for limit orders, must be absent for market orders.
    #[serde(default)]
    pub price: Option<Price>,
    /// Quantity in instrument units.
    pub qty: Qty,
    /// Time in force.
    pub tif: TimeInForce,
}

impl NewOrder {
    /// A limit order; a shorthand for tests, benchmarks and the platform's demo market maker.
    pub fn limit(
        id: u64,
        account: u64,
        symbol: &str,
        side: Side,
        price: Price,
        qty: Qty,
        tif: TimeInForce,
    ) -> Self {
        NewOrder {
            id: OrderId(id),
            account: AccountId(account),
            symbol: symbol.to_owned(),
            side,
            order_type: OrderType::Limit,
            price: Some(price),
            qty,
            tif,
        }
    }

    /// A market order (IOC) — shorthand like [`NewOrder::limit`].
    pub fn market(id: u64, account: u64, symbol: &str, side: Side, qty: Qty) -> Self {
        NewOrder {
            id: OrderId(id),
            account: AccountId(account),
            symbol: symbol.to_owned(),
            side,
            order_type: OrderType::Market,
            price: None,
            qty,
            tif: TimeInForce::Ioc,
        }
    }
}
