//! Plans one batch in memory: runs its commands through the engine and collects, merged per
//! row, everything the database must record, the replies and the market data. No I/O: the
//! matcher loads what the plan needs before and writes what it produced after, so the number of
//! statements never depends on what happened inside.

mod approvals;
pub(super) use approvals::ApprovalMetric;

use std::collections::{BTreeMap, HashMap};

use tradeplane_engine::engine::{Batch, OrderStatus, Outcome};
use tradeplane_engine::events::{CancelReason, EventKind};
use tradeplane_engine::instrument::TradingStatus;
use tradeplane_engine::num::{Cash, Price, Qty, notional};
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, OrderType, TimeInForce};

use super::market::MarketEvent;
use super::{Done, PlaceOrder, Refusal, Reply, Request};
use crate::store::NewAuditEvent;
use crate::store::market::{SymbolRow, side_str};
use crate::store::matching::{BatchWrites, NewOrderRow, OrderChange, TradeRow};
use crate::store::views::OrderView;

/// What the database said before matching.
pub(super) struct Loaded<'a> {
    /// The orders that the batch's idempotency keys already name, by (account, key).
    pub existing: &'a HashMap<(i64, String), OrderView>,
    /// Accounts that submitted a command but no longer exist.
    pub missing: &'a dyn Fn(i64) -> bool,
    /// The locked rows of the batch's symbols.
    pub symbols: BTreeMap<String, SymbolRow>,
    /// How long a held order waits for approval (`APPROVAL_TIMEOUT_SECONDS`).
    pub approval_timeout: chrono::Duration,
}

/// A batch's result, ready to write.
#[derive(Default)]
pub(super) struct Plan {
    /// One reply per command, in order.
    pub replies: Vec<Reply>,
    /// The rows to write.
    pub writes: BatchWrites,
    /// Public market data, published after the commit.
    pub public: Vec<MarketEvent>,
    /// (symbol, side, type, outcome) per order, for `orders_total`.
    pub outcomes: Vec<(String, &'static str, &'static str, &'static str)>,
    /// (symbol, quantity) per trade, for the trade metrics.
    pub trades: Vec<(String, Qty)>,
    /// Approval events for the approval metrics.
    pub approvals: Vec<approvals::ApprovalMetric>,
    /// Index of each new order in `writes.new_orders`, of each changed one in `order_changes`,
    /// of each decided held order in `held_changes`.
    new_index: HashMap<i64, usize>,
    change_index: HashMap<i64, usize>,
    held_index: HashMap<i64, usize>,
    /// How long a held order waits (from [`Loaded`]).
    approval_timeout: chrono::Duration,
}

/// `OrderStatus` as stored.
pub(super) fn status_str(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::New => "new",
        OrderStatus::PartiallyFilled => "partially_filled",
        OrderStatus::Filled => "filled",
        OrderStatus::Cancelled => "cancelled",
        // Stored as `pending` (see `store::matching::held`), shown as `pending_approval`.
        OrderStatus::PendingApproval => "pending",
    }
}

/// `CancelReason` as stored.
pub(super) fn reason_str(r: CancelReason) -> &'static str {
    match r {
        CancelReason::Requested => "requested",
        CancelReason::SelfTradePrevention => "self_trade_prevention",
        CancelReason::IocRemainder => "ioc_remainder",
        CancelReason::FokUnfillable => "fok_unfillable",
        CancelReason::MarketRemainder => "market_remainder",
    }
}

pub(super) fn type_str(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
    }
}

pub(super) fn tif_str(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
    }
}

/// The time in force an order gets when it names none.
pub(super) fn effective_tif(order: &PlaceOrder) -> TimeInForce {
    order.tif.unwrap_or(match order.order_type {
        OrderType::Limit => TimeInForce::Gtc,
        OrderType::Market => TimeInForce::Ioc,
    })
}

/// The cash value of the trades in `outcome` (its order's fills), saturating.
fn traded_value(outcome: &Outcome) -> Cash {
    outcome
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Trade(t) => Some(notional(t.price, t.qty)),
            _ => None,
        })
        .fold(Cash::ZERO, |sum, v| sum.checked_add(v).unwrap_or(sum))
}

fn id_u64(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

fn id_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Whether a stored order is the one `order` asks for: the same key may only be retried with
/// the same order (as Stripe's idempotency keys), anything else is a conflict.
fn same_order(stored: &OrderView, order: &PlaceOrder) -> bool {
    stored.symbol == order.symbol
        && stored.side == side_str(order.side)
        && stored.order_type == type_str(order.order_type)
        && stored.tif == tif_str(effective_tif(order))
        && stored.price == order.price
        && stored.qty == order.qty
}

fn key_conflict(key: &str) -> Refusal {
    Refusal::IdempotencyConflict(format!(
        "client_order_id {key:?} was already used for a different order; use a new id for a new order"
    ))
}

impl Plan {
    /// Runs `requests` (places, cancels, status changes) through `batch`.
    pub(super) fn build(
        batch: &mut Batch<'_>,
        requests: &[&Request],
        loaded: Loaded<'_>,
        ids: &mut dyn Iterator<Item = i64>,
        origin: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Plan {
        let mut plan = Plan {
            replies: Vec::with_capacity(requests.len()),
            ..Plan::default()
        };
        plan.writes.symbols = loaded.symbols;
        plan.approval_timeout = loaded.approval_timeout;
        // The first command of the batch with each key, to answer its repeats alike.
        let mut first_with_key: HashMap<(i64, &str), usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            let reply = match request {
                Request::Place {
                    account,
                    order,
                    request_id,
                } => {
                    if (loaded.missing)(*account) {
                        plan.replies.push(Err(Refusal::AccountGone));
                        continue;
                    }
                    if let Some(key) = order.client_order_id.as_deref() {
                        if let Some(&first) = first_with_key.get(&(*account, key)) {
                            let same = match requests[first] {
                                Request::Place { order: o, .. } => {
                                    o.symbol == order.symbol
                                        && o.side == order.side
                                        && o.order_type == order.order_type
                                        && effective_tif(o) == effective_tif(order)
                                        && o.price == order.price
                                        && o.qty == order.qty
                                }
                                _ => false,
                            };
                            let outcome = if same {
                                repeats.push((index, first));
                                plan.replies.push(Err(Refusal::Unavailable(String::new())));
                                "duplicate"
                            } else {
                                plan.replies.push(Err(key_conflict(key)));
                                "idempotency_conflict"
                            };
                            plan.outcomes.push((
                                order.symbol.clone(),
                                side_str(order.side),
                                type_str(order.order_type),
                                outcome,
                            ));
                            continue;
                        }
                        first_with_key.insert((*account, key), index);
                        if let Some(existing) = loaded.existing.get(&(*account, key.to_owned())) {
                            // Labelled with the stored order's fields when it is a true repeat.
                            let (reply, label) = if same_order(existing, order) {
                                (Ok(Done::Order(Box::new(existing.clone()))), "duplicate")
                            } else {
                                (Err(key_conflict(key)), "idempotency_conflict")
                            };
                            plan.outcomes.push((
                                order.symbol.clone(),
                                side_str(order.side),
                                type_str(order.order_type),
                                label,
                            ));
                            plan.replies.push(reply);
                            continue;
                        }
                    }
                    plan.place(
                        batch,
                        *account,
                        order,
                        request_id.as_deref(),
                        ids,
                        origin,
                        now,
                    )
                }
                Request::Cancel {
                    account,
                    symbol,
                    order_id,
                    view,
                    request_id,
                } => {
                    if (loaded.missing)(*account) {
                        plan.replies.push(Err(Refusal::AccountGone));
                        continue;
                    }
                    plan.cancel(
                        batch, *account, symbol, *order_id, view, request_id, origin, now,
                    )
                }
                Request::SetStatus {
                    symbol,
                    status,
                    actor,
                    request_id,
                } => plan.set_status(batch, symbol, *status, actor, request_id, origin),
                Request::Approve {
                    order_id: _,
                    view,
                    admin,
                    request_id,
                } => plan.approve(batch, view, *admin, request_id, origin, now),
                Request::Reject {
                    order_id: _,
                    view,
                    admin,
                    reason,
                    request_id,
                } => plan.release(
                    batch,
                    view,
                    approvals::Decision::Rejected {
                        admin: *admin,
                        reason,
                    },
                    request_id,
                    origin,
                    now,
                ),
                Request::Expire { order_id: _, view } => plan.release(
                    batch,
                    view,
                    approvals::Decision::Expired,
                    &None,
                    origin,
                    now,
                ),
                Request::Credit { .. } | Request::Barrier => Err(Refusal::Internal(
                    "asset deposits and barriers are not matched in a batch".into(),
                )),
            };
            plan.replies.push(reply);
        }
        for (index, first) in repeats {
            plan.replies[index] = plan.replies[first].clone();
        }
        plan
    }

    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        batch: &mut Batch<'_>,
        account: i64,
        order: &PlaceOrder,
        request_id: Option<&str>,
        ids: &mut dyn Iterator<Item = i64>,
        origin: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Reply {
        let side = side_str(order.side);
        let kind = type_str(order.order_type);
        let tif = effective_tif(order);
        let known = batch.engine().instrument(&order.symbol).is_some();
        let metric_symbol = if known {
            order.symbol.clone()
        } else {
            "unknown".to_owned()
        };
        let shown: String = order.symbol.chars().take(32).collect();
        let reject = |plan: &mut Plan, code: &'static str, message: String| {
            plan.outcomes
                .push((metric_symbol.clone(), side, kind, "rejected"));
            plan.writes.audits.push(NewAuditEvent {
                actor: format!("account:{account}"),
                action: "order.rejected".into(),
                subject: None,
                request_id: request_id.map(str::to_owned),
                details: serde_json::json!({ "code": code, "symbol": shown }),
            });
            Err(Refusal::Rule { code, message })
        };
        if !known {
            return reject(self, "unknownSymbol", format!("unknown symbol {shown:?}"));
        }
        if order.qty.raw() <= 0 {
            return reject(self, "invalidQuantity", "quantity must be positive".into());
        }
        let Some(id) = ids.next() else {
            return Err(Refusal::Unavailable(
                "no order id was allocated for this order".into(),
            ));
        };
        let new = NewOrder {
            id: OrderId(id_u64(id)),
            account: AccountId(id_u64(account)),
            symbol: order.symbol.clone(),
            side: order.side,
            order_type: order.order_type,
            price: order.price,
            qty: order.qty,
            tif,
        };
        let outcome = match batch.submit(new) {
            Err(r) => return reject(self, r.code(), r.to_string()),
            Ok(outcome) => outcome,
        };
        // The row goes in first so that fills and cancels of it later in the batch merge into it.
        self.new_index.insert(id, self.writes.new_orders.len());
        self.writes.new_orders.push(NewOrderRow {
            id,
            account_id: account,
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side,
            order_type: kind,
            tif: tif_str(tif),
            price: order.price.map(Price::raw),
            qty: order.qty.raw(),
            filled: 0,
            remaining: 0,
            status: "new",
            cancel_reason: None,
            priority: None,
            approval: None,
        });
        if outcome.status == OrderStatus::PendingApproval {
            return self.held(batch, account, order, id, &outcome, request_id, origin, now);
        }
        let priority = self.record(&order.symbol, &outcome, origin);
        let reason = own_cancel_reason(&outcome);
        if let Some(&i) = self.new_index.get(&id) {
            let row = &mut self.writes.new_orders[i];
            row.filled = outcome.filled.raw();
            row.remaining = outcome.resting.raw();
            row.status = status_str(outcome.status);
            row.cancel_reason = reason;
            row.priority = priority;
        }
        let mut details = serde_json::json!({
            "symbol": order.symbol, "side": side, "type": kind, "price": order.price,
            "qty": order.qty, "status": status_str(outcome.status), "filled": outcome.filled,
        });
        if order.price.is_none() {
            // A market order states no price: its value for the audit score is what it traded.
            details["notional"] = traded_value(&outcome).to_string().into();
        }
        self.writes.audits.push(NewAuditEvent {
            actor: format!("account:{account}"),
            action: "order.placed".into(),
            subject: Some(format!("order:{id}")),
            request_id: request_id.map(str::to_owned),
            details,
        });
        self.outcomes.push((metric_symbol, side, kind, "accepted"));
        Ok(Done::Order(Box::new(OrderView {
            id,
            account_id: account,
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: side.to_owned(),
            order_type: kind.to_owned(),
            tif: tif_str(tif).to_owned(),
            price: order.price,
            qty: order.qty,
            filled: outcome.filled,
            remaining: outcome.resting,
            status: status_str(outcome.status).to_owned(),
            cancel_reason: reason.map(str::to_owned),
            created_at: now,
            updated_at: now,
        })))
    }

    #[allow(clippy::too_many_arguments)]
    fn cancel(
        &mut self,
        batch: &mut Batch<'_>,
        account: i64,
        symbol: &str,
        order_id: i64,
        view: &OrderView,
        request_id: &Option<String>,
        origin: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Reply {
        if batch
            .engine()
            .held_order(symbol, OrderId(id_u64(order_id)))
            .is_some()
        {
            return self.release(
                batch,
                view,
                approvals::Decision::Cancelled { account },
                request_id,
                origin,
                now,
            );
        }
        let outcome = match batch.cancel(
            AccountId(id_u64(account)),
            symbol,
            OrderId(id_u64(order_id)),
        ) {
            Err(reject) => {
                return Err(Refusal::Conflict(format!(
                    "order {order_id} cannot be cancelled: {reject}"
                )));
            }
            Ok(outcome) => outcome,
        };
        self.record(symbol, &outcome, origin);
        let reason = own_cancel_reason(&outcome).unwrap_or("requested");
        self.cancelled(order_id, reason);
        self.writes.audits.push(NewAuditEvent {
            actor: format!("account:{account}"),
            action: "order.cancelled".into(),
            subject: Some(format!("order:{order_id}")),
            request_id: request_id.clone(),
            details: serde_json::json!({ "symbol": symbol, "filled": outcome.filled }),
        });
        let mut view = view.clone();
        view.filled = outcome.filled;
        view.remaining = Qty::ZERO;
        view.status = "cancelled".into();
        view.cancel_reason = Some(reason.to_owned());
        view.updated_at = now;
        Ok(Done::Order(Box::new(view)))
    }

    fn set_status(
        &mut self,
        batch: &mut Batch<'_>,
        symbol: &str,
        status: TradingStatus,
        actor: &str,
        request_id: &Option<String>,
        origin: &str,
    ) -> Reply {
        let event = batch
            .set_status(symbol, status)
            .map_err(|reject| Refusal::Rule {
                code: reject.code(),
                message: reject.to_string(),
            })?;
        let row = self.writes.symbols.entry(symbol.to_owned()).or_default();
        row.seq = id_i64(event.seq);
        if let Some(md) = event.md_seq {
            row.md_seq = id_i64(md);
        }
        row.status = stored_status(status).into();
        self.public
            .extend(MarketEvent::from_engine(symbol, &event, origin));
        self.writes.audits.push(NewAuditEvent {
            actor: actor.to_owned(),
            action: if status == TradingStatus::Halted {
                "market.halted"
            } else {
                "market.resumed"
            }
            .into(),
            subject: Some(format!("symbol:{symbol}")),
            request_id: request_id.clone(),
            details: serde_json::json!({}),
        });
        Ok(Done::Status)
    }

    /// Folds an outcome's events into the writes; returns the order's time priority if it was
    /// accepted into the book.
    fn record(&mut self, symbol: &str, outcome: &Outcome, origin: &str) -> Option<i64> {
        let mut priority = None;
        for event in &outcome.events {
            let row = self.writes.symbols.entry(symbol.to_owned()).or_default();
            row.seq = id_i64(event.seq);
            if let Some(md) = event.md_seq {
                row.md_seq = id_i64(md);
            }
            match &event.kind {
                EventKind::OrderAccepted(_) => priority = Some(id_i64(event.seq)),
                EventKind::Trade(t) => {
                    row.last_trade = Some((t.price.raw(), t.qty.raw(), id_i64(event.seq)));
                    self.writes.trades.push(TradeRow {
                        symbol: symbol.to_owned(),
                        seq: id_i64(event.seq),
                        price: t.price.raw(),
                        qty: t.qty.raw(),
                        taker_side: side_str(t.taker_side),
                        taker_order_id: id_i64(t.taker_order.0),
                        maker_order_id: id_i64(t.maker_order.0),
                        taker_account_id: id_i64(t.taker_account.0),
                        maker_account_id: id_i64(t.maker_account.0),
                    });
                    self.filled(
                        id_i64(t.maker_order.0),
                        t.qty.raw(),
                        t.maker_remaining.raw(),
                    );
                    self.trades.push((symbol.to_owned(), t.qty));
                }
                EventKind::OrderCancelled(c) if c.id != outcome.order_id => {
                    self.cancelled(id_i64(c.id.0), reason_str(c.reason));
                }
                EventKind::Balance(b) => {
                    let account = id_i64(b.account.0);
                    let change = self.writes.accounts.entry(account).or_default();
                    // Engine amounts of one batch stay far inside 64 bits (risk caps notional).
                    change.cash += i64::try_from(b.cash_delta.raw()).unwrap_or(i64::MAX);
                    change.cash_reserved +=
                        i64::try_from(b.cash_reserved_delta.raw()).unwrap_or(i64::MAX);
                    change.open_orders += b.open_orders_delta;
                    self.writes
                        .positions
                        .insert((account, b.symbol.clone()), b.position);
                }
                EventKind::Status { status } => row.status = stored_status(*status).into(),
                EventKind::OrderCancelled(_)
                | EventKind::OrderRested(_)
                | EventKind::BookLevel(_)
                | EventKind::OrderHeld(_)
                | EventKind::HoldReleased(_) => {}
            }
            self.public
                .extend(MarketEvent::from_engine(symbol, event, origin));
        }
        priority
    }

    /// A resting order traded `qty`, leaving `remaining`.
    fn filled(&mut self, id: i64, qty: i64, remaining: i64) {
        let status = if remaining == 0 {
            "filled"
        } else {
            "partially_filled"
        };
        if let Some(&i) = self.held_index.get(&id) {
            let row = &mut self.writes.held_changes[i];
            row.filled += qty;
            row.remaining = remaining;
            row.status = status;
            return;
        }
        if let Some(&i) = self.new_index.get(&id) {
            let row = &mut self.writes.new_orders[i];
            row.filled += qty;
            row.remaining = remaining;
            row.status = status;
            return;
        }
        let change = self.change(id);
        change.filled += qty;
        change.remaining = remaining;
        change.status = status;
    }

    /// A resting order was cancelled.
    fn cancelled(&mut self, id: i64, reason: &'static str) {
        if let Some(&i) = self.held_index.get(&id) {
            let row = &mut self.writes.held_changes[i];
            row.remaining = 0;
            row.status = "cancelled";
            row.cancel_reason = Some(reason);
            return;
        }
        if let Some(&i) = self.new_index.get(&id) {
            let row = &mut self.writes.new_orders[i];
            row.remaining = 0;
            row.status = "cancelled";
            row.cancel_reason = Some(reason);
            return;
        }
        let change = self.change(id);
        change.remaining = 0;
        change.status = "cancelled";
        change.cancel_reason = Some(reason);
    }

    fn change(&mut self, id: i64) -> &mut OrderChange {
        let i = *self.change_index.entry(id).or_insert_with(|| {
            self.writes.order_changes.push(OrderChange {
                id,
                filled: 0,
                remaining: 0,
                status: "new",
                cancel_reason: None,
            });
            self.writes.order_changes.len() - 1
        });
        &mut self.writes.order_changes[i]
    }
}

/// Why the outcome's own order was cancelled, if it was.
fn own_cancel_reason(outcome: &Outcome) -> Option<&'static str> {
    outcome.events.iter().find_map(|e| match &e.kind {
        EventKind::OrderCancelled(c) if c.id == outcome.order_id => Some(reason_str(c.reason)),
        _ => None,
    })
}

fn stored_status(status: TradingStatus) -> &'static str {
    if status == TradingStatus::Halted {
        "halted"
    } else {
        "open"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use tradeplane_engine::Engine;
    use tradeplane_engine::ledger::{Account, Position};
    use tradeplane_engine::num::{Cash, Price, Qty};
    use tradeplane_engine::order::{AccountId, OrderType, Side};

    use super::*;

    fn q(s: &str) -> Qty {
        s.parse().expect("qty")
    }
    fn p(s: &str) -> Price {
        s.parse().expect("price")
    }

    /// Symbol "T" (tick 1, lot 1), accounts 1..=3 with 100,000 cash and 1,000 units each.
    fn engine() -> Engine {
        let t = serde_json::from_str(
            r#"{"symbol":"T","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"1000",
                "maxNotional":"1000000","priceBandBps":1000}"#,
        )
        .expect("instrument");
        let mut e = Engine::new(vec![t]).expect("engine");
        for id in 1..=3 {
            let mut a = Account::with_cash("100000".parse::<Cash>().expect("cash"));
            a.positions.insert(
                "T".into(),
                Position {
                    qty: q("1000"),
                    cost_basis: "100000".parse().expect("cash"),
                    ..Position::default()
                },
            );
            e.put_account(AccountId(id), a);
        }
        e
    }

    fn limit(account: i64, side: Side, price: &str, qty: &str, key: Option<&str>) -> Request {
        Request::Place {
            account,
            order: PlaceOrder {
                symbol: "T".into(),
                side,
                order_type: OrderType::Limit,
                price: Some(p(price)),
                qty: q(qty),
                tif: None,
                client_order_id: key.map(str::to_owned),
            },
            request_id: Some("req".into()),
        }
    }

    fn build(
        engine: &mut Engine,
        requests: &[Request],
        existing: &HashMap<(i64, String), OrderView>,
    ) -> Plan {
        // Order ids never repeat across calls.
        static NEXT_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(100);
        let first = NEXT_ID.fetch_add(1000, std::sync::atomic::Ordering::Relaxed);
        let refs: Vec<&Request> = requests.iter().collect();
        let mut ids = first..;
        let mut batch = engine.begin_batch();
        let plan = Plan::build(
            &mut batch,
            &refs,
            Loaded {
                existing,
                missing: &|a| a == 9,
                symbols: BTreeMap::from([("T".to_owned(), SymbolRow::default())]),
                approval_timeout: chrono::Duration::seconds(3600),
            },
            &mut ids,
            "origin",
            chrono::Utc::now(),
        );
        batch.commit();
        plan
    }

    fn order_of(reply: &Reply) -> &OrderView {
        match reply {
            Ok(Done::Order(o)) => o,
            other => panic!("not an order: {other:?}"),
        }
    }

    #[test]
    fn an_order_filled_later_in_the_batch_is_inserted_in_its_final_state() {
        let mut e = engine();
        let plan = build(
            &mut e,
            &[
                limit(1, Side::Sell, "100", "5", None),
                limit(2, Side::Buy, "100", "3", None),
            ],
            &HashMap::new(),
        );
        let w = &plan.writes;
        assert_eq!(w.new_orders.len(), 2);
        assert!(w.order_changes.is_empty(), "nothing pre-existing changed");
        let maker = &w.new_orders[0];
        assert_eq!(
            (maker.filled, maker.remaining, maker.status),
            (q("3").raw(), q("2").raw(), "partially_filled")
        );
        assert_eq!(maker.priority, Some(1), "accepted at seq 1");
        let taker = &w.new_orders[1];
        assert_eq!(
            (taker.id, taker.filled, taker.remaining, taker.status),
            (maker.id + 1, q("3").raw(), 0, "filled")
        );
        assert!(
            taker.priority > maker.priority,
            "time priority follows arrival"
        );
        assert_eq!(w.trades.len(), 1);
        assert_eq!(
            (
                w.trades[0].maker_order_id,
                w.trades[0].taker_order_id,
                w.trades[0].qty
            ),
            (maker.id, taker.id, q("3").raw())
        );
        // Cash moved 300 from the buyer to the seller; the seller's reservation is units, not cash.
        assert_eq!(
            w.accounts[&1].cash,
            "300".parse::<Cash>().expect("c").raw() as i64
        );
        assert_eq!(
            w.accounts[&2].cash,
            -("300".parse::<Cash>().expect("c").raw() as i64)
        );
        assert_eq!(
            w.accounts[&1].open_orders, 1,
            "the seller's remainder rests"
        );
        assert_eq!(w.positions[&(1, "T".to_owned())].qty, q("997"));
        assert_eq!(w.positions[&(1, "T".to_owned())].reserved, q("2"));
        assert_eq!(w.positions[&(2, "T".to_owned())].qty, q("1003"));
        let row = &w.symbols["T"];
        assert_eq!(
            row.last_trade,
            Some((p("100").raw(), q("3").raw(), w.trades[0].seq))
        );
        assert!(row.seq >= w.trades[0].seq && row.md_seq > 0);
        assert_eq!(order_of(&plan.replies[1]).status, "filled");
        assert_eq!(
            plan.outcomes.iter().filter(|o| o.3 == "accepted").count(),
            2
        );
        assert_eq!(plan.trades, vec![("T".to_owned(), q("3"))]);
        assert!(plan.public.iter().any(|m| m.kind == "trade"));
    }

    #[test]
    fn fills_and_a_cancel_of_a_resting_order_merge_into_one_change() {
        let mut e = engine();
        // A resting sell from an earlier batch.
        let first = build(
            &mut e,
            &[limit(1, Side::Sell, "100", "10", None)],
            &HashMap::new(),
        );
        let resting = order_of(&first.replies[0]).clone();
        let cancel = Request::Cancel {
            account: 1,
            symbol: "T".into(),
            order_id: resting.id,
            view: Box::new(resting.clone()),
            request_id: None,
        };
        let plan = build(
            &mut e,
            &[
                limit(2, Side::Buy, "100", "4", None),
                limit(3, Side::Buy, "100", "1", None),
                cancel,
            ],
            &HashMap::new(),
        );
        let w = &plan.writes;
        assert_eq!(
            w.order_changes.len(),
            1,
            "one row for the maker however often it changed"
        );
        let change = &w.order_changes[0];
        assert_eq!(change.id, resting.id);
        assert_eq!(
            change.filled,
            q("5").raw(),
            "filled in this batch, added to the stored value"
        );
        assert_eq!(
            (change.remaining, change.status, change.cancel_reason),
            (0, "cancelled", Some("requested"))
        );
        let view = order_of(&plan.replies[2]);
        assert_eq!(
            (view.status.as_str(), view.filled, view.remaining),
            ("cancelled", q("5"), Qty::ZERO)
        );
        assert_eq!(w.accounts[&1].open_orders, -1);
        assert_eq!(
            w.positions[&(1, "T".to_owned())].reserved,
            Qty::ZERO,
            "the reservation is released"
        );
        assert_eq!(
            w.audits
                .iter()
                .filter(|a| a.action == "order.cancelled")
                .count(),
            1
        );
    }

    #[test]
    fn repeated_keys_share_the_first_answer_and_different_bodies_conflict() {
        let mut e = engine();
        let plan = build(
            &mut e,
            &[
                limit(1, Side::Buy, "90", "1", Some("k1")),
                limit(1, Side::Buy, "90", "1", Some("k1")),
                limit(1, Side::Buy, "91", "1", Some("k1")),
                limit(2, Side::Buy, "90", "1", Some("k1")),
            ],
            &HashMap::new(),
        );
        assert_eq!(
            plan.writes.new_orders.len(),
            2,
            "one order per (account, key)"
        );
        let first = order_of(&plan.replies[0]);
        assert_eq!(
            order_of(&plan.replies[1]),
            first,
            "the repeat gets the same order"
        );
        assert!(matches!(
            plan.replies[2],
            Err(Refusal::IdempotencyConflict(_))
        ));
        assert_ne!(
            order_of(&plan.replies[3]).id,
            first.id,
            "keys are per account"
        );
    }

    #[test]
    fn a_stored_key_returns_the_stored_order_or_a_conflict() {
        let mut e = engine();
        let stored = order_of(
            &build(
                &mut e,
                &[limit(1, Side::Buy, "90", "2", Some("k"))],
                &HashMap::new(),
            )
            .replies[0],
        )
        .clone();
        let existing = HashMap::from([((1, "k".to_owned()), stored.clone())]);
        let plan = build(
            &mut e,
            &[
                limit(1, Side::Buy, "90", "2", Some("k")),
                limit(1, Side::Sell, "90", "2", Some("k")),
            ],
            &existing,
        );
        assert_eq!(order_of(&plan.replies[0]), &stored);
        assert!(matches!(
            plan.replies[1],
            Err(Refusal::IdempotencyConflict(_))
        ));
        assert!(plan.writes.new_orders.is_empty(), "nothing new is written");
        assert_eq!(
            plan.outcomes.iter().filter(|o| o.3 == "duplicate").count(),
            1
        );
        assert_eq!(
            plan.outcomes
                .iter()
                .filter(|o| o.3 == "idempotency_conflict")
                .count(),
            1
        );
    }

    #[test]
    fn rejections_and_missing_accounts_write_nothing_but_an_audit_record() {
        let mut e = engine();
        let mut unknown = limit(1, Side::Buy, "90", "1", None);
        if let Request::Place { order, .. } = &mut unknown {
            order.symbol = "NOPE".into();
        }
        let plan = build(
            &mut e,
            &[
                limit(9, Side::Buy, "90", "1", None),
                unknown,
                limit(1, Side::Buy, "90.5", "1", None),
            ],
            &HashMap::new(),
        );
        assert!(matches!(plan.replies[0], Err(Refusal::AccountGone)));
        assert!(matches!(
            &plan.replies[1],
            Err(Refusal::Rule {
                code: "unknownSymbol",
                ..
            })
        ));
        assert!(matches!(
            &plan.replies[2],
            Err(Refusal::Rule {
                code: "priceNotOnTick",
                ..
            })
        ));
        assert!(plan.writes.new_orders.is_empty() && plan.writes.accounts.is_empty());
        assert_eq!(
            plan.writes
                .audits
                .iter()
                .filter(|a| a.action == "order.rejected")
                .count(),
            2
        );
        assert_eq!(plan.outcomes.iter().filter(|o| o.0 == "unknown").count(), 1);
    }

    #[test]
    fn a_dropped_batch_leaves_the_engine_as_it_was() {
        let mut e = engine();
        build(
            &mut e,
            &[limit(1, Side::Sell, "100", "5", None)],
            &HashMap::new(),
        );
        let before = (
            e.market_state("T"),
            e.account(AccountId(1)).cloned(),
            e.account(AccountId(2)).cloned(),
        );
        {
            let requests = [limit(2, Side::Buy, "100", "5", None)];
            let refs: Vec<&Request> = requests.iter().collect();
            let mut batch = e.begin_batch();
            let plan = Plan::build(
                &mut batch,
                &refs,
                Loaded {
                    existing: &HashMap::new(),
                    missing: &|_| false,
                    symbols: BTreeMap::new(),
                    approval_timeout: chrono::Duration::seconds(3600),
                },
                &mut (200..),
                "origin",
                chrono::Utc::now(),
            );
            assert_eq!(plan.writes.trades.len(), 1, "it traded inside the batch");
            // Dropped without commit: the COMMIT failed.
        }
        let after = (
            e.market_state("T"),
            e.account(AccountId(1)).cloned(),
            e.account(AccountId(2)).cloned(),
        );
        assert_eq!(before, after);
    }

    #[test]
    fn a_halt_updates_the_symbol_row_and_is_audited() {
        let mut e = engine();
        let plan = build(
            &mut e,
            &[Request::SetStatus {
                symbol: "T".into(),
                status: TradingStatus::Halted,
                actor: "user:1".into(),
                request_id: None,
            }],
            &HashMap::new(),
        );
        assert!(matches!(plan.replies[0], Ok(Done::Status)));
        assert_eq!(plan.writes.symbols["T"].status, "halted");
        assert_eq!(plan.writes.audits[0].action, "market.halted");
        assert!(plan.public.iter().any(|m| m.kind == "status"));
    }
}
