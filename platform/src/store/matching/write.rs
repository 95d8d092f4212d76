//! Writing a batch: at most one statement per table, whatever the batch's size.
//!
//! PostgreSQL gets every table's rows in ONE statement (data-modifying CTEs, see
//! [`super::write_pg`]), so a batch's writes cost one round trip. SQLite has no data-modifying
//! CTEs; there each table is one multi-row statement fed a JSON document (`json_each`), which is
//! cheap because SQLite runs in the process (each statement is a hand-off to its worker thread,
//! not a network round trip).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tradeplane_engine::ledger::Position;

use super::super::audit::NewAuditEvent;
use super::super::market::SymbolRow;
use super::super::telemetry::{Observation, Op};
use super::held;
use super::{
    AccountChange, BatchWrites, MatchError, MatchTx, NewOrderRow, OrderChange, TradeRow, Tx, to_i64,
};

/// Checks that an `UPDATE` touched every row it was meant to.
pub(in crate::store) fn expect_rows(
    done: u64,
    wanted: usize,
    what: &str,
) -> Result<(), MatchError> {
    if done == wanted as u64 {
        Ok(())
    } else {
        Err(MatchError::Stale(format!(
            "{what}: {done} of {wanted} rows were as expected"
        )))
    }
}

pub(super) fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, Value::from)
}

impl MatchTx {
    /// Writes a batch. On PostgreSQL one statement; on SQLite one per table that changes.
    pub async fn write(&mut self, w: &BatchWrites, now: DateTime<Utc>) -> Result<(), MatchError> {
        if let Tx::Postgres(tx) = &mut self.tx {
            if super::write_pg::is_empty(w) {
                return Ok(());
            }
            self.statements += 1;
            let observation = Observation::start(Op::BatchWrite);
            super::write_pg::write(tx, w, now, None).await?;
            observation.succeed();
            return Ok(());
        }
        self.insert_orders(&w.new_orders, now).await?;
        self.update_held(&w.held_changes, now).await?;
        self.update_orders(&w.order_changes, now).await?;
        self.insert_trades(&w.trades, now).await?;
        self.update_accounts(&w.accounts).await?;
        self.upsert_positions(&w.positions).await?;
        self.insert_audits(&w.audits, now).await?;
        self.update_symbols(&w.symbols).await?;
        Ok(())
    }

    /// The optimistic batch's write on PostgreSQL, guarded in the same statement: locks and
    /// checks what `expect` says the plan assumed and writes only if nothing moved. `Ok(true)`:
    /// written (and the transaction id recorded); `Ok(false)`: something moved, nothing was
    /// written, the locks are held (ask [`MatchTx::guard`] what moved).
    pub async fn write_guarded(
        &mut self,
        w: &BatchWrites,
        now: DateTime<Utc>,
        expect: &super::write_pg::Expect<'_>,
    ) -> Result<bool, MatchError> {
        let Tx::Postgres(tx) = &mut self.tx else {
            return Err(MatchError::Corrupt(
                "a guarded write was sent on an SQLite transaction".into(),
            ));
        };
        self.statements += 1;
        let observation = Observation::start(Op::BatchWrite);
        let xid = super::write_pg::write(tx, w, now, Some(expect)).await?;
        observation.succeed();
        match xid {
            Some(xid) => {
                self.xid = Some(xid);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn insert_orders(
        &mut self,
        o: &[NewOrderRow],
        now: DateTime<Utc>,
    ) -> Result<(), MatchError> {
        if o.is_empty() {
            return Ok(());
        }
        const COLS: &str = "id, account_id, client_order_id, symbol, side, order_type, tif, price, qty, filled, \
                            remaining, status, cancel_reason, priority, approval_requested_at, expires_at, \
                            approval_reserved_cash, approval_notional, created_at, updated_at";
        let requested = |r: &NewOrderRow| r.approval.as_ref().map(|_| held::sqlite_time(now));
        sqlite!(self, c, {
            let doc = Value::from(
                o.iter()
                    .map(|r| {
                        json!([
                            r.id,
                            r.account_id,
                            r.client_order_id,
                            r.symbol,
                            r.side,
                            r.order_type,
                            r.tif,
                            r.price,
                            r.qty,
                            r.filled,
                            r.remaining,
                            r.status,
                            opt_str(r.cancel_reason),
                            r.priority,
                            requested(r),
                            r.approval.as_ref().map(|a| held::sqlite_time(a.expires_at)),
                            r.approval.as_ref().map(|a| a.reserved_cash),
                            r.approval.as_ref().map(|a| a.notional),
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
            .to_string();
            sqlx::query(&format!(
                "INSERT INTO orders ({COLS}) SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, \
                 value->>6, value->>7, value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, \
                 value->>14, value->>15, value->>16, value->>17, $2, $2 FROM json_each($1)"
            ))
            .bind(doc).bind(now).execute(&mut *c).await?;
        });
        Ok(())
    }

    async fn update_orders(
        &mut self,
        o: &[OrderChange],
        now: DateTime<Utc>,
    ) -> Result<(), MatchError> {
        if o.is_empty() {
            return Ok(());
        }
        const SET: &str = "filled = orders.filled + d.filled, remaining = d.remaining, status = d.status, \
                           cancel_reason = COALESCE(d.cancel_reason, orders.cancel_reason)";
        const RESTING: &str = "orders.id = d.id AND orders.status IN ('new', 'partially_filled')";
        let done = sqlite!(self, c, {
            let doc = Value::from(
                o.iter()
                    .map(|r| {
                        json!([
                            r.id,
                            r.filled,
                            r.remaining,
                            r.status,
                            opt_str(r.cancel_reason)
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
            .to_string();
            sqlx::query(&format!(
                    "UPDATE orders SET {SET}, updated_at = $2 FROM (SELECT value->>0 AS id, value->>1 AS filled, \
                     value->>2 AS remaining, value->>3 AS status, value->>4 AS cancel_reason FROM json_each($1)) AS d \
                     WHERE {RESTING}"
                ))
                .bind(doc).bind(now).execute(&mut *c).await?.rows_affected()
        });
        expect_rows(done, o.len(), "resting orders")
    }

    async fn insert_trades(
        &mut self,
        t: &[TradeRow],
        now: DateTime<Utc>,
    ) -> Result<(), MatchError> {
        if t.is_empty() {
            return Ok(());
        }
        const COLS: &str = "symbol, seq, price, qty, taker_side, taker_order_id, maker_order_id, taker_account_id, \
                            maker_account_id, created_at";
        sqlite!(self, c, {
            let doc = Value::from(
                t.iter()
                    .map(|r| {
                        json!([
                            r.symbol,
                            r.seq,
                            r.price,
                            r.qty,
                            r.taker_side,
                            r.taker_order_id,
                            r.maker_order_id,
                            r.taker_account_id,
                            r.maker_account_id,
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
            .to_string();
            sqlx::query(&format!(
                    "INSERT INTO trades ({COLS}) SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, \
                     value->>6, value->>7, value->>8, $2 FROM json_each($1)"
                ))
                .bind(doc).bind(now).execute(&mut *c).await?;
        });
        Ok(())
    }

    async fn update_accounts(
        &mut self,
        a: &BTreeMap<i64, AccountChange>,
    ) -> Result<(), MatchError> {
        if a.is_empty() {
            return Ok(());
        }
        const SET: &str = "cash = accounts.cash + d.cash, cash_reserved = accounts.cash_reserved + d.cash_reserved, \
                           open_orders = accounts.open_orders + d.open_orders";
        let done = sqlite!(self, c, {
            let doc = Value::from(
                a.iter()
                    .map(|(id, d)| json!([id, d.cash, d.cash_reserved, d.open_orders]))
                    .collect::<Vec<_>>(),
            )
            .to_string();
            sqlx::query(&format!(
                    "UPDATE accounts SET {SET} FROM (SELECT value->>0 AS id, value->>1 AS cash, value->>2 AS cash_reserved, \
                     value->>3 AS open_orders FROM json_each($1)) AS d WHERE accounts.id = d.id"
                ))
                .bind(doc).execute(&mut *c).await?.rows_affected()
        });
        expect_rows(done, a.len(), "accounts")
    }

    async fn upsert_positions(
        &mut self,
        p: &BTreeMap<(i64, String), Position>,
    ) -> Result<(), MatchError> {
        if p.is_empty() {
            return Ok(());
        }
        const COLS: &str = "account_id, symbol, qty, reserved, cost_basis, realized_pnl";
        const UPSERT: &str = "ON CONFLICT (account_id, symbol) DO UPDATE SET qty = excluded.qty, \
                              reserved = excluded.reserved, cost_basis = excluded.cost_basis, \
                              realized_pnl = excluded.realized_pnl";
        let mut rows = Vec::with_capacity(p.len());
        for ((account, symbol), pos) in p {
            rows.push((
                *account,
                symbol.as_str(),
                pos.qty.raw(),
                pos.reserved.raw(),
                to_i64(pos.cost_basis)?,
                to_i64(pos.realized_pnl)?,
            ));
        }
        sqlite!(self, c, {
            let doc = Value::from(
                rows.iter()
                    .map(|r| json!([r.0, r.1, r.2, r.3, r.4, r.5]))
                    .collect::<Vec<_>>(),
            )
            .to_string();
            // `WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT.
            sqlx::query(&format!(
                    "INSERT INTO positions ({COLS}) SELECT value->>0, value->>1, value->>2, value->>3, value->>4, \
                     value->>5 FROM json_each($1) WHERE true {UPSERT}"
                ))
                .bind(doc).execute(&mut *c).await?;
        });
        Ok(())
    }

    async fn insert_audits(
        &mut self,
        a: &[NewAuditEvent],
        now: DateTime<Utc>,
    ) -> Result<(), MatchError> {
        if a.is_empty() {
            return Ok(());
        }
        const COLS: &str =
            "occurred_at, actor, action, subject, request_id, details, risk_score, tags, client_ip";
        let cols: Vec<_> = a.iter().map(NewAuditEvent::columns).collect();
        sqlite!(self, c, {
            let doc = Value::from(
                cols.iter()
                    .map(|e| {
                        json!([
                            e.actor,
                            e.action,
                            e.subject,
                            e.request_id,
                            e.details,
                            e.risk_score,
                            e.tags,
                            e.client_ip
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
            .to_string();
            sqlx::query(&format!(
                "INSERT INTO audit_events ({COLS}) SELECT $2, value->>0, value->>1, value->>2, value->>3, value->>4, \
                 value->>5, value->>6, value->>7 FROM json_each($1)"
            ))
            .bind(doc).bind(now).execute(&mut *c).await?;
        });
        cols.iter().for_each(|c| c.written());
        Ok(())
    }

    async fn update_symbols(&mut self, s: &BTreeMap<String, SymbolRow>) -> Result<(), MatchError> {
        if s.is_empty() {
            return Ok(());
        }
        const SET: &str = "seq = d.seq, md_seq = d.md_seq, status = d.status, last_price = d.last_price, \
                           last_qty = d.last_qty, last_trade_seq = d.last_trade_seq";
        let done = sqlite!(self, c, {
            let doc = Value::from(
                s.iter()
                    .map(|(sym, r)| {
                        json!([
                            sym,
                            r.seq,
                            r.md_seq,
                            r.status,
                            r.last_trade.map(|t| t.0),
                            r.last_trade.map(|t| t.1),
                            r.last_trade.map(|t| t.2),
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
            .to_string();
            sqlx::query(&format!(
                    "UPDATE symbols SET {SET} FROM (SELECT value->>0 AS symbol, value->>1 AS seq, value->>2 AS md_seq, \
                     value->>3 AS status, value->>4 AS last_price, value->>5 AS last_qty, value->>6 AS last_trade_seq \
                     FROM json_each($1)) AS d WHERE symbols.symbol = d.symbol"
                ))
                .bind(doc).execute(&mut *c).await?.rows_affected()
        });
        expect_rows(done, s.len(), "symbols")
    }
}
