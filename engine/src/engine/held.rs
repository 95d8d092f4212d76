//! Orders held for four-eyes approval.
//!
//! Why a separate state rather than a resting order with a flag: a held order must not be
//! visible to matching at all (no level, no time priority, no self-trade prevention against it),
//! yet its cash or position must stay reserved so that approving it later cannot overdraw the
//! account with orders placed in the meantime. So [`super::Engine::submit`] runs the full risk
//! check, reserves exactly what a resting order would (`limit * qty` of cash for a limit buy,
//! the walked cost for a market buy, the quantity for a sell; no open-order slot), and keeps the
//! order in the market's `held` map instead of the book.
//!
//! Approval ([`super::Engine::approve`]) releases that reservation and submits the order again
//! through the ordinary path, so the risk rules apply *at that moment* (a moved price band, a
//! halt, cash spent elsewhere): the order gets its time priority from the approval, in the
//! order approvals arrive. If the check fails the order is released and [`Approval::refused`]
//! says why. Rejection, expiry and the owner's cancel release the reservation
//! ([`super::Engine::release_held`], [`super::Engine::cancel`]). Every change is journalled, so a
//! batch rollback restores the held set exactly; held orders are exported and restored with the
//! market ([`super::MarketState::held`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Engine, Op, OrderStatus, Outcome, RestoreError};
use crate::book::Book;
use crate::events::{AcceptedOrder, EventKind, ReleaseReason, ReleasedOrder};
use crate::ledger::Account;
use crate::num::{Cash, Qty};
use crate::order::{AccountId, NewOrder, OrderId, Side};
use crate::risk::{self, Band, Plan, Reject};

/// An order waiting for approval and what it reserves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldOrder {
    /// The order as submitted.
    pub order: NewOrder,
    /// Cash reserved (buys).
    pub cash_reserved: Cash,
    /// Position reserved (sells).
    pub qty_reserved: Qty,
    /// The order's notional when it was held (what the approval threshold was compared with).
    pub notional: Cash,
}

/// The result of an approval: the events (release, then matching) and, when the order failed
/// the risk check at approval time, why (it was then released instead of matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The order's state and every event to persist.
    pub outcome: Outcome,
    /// The risk rule the order broke at approval time, if it did.
    pub refused: Option<Reject>,
}

impl Engine {
    /// An order held for approval.
    pub fn held_order(&self, symbol: &str, id: OrderId) -> Option<&HeldOrder> {
        self.markets.get(symbol)?.held.get(&id)
    }

    /// A symbol's held orders, by id.
    pub fn held_orders(&self, symbol: &str) -> impl Iterator<Item = &HeldOrder> + '_ {
        self.markets
            .get(symbol)
            .into_iter()
            .flat_map(|m| m.held.values())
    }

    /// Approves a held order: releases its reservation and runs it through risk and matching
    /// as if it arrived now. `Err(UnknownOrder)` when it is not held (changes nothing).
    pub fn approve(&mut self, symbol: &str, id: OrderId) -> Result<Approval, Reject> {
        let Engine {
            markets,
            accounts,
            journal,
        } = self;
        let market = markets.get_mut(symbol).ok_or(Reject::UnknownSymbol)?;
        let held = market.held.get(&id).cloned().ok_or(Reject::UnknownOrder)?;
        let order = held.order.clone();
        let mut released: Account = accounts
            .get(&order.account)
            .cloned()
            .ok_or(Reject::UnknownAccount)?;
        unreserve(&mut released, symbol, &held);
        let band = Band::new(
            market.last_trade.map(|t| t.price),
            market.instrument.price_band_bps,
        );
        let checked = risk::check(&order, &market.instrument, band, &market.book, &released);
        let mut op = Op::begin(symbol, market, accounts, journal);
        match checked {
            Ok(plan) => {
                op.release(id, ReleaseReason::Approved);
                op.run(&order, plan, band);
                Ok(Approval {
                    outcome: op.finish(id),
                    refused: None,
                })
            }
            Err(reject) => {
                op.release(id, ReleaseReason::RiskRejected);
                Ok(Approval {
                    outcome: op.finish(id),
                    refused: Some(reject),
                })
            }
        }
    }

    /// Releases a held order and its reservation (rejected, expired; the owner's cancel goes
    /// through [`Engine::cancel`]). `Err(UnknownOrder)` when it is not held.
    pub fn release_held(
        &mut self,
        symbol: &str,
        id: OrderId,
        reason: ReleaseReason,
    ) -> Result<Outcome, Reject> {
        let Engine {
            markets,
            accounts,
            journal,
        } = self;
        let market = markets.get_mut(symbol).ok_or(Reject::UnknownSymbol)?;
        if !market.held.contains_key(&id) {
            return Err(Reject::UnknownOrder);
        }
        let mut op = Op::begin(symbol, market, accounts, journal);
        op.release(id, reason);
        Ok(op.finish(id))
    }
}

/// Takes a held order's reservation off an account.
fn unreserve(a: &mut Account, symbol: &str, h: &HeldOrder) {
    match h.order.side {
        Side::Buy => a.cash_reserved -= h.cash_reserved,
        Side::Sell => a.position_mut(symbol).reserved -= h.qty_reserved,
    }
}

impl Op<'_> {
    /// Holds an order that passed `plan`'s risk check: reserves, records, emits `OrderHeld`.
    pub(super) fn hold(&mut self, order: NewOrder, plan: Plan) {
        let symbol = self.symbol;
        let held = HeldOrder {
            cash_reserved: match order.side {
                Side::Buy => plan.cash_reserve,
                Side::Sell => Cash::ZERO,
            },
            qty_reserved: match order.side {
                Side::Buy => Qty::ZERO,
                Side::Sell => order.qty,
            },
            notional: plan.notional,
            order,
        };
        let a = self.acct(held.order.account);
        match held.order.side {
            Side::Buy => a.cash_reserved += held.cash_reserved,
            Side::Sell => a.position_mut(symbol).reserved += held.qty_reserved,
        }
        let o = &held.order;
        self.emit(EventKind::OrderHeld(AcceptedOrder {
            id: o.id,
            account: o.account,
            side: o.side,
            order_type: o.order_type,
            price: o.price,
            qty: o.qty,
            tif: o.tif,
        }));
        self.status = OrderStatus::PendingApproval;
        self.set_held(o.id, Some(held));
    }

    /// Removes a held order, releases its reservation and emits `HoldReleased`.
    pub(super) fn release(&mut self, id: OrderId, reason: ReleaseReason) {
        let Some(held) = self.market.held.get(&id).cloned() else {
            return;
        };
        let symbol = self.symbol;
        unreserve(self.acct(held.order.account), symbol, &held);
        self.emit(EventKind::HoldReleased(ReleasedOrder {
            id,
            account: held.order.account,
            side: held.order.side,
            reason,
        }));
        self.set_held(id, None);
        self.status = OrderStatus::Cancelled;
    }

    /// Changes the held set, journalling the previous value for a batch rollback.
    fn set_held(&mut self, id: OrderId, value: Option<HeldOrder>) {
        let before = match value {
            Some(h) => self.market.held.insert(id, h),
            None => self.market.held.remove(&id),
        };
        if let Some(j) = self.journal.as_mut() {
            j.held.push((self.symbol.to_owned(), id, before));
        }
    }

    /// The outcome of a hold (nothing filled, nothing resting).
    pub(super) fn finish_held(self) -> Outcome {
        let id = self
            .events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::OrderHeld(o) => Some(o.id),
                _ => None,
            })
            .unwrap_or(OrderId(0));
        self.finish(id)
    }
}

/// Validates stored held orders against the loaded accounts and the restored book.
pub(super) fn restore(
    accounts: &HashMap<AccountId, Account>,
    symbol: &str,
    book: &Book,
    held: Vec<HeldOrder>,
) -> Result<BTreeMap<OrderId, HeldOrder>, RestoreError> {
    let mut out = BTreeMap::new();
    for h in held {
        let o = &h.order;
        if !accounts.contains_key(&o.account) {
            return Err(RestoreError::UnknownAccount(o.account));
        }
        if book.contains(o.id) || out.contains_key(&o.id) {
            return Err(RestoreError::Duplicate(o.id));
        }
        let valid = o.symbol == symbol
            && o.qty.is_positive()
            && h.cash_reserved.raw() >= 0
            && h.qty_reserved.raw() >= 0;
        if !valid {
            return Err(RestoreError::InvalidOrder(o.id));
        }
        out.insert(o.id, h);
    }
    Ok(out)
}
