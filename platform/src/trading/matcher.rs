//! The matcher task: batches commands and runs each batch in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use tradeplane_engine::Engine;
use tradeplane_engine::engine::{Batch, LastTrade, MarketState, OrderStatus, Outcome};
use tradeplane_engine::events::{CancelReason, EventKind};
use tradeplane_engine::instrument::TradingStatus;
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, OrderType, TimeInForce};

use super::market::MarketEvent;
use super::metrics::TradingMetrics;
use super::persist::{
    AccountDelta, OrderUpdate, PendingOrder, SymbolRow, TradingTx, side_str, status_from_str,
};
use super::views::OrderView;
use super::{Command, Done, MAX_BATCH, Refusal, Reply, Request};
use crate::store::{NewAuditEvent, Store};

/// Owns the engine; see the module documentation of [`super`].
pub(super) struct Matcher {
    engine: Engine,
    store: Store,
    events: broadcast::Sender<Arc<MarketEvent>>,
    metrics: TradingMetrics,
    origin: String,
}

/// What a committed batch produced.
struct Committed {
    replies: Vec<Reply>,
    public: Vec<MarketEvent>,
    /// (symbol, side, type, outcome) per place command, for metrics.
    outcomes: Vec<(String, &'static str, &'static str, &'static str)>,
    trades: Vec<(String, Qty)>,
    /// Net balance change per account, written once at the end of the batch.
    balances: BTreeMap<i64, AccountDelta>,
    /// Audit records, written in one statement at the end of the batch.
    audits: Vec<NewAuditEvent>,
}

fn status_str(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::New => "new",
        OrderStatus::PartiallyFilled => "partially_filled",
        OrderStatus::Filled => "filled",
        OrderStatus::Cancelled => "cancelled",
    }
}

fn reason_str(r: CancelReason) -> &'static str {
    match r {
        CancelReason::Requested => "requested",
        CancelReason::SelfTradePrevention => "self_trade_prevention",
        CancelReason::IocRemainder => "ioc_remainder",
        CancelReason::FokUnfillable => "fok_unfillable",
        CancelReason::MarketRemainder => "market_remainder",
    }
}

fn type_str(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
    }
}

fn tif_str(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
    }
}

fn id_u64(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

fn id_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl Matcher {
    pub(super) fn new(
        engine: Engine,
        store: Store,
        events: broadcast::Sender<Arc<MarketEvent>>,
        metrics: TradingMetrics,
        origin: String,
    ) -> Matcher {
        Matcher {
            engine,
            store,
            events,
            metrics,
            origin,
        }
    }

    /// Receives commands until every sender is gone, handling them in batches.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.handle(batch).await;
        }
    }

    async fn handle(&mut self, commands: Vec<Command>) {
        // Asset credits change positions outside the engine: each runs in a transaction of its
        // own, so no order in the same transaction matches against the stale cached position.
        let (credits, commands): (Vec<Command>, Vec<Command>) = commands
            .into_iter()
            .partition(|c| matches!(c.request, Request::Credit { .. }));
        for credit in credits {
            let request = [credit.request.clone()];
            match self.run_batch(&request).await {
                Ok(done) => self.finish(vec![credit], done),
                Err(e) => Self::fail(credit, &e),
            }
        }
        if commands.is_empty() {
            return;
        }
        let started = Instant::now();
        let requests: Vec<Request> = commands.iter().map(|c| c.request.clone()).collect();
        let result = self.run_batch(&requests).await;
        match result {
            Ok(done) => {
                self.metrics.batch_size.observe(requests.len() as f64);
                self.metrics
                    .match_latency
                    .observe(started.elapsed().as_secs_f64());
                self.finish(commands, done);
            }
            Err(e) if commands.len() > 1 => {
                // One bad command (or a deadlock between replicas) must not fail its neighbours:
                // run each alone, so only the culprit sees the error.
                tracing::warn!(error = %e, size = commands.len(), "batch failed; retrying its commands one by one");
                for command in commands {
                    let request = [command.request.clone()];
                    match self.run_batch(&request).await {
                        Ok(done) => self.finish(vec![command], done),
                        Err(e) => Self::fail(command, &e),
                    }
                }
            }
            Err(e) => {
                for command in commands {
                    Self::fail(command, &e);
                }
            }
        }
    }

    fn fail(command: Command, error: &sqlx::Error) {
        tracing::error!(error = %error, "command failed; nothing was applied");
        let _ = command.reply.send(Err(Refusal::Unavailable(
            "the order could not be committed; nothing was applied, retry".into(),
        )));
    }

    fn finish(&self, commands: Vec<Command>, done: Committed) {
        for (symbol, side, kind, outcome) in &done.outcomes {
            self.metrics
                .orders
                .with_label_values(&[symbol.as_str(), side, kind, outcome])
                .inc();
        }
        for (symbol, qty) in &done.trades {
            self.metrics.trades.with_label_values(&[symbol]).inc();
            self.metrics
                .traded_quantity
                .with_label_values(&[symbol])
                .inc_by(qty.raw() as f64 / tradeplane_engine::num::SCALE as f64);
        }
        for instrument in self.engine.instruments() {
            if let Some(book) = self.engine.book(&instrument.symbol) {
                self.metrics
                    .open_orders
                    .with_label_values(&[instrument.symbol.as_str()])
                    .set(book.len() as i64);
            }
        }
        for (command, reply) in commands.into_iter().zip(done.replies) {
            let _ = command.reply.send(reply);
        }
        for event in done.public {
            let _ = self.events.send(Arc::new(event));
        }
    }

    async fn run_batch(&mut self, requests: &[Request]) -> Result<Committed, sqlx::Error> {
        match self.store.clone() {
            Store::Postgres(pool) => {
                let tx = pool.begin().await?;
                self.in_tx(tx, requests).await
            }
            Store::Sqlite(pool) => {
                let tx = pool.begin().await?;
                self.in_tx(tx, requests).await
            }
        }
    }

    async fn in_tx<T: TradingTx + Commit>(
        &mut self,
        mut tx: T,
        requests: &[Request],
    ) -> Result<Committed, sqlx::Error> {
        // 1. Lock the symbols (sorted, so replicas never deadlock on them) and catch up.
        let symbols: BTreeSet<&str> = requests
            .iter()
            .map(Request::symbol)
            .filter(|s| self.engine.instrument(s).is_some())
            .collect();
        let mut rows: BTreeMap<String, SymbolRow> = BTreeMap::new();
        for symbol in symbols {
            let row = tx.lock_symbol(symbol).await?;
            if self.engine.seq(symbol) != Some(id_u64(row.seq)) {
                self.catch_up(&mut tx, symbol, &row).await?;
            }
            rows.insert(symbol.to_owned(), row);
        }
        // 2. Fresh, locked copies of the submitting accounts (sorted, for the same reason).
        let accounts: BTreeSet<i64> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Place { account, .. } | Request::Cancel { account, .. } => Some(*account),
                Request::SetStatus { .. } | Request::Credit { .. } => None,
            })
            .collect();
        for id in accounts {
            if let Some(account) = tx.load_account(id, true).await? {
                self.engine.put_account(AccountId(id_u64(id)), account);
            }
        }

        // 3. Match, persisting as we go.
        let mut batch = self.engine.begin_batch();
        let mut out = Committed {
            replies: Vec::with_capacity(requests.len()),
            public: Vec::new(),
            outcomes: Vec::new(),
            trades: Vec::new(),
            balances: BTreeMap::new(),
            audits: Vec::new(),
        };
        let mut first_with_key: HashMap<(i64, String), usize> = HashMap::new();
        let mut credited_symbols: BTreeSet<String> = BTreeSet::new();
        let mut duplicates: Vec<(usize, usize)> = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            let reply = match request {
                Request::Place {
                    account,
                    order,
                    request_id,
                } => {
                    if let Some(key) = &order.client_order_id {
                        if let Some(first) = first_with_key.get(&(*account, key.clone())) {
                            duplicates.push((index, *first));
                            out.replies
                                .push(Err(Refusal::Unavailable("duplicate".into())));
                            continue;
                        }
                        first_with_key.insert((*account, key.clone()), index);
                        if let Some(existing) = tx.order_by_client_id(*account, key).await? {
                            out.outcomes.push((
                                order.symbol.clone(),
                                side_str(order.side),
                                type_str(order.order_type),
                                "duplicate",
                            ));
                            out.replies.push(Ok(Done::Order(Box::new(existing))));
                            continue;
                        }
                    }
                    let origin = self.origin.as_str();
                    Self::place(
                        origin,
                        &mut batch,
                        &mut tx,
                        &mut rows,
                        &mut out,
                        *account,
                        order,
                        request_id.as_deref(),
                    )
                    .await?
                }
                Request::Cancel {
                    account,
                    symbol,
                    order_id,
                    request_id,
                } => {
                    let result = batch.cancel(
                        AccountId(id_u64(*account)),
                        symbol,
                        OrderId(id_u64(*order_id)),
                    );
                    match result {
                        Err(reject) => Err(Refusal::Conflict(format!(
                            "order {order_id} cannot be cancelled: {reject}"
                        ))),
                        Ok(outcome) => {
                            let row = rows.entry(symbol.clone()).or_default();
                            Self::persist(&mut tx, symbol, &outcome, row, &mut out, &self.origin)
                                .await?;
                            Self::final_update(
                                &mut tx,
                                *order_id,
                                &outcome,
                                None,
                                chrono::Utc::now(),
                            )
                            .await?;
                            out.audits.push(NewAuditEvent {
                                actor: format!("account:{account}"),
                                action: "order.cancelled".into(),
                                subject: Some(format!("order:{order_id}")),
                                request_id: request_id.clone(),
                                details: serde_json::json!({ "symbol": symbol, "filled": outcome.filled }),
                            });
                            match tx.order(*order_id).await? {
                                Some(view) => Ok(Done::Order(Box::new(view))),
                                None => Err(Refusal::NotFound(format!("no order {order_id}"))),
                            }
                        }
                    }
                }
                Request::Credit {
                    account,
                    symbol,
                    qty,
                    cost,
                    actor,
                    request_id,
                } => {
                    let cost_total = tradeplane_engine::num::notional(*cost, *qty);
                    let cost_total = super::persist::to_i64(cost_total)?;
                    match tx
                        .credit_position(*account, symbol, qty.raw(), cost_total)
                        .await?
                    {
                        None => Err(Refusal::NotFound(format!("no account {account}"))),
                        Some(new_qty) => {
                            out.audits.push(NewAuditEvent {
                                actor: actor.clone(),
                                action: "account.deposit".into(),
                                subject: Some(format!("account:{account}")),
                                request_id: request_id.clone(),
                                details: serde_json::json!({ "symbol": symbol, "qty": qty, "cost": cost }),
                            });
                            credited_symbols.insert(symbol.clone());
                            Ok(Done::Credited(Qty::from_raw(new_qty)))
                        }
                    }
                }
                Request::SetStatus {
                    symbol,
                    status,
                    actor,
                    request_id,
                } => match batch.set_status(symbol, *status) {
                    Err(reject) => Err(Refusal::Rule {
                        code: reject.code(),
                        message: reject.to_string(),
                    }),
                    Ok(event) => {
                        let row = rows.entry(symbol.clone()).or_default();
                        row.seq = id_i64(event.seq);
                        if let Some(md) = event.md_seq {
                            row.md_seq = id_i64(md);
                        }
                        row.status = if *status == TradingStatus::Halted {
                            "halted"
                        } else {
                            "open"
                        }
                        .into();
                        out.public
                            .extend(MarketEvent::from_engine(symbol, &event, &self.origin));
                        out.audits.push(NewAuditEvent {
                            actor: actor.clone(),
                            action: if *status == TradingStatus::Halted {
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
                },
            };
            out.replies.push(reply);
        }
        for (index, first) in duplicates {
            out.replies[index] = out.replies[first].clone();
        }
        for (account, delta) in &out.balances {
            tx.apply_delta(*account, delta).await?;
        }
        tx.audit_many(&out.audits).await?;
        for (symbol, row) in &rows {
            // A credit bumped the stored sequence itself (credits run alone, so nothing else
            // touched the row in this transaction).
            if !credited_symbols.contains(symbol) {
                tx.update_symbol(symbol, row).await?;
            }
        }

        // 4. Commit; only then does the engine keep the batch.
        match tx.commit().await {
            Ok(()) => {
                batch.commit();
                Ok(out)
            }
            Err(e) => {
                batch.rollback();
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn place<T: TradingTx>(
        origin: &str,
        batch: &mut Batch<'_>,
        tx: &mut T,
        rows: &mut BTreeMap<String, SymbolRow>,
        out: &mut Committed,
        account: i64,
        order: &super::PlaceOrder,
        request_id: Option<&str>,
    ) -> Result<Reply, sqlx::Error> {
        let side = side_str(order.side);
        let kind = type_str(order.order_type);
        let tif = order.tif.unwrap_or(match order.order_type {
            OrderType::Limit => TimeInForce::Gtc,
            OrderType::Market => TimeInForce::Ioc,
        });
        let known = batch.engine().instrument(&order.symbol).is_some();
        let metric_symbol = if known {
            order.symbol.clone()
        } else {
            "unknown".to_owned()
        };
        let audit = |code: &'static str| NewAuditEvent {
            actor: format!("account:{account}"),
            action: "order.rejected".into(),
            subject: None,
            request_id: request_id.map(str::to_owned),
            details: serde_json::json!({ "code": code, "symbol": order.symbol.chars().take(32).collect::<String>() }),
        };
        if !known {
            out.outcomes.push((metric_symbol, side, kind, "rejected"));
            out.audits.push(audit("unknownSymbol"));
            let shown: String = order.symbol.chars().take(32).collect();
            return Ok(Err(Refusal::Rule {
                code: "unknownSymbol",
                message: format!("unknown symbol {shown:?}"),
            }));
        }
        let now = chrono::Utc::now();
        if order.qty.raw() <= 0 {
            // Checked before the row exists: the table refuses such rows, which would abort
            // the whole batch's transaction on PostgreSQL.
            out.outcomes.push((metric_symbol, side, kind, "rejected"));
            out.audits.push(audit("invalidQuantity"));
            return Ok(Err(Refusal::Rule {
                code: "invalidQuantity",
                message: "quantity must be positive".into(),
            }));
        }
        let id = tx
            .insert_pending(&PendingOrder {
                account,
                client_order_id: order.client_order_id.as_deref(),
                symbol: &order.symbol,
                side,
                order_type: kind,
                tif: tif_str(tif),
                price: order.price.map(Price::raw),
                qty: order.qty.raw(),
                now,
            })
            .await?;
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
        match batch.submit(new) {
            Err(r) => {
                tx.delete_pending(id).await?;
                out.outcomes.push((metric_symbol, side, kind, "rejected"));
                out.audits.push(audit(r.code()));
                Ok(Err(Refusal::Rule {
                    code: r.code(),
                    message: r.to_string(),
                }))
            }
            Ok(outcome) => {
                let row = rows.entry(order.symbol.clone()).or_default();
                let priority = Self::persist(tx, &order.symbol, &outcome, row, out, origin).await?;
                let reason = Self::final_update(tx, id, &outcome, priority, now).await?;
                out.audits.push(NewAuditEvent {
                    actor: format!("account:{account}"),
                    action: "order.placed".into(),
                    subject: Some(format!("order:{id}")),
                    request_id: request_id.map(str::to_owned),
                    details: serde_json::json!({
                        "symbol": order.symbol, "side": side, "type": kind, "price": order.price,
                        "qty": order.qty, "status": status_str(outcome.status), "filled": outcome.filled,
                    }),
                });
                out.outcomes.push((metric_symbol, side, kind, "accepted"));
                // Built from what was just written, saving a read per order.
                Ok(Ok(Done::Order(Box::new(OrderView {
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
                }))))
            }
        }
    }

    /// Writes an outcome's events; returns the acceptance sequence (time priority), if any.
    async fn persist<T: TradingTx>(
        tx: &mut T,
        symbol: &str,
        outcome: &Outcome,
        row: &mut SymbolRow,
        out: &mut Committed,
        origin: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        let mut priority = None;
        for event in &outcome.events {
            row.seq = id_i64(event.seq);
            if let Some(md) = event.md_seq {
                row.md_seq = id_i64(md);
            }
            match &event.kind {
                EventKind::OrderAccepted(_) => priority = Some(id_i64(event.seq)),
                EventKind::Trade(t) => {
                    tx.insert_trade(symbol, id_i64(event.seq), t).await?;
                    tx.fill_maker(
                        id_i64(t.maker_order.0),
                        t.qty.raw(),
                        t.maker_remaining.raw(),
                    )
                    .await?;
                    row.last_trade = Some((t.price.raw(), t.qty.raw(), id_i64(event.seq)));
                    out.trades.push((symbol.to_owned(), t.qty));
                }
                EventKind::OrderCancelled(c) if c.id != outcome.order_id => {
                    tx.cancel_resting(id_i64(c.id.0), reason_str(c.reason))
                        .await?;
                }
                EventKind::Balance(b) => {
                    out.balances.entry(id_i64(b.account.0)).or_default().add(b)
                }
                EventKind::Status { status } => {
                    row.status = if *status == TradingStatus::Halted {
                        "halted"
                    } else {
                        "open"
                    }
                    .into();
                }
                EventKind::OrderCancelled(_)
                | EventKind::OrderRested(_)
                | EventKind::BookLevel(_) => {}
            }
            out.public
                .extend(MarketEvent::from_engine(symbol, event, origin));
        }
        Ok(priority)
    }

    /// Sets the submitted (or cancelled) order's final state from the outcome.
    async fn final_update<T: TradingTx>(
        tx: &mut T,
        id: i64,
        outcome: &Outcome,
        priority: Option<i64>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<&'static str>, sqlx::Error> {
        let reason = outcome.events.iter().find_map(|e| match &e.kind {
            EventKind::OrderCancelled(c) if c.id == outcome.order_id => Some(reason_str(c.reason)),
            _ => None,
        });
        tx.update_order(&OrderUpdate {
            id,
            status: status_str(outcome.status),
            filled: outcome.filled.raw(),
            remaining: outcome.resting.raw(),
            priority,
            cancel_reason: reason,
            now,
        })
        .await?;
        Ok(reason)
    }

    /// Rebuilds a symbol's book from the database (another replica matched since we last did).
    async fn catch_up<T: TradingTx>(
        &mut self,
        tx: &mut T,
        symbol: &str,
        row: &SymbolRow,
    ) -> Result<(), sqlx::Error> {
        let resting = tx.resting_orders(symbol).await?;
        let owners: BTreeSet<u64> = resting.iter().map(|o| o.account.0).collect();
        for owner in owners {
            if let Some(account) = tx.load_account(id_i64(owner), false).await? {
                self.engine.put_account(AccountId(owner), account);
            }
        }
        let state = MarketState {
            resting,
            seq: id_u64(row.seq),
            md_seq: id_u64(row.md_seq),
            last_trade: row.last_trade.map(|(price, qty, seq)| LastTrade {
                price: Price::from_raw(price),
                qty: Qty::from_raw(qty),
                seq: id_u64(seq),
            }),
            status: status_from_str(&row.status),
        };
        self.engine.restore_market(symbol, state).map_err(|e| {
            sqlx::Error::Protocol(format!("stored book of {symbol} is inconsistent: {e}"))
        })?;
        tracing::info!(symbol, seq = row.seq, "caught up with the stored book");
        Ok(())
    }
}

/// Committing a transaction, for either backend.
pub(super) trait Commit {
    fn commit(self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

impl<'c, DB: sqlx::Database> Commit for sqlx::Transaction<'c, DB> {
    async fn commit(self) -> Result<(), sqlx::Error> {
        sqlx::Transaction::commit(self).await
    }
}
