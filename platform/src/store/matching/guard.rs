//! What moved under an optimistic batch: lock and report what the plan assumed.
//!
//! The matcher keeps the symbols' rows, the accounts (with their versions) and the book in
//! memory, so it can plan a batch before it reads anything. What it then needs from the database
//! is a check that nothing it planned on has moved, under the locks that keep it so until the
//! COMMIT. [`MatchTx::guard`] is that check in one statement: it locks the batch's symbol rows
//! (still leased to this replica under the given fencing tokens) in symbol order, then every
//! account the plan reads or changes in id order, and reports the rows and the versions. In
//! steady state the batch does not need it: the write statement carries the same locks and
//! checks as its first CTEs and writes only if they pass ([`super::write_pg::Expect`]), so a
//! batch is BEGIN, that write, COMMIT: three round trips whatever the number of orders, trades
//! and accounts in it. When the write reports that something moved (nothing written, the locks
//! held), this statement says what, and the matcher reads again what moved.
//!
//! Idempotency keys are not looked up here: the plan takes every new order's key for new, and
//! the `(account_id, client_order_id)` unique constraint refuses the write when one is not (a
//! client's retry of an order that committed in an earlier batch). The batch then fails whole,
//! nothing written, and runs again on the full path, which looks the keys up. Looking them up
//! here cost a probe per key on every batch to save a retry on the rare batch with a repeat,
//! and with stale statistics PostgreSQL ran that probe through the wrong index (every order of
//! the account) or as a hash join over the whole `orders` table.
//!
//! On SQLite the same check is the first statement of the batch trigger
//! ([`super::write_sqlite`]), and this one only reads: `BEGIN IMMEDIATE` already holds the
//! database's one write lock and one process serves the file.
//!
//! The lock order is the same as the full path's (symbols, then accounts, each sorted), so the
//! two never deadlock with each other or with another replica: the accounts' scan has the
//! count of the locked symbols as a one-time filter, which PostgreSQL evaluates, and so
//! finishes locking every symbol row, before the scan locks its first account.

use std::collections::BTreeMap;

use sqlx::Row;

use super::super::market::{SymbolRow, symbol_from_row};
use super::super::telemetry::{Observation, Op};
use super::{MatchError, MatchTx, Tx};

/// What [`MatchTx::guard`] found, under its locks.
#[derive(Debug, Default)]
pub struct Guarded {
    /// The symbols' rows that are still this replica's (all of them without leases).
    pub symbols: BTreeMap<String, SymbolRow>,
    /// The stored version of each account that exists.
    pub versions: BTreeMap<i64, i64>,
}

impl MatchTx {
    /// Locks `symbols` (with `owner`, only the rows whose lease `owner` holds under the given
    /// token) and `accounts`. On PostgreSQL also records the transaction id (see
    /// [`MatchTx::xid`]).
    pub async fn guard(
        &mut self,
        symbols: &[(String, i64)],
        owner: Option<&str>,
        accounts: &[i64],
    ) -> Result<Guarded, MatchError> {
        let Tx::Postgres(tx) = &mut self.tx else {
            // SQLite: `BEGIN IMMEDIATE` already holds the database's one write lock, and one
            // process serves the file (no leases), so reading is all there is to do.
            let symbols = self.lock_symbols(symbols, None, 0).await?;
            let versions = self.lock_accounts(accounts).await?;
            return Ok(Guarded { symbols, versions });
        };
        let names: Vec<&str> = symbols.iter().map(|s| s.0.as_str()).collect();
        let tokens: Vec<i64> = symbols.iter().map(|s| s.1).collect();
        let cols = super::symbol_columns_of("s");
        let sql = format!(
            "WITH locked AS MATERIALIZED ( \
               SELECT {cols} FROM symbols s \
               JOIN UNNEST($1::text[], $2::bigint[]) AS k(symbol, token) ON s.symbol = k.symbol \
               WHERE $3::text IS NULL OR (s.owner = $3 AND s.lease_token = k.token) \
               ORDER BY s.symbol FOR UPDATE OF s), \
             held AS MATERIALIZED ( \
               SELECT id, version FROM accounts \
               WHERE id = ANY($4::bigint[]) AND (SELECT count(*) FROM locked) >= 0 \
               ORDER BY id FOR NO KEY UPDATE) \
             SELECT g.*, locked.* FROM ( \
               SELECT pg_current_xact_id()::text AS xid, \
                 ARRAY(SELECT id FROM held ORDER BY id) AS account_ids, \
                 ARRAY(SELECT version FROM held ORDER BY id) AS versions) g \
             LEFT JOIN locked ON true"
        );
        self.statements += 1;
        let observation = Observation::start(Op::BatchLock);
        let rows = sqlx::query(&sql)
            .bind(&names)
            .bind(&tokens)
            .bind(owner)
            .bind(accounts)
            .fetch_all(&mut **tx)
            .await?;
        observation.succeed();
        let mut out = Guarded::default();
        for (i, r) in rows.iter().enumerate() {
            if i == 0 {
                self.xid = Some(r.try_get("xid")?);
                let ids: Vec<i64> = r.try_get("account_ids")?;
                let versions: Vec<i64> = r.try_get("versions")?;
                out.versions = ids.into_iter().zip(versions).collect();
            }
            if let Some(symbol) = r.try_get::<Option<String>, _>("symbol")? {
                out.symbols.insert(symbol, symbol_from_row(r)?);
            }
        }
        Ok(out)
    }
}
