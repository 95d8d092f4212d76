//! A batch's writes on SQLite as ONE statement: `INSERT INTO batch_apply (…) VALUES (…)`.
//!
//! SQLite runs in the process, but sqlx gives each connection a worker thread and every
//! statement is a hand-off to it and back (two thread wake-ups). On a loaded machine those
//! wake-ups, not SQLite, were most of a batch's time: a batch of eight orders took 3.5 ms for
//! about fourteen statements, against 0.3 ms for a one-row commit. So the per-table statements
//! run inside the engine instead: `batch_apply` is a view whose `INSTEAD OF INSERT` trigger
//! (migration `0080_expand_batch_apply`) takes one JSON array per table and runs the same
//! multi-row `INSERT`s and `UPDATE … FROM json_each` that used to be sent one by one, checks
//! the row counts of its `UPDATE`s, and with an [`Expect`] first checks that nothing the plan
//! read has moved. A batch is then BEGIN IMMEDIATE, this statement, COMMIT.
//!
//! PostgreSQL's counterpart is one data-modifying CTE ([`super::write_pg`]); both take the same
//! [`BatchWrites`], and the shared tests run both.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::SqliteConnection;

use super::super::audit::AuditColumns;
use super::super::market::SymbolRow;
use super::held;
use super::write_pg::Expect;
use super::{BatchWrites, MatchError, to_i64};

/// The prefix of every error the trigger raises (the migration's texts follow it).
const RAISED: &str = "tradeplane-batch: ";

/// Writes `w` in one statement. With `expect`, nothing is written unless every account is at
/// the version and every symbol row as the plan read them: `Ok(false)` then (the transaction
/// stays open, holding SQLite's write lock). `Ok(true)`: written.
pub(super) async fn write(
    c: &mut SqliteConnection,
    w: &BatchWrites,
    now: DateTime<Utc>,
    expect: Option<&Expect<'_>>,
) -> Result<bool, MatchError> {
    let audits: Vec<AuditColumns> = w.audits.iter().map(|a| a.columns()).collect();
    let (expect_symbols, expect_versions) = match expect {
        Some(e) => (Some(expected_symbols(e)), Some(expected_versions(e))),
        None => (None, None),
    };
    let result = sqlx::query(
        "INSERT INTO batch_apply (new_orders, held_orders, changed_orders, trades, accounts, \
         positions, audits, symbols, now, expect_symbols, expect_versions) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(new_orders(w, now))
    .bind(held_orders(w))
    .bind(changed_orders(w))
    .bind(trades(w))
    .bind(accounts(w))
    .bind(positions(w)?)
    .bind(audit_rows(&audits))
    .bind(symbols(w))
    .bind(now)
    .bind(expect_symbols)
    .bind(expect_versions)
    .execute(&mut *c)
    .await;
    match result {
        Ok(_) => {
            audits.iter().for_each(AuditColumns::written);
            Ok(true)
        }
        Err(e) => match raised(&e) {
            Some("moved") if expect.is_some() => Ok(false),
            Some(what) => match what.strip_prefix("stale ") {
                Some(rows) => Err(MatchError::Stale(format!(
                    "{rows}: not every row was as expected"
                ))),
                None => Err(MatchError::Corrupt(format!(
                    "the batch trigger refused the write: {what}"
                ))),
            },
            None => Err(MatchError::Db(e)),
        },
    }
}

/// The text after [`RAISED`] when the error is the trigger's own `RAISE(ABORT, …)`.
fn raised(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(d) => d.message().strip_prefix(RAISED),
        _ => None,
    }
}

/// An optional text column as JSON (null when absent).
fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// A JSON array of `rows`, or `None` (the trigger skips the table) when there are none.
fn doc(rows: impl ExactSizeIterator<Item = Value>) -> Option<String> {
    (rows.len() > 0).then(|| Value::from(rows.collect::<Vec<_>>()).to_string())
}

fn new_orders(w: &BatchWrites, now: DateTime<Utc>) -> Option<String> {
    let requested = |held: bool| held.then(|| held::sqlite_time(now));
    doc(w.new_orders.iter().map(|r| {
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
            requested(r.approval.is_some()),
            r.approval.as_ref().map(|a| held::sqlite_time(a.expires_at)),
            r.approval.as_ref().map(|a| a.reserved_cash),
            r.approval.as_ref().map(|a| a.notional),
        ])
    }))
}

fn held_orders(w: &BatchWrites) -> Option<String> {
    doc(w.held_changes.iter().map(|r| {
        json!([
            r.id,
            r.status,
            r.filled,
            r.remaining,
            opt_str(r.cancel_reason),
            r.priority,
            r.approved_by,
            r.rejected_by,
            r.rejected_reason,
        ])
    }))
}

fn changed_orders(w: &BatchWrites) -> Option<String> {
    doc(w.order_changes.iter().map(|r| {
        json!([
            r.id,
            r.filled,
            r.remaining,
            r.status,
            opt_str(r.cancel_reason)
        ])
    }))
}

fn trades(w: &BatchWrites) -> Option<String> {
    doc(w.trades.iter().map(|r| {
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
    }))
}

fn accounts(w: &BatchWrites) -> Option<String> {
    doc(w
        .accounts
        .iter()
        .map(|(id, d)| json!([id, d.cash, d.cash_reserved, d.open_orders])))
}

fn positions(w: &BatchWrites) -> Result<Option<String>, MatchError> {
    let mut rows = Vec::with_capacity(w.positions.len());
    for ((account, symbol), pos) in &w.positions {
        rows.push(json!([
            account,
            symbol,
            pos.qty.raw(),
            pos.reserved.raw(),
            to_i64(pos.cost_basis)?,
            to_i64(pos.realized_pnl)?,
        ]));
    }
    Ok(doc(rows.into_iter()))
}

fn audit_rows(cols: &[AuditColumns]) -> Option<String> {
    doc(cols.iter().map(|e| {
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
    }))
}

fn symbols(w: &BatchWrites) -> Option<String> {
    doc(w.symbols.iter().map(|(sym, r)| symbol_row(sym, r)))
}

/// A symbol's row in the trigger's column order (written, or expected by the guard).
fn symbol_row(symbol: &str, r: &SymbolRow) -> Value {
    json!([
        symbol,
        r.seq,
        r.md_seq,
        r.status,
        r.last_trade.map(|t| t.0),
        r.last_trade.map(|t| t.1),
        r.last_trade.map(|t| t.2),
    ])
}

/// The symbol rows the plan read, in the trigger's column order (always an array: an empty
/// one still means "check").
fn expected_symbols(e: &Expect<'_>) -> String {
    let rows: Vec<Value> = e.rows.iter().map(|(s, r)| symbol_row(s, r)).collect();
    Value::from(rows).to_string()
}

/// The accounts the plan read or changed, with the versions it read (always an array).
fn expected_versions(e: &Expect<'_>) -> String {
    let rows: Vec<Value> = e.versions.iter().map(|(id, v)| json!([id, v])).collect();
    Value::from(rows).to_string()
}
