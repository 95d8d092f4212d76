//! The order book of one symbol: resting limit orders in price-time priority.
//!
//! Each side is a `BTreeMap` from price to a FIFO level; an index maps order ids to their
//! side and price so cancels find their level in `O(log n)`. During a batch the book keeps an
//! undo log of its own mutations, so rolling back a failed batch costs time proportional to
//! the batch, not to the book (cloning a 100k-order book per batch would dominate).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::num::{Cash, Price, Qty, notional};
use crate::order::{AccountId, OrderId, Side};

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
    orders: VecDeque<RestingOrder>,
    total: Qty,
}

/// One reversible book mutation.
#[derive(Debug, Clone, Copy)]
enum Undo {
    /// An order was appended; undo removes it.
    Inserted(OrderId),
    /// An order (as it was) left the book; undo puts it back at its priority.
    Removed(RestingOrder),
    /// An order was partly filled; undo gives the quantity back.
    Filled(OrderId, Qty),
}

/// Resting orders of one symbol with price-time priority.
#[derive(Debug, Clone, Default)]
pub struct Book {
    bids: BTreeMap<Price, Level>,
    asks: BTreeMap<Price, Level>,
    index: HashMap<OrderId, (Side, Price)>,
    undo: Option<Vec<Undo>>,
}

impl Book {
    fn side(&self, side: Side) -> &BTreeMap<Price, Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Price, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
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
        let (side, price) = self.index.get(&id)?;
        self.side(*side)
            .get(price)?
            .orders
            .iter()
            .find(|o| o.id == id)
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
                orders: l.orders.len() as u32,
            })
            .collect()
    }

    /// The aggregated level at one price (zero quantity when empty).
    pub fn level(&self, side: Side, price: Price) -> DepthLevel {
        let l = self.side(side).get(&price);
        DepthLevel {
            price,
            qty: l.map_or(Qty::ZERO, |l| l.total),
            orders: l.map_or(0, |l| l.orders.len() as u32),
        }
    }

    /// All resting orders, bids best-first then asks best-first, each level in time order.
    /// This is what the platform persists and what [`crate::Engine::restore_market`] reloads.
    pub fn orders(&self) -> impl Iterator<Item = &RestingOrder> + '_ {
        self.levels(Side::Buy)
            .chain(self.levels(Side::Sell))
            .flat_map(|(_, l)| l.orders.iter())
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
                Undo::Removed(o) => self.insert_at_priority(o),
                Undo::Filled(id, q) => {
                    if let Some((side, price)) = self.index.get(&id).copied()
                        && let Some(level) = self.side_mut(side).get_mut(&price)
                        && let Some(o) = level.orders.iter_mut().find(|o| o.id == id)
                    {
                        o.remaining += q;
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

    /// Puts an order back into its level at the place its priority gives it.
    fn insert_at_priority(&mut self, o: RestingOrder) {
        self.index.insert(o.id, (o.side, o.price));
        let level = self.side_mut(o.side).entry(o.price).or_default();
        let at = level.orders.partition_point(|x| x.priority < o.priority);
        level.total += o.remaining;
        level.orders.insert(at, o);
    }

    /// Appends an order at the back of its level (it has the newest priority).
    pub(crate) fn insert(&mut self, o: RestingOrder) {
        self.log(Undo::Inserted(o.id));
        self.index.insert(o.id, (o.side, o.price));
        let level = self.side_mut(o.side).entry(o.price).or_default();
        level.total += o.remaining;
        level.orders.push_back(o);
    }

    /// Removes an order wherever it sits in its level.
    pub(crate) fn remove(&mut self, id: OrderId) -> Option<RestingOrder> {
        let (side, price) = self.index.remove(&id)?;
        let levels = self.side_mut(side);
        let level = levels.get_mut(&price)?;
        let pos = level.orders.iter().position(|o| o.id == id)?;
        let o = level.orders.remove(pos)?;
        level.total -= o.remaining;
        if level.orders.is_empty() {
            levels.remove(&price);
        }
        self.log(Undo::Removed(o));
        Some(o)
    }

    /// The first order in time priority at the best level of `side`.
    pub(crate) fn front(&self, side: Side) -> Option<RestingOrder> {
        self.levels(side)
            .next()
            .and_then(|(_, l)| l.orders.front().copied())
    }

    /// Fills `qty` of the front order of the best level of `side`; returns its remaining
    /// quantity, removing it (and the level if emptied) when fully filled.
    pub(crate) fn fill_front(&mut self, side: Side, qty: Qty) -> Qty {
        let best = match side {
            Side::Buy => self.bids.keys().next_back().copied(),
            Side::Sell => self.asks.keys().next().copied(),
        };
        let Some(price) = best else { return Qty::ZERO };
        let levels = self.side_mut(side);
        let Some(level) = levels.get_mut(&price) else {
            return Qty::ZERO;
        };
        let Some(front) = level.orders.front_mut() else {
            return Qty::ZERO;
        };
        let before = *front;
        let fill = qty.min(front.remaining);
        front.remaining -= fill;
        level.total -= fill;
        let left = front.remaining;
        if left == Qty::ZERO {
            level.orders.pop_front();
            if level.orders.is_empty() {
                levels.remove(&price);
            }
            self.index.remove(&before.id);
            self.log(Undo::Removed(before));
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
            for o in &level.orders {
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
