//! A batch's writes on PostgreSQL as ONE statement: every table's rows in a data-modifying CTE.
//!
//! The matcher is one pipeline: a batch's latency is its throughput limit, and on a loaded
//! machine each round trip costs a scheduling of the server process, not just the network. So
//! the seven multi-row statements of a batch (new orders, changed orders, trades, accounts,
//! positions, audit records, symbols) go out as one: `WITH o AS (INSERT …), c AS (UPDATE …
//! RETURNING 1), … SELECT (SELECT count(*) FROM c), …`. PostgreSQL runs every data-modifying CTE
//! exactly once and to completion, all on the same snapshot; that is safe here because no two of
//! them touch the same row (`order_changes` only names orders that rested before the batch, held
//! orders decided in the batch are in `held_changes` with their final state, new orders are
//! inserted with theirs). Foreign keys (trades → orders) are checked at the
//! end of the statement, when the sibling inserts are done. The `UPDATE`s report how many rows
//! they touched, so a row that was not as expected still fails the batch as stale.
//!
//! Rows go in as arrays (`UNNEST`), one parameter per column, whatever the batch's size.
//!
//! The `UPDATE`s of `orders` also say `orders.id = ANY(ids)`, so that the primary key is a path
//! the planner can take for the whole set at once; the matcher's connections plan every
//! statement afresh (see [`super::MatchPool`]), so the choice follows the table's size.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection, Postgres, Row};

use super::super::audit::{AuditColumns, NewAuditEvent};
use super::held::{HELD_PENDING, HELD_SET};
use super::write::expect_rows;
use super::{BatchWrites, MatchError, to_i64};

/// True when the batch changes nothing (no statement is sent).
pub(super) fn is_empty(w: &BatchWrites) -> bool {
    w.new_orders.is_empty()
        && w.held_changes.is_empty()
        && w.order_changes.is_empty()
        && w.trades.is_empty()
        && w.accounts.is_empty()
        && w.positions.is_empty()
        && w.audits.is_empty()
        && w.symbols.is_empty()
}

/// The statement being built: its CTEs, the `UPDATE`s whose row counts are checked, and the
/// parameters, numbered as they are bound.
#[derive(Default)]
struct Statement {
    ctes: Vec<String>,
    checks: Vec<(&'static str, usize, &'static str)>,
    args: PgArguments,
    n: usize,
    /// The audit records in the statement, counted as written once it succeeds.
    written: Vec<AuditColumns>,
    /// Appended to every write's condition: empty, or the guard's verdict (see [`Expect`]).
    gate: &'static str,
}

/// What an optimistic batch planned on, checked by the write statement itself before it writes
/// anything: the same locks as [`super::MatchTx::guard`] (whose module says why), in the same
/// order, then every write gated on their result.
pub struct Expect<'a> {
    /// The batch's symbols with this replica's fencing tokens.
    pub symbols: &'a [(String, i64)],
    /// The lease owner (with leases).
    pub owner: Option<&'a str>,
    /// The symbols' rows as planned on.
    pub rows: &'a std::collections::BTreeMap<String, super::SymbolRow>,
    /// Every account read or changed, with the version planned on, sorted by id.
    pub versions: &'a [(i64, i64)],
}

/// The gate every write of a guarded statement carries.
const GATE: &str = " AND (SELECT ok FROM ok)";

impl Statement {
    /// Binds one parameter and returns its placeholder (`$n`).
    fn bind<'q, T>(&mut self, value: T) -> Result<String, MatchError>
    where
        T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
    {
        self.args
            .add(value)
            .map_err(|e| MatchError::Db(sqlx::Error::Encode(e)))?;
        self.n += 1;
        Ok(format!("${}", self.n))
    }

    /// Adds `name AS (sql)`.
    fn cte(&mut self, name: &str, sql: String) {
        self.ctes.push(format!("{name} AS ({sql})"));
    }

    /// Adds an `UPDATE` CTE whose touched rows must number `wanted` (`what` names them in the
    /// stale-state error).
    fn checked(&mut self, name: &'static str, sql: String, wanted: usize, what: &'static str) {
        self.cte(name, format!("{sql} RETURNING 1"));
        self.checks.push((name, wanted, what));
    }
}

/// Sends the batch's writes as one statement. With `expect`, the statement first locks and checks
/// what the plan assumed and writes only if nothing moved: `Ok(Some(xid))` when it wrote,
/// `Ok(None)` when something had moved (nothing written, the locks held).
pub(super) async fn write(
    c: &mut PgConnection,
    w: &BatchWrites,
    now: DateTime<Utc>,
    expect: Option<&Expect<'_>>,
) -> Result<Option<String>, MatchError> {
    let mut s = Statement::default();
    if let Some(e) = expect {
        guard(&mut s, e)?;
    }
    let now_value = now;
    let now = s.bind(now)?;
    orders(&mut s, w, &now, now_value)?;
    trades(&mut s, w, &now)?;
    accounts(&mut s, w)?;
    positions(&mut s, w)?;
    audits(&mut s, w, &now)?;
    symbols(&mut s, w)?;
    let mut columns: Vec<String> = s
        .checks
        .iter()
        .map(|(name, _, _)| format!("(SELECT count(*) FROM {name})"))
        .collect();
    if expect.is_some() {
        columns.push("(SELECT ok FROM ok)".into());
        columns.push("pg_current_xact_id()::text".into());
    } else if columns.is_empty() {
        columns.push("1".into());
    }
    let sql = format!("WITH {} SELECT {}", s.ctes.join(", "), columns.join(", "));
    let row = sqlx::query_with(&sql, s.args).fetch_one(&mut *c).await?;
    let n = s.checks.len();
    let xid = if expect.is_some() {
        if !row.try_get::<bool, _>(n)? {
            return Ok(None);
        }
        Some(row.try_get::<String, _>(n + 1)?)
    } else {
        None
    };
    for (i, (_, wanted, what)) in s.checks.iter().enumerate() {
        let done: i64 = row.try_get(i)?;
        expect_rows(u64::try_from(done).unwrap_or(0), *wanted, what)?;
    }
    s.written.iter().for_each(AuditColumns::written);
    Ok(Some(xid.unwrap_or_default()))
}

/// The guard's CTEs: `locked` (the symbols, sorted, lease checked), `held` (the accounts,
/// sorted, after every symbol is locked: the count of `locked` is its one-time filter) and `ok`
/// (every symbol row and every version as planned), which every write then requires.
fn guard(s: &mut Statement, e: &Expect<'_>) -> Result<(), MatchError> {
    let names = s.bind(e.symbols.iter().map(|x| x.0.as_str()).collect::<Vec<_>>())? + "::text[]";
    let tokens = s.bind(e.symbols.iter().map(|x| x.1).collect::<Vec<_>>())? + "::bigint[]";
    let owner = s.bind(e.owner)? + "::text";
    let ids = s.bind(e.versions.iter().map(|v| v.0).collect::<Vec<_>>())? + "::bigint[]";
    let versions = s.bind(e.versions.iter().map(|v| v.1).collect::<Vec<_>>())? + "::bigint[]";
    let r = e.rows;
    let rows = [
        s.bind(r.keys().map(String::as_str).collect::<Vec<_>>())? + "::text[]",
        s.bind(r.values().map(|x| x.seq).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(r.values().map(|x| x.md_seq).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(r.values().map(|x| x.status.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(
            r.values()
                .map(|x| x.last_trade.map(|t| t.0))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
        s.bind(
            r.values()
                .map(|x| x.last_trade.map(|t| t.1))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
        s.bind(
            r.values()
                .map(|x| x.last_trade.map(|t| t.2))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
    ];
    let n_rows = s.bind(i64::try_from(r.len()).unwrap_or(i64::MAX))?;
    let n_accounts = s.bind(i64::try_from(e.versions.len()).unwrap_or(i64::MAX))?;
    s.ctes.push(format!(
        "locked AS MATERIALIZED (SELECT s.* FROM symbols s \
         JOIN UNNEST({names}, {tokens}) AS k(symbol, token) ON s.symbol = k.symbol \
         WHERE {owner} IS NULL OR (s.owner = {owner} AND s.lease_token = k.token) \
         ORDER BY s.symbol FOR UPDATE OF s)"
    ));
    s.ctes.push(format!(
        "held AS MATERIALIZED (SELECT id, version FROM accounts \
         WHERE id = ANY({ids}) AND (SELECT count(*) FROM locked) >= 0 \
         ORDER BY id FOR NO KEY UPDATE)"
    ));
    s.ctes.push(format!(
        "ok AS MATERIALIZED (SELECT \
         (SELECT count(*) FROM locked l JOIN UNNEST({}) AS e(symbol, seq, md_seq, status, last_price, \
          last_qty, last_trade_seq) ON l.symbol = e.symbol AND l.seq = e.seq AND l.md_seq = e.md_seq \
          AND l.status = e.status AND l.last_price IS NOT DISTINCT FROM e.last_price \
          AND l.last_qty IS NOT DISTINCT FROM e.last_qty \
          AND l.last_trade_seq IS NOT DISTINCT FROM e.last_trade_seq) = {n_rows} \
         AND (SELECT count(*) FROM locked) = {n_rows} \
         AND (SELECT count(*) FROM held h JOIN UNNEST({ids}, {versions}) AS e(id, version) \
          ON h.id = e.id AND h.version = e.version) = {n_accounts} AS ok)",
        rows.join(", ")
    ));
    s.gate = GATE;
    Ok(())
}

fn orders(
    s: &mut Statement,
    w: &BatchWrites,
    now: &str,
    now_value: DateTime<Utc>,
) -> Result<(), MatchError> {
    let o = &w.new_orders;
    if !o.is_empty() {
        const COLS: &str = "id, account_id, client_order_id, symbol, side, order_type, tif, price, qty, \
                            filled, remaining, status, cancel_reason, priority, approval_requested_at, \
                            expires_at, approval_reserved_cash, approval_notional, created_at, updated_at";
        let cols = [
            s.bind(o.iter().map(|r| r.id).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.account_id).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(
                o.iter()
                    .map(|r| r.client_order_id.as_deref())
                    .collect::<Vec<_>>(),
            )? + "::text[]",
            s.bind(o.iter().map(|r| r.symbol.as_str()).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.side).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.order_type).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.tif).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.price).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.qty).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.filled).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.remaining).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.status).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.cancel_reason).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.priority).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(
                o.iter()
                    .map(|r| r.approval.as_ref().map(|_| now_value))
                    .collect::<Vec<_>>(),
            )? + "::timestamptz[]",
            s.bind(
                o.iter()
                    .map(|r| r.approval.as_ref().map(|a| a.expires_at))
                    .collect::<Vec<_>>(),
            )? + "::timestamptz[]",
            s.bind(
                o.iter()
                    .map(|r| r.approval.as_ref().map(|a| a.reserved_cash))
                    .collect::<Vec<_>>(),
            )? + "::bigint[]",
            s.bind(
                o.iter()
                    .map(|r| r.approval.as_ref().map(|a| a.notional))
                    .collect::<Vec<_>>(),
            )? + "::bigint[]",
        ];
        s.cte(
            "new_orders",
            format!(
                "INSERT INTO orders ({COLS}) SELECT t.*, {now}, {now} FROM UNNEST({}) AS t WHERE true{}",
                cols.join(", "),
                s.gate
            ),
        );
    }
    let h = &w.held_changes;
    if !h.is_empty() {
        let cols = [
            s.bind(h.iter().map(|r| r.id).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(h.iter().map(|r| r.status).collect::<Vec<_>>())? + "::text[]",
            s.bind(h.iter().map(|r| r.filled).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(h.iter().map(|r| r.remaining).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(h.iter().map(|r| r.cancel_reason).collect::<Vec<_>>())? + "::text[]",
            s.bind(h.iter().map(|r| r.priority).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(h.iter().map(|r| r.approved_by).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(h.iter().map(|r| r.rejected_by).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(
                h.iter()
                    .map(|r| r.rejected_reason.as_deref())
                    .collect::<Vec<_>>(),
            )? + "::text[]",
        ];
        // Held orders are decided in place (final state); `order_changes` never names one.
        s.checked(
            "decided_held",
            format!(
                "UPDATE orders SET {HELD_SET}, approval_decided_at = {now}, updated_at = {now} \
                 FROM UNNEST({}) AS d(id, status, filled, remaining, cancel_reason, priority, \
                 approved_by, rejected_by, rejected_reason) WHERE orders.id = ANY({}) AND {HELD_PENDING}{}",
                cols.join(", "),
                cols[0],
                s.gate
            ),
            h.len(),
            "held orders",
        );
    }
    let o = &w.order_changes;
    if !o.is_empty() {
        let cols = [
            s.bind(o.iter().map(|r| r.id).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.filled).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.remaining).collect::<Vec<_>>())? + "::bigint[]",
            s.bind(o.iter().map(|r| r.status).collect::<Vec<_>>())? + "::text[]",
            s.bind(o.iter().map(|r| r.cancel_reason).collect::<Vec<_>>())? + "::text[]",
        ];
        s.checked(
            "changed_orders",
            format!(
                "UPDATE orders SET filled = orders.filled + d.filled, remaining = d.remaining, \
                 status = d.status, cancel_reason = COALESCE(d.cancel_reason, orders.cancel_reason), \
                 updated_at = {now} FROM UNNEST({}) AS d(id, filled, remaining, status, cancel_reason) \
                 WHERE orders.id = ANY({}) AND orders.id = d.id \
                 AND orders.status IN ('new', 'partially_filled'){}",
                cols.join(", "),
                cols[0],
                s.gate
            ),
            o.len(),
            "resting orders",
        );
    }
    Ok(())
}

fn trades(s: &mut Statement, w: &BatchWrites, now: &str) -> Result<(), MatchError> {
    let t = &w.trades;
    if t.is_empty() {
        return Ok(());
    }
    const COLS: &str = "symbol, seq, price, qty, taker_side, taker_order_id, maker_order_id, \
                        taker_account_id, maker_account_id, created_at";
    let cols = [
        s.bind(t.iter().map(|r| r.symbol.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(t.iter().map(|r| r.seq).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(t.iter().map(|r| r.price).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(t.iter().map(|r| r.qty).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(t.iter().map(|r| r.taker_side).collect::<Vec<_>>())? + "::text[]",
        s.bind(t.iter().map(|r| r.taker_order_id).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(t.iter().map(|r| r.maker_order_id).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(t.iter().map(|r| r.taker_account_id).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(t.iter().map(|r| r.maker_account_id).collect::<Vec<_>>())? + "::bigint[]",
    ];
    s.cte(
        "new_trades",
        format!(
            "INSERT INTO trades ({COLS}) SELECT t.*, {now} FROM UNNEST({}) AS t WHERE true{}",
            cols.join(", "),
            s.gate
        ),
    );
    Ok(())
}

fn accounts(s: &mut Statement, w: &BatchWrites) -> Result<(), MatchError> {
    let a = &w.accounts;
    if a.is_empty() {
        return Ok(());
    }
    let cols = [
        s.bind(a.keys().copied().collect::<Vec<_>>())? + "::bigint[]",
        s.bind(a.values().map(|d| d.cash).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(a.values().map(|d| d.cash_reserved).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(a.values().map(|d| d.open_orders).collect::<Vec<_>>())? + "::bigint[]",
    ];
    s.checked(
        "changed_accounts",
        format!(
            "UPDATE accounts SET cash = accounts.cash + d.cash, \
             cash_reserved = accounts.cash_reserved + d.cash_reserved, \
             open_orders = accounts.open_orders + d.open_orders \
             FROM UNNEST({}) AS d(id, cash, cash_reserved, open_orders) WHERE accounts.id = d.id{}",
            cols.join(", "),
            s.gate
        ),
        a.len(),
        "accounts",
    );
    Ok(())
}

fn positions(s: &mut Statement, w: &BatchWrites) -> Result<(), MatchError> {
    let p = &w.positions;
    if p.is_empty() {
        return Ok(());
    }
    let mut cost = Vec::with_capacity(p.len());
    let mut pnl = Vec::with_capacity(p.len());
    for pos in p.values() {
        cost.push(to_i64(pos.cost_basis)?);
        pnl.push(to_i64(pos.realized_pnl)?);
    }
    let cols = [
        s.bind(p.keys().map(|k| k.0).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(p.keys().map(|k| k.1.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(p.values().map(|v| v.qty.raw()).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(p.values().map(|v| v.reserved.raw()).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(cost)? + "::bigint[]",
        s.bind(pnl)? + "::bigint[]",
    ];
    s.cte(
        "new_positions",
        format!(
            "INSERT INTO positions (account_id, symbol, qty, reserved, cost_basis, realized_pnl) \
             SELECT * FROM UNNEST({}) WHERE true{} ON CONFLICT (account_id, symbol) DO UPDATE SET \
             qty = excluded.qty, reserved = excluded.reserved, cost_basis = excluded.cost_basis, \
             realized_pnl = excluded.realized_pnl",
            cols.join(", "),
            s.gate
        ),
    );
    Ok(())
}

fn audits(s: &mut Statement, w: &BatchWrites, now: &str) -> Result<(), MatchError> {
    let a = &w.audits;
    if a.is_empty() {
        return Ok(());
    }
    // Bounded, scored and tagged as every audit record is (see `store::audit`).
    let rows: Vec<_> = a.iter().map(NewAuditEvent::columns).collect();
    let cols = [
        s.bind(rows.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(rows.iter().map(|e| e.action.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(
            rows.iter()
                .map(|e| e.subject.as_deref())
                .collect::<Vec<_>>(),
        )? + "::text[]",
        s.bind(
            rows.iter()
                .map(|e| e.request_id.as_deref())
                .collect::<Vec<_>>(),
        )? + "::text[]",
        s.bind(rows.iter().map(|e| e.details.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(rows.iter().map(|e| e.risk_score).collect::<Vec<_>>())? + "::smallint[]",
        s.bind(rows.iter().map(|e| e.tags.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(
            rows.iter()
                .map(|e| e.client_ip.as_deref())
                .collect::<Vec<_>>(),
        )? + "::text[]",
    ];
    s.cte(
        "new_audits",
        format!(
            "INSERT INTO audit_events (occurred_at, actor, action, subject, request_id, details, \
             risk_score, tags, client_ip) SELECT {now}, t.* FROM UNNEST({}) AS t WHERE true{}",
            cols.join(", "),
            s.gate
        ),
    );
    s.written.extend(rows);
    Ok(())
}

fn symbols(s: &mut Statement, w: &BatchWrites) -> Result<(), MatchError> {
    let m = &w.symbols;
    if m.is_empty() {
        return Ok(());
    }
    let cols = [
        s.bind(m.keys().map(String::as_str).collect::<Vec<_>>())? + "::text[]",
        s.bind(m.values().map(|r| r.seq).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(m.values().map(|r| r.md_seq).collect::<Vec<_>>())? + "::bigint[]",
        s.bind(m.values().map(|r| r.status.as_str()).collect::<Vec<_>>())? + "::text[]",
        s.bind(
            m.values()
                .map(|r| r.last_trade.map(|t| t.0))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
        s.bind(
            m.values()
                .map(|r| r.last_trade.map(|t| t.1))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
        s.bind(
            m.values()
                .map(|r| r.last_trade.map(|t| t.2))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
        s.bind(
            m.keys()
                .map(|k| w.fence.as_ref().and_then(|f| f.tokens.get(k).copied()))
                .collect::<Vec<_>>(),
        )? + "::bigint[]",
    ];
    // The fence: only rows whose lease the writer still holds (see `BatchWrites::fence`).
    let owner = s.bind(w.fence.as_ref().map(|f| f.owner.clone()))? + "::text";
    s.checked(
        "changed_symbols",
        format!(
            "UPDATE symbols SET seq = d.seq, md_seq = d.md_seq, status = d.status, \
             last_price = d.last_price, last_qty = d.last_qty, last_trade_seq = d.last_trade_seq \
             FROM UNNEST({}) AS d(symbol, seq, md_seq, status, last_price, last_qty, last_trade_seq, token) \
             WHERE symbols.symbol = d.symbol \
             AND ({owner} IS NULL OR (symbols.owner = {owner} AND symbols.lease_token = d.token)){}",
            cols.join(", "),
            s.gate
        ),
        m.len(),
        "symbols",
    );
    Ok(())
}
