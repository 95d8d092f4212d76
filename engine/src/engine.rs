//! The matching engine state machine: markets (one book per symbol), accounts, and batches.
//!
//! Orders above an instrument's `approvalNotional` are *held* (see [`held`]): risk-checked and
//! reserved at submission, but kept out of the book until an approval enters them into matching.

mod held;

pub use held::{Approval, HeldOrder};

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::book::{Book, DepthLevel, RestingOrder};
use crate::events::{
    AcceptedOrder, BalanceChange, BookLevel, CancelReason, CancelledOrder, Event, EventKind,
    ReleaseReason, Trade,
};
use crate::instrument::{Instrument, InstrumentError, TradingStatus, validate_all};
use crate::ledger::Account;
use crate::num::{Cash, Price, Qty, notional};
use crate::order::{AccountId, NewOrder, OrderId, OrderType, Side, TimeInForce};
use crate::risk::{self, Band, Plan, Reject};

/// The last trade of a symbol: the price band's centre and the ticker's "last".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastTrade {
    /// Trade price.
    pub price: Price,
    /// Trade quantity.
    pub qty: Qty,
    /// Sequence number of the trade event.
    pub seq: u64,
}

/// Everything needed to rebuild a symbol's market from storage (see
/// [`Engine::restore_market`]) and what [`Engine::market_state`] exports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketState {
    /// Resting orders in any order; time priority comes from their `priority`.
    pub resting: Vec<RestingOrder>,
    /// Last event sequence number of the symbol.
    pub seq: u64,
    /// Last market-data sequence number of the symbol.
    pub md_seq: u64,
    /// Last trade, if any.
    pub last_trade: Option<LastTrade>,
    /// Trading status.
    pub status: TradingStatus,
    /// Orders held for approval (not in the book), with what they reserve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldOrder>,
}

/// Why a market could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The symbol is not configured.
    #[error("unknown symbol")]
    UnknownSymbol,
    /// A resting order's account has not been loaded with [`Engine::put_account`].
    #[error("account {0:?} of a resting order is not loaded")]
    UnknownAccount(AccountId),
    /// Two resting orders share an id or a priority.
    #[error("duplicate order id or priority at order {0:?}")]
    Duplicate(OrderId),
    /// A resting order is inconsistent (quantities, priority after `seq`, off tick/lot).
    #[error("invalid resting order {0:?}")]
    InvalidOrder(OrderId),
    /// The best bid is at or above the best ask.
    #[error("restored book is crossed")]
    Crossed,
}

/// Final state of a submitted (or cancelled) order after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OrderStatus {
    /// Resting, nothing filled yet.
    New,
    /// Resting with part filled.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Done with an unfilled remainder cancelled (`filled` may be non-zero).
    Cancelled,
    /// Held for approval: risk-checked and reserved, but not in the book (see [`held`]).
    PendingApproval,
}

/// The result of an accepted submit or cancel: the order's state and the events to persist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Symbol all events belong to.
    pub symbol: String,
    /// The submitted or cancelled order.
    pub order_id: OrderId,
    /// Its state afterwards.
    pub status: OrderStatus,
    /// Total filled quantity of the order.
    pub filled: Qty,
    /// Quantity left resting in the book (zero unless `New`/`PartiallyFilled`).
    pub resting: Qty,
    /// Events in sequence order.
    pub events: Vec<Event>,
}

/// Aggregated depth of a book (market-data read model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    /// Event sequence number the snapshot reflects.
    pub seq: u64,
    /// Market-data sequence number the snapshot reflects (resume the feed after it).
    pub md_seq: u64,
    /// Bids, best first.
    pub bids: Vec<DepthLevel>,
    /// Asks, best first.
    pub asks: Vec<DepthLevel>,
}

/// Best bid and ask (ticker read model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    /// Best bid level.
    pub bid: Option<DepthLevel>,
    /// Best ask level.
    pub ask: Option<DepthLevel>,
}

/// One symbol's matching state.
#[derive(Debug)]
struct Market {
    instrument: Instrument,
    book: Book,
    seq: u64,
    md_seq: u64,
    last_trade: Option<LastTrade>,
    held: BTreeMap<OrderId, HeldOrder>,
}

/// A market's small scalar state, copied at a batch's first touch of the symbol.
#[derive(Debug, Clone)]
struct MarketHead {
    instrument: Instrument,
    seq: u64,
    md_seq: u64,
    last_trade: Option<LastTrade>,
}

/// What a batch needs to undo itself: market heads (books keep their own undo logs) and
/// pre-batch copies of the accounts it touched.
#[derive(Debug, Default)]
struct Journal {
    markets: HashMap<String, MarketHead>,
    accounts: HashMap<AccountId, Option<Account>>,
    /// Held orders as they were before each change, oldest first (undone in reverse).
    held: Vec<(String, OrderId, Option<HeldOrder>)>,
}

/// The trading engine: deterministic, synchronous, no I/O.
///
/// All methods run in memory; the caller persists the returned events. See the crate docs
/// for how the platform batches, persists, rolls back and rebuilds.
#[derive(Debug)]
pub struct Engine {
    markets: HashMap<String, Market>,
    accounts: HashMap<AccountId, Account>,
    journal: Option<Journal>,
}

impl Engine {
    /// An engine trading the given (validated) instruments, with empty books and no accounts.
    pub fn new(instruments: Vec<Instrument>) -> Result<Self, InstrumentError> {
        validate_all(&instruments)?;
        let markets = instruments
            .into_iter()
            .map(|i| {
                let m = Market {
                    instrument: i,
                    book: Book::default(),
                    seq: 0,
                    md_seq: 0,
                    last_trade: None,
                    held: BTreeMap::new(),
                };
                (m.instrument.symbol.clone(), m)
            })
            .collect();
        Ok(Engine {
            markets,
            accounts: HashMap::new(),
            journal: None,
        })
    }

    /// Loads or replaces an account (from the database). Call it for every account that
    /// submits or cancels in a batch, and for every owner of resting orders before
    /// [`Engine::restore_market`].
    pub fn put_account(&mut self, id: AccountId, account: Account) {
        self.accounts.insert(id, account);
    }

    /// An account's current state.
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// All loaded accounts.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &Account)> + '_ {
        self.accounts.iter()
    }

    /// A configured instrument (with its current status).
    pub fn instrument(&self, symbol: &str) -> Option<&Instrument> {
        self.markets.get(symbol).map(|m| &m.instrument)
    }

    /// All configured instruments.
    pub fn instruments(&self) -> impl Iterator<Item = &Instrument> + '_ {
        self.markets.values().map(|m| &m.instrument)
    }

    /// A symbol's book.
    pub fn book(&self, symbol: &str) -> Option<&Book> {
        self.markets.get(symbol).map(|m| &m.book)
    }

    /// Top `n` levels per side.
    pub fn depth(&self, symbol: &str, n: usize) -> Option<Depth> {
        let m = self.markets.get(symbol)?;
        Some(Depth {
            seq: m.seq,
            md_seq: m.md_seq,
            bids: m.book.depth(Side::Buy, n),
            asks: m.book.depth(Side::Sell, n),
        })
    }

    /// Best bid and ask.
    pub fn quote(&self, symbol: &str) -> Option<Quote> {
        let m = self.markets.get(symbol)?;
        Some(Quote {
            bid: m.book.best_bid(),
            ask: m.book.best_ask(),
        })
    }

    /// Last trade of a symbol.
    pub fn last_trade(&self, symbol: &str) -> Option<LastTrade> {
        self.markets.get(symbol)?.last_trade
    }

    /// Last event sequence number of a symbol (compare with the stored one to catch up).
    pub fn seq(&self, symbol: &str) -> Option<u64> {
        self.markets.get(symbol).map(|m| m.seq)
    }

    /// Exports a symbol's market as [`Engine::restore_market`] takes it.
    pub fn market_state(&self, symbol: &str) -> Option<MarketState> {
        let m = self.markets.get(symbol)?;
        Some(MarketState {
            resting: m.book.orders().copied().collect(),
            seq: m.seq,
            md_seq: m.md_seq,
            last_trade: m.last_trade,
            status: m.instrument.status,
            held: m.held.values().cloned().collect(),
        })
    }

    /// Replaces a symbol's book and sequence numbers with stored state — how a replica
    /// catches up from the database. Account reservations are not touched: they are
    /// persisted with the accounts and loaded with [`Engine::put_account`] first.
    pub fn restore_market(&mut self, symbol: &str, state: MarketState) -> Result<(), RestoreError> {
        let m = self
            .markets
            .get(symbol)
            .ok_or(RestoreError::UnknownSymbol)?;
        let inst = &m.instrument;
        let mut resting = state.resting;
        resting.sort_by_key(|o| o.priority);
        let mut book = Book::default();
        let mut last_priority = None;
        for o in &resting {
            if !self.accounts.contains_key(&o.account) {
                return Err(RestoreError::UnknownAccount(o.account));
            }
            if book.contains(o.id) || last_priority == Some(o.priority) {
                return Err(RestoreError::Duplicate(o.id));
            }
            let valid = o.remaining.is_positive()
                && o.remaining <= o.qty
                && o.priority <= state.seq
                && o.price.is_positive()
                && o.price.is_multiple_of(inst.tick_size)
                && o.remaining.is_multiple_of(inst.lot_size);
            if !valid {
                return Err(RestoreError::InvalidOrder(o.id));
            }
            last_priority = Some(o.priority);
            book.insert(*o);
        }
        if let (Some(b), Some(a)) = (book.best_bid(), book.best_ask())
            && b.price >= a.price
        {
            return Err(RestoreError::Crossed);
        }
        let held = held::restore(&self.accounts, symbol, &book, state.held)?;
        let mut instrument = inst.clone();
        instrument.status = state.status;
        self.markets.insert(
            symbol.to_owned(),
            Market {
                instrument,
                book,
                seq: state.seq,
                md_seq: state.md_seq,
                last_trade: state.last_trade,
                held,
            },
        );
        Ok(())
    }

    /// Runs pre-trade risk, then matches the order — or, when its notional exceeds the
    /// instrument's `approval_notional`, holds it for approval (status
    /// [`OrderStatus::PendingApproval`]: reserved, not in the book). A rejection changes nothing.
    pub fn submit(&mut self, order: NewOrder) -> Result<Outcome, Reject> {
        let Engine {
            markets,
            accounts,
            journal,
        } = self;
        let market = markets
            .get_mut(&order.symbol)
            .ok_or(Reject::UnknownSymbol)?;
        let acct = accounts.get(&order.account).ok_or(Reject::UnknownAccount)?;
        let band = Band::new(
            market.last_trade.map(|t| t.price),
            market.instrument.price_band_bps,
        );
        let plan = risk::check(&order, &market.instrument, band, &market.book, acct)?;
        let needs_approval = market
            .instrument
            .approval_notional
            .is_some_and(|limit| limit.is_positive() && plan.notional > limit);
        let mut op = Op::begin(&order.symbol, market, accounts, journal);
        if needs_approval {
            op.hold(order.clone(), plan);
            return Ok(op.finish_held());
        }
        op.run(&order, plan, band);
        Ok(op.finish(order.id))
    }

    /// Cancels a resting order of `account`. Allowed while the symbol is halted.
    pub fn cancel(
        &mut self,
        account: AccountId,
        symbol: &str,
        id: OrderId,
    ) -> Result<Outcome, Reject> {
        let Engine {
            markets,
            accounts,
            journal,
        } = self;
        let market = markets.get_mut(symbol).ok_or(Reject::UnknownSymbol)?;
        if let Some(h) = market.held.get(&id) {
            if h.order.account != account {
                return Err(Reject::NotOwner);
            }
            let mut op = Op::begin(symbol, market, accounts, journal);
            op.release(id, ReleaseReason::Cancelled);
            return Ok(op.finish(id));
        }
        let o = *market.book.get(id).ok_or(Reject::UnknownOrder)?;
        if o.account != account {
            return Err(Reject::NotOwner);
        }
        let mut op = Op::begin(symbol, market, accounts, journal);
        op.cancel_resting(o, CancelReason::Requested);
        op.filled = o.qty - o.remaining;
        op.status = OrderStatus::Cancelled;
        Ok(op.finish(id))
    }

    /// Halts or resumes a symbol (admin). Resting orders stay; new orders are rejected while
    /// halted. Returns the public status event to persist and publish.
    pub fn set_status(&mut self, symbol: &str, status: TradingStatus) -> Result<Event, Reject> {
        let Engine {
            markets,
            accounts,
            journal,
        } = self;
        let market = markets.get_mut(symbol).ok_or(Reject::UnknownSymbol)?;
        let mut op = Op::begin(symbol, market, accounts, journal);
        op.market.instrument.status = status;
        op.emit(EventKind::Status { status });
        let mut out = op.finish(OrderId(0));
        out.events.pop().ok_or(Reject::UnknownSymbol)
    }

    /// Starts a batch: every change until [`Batch::commit`] can be undone with
    /// [`Batch::rollback`] (or by dropping the batch).
    pub fn begin_batch(&mut self) -> Batch<'_> {
        self.journal = Some(Journal::default());
        Batch {
            engine: self,
            done: false,
        }
    }

    fn commit_journal(&mut self) {
        if let Some(j) = self.journal.take() {
            for symbol in j.markets.keys() {
                if let Some(m) = self.markets.get_mut(symbol) {
                    m.book.drop_undo();
                }
            }
        }
    }

    fn rollback_journal(&mut self) {
        if let Some(j) = self.journal.take() {
            for (symbol, head) in j.markets {
                if let Some(m) = self.markets.get_mut(&symbol) {
                    m.book.rollback_undo();
                    m.instrument = head.instrument;
                    m.seq = head.seq;
                    m.md_seq = head.md_seq;
                    m.last_trade = head.last_trade;
                }
            }
            for (symbol, id, before) in j.held.into_iter().rev() {
                if let Some(m) = self.markets.get_mut(&symbol) {
                    match before {
                        Some(h) => m.held.insert(id, h),
                        None => m.held.remove(&id),
                    };
                }
            }
            for (id, a) in j.accounts {
                match a {
                    Some(a) => self.accounts.insert(id, a),
                    None => self.accounts.remove(&id),
                };
            }
        }
    }
}

/// A group of submits/cancels persisted in one database transaction.
///
/// Dropping it without [`Batch::commit`] rolls it back, so an error or a cancelled future on
/// the persistence path can never leave the engine ahead of the database.
#[derive(Debug)]
pub struct Batch<'e> {
    engine: &'e mut Engine,
    done: bool,
}

impl Batch<'_> {
    /// [`Engine::submit`] inside the batch.
    pub fn submit(&mut self, order: NewOrder) -> Result<Outcome, Reject> {
        self.engine.submit(order)
    }

    /// [`Engine::cancel`] inside the batch.
    pub fn cancel(
        &mut self,
        account: AccountId,
        symbol: &str,
        id: OrderId,
    ) -> Result<Outcome, Reject> {
        self.engine.cancel(account, symbol, id)
    }

    /// [`Engine::set_status`] inside the batch.
    pub fn set_status(&mut self, symbol: &str, status: TradingStatus) -> Result<Event, Reject> {
        self.engine.set_status(symbol, status)
    }

    /// [`Engine::approve`] inside the batch.
    pub fn approve(&mut self, symbol: &str, id: OrderId) -> Result<Approval, Reject> {
        self.engine.approve(symbol, id)
    }

    /// [`Engine::release_held`] inside the batch.
    pub fn release_held(
        &mut self,
        symbol: &str,
        id: OrderId,
        reason: ReleaseReason,
    ) -> Result<Outcome, Reject> {
        self.engine.release_held(symbol, id, reason)
    }

    /// Read access to the engine's state including the batch's changes.
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// Keeps the batch's effects (call after the database commit succeeded).
    pub fn commit(mut self) {
        self.engine.commit_journal();
        self.done = true;
    }

    /// Discards the batch's effects (call when the database commit failed).
    pub fn rollback(mut self) {
        self.engine.rollback_journal();
        self.done = true;
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.engine.rollback_journal();
        }
    }
}

/// Account state before an operation touched it, to report deltas.
struct Touched {
    id: AccountId,
    cash: Cash,
    reserved: Cash,
    open_orders: u32,
}

/// One submit/cancel in progress: collects events, changed levels and touched accounts.
struct Op<'a> {
    symbol: &'a str,
    market: &'a mut Market,
    accounts: &'a mut HashMap<AccountId, Account>,
    journal: &'a mut Option<Journal>,
    events: Vec<Event>,
    levels: Vec<(Side, Price)>,
    touched: Vec<Touched>,
    status: OrderStatus,
    filled: Qty,
    resting: Qty,
}

impl<'a> Op<'a> {
    fn begin(
        symbol: &'a str,
        market: &'a mut Market,
        accounts: &'a mut HashMap<AccountId, Account>,
        journal: &'a mut Option<Journal>,
    ) -> Self {
        if let Some(j) = journal.as_mut()
            && !j.markets.contains_key(symbol)
        {
            j.markets.insert(
                symbol.to_owned(),
                MarketHead {
                    instrument: market.instrument.clone(),
                    seq: market.seq,
                    md_seq: market.md_seq,
                    last_trade: market.last_trade,
                },
            );
            market.book.start_undo();
        }
        Op {
            symbol,
            market,
            accounts,
            journal,
            events: Vec::with_capacity(8),
            levels: Vec::new(),
            touched: Vec::new(),
            status: OrderStatus::Cancelled,
            filled: Qty::ZERO,
            resting: Qty::ZERO,
        }
    }

    fn emit(&mut self, kind: EventKind) -> u64 {
        self.market.seq += 1;
        let md_seq = kind.is_public().then(|| {
            self.market.md_seq += 1;
            self.market.md_seq
        });
        self.events.push(Event {
            seq: self.market.seq,
            md_seq,
            kind,
        });
        self.market.seq
    }

    /// The account, recording its pre-state (for deltas and batch rollback) on first touch.
    fn acct(&mut self, id: AccountId) -> &mut Account {
        if !self.touched.iter().any(|t| t.id == id) {
            let before = self.accounts.get(&id);
            if let Some(j) = self.journal.as_mut() {
                j.accounts.entry(id).or_insert_with(|| before.cloned());
            }
            self.touched.push(Touched {
                id,
                cash: before.map_or(Cash::ZERO, |a| a.cash),
                reserved: before.map_or(Cash::ZERO, |a| a.cash_reserved),
                open_orders: before.map_or(0, |a| a.open_orders),
            });
        }
        // Resting orders' owners are always loaded (restore_market checks it); an unknown
        // maker would start from an empty account rather than panic.
        self.accounts.entry(id).or_default()
    }

    /// Releases what a resting order reserved and removes it from the book.
    fn cancel_resting(&mut self, o: RestingOrder, reason: CancelReason) {
        self.market.book.remove(o.id);
        self.levels.push((o.side, o.price));
        let symbol = self.symbol;
        let a = self.acct(o.account);
        match o.side {
            Side::Buy => a.cash_reserved -= notional(o.price, o.remaining),
            Side::Sell => a.position_mut(symbol).reserved -= o.remaining,
        }
        a.open_orders = a.open_orders.saturating_sub(1);
        self.emit(EventKind::OrderCancelled(CancelledOrder {
            id: o.id,
            account: o.account,
            side: o.side,
            cancelled: o.remaining,
            reason,
        }));
    }

    fn run(&mut self, o: &NewOrder, plan: Plan, band: Band) {
        let symbol = self.symbol;
        let priority = self.emit(EventKind::OrderAccepted(AcceptedOrder {
            id: o.id,
            account: o.account,
            side: o.side,
            order_type: o.order_type,
            price: o.price,
            qty: o.qty,
            tif: o.tif,
        }));
        let mut reserve_left = plan.cash_reserve;
        let a = self.acct(o.account);
        match o.side {
            Side::Buy => a.cash_reserved += reserve_left,
            Side::Sell => a.position_mut(symbol).reserved += o.qty,
        }
        let mut remaining = o.qty;
        let killed = o.tif == TimeInForce::Fok && plan.fillable < o.qty;
        let opp = o.side.opposite();
        while !killed && remaining.is_positive() {
            let Some(m) = self.market.book.front(opp) else {
                break;
            };
            if !risk::acceptable(plan.limit, o.side, band, m.price) {
                break;
            }
            if m.account == o.account {
                self.cancel_resting(m, CancelReason::SelfTradePrevention);
                continue;
            }
            let q = remaining.min(m.remaining);
            let maker_left = self.market.book.fill_front(opp, q);
            self.levels.push((opp, m.price));
            remaining -= q;
            let n = notional(m.price, q);
            let taker = self.acct(o.account);
            match o.side {
                Side::Buy => {
                    let consumed = plan.limit.map_or(n, |l| notional(l, q));
                    taker.cash -= n;
                    taker.cash_reserved -= consumed;
                    reserve_left -= consumed;
                }
                Side::Sell => {
                    taker.cash += n;
                    taker.position_mut(symbol).reserved -= q;
                }
            }
            taker.position_mut(symbol).apply_fill(o.side, m.price, q);
            let maker = self.acct(m.account);
            match opp {
                Side::Buy => {
                    maker.cash -= n;
                    maker.cash_reserved -= n;
                }
                Side::Sell => {
                    maker.cash += n;
                    maker.position_mut(symbol).reserved -= q;
                }
            }
            maker.position_mut(symbol).apply_fill(opp, m.price, q);
            if !maker_left.is_positive() {
                maker.open_orders = maker.open_orders.saturating_sub(1);
            }
            let trade_id = self.market.seq + 1;
            self.emit(EventKind::Trade(Trade {
                trade_id,
                price: m.price,
                qty: q,
                taker_side: o.side,
                taker_order: o.id,
                taker_account: o.account,
                maker_order: m.id,
                maker_account: m.account,
                taker_remaining: remaining,
                maker_remaining: maker_left,
            }));
            self.market.last_trade = Some(LastTrade {
                price: m.price,
                qty: q,
                seq: trade_id,
            });
        }
        self.filled = o.qty - remaining;
        let rests = o.order_type == OrderType::Limit && o.tif == TimeInForce::Gtc;
        if remaining.is_positive() && rests {
            if let Some(price) = plan.limit {
                let r = RestingOrder {
                    id: o.id,
                    account: o.account,
                    side: o.side,
                    price,
                    qty: o.qty,
                    remaining,
                    priority,
                };
                self.market.book.insert(r);
                self.levels.push((o.side, price));
                self.acct(o.account).open_orders += 1;
                self.emit(EventKind::OrderRested(r));
                self.resting = remaining;
                self.status = if self.filled.is_positive() {
                    OrderStatus::PartiallyFilled
                } else {
                    OrderStatus::New
                };
            }
            return;
        }
        let a = self.acct(o.account);
        match o.side {
            Side::Buy => a.cash_reserved -= reserve_left,
            Side::Sell => a.position_mut(symbol).reserved -= remaining,
        }
        if remaining.is_positive() {
            let reason = match (o.order_type, o.tif) {
                (_, TimeInForce::Fok) => CancelReason::FokUnfillable,
                (OrderType::Market, _) => CancelReason::MarketRemainder,
                _ => CancelReason::IocRemainder,
            };
            self.emit(EventKind::OrderCancelled(CancelledOrder {
                id: o.id,
                account: o.account,
                side: o.side,
                cancelled: remaining,
                reason,
            }));
            self.status = OrderStatus::Cancelled;
        } else {
            self.status = OrderStatus::Filled;
        }
    }

    fn finish(mut self, order_id: OrderId) -> Outcome {
        let mut seen: Vec<(Side, Price)> = Vec::with_capacity(self.levels.len());
        for (side, price) in std::mem::take(&mut self.levels) {
            if seen.contains(&(side, price)) {
                continue;
            }
            seen.push((side, price));
            let l = self.market.book.level(side, price);
            self.emit(EventKind::BookLevel(BookLevel {
                side,
                price,
                qty: l.qty,
                orders: l.orders,
            }));
        }
        for t in std::mem::take(&mut self.touched) {
            let Some(a) = self.accounts.get(&t.id) else {
                continue;
            };
            let change = BalanceChange {
                account: t.id,
                symbol: self.symbol.to_owned(),
                cash_delta: a.cash - t.cash,
                cash_reserved_delta: a.cash_reserved - t.reserved,
                open_orders_delta: i64::from(a.open_orders) - i64::from(t.open_orders),
                cash: a.cash,
                cash_reserved: a.cash_reserved,
                position: a.position(self.symbol),
            };
            self.emit(EventKind::Balance(change));
        }
        Outcome {
            symbol: self.symbol.to_owned(),
            order_id,
            status: self.status,
            filled: self.filled,
            resting: self.resting,
            events: self.events,
        }
    }
}
