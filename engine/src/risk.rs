//! Pre-trade risk: every rule an order must pass, each with its own typed rejection.
//!
//! Checks run in a fixed order (symbol, account, shape, price, quantity, notional, funds,
//! open-order limit) and the first failure is returned. A rejected order changes nothing
//! and consumes no sequence number.
//!
//! Reservation rules:
//! - a limit buy reserves `price * qty` of cash; a fill at a better price consumes
//!   `limit * filled` of the reservation and `fill price * filled` of cash, so the reservation
//!   always equals `limit * remaining` of the resting buy orders;
//! - a market buy is priced exactly before matching by walking the asks it can reach (within
//!   the price band, skipping its own orders, which self-trade prevention cancels) and needs
//!   that much available cash; it reserves exactly that and consumes it while matching, so
//!   nothing stays reserved afterwards;
//! - a sell reserves its quantity of the position (accounts that may short may go negative).

use serde::{Deserialize, Serialize};

use crate::book::Book;
use crate::instrument::{Instrument, TradingStatus};
use crate::ledger::Account;
use crate::num::{Cash, Price, Qty, notional};
use crate::order::{NewOrder, OrderType, Side, TimeInForce};

/// Why the engine refused an order or a cancel. [`Reject::code`] gives a stable string for
/// API error bodies and metrics labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "camelCase")]
pub enum Reject {
    /// The symbol is not configured.
    #[error("unknown symbol")]
    UnknownSymbol,
    /// The symbol is halted.
    #[error("symbol is halted")]
    SymbolHalted,
    /// The account is not loaded into the engine.
    #[error("unknown account")]
    UnknownAccount,
    /// An order with this id already rests in the book.
    #[error("duplicate order id")]
    DuplicateOrderId,
    /// Quantity is zero (negative quantities cannot be parsed).
    #[error("quantity must be positive")]
    InvalidQuantity,
    /// Quantity is not a multiple of the lot size.
    #[error("quantity is not a multiple of the lot size {lot}")]
    QuantityNotOnLot {
        /// The lot size.
        lot: Qty,
    },
    /// Quantity below the instrument's minimum.
    #[error("quantity below minimum {min}")]
    QuantityBelowMin {
        /// The minimum.
        min: Qty,
    },
    /// Quantity above the instrument's maximum.
    #[error("quantity above maximum {max}")]
    QuantityAboveMax {
        /// The maximum.
        max: Qty,
    },
    /// A limit order without a price, or with a zero price.
    #[error("limit orders need a positive price")]
    MissingPrice,
    /// A market order with a price.
    #[error("market orders must not have a price")]
    UnexpectedPrice,
    /// A market order with time in force GTC.
    #[error("market orders must be IOC or FOK")]
    MarketOrderNeedsIocOrFok,
    /// Price not a multiple of the tick size.
    #[error("price is not a multiple of the tick size {tick}")]
    PriceNotOnTick {
        /// The tick size.
        tick: Price,
    },
    /// Price too far from the last trade.
    #[error("price outside the band around the last trade {last}")]
    PriceOutsideBand {
        /// The last trade price the band is centred on.
        last: Price,
    },
    /// Order notional above the instrument's maximum.
    #[error("notional {notional} above maximum {max}")]
    NotionalTooLarge {
        /// The order's notional.
        notional: Cash,
        /// The maximum.
        max: Cash,
    },
    /// Not enough available cash for a buy.
    #[error("insufficient cash: need {needed}, available {available}")]
    InsufficientCash {
        /// Cash the order needs reserved.
        needed: Cash,
        /// Cash available.
        available: Cash,
    },
    /// Not enough available position for a sell (and the account may not short).
    #[error("insufficient position: need {needed}, available {available}")]
    InsufficientPosition {
        /// Quantity to sell.
        needed: Qty,
        /// Quantity available.
        available: Qty,
    },
    /// The account already has its maximum number of resting orders.
    #[error("open order limit {limit} reached")]
    OpenOrderLimit {
        /// The limit.
        limit: u32,
    },
    /// Cancel: no such resting order in this symbol's book.
    #[error("unknown order")]
    UnknownOrder,
    /// Cancel: the order belongs to another account.
    #[error("order belongs to another account")]
    NotOwner,
}

impl Reject {
    /// A stable machine-readable code, e.g. `insufficientCash`.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::UnknownSymbol => "unknownSymbol",
            Reject::SymbolHalted => "symbolHalted",
            Reject::UnknownAccount => "unknownAccount",
            Reject::DuplicateOrderId => "duplicateOrderId",
            Reject::InvalidQuantity => "invalidQuantity",
            Reject::QuantityNotOnLot { .. } => "quantityNotOnLot",
            Reject::QuantityBelowMin { .. } => "quantityBelowMin",
            Reject::QuantityAboveMax { .. } => "quantityAboveMax",
            Reject::MissingPrice => "missingPrice",
            Reject::UnexpectedPrice => "unexpectedPrice",
            Reject::MarketOrderNeedsIocOrFok => "marketOrderNeedsIocOrFok",
            Reject::PriceNotOnTick { .. } => "priceNotOnTick",
            Reject::PriceOutsideBand { .. } => "priceOutsideBand",
            Reject::NotionalTooLarge { .. } => "notionalTooLarge",
            Reject::InsufficientCash { .. } => "insufficientCash",
            Reject::InsufficientPosition { .. } => "insufficientPosition",
            Reject::OpenOrderLimit { .. } => "openOrderLimit",
            Reject::UnknownOrder => "unknownOrder",
            Reject::NotOwner => "notOwner",
        }
    }
}

/// The price band around the last trade: which prices an order may have or trade at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Band {
    last: Option<Price>,
    bps: u32,
}

impl Band {
    pub(crate) fn new(last: Option<Price>, bps: u32) -> Self {
        Band { last, bps }
    }

    /// True when `price` is within `bps` of the last trade (always true without one).
    pub(crate) fn contains(&self, price: Price) -> bool {
        match self.last {
            Some(last) if self.bps > 0 => {
                let p = i128::from(price.raw()) * 10_000;
                let l = i128::from(last.raw());
                let bps = i128::from(self.bps);
                p <= l * (10_000 + bps) && p >= l * (10_000 - bps)
            }
            _ => true,
        }
    }
}

/// True when an order with `limit` (or a market order, `None`) on `side` may trade at `p`:
/// limit orders up to their limit, market orders anywhere inside the price band.
pub(crate) fn acceptable(limit: Option<Price>, side: Side, band: Band, p: Price) -> bool {
    match (limit, side) {
        (Some(l), Side::Buy) => p <= l,
        (Some(l), Side::Sell) => p >= l,
        (None, _) => band.contains(p),
    }
}

/// What an accepted order will do, computed by [`check`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Limit price, or `None` for market orders.
    pub limit: Option<Price>,
    /// Quantity fillable right now (skipping own orders).
    pub fillable: Qty,
    /// Cash to reserve for a buy (zero for sells).
    pub cash_reserve: Cash,
    /// The order's notional: `limit * qty`, or what a market order costs against the book
    /// (compared with the instrument's approval threshold).
    pub notional: Cash,
}

/// Runs every pre-trade rule against the current state.
pub(crate) fn check(
    o: &NewOrder,
    inst: &Instrument,
    band: Band,
    book: &Book,
    acct: &Account,
) -> Result<Plan, Reject> {
    if inst.status == TradingStatus::Halted {
        return Err(Reject::SymbolHalted);
    }
    if book.contains(o.id) {
        return Err(Reject::DuplicateOrderId);
    }
    let limit = match (o.order_type, o.price) {
        (OrderType::Limit, Some(p)) if p.is_positive() => Some(p),
        (OrderType::Limit, _) => return Err(Reject::MissingPrice),
        (OrderType::Market, Some(_)) => return Err(Reject::UnexpectedPrice),
        (OrderType::Market, None) if o.tif == TimeInForce::Gtc => {
            return Err(Reject::MarketOrderNeedsIocOrFok);
        }
        (OrderType::Market, None) => None,
    };
    if let Some(p) = limit {
        if !p.is_multiple_of(inst.tick_size) {
            return Err(Reject::PriceNotOnTick {
                tick: inst.tick_size,
            });
        }
        if !band.contains(p) {
            return Err(Reject::PriceOutsideBand {
                last: band.last.unwrap_or(Price::ZERO),
            });
        }
    }
    if !o.qty.is_positive() {
        return Err(Reject::InvalidQuantity);
    }
    if !o.qty.is_multiple_of(inst.lot_size) {
        return Err(Reject::QuantityNotOnLot { lot: inst.lot_size });
    }
    if o.qty < inst.min_qty {
        return Err(Reject::QuantityBelowMin { min: inst.min_qty });
    }
    if o.qty > inst.max_qty {
        return Err(Reject::QuantityAboveMax { max: inst.max_qty });
    }
    let (fillable, cost) = book.fillable(o.side, o.account, o.qty, |p| {
        acceptable(limit, o.side, band, p)
    });
    let order_notional = match limit {
        Some(p) => notional(p, o.qty),
        None => cost,
    };
    if order_notional > inst.max_notional {
        return Err(Reject::NotionalTooLarge {
            notional: order_notional,
            max: inst.max_notional,
        });
    }
    let cash_reserve = match o.side {
        Side::Buy => {
            // A FOK market buy that cannot fill completely trades nothing and needs nothing.
            let needed = if limit.is_none() && o.tif == TimeInForce::Fok && fillable < o.qty {
                Cash::ZERO
            } else {
                order_notional
            };
            if needed > acct.available_cash() {
                return Err(Reject::InsufficientCash {
                    needed,
                    available: acct.available_cash(),
                });
            }
            needed
        }
        Side::Sell => {
            let available = acct.position(&inst.symbol).available();
            if !acct.allow_short && o.qty > available {
                return Err(Reject::InsufficientPosition {
                    needed: o.qty,
                    available,
                });
            }
            Cash::ZERO
        }
    };
    if o.order_type == OrderType::Limit
        && o.tif == TimeInForce::Gtc
        && acct.open_orders >= acct.max_open_orders
    {
        return Err(Reject::OpenOrderLimit {
            limit: acct.max_open_orders,
        });
    }
    Ok(Plan {
        limit,
        fillable,
        cash_reserve,
        notional: order_notional,
    })
}
