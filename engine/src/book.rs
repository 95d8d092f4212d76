//! The order book of one symbol: resting limit orders in price-time priority.
//!
//! Each side is a `BTreeMap` from price to a level; a level is a FIFO queue linked through one
//! slab shared by the whole book ([`queue`]), and an index maps each order id to its slab key.
//! So a cancel finds its order in `O(1)` and unlinks it in `O(1)` whatever the depth of its
//! level, plus `O(log levels)` to update the level. During a batch the book keeps an undo log
//! of its own mutations, so rolling back a failed batch costs time proportional to the batch,
//! not to the book (cloning a 100k-order book per batch would dominate); each removal records
//! the order that followed it, so putting it back needs no walk of the queue either.

mod queue;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::num::{Cash, Price, Qty, notional};
use crate::order::{AccountId, OrderId, Side};
use queue::{Nodes, Queue};

/// An order resting in the book; also the record the platform stores and reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestingOrder {
    /// Order id.
    pub id: OrderId,
    /// Owning account.
    pub account: AccountId,
    /// Buy (bid) or sell (ask).
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Quantity originally ordered.
    pub qty: Qty,
    /// Quantity still open.
    pub remaining: Qty,
    /// Time priority: the sequence number of the order's acceptance event. Lower goes first.
    pub priority: u64,
}

/// One aggregated price level, as market data shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepthLevel {
    /// Level price.
    pub price: Price,
    /// Sum of the remaining quantity of the level's orders.
    pub qty: Qty,
    /// Number of orders at the level.
    pub orders: u32,
}

#[derive(Debug, Clone, Default)]
struct Level {
    queue: Queue,
    total: Qty,
}

/// One reversible book mutation.
#[derive(Debug, Clone, Copy)]
enum Undo {
    /// An order was appended; undo removes it.
    Inserted(OrderId),
    /// An order (as it was) left the book; undo puts it back at its priority, just before
    /// `next` (the order that followed it then) when that still holds.
    Removed {
        order: RestingOrder,
        next: Option<OrderId>,
    },
    /// An order was partly filled; undo gives the quantity back.
    Filled(OrderId, Qty),
}

/// Resting orders of one symbol with price-time priority.
#[derive(Debug, Clone, Default)]
pub struct Book {
    bids: BTreeMap<Price, Level>,
    asks: BTreeMap<Price, Level>,
    nodes: Nodes,
    index: HashMap<OrderId, usize>,
    undo: Option<Vec<Undo>>,
}

impl Book {
    fn side(&self, side: Side) -> &BTreeMap<Price, Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Levels of one side from best to worst.
    fn levels(&self, side: Side) -> Box<dyn Iterator<Item = (&Price, &Level)> + '_> {
        match side {
            Side::Buy => Box::new(self.bids.iter().rev()),
            Side::Sell => Box::new(self.asks.iter()),
        }
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no order rests.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// True when an order with this id rests here.
    pub fn contains(&self, id: OrderId) -> bool {
        self.index.contains_key(&id)
    }

    /// A resting order by id.
    pub fn get(&self, id: OrderId) -> Option<&RestingOrder> {
        self.nodes.get(*self.index.get(&id)?)
    }

    /// Best (highest) bid level.
    pub fn best_bid(&self) -> Option<DepthLevel> {
        self.depth(Side::Buy, 1).into_iter().next()
    }

    /// Best (lowest) ask level.
    pub fn best_ask(&self) -> Option<DepthLevel> {
        self.depth(Side::Sell, 1).into_iter().next()
    }

    /// The best `n` aggregated levels of a side.
    pub fn depth(&self, side: Side, n: usize) -> Vec<DepthLevel> {
        self.levels(side)
            .take(n)
            .map(|(p, l)| DepthLevel {
                price: *p,
                qty: l.total,
                orders: l.queue.len(),
            })
            .collect()
    }

    /// The aggregated level at one price (zero quantity when empty).
    pub fn level(&self, side: Side, price: Price) -> DepthLevel {
        let l = self.side(side).get(&price);
        DepthLevel {
            price,
            qty: l.map_or(Qty::ZERO, |l| l.total),
            orders: l.map_or(0, |l| l.queue.len()),
        }
    }

    /// All resting orders, bids best-first then asks best-first, each level in time order.
    /// This is what the platform persists and what [`crate::Engine::restore_market`] reloads.
    pub fn orders(&self) -> impl Iterator<Item = &RestingOrder> + '_ {
        self.levels(Side::Buy)
            .chain(self.levels(Side::Sell))
            .flat_map(|(_, l)| self.nodes.iter(&l.queue))
    }

    /// Starts recording an undo log (batch begins).
    pub(crate) fn start_undo(&mut self) {
        self.undo = Some(Vec::new());
    }

    /// Stops recording and forgets the log (batch committed).
    pub(crate) fn drop_undo(&mut self) {
        self.undo = None;
    }

    /// Reverts every mutation since [`Book::start_undo`] (batch rolled back).
    pub(crate) fn rollback_undo(&mut self) {
        let Some(log) = self.undo.take() else { return };
        for u in log.into_iter().rev() {
            match u {
                Undo::Inserted(id) => {
                    self.remove(id);
                }
                Undo::Removed { order, next } => {
                    self.insert_at_priority(order, next);
                }
                Undo::Filled(id, q) => {
                    let Some(&key) = self.index.get(&id) else {
                        continue;
                    };
                    let Some(o) = self.nodes.get_mut(key) else {
                        continue;
                    };
                    o.remaining += q;
                    let (side, price) = (o.side, o.price);
                    if let Some(level) =
                        side_mut(&mut self.bids, &mut self.asks, side).get_mut(&price)
                    {
                        level.total += q;
                    }
                }
            }
        }
    }

    fn log(&mut self, u: Undo) {
        if let Some(log) = self.undo.as_mut() {
            log.push(u);
        }
    }

    /// Puts an order back into its level at the place its priority gives it: after every
    /// order of lower or equal priority, before every order of higher priority. The search
    /// starts at `next` (the order that followed it when it was removed) when that order
    /// rests at the same level with a higher priority, else at the back of the level, and
    /// walks towards the front; returns how many orders it stepped over (0 when `next` was
    /// right, which is always the case in a rollback).
    fn insert_at_priority(&mut self, o: RestingOrder, next: Option<OrderId>) -> usize {
        let nodes = &mut self.nodes;
        let start = next
            .and_then(|id| self.index.get(&id).copied())
            .filter(|&k| {
                nodes.get(k).is_some_and(|n| {
                    n.side == o.side && n.price == o.price && n.priority > o.priority
                })
            });
        let level = side_mut(&mut self.bids, &mut self.asks, o.side)
            .entry(o.price)
            .or_default();
        let mut before = start;
        let mut steps = 0;
        loop {
            let prev = match before {
                Some(k) => nodes.prev(k),
                None => level.queue.tail(),
            };
            match prev.and_then(|p| nodes.get(p).map(|n| (p, n.priority))) {
                Some((p, priority)) if priority > o.priority => {
                    before = Some(p);
                    steps += 1;
                }
                _ => break,
            }
        }
        let key = nodes.insert_before(&mut level.queue, before, o);
        level.total += o.remaining;
        self.index.insert(o.id, key);
        steps
    }

    /// Appends an order at the back of its level (it has the newest priority).
    pub(crate) fn insert(&mut self, o: RestingOrder) {
        self.log(Undo::Inserted(o.id));
        let level = side_mut(&mut self.bids, &mut self.asks, o.side)
            .entry(o.price)
            .or_default();
        let key = self.nodes.insert_before(&mut level.queue, None, o);
        level.total += o.remaining;
        self.index.insert(o.id, key);
    }

    /// Removes an order wherever it sits in its level, in `O(1)` of the level's depth.
    pub(crate) fn remove(&mut self, id: OrderId) -> Option<RestingOrder> {
        let key = self.index.remove(&id)?;
        let (side, price) = self.nodes.get(key).map(|o| (o.side, o.price))?;
        let levels = side_mut(&mut self.bids, &mut self.asks, side);
        let level = levels.get_mut(&price)?;
        let (o, next) = self.nodes.remove(&mut level.queue, key)?;
        level.total -= o.remaining;
        if level.queue.len() == 0 {
            levels.remove(&price);
        }
        let next = next.and_then(|k| self.nodes.get(k)).map(|n| n.id);
        self.log(Undo::Removed { order: o, next });
        Some(o)
    }

    /// The first order in time priority at the best level of `side`.
    pub(crate) fn front(&self, side: Side) -> Option<RestingOrder> {
        let (_, level) = self.levels(side).next()?;
        self.nodes.get(level.queue.head()?).copied()
    }

    /// Fills `qty` of the front order of the best level of `side`; returns its remaining
    /// quantity, removing it (and the level if emptied) when fully filled.
    pub(crate) fn fill_front(&mut self, side: Side, qty: Qty) -> Qty {
        let best = match side {
            Side::Buy => self.bids.last_entry(),
            Side::Sell => self.asks.first_entry(),
        };
        let Some(mut entry) = best else {
            return Qty::ZERO;
        };
        let level = entry.get_mut();
        let Some(key) = level.queue.head() else {
            return Qty::ZERO;
        };
        let Some(front) = self.nodes.get_mut(key) else {
            return Qty::ZERO;
        };
        let before = *front;
        let fill = qty.min(front.remaining);
        front.remaining -= fill;
        level.total -= fill;
        let left = front.remaining;
        if left == Qty::ZERO {
            let next = self
                .nodes
                .remove(&mut level.queue, key)
                .and_then(|(_, next)| next);
            if level.queue.len() == 0 {
                entry.remove();
            }
            self.index.remove(&before.id);
            let next = next.and_then(|k| self.nodes.get(k)).map(|n| n.id);
            self.log(Undo::Removed {
                order: before,
                next,
            });
        } else {
            self.log(Undo::Filled(before.id, fill));
        }
        left
    }

    /// How much an order of `taker_side` for `qty` could fill right now, and at what cost,
    /// walking the opposite side while `acceptable(price)` holds and skipping `account`'s
    /// own orders (self-trade prevention cancels them instead of trading).
    pub(crate) fn fillable(
        &self,
        taker_side: Side,
        account: AccountId,
        qty: Qty,
        acceptable: impl Fn(Price) -> bool,
    ) -> (Qty, Cash) {
        let mut filled = Qty::ZERO;
        let mut cost = Cash::ZERO;
        for (price, level) in self.levels(taker_side.opposite()) {
            if filled >= qty || !acceptable(*price) {
                break;
            }
            for o in self.nodes.iter(&level.queue) {
                if o.account == account {
                    continue;
                }
                let q = o.remaining.min(qty - filled);
                filled += q;
                cost += notional(*price, q);
                if filled >= qty {
                    break;
                }
            }
        }
        (filled, cost)
    }
}

/// One side's levels, borrowed apart from the rest of the book so the slab stays usable.
fn side_mut<'a>(
    bids: &'a mut BTreeMap<Price, Level>,
    asks: &'a mut BTreeMap<Price, Level>,
    side: Side,
) -> &'a mut BTreeMap<Price, Level> {
    match side {
        Side::Buy => bids,
        Side::Sell => asks,
    }
}

#[cfg(test)]
mod tests;
