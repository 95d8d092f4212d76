//! Symbol leases and the replica registry, on PostgreSQL (SQLite serves one process, which owns
//! every symbol without a lease).
//!
//! A lease is three columns of the symbol's row: `owner`, `lease_expires` and `lease_token`, a
//! fencing token that grows by one at every change of owner. The matcher's batch locks the
//! symbol's row *with* the token it holds ([`super::matching::MatchTx::lock_symbols`]), so a
//! replica whose lease was taken over finds no row and writes nothing. Every time comparison
//! uses the database's clock, so replicas' clocks need not agree.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use super::Store;
use super::telemetry::{Observation, Op};

/// A pool of its own for the lease task (so renewals never wait behind API reads), or `None`
/// for SQLite.
pub fn pool(store: &Store, timeout: Duration) -> Option<PgPool> {
    let Store::Postgres(pool) = store else {
        return None;
    };
    let options = (*pool.connect_options())
        .clone()
        .application_name("tradeplane-leases");
    Some(
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect_lazy_with(options),
    )
}

/// A live replica, as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its id (unique per process).
    pub id: String,
    /// Where other replicas reach its internal endpoint (`host:port`).
    pub address: String,
}

/// A symbol's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The symbol.
    pub symbol: String,
    /// The replica holding it, if any.
    pub owner: Option<String>,
    /// The fencing token.
    pub token: i64,
    /// Whether it has not expired.
    pub valid: bool,
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Registers or refreshes this replica and reads the live replicas and every lease, in one
/// round trip. Replicas gone for a day are forgotten.
pub async fn round(
    pool: &PgPool,
    me: &Replica,
    leaving: bool,
    lease: Duration,
) -> Result<(Vec<Replica>, Vec<Lease>), sqlx::Error> {
    let observation = Observation::start(Op::Lease);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO replicas (id, address, started_at, heartbeat_at, leaving) VALUES ($1, $2, now(), now(), $3) \
         ON CONFLICT (id) DO UPDATE SET address = excluded.address, heartbeat_at = now(), leaving = excluded.leaving",
    )
    .bind(&me.id)
    .bind(&me.address)
    .bind(leaving)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM replicas WHERE heartbeat_at < now() - interval '1 day'")
        .execute(&mut *tx)
        .await?;
    let replicas = sqlx::query(
        "SELECT id, address FROM replicas WHERE NOT leaving \
         AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
    )
    .bind(interval(lease))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(Replica {
            id: r.try_get("id")?,
            address: r.try_get("address")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let leases = sqlx::query(
        "SELECT symbol, owner, lease_token, COALESCE(lease_expires > now(), false) AS valid FROM symbols ORDER BY symbol",
    )
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(Lease {
            symbol: r.try_get("symbol")?,
            owner: r.try_get("owner")?,
            token: r.try_get("lease_token")?,
            valid: r.try_get("valid")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    tx.commit().await?;
    observation.finish(Ok((replicas, leases)))
}

/// Extends the leases `me` holds (symbol, token); returns the symbols still held.
pub async fn renew(
    pool: &PgPool,
    me: &str,
    held: &[(String, i64)],
    lease: Duration,
) -> Result<Vec<String>, sqlx::Error> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let symbols: Vec<&str> = held.iter().map(|h| h.0.as_str()).collect();
    let tokens: Vec<i64> = held.iter().map(|h| h.1).collect();
    let observation = Observation::start(Op::Lease);
    // The rows are locked in symbol order first, the order the matcher's batch locks them in
    // (`MatchTx::lock_symbols`): an `UPDATE … FROM UNNEST` alone locks them in whatever order its
    // join meets them, and deadlocked with a batch about once a minute under load (each one a
    // 1 s stall until PostgreSQL's deadlock_timeout broke it).
    let rows = sqlx::query(
        "WITH held AS (SELECT s.symbol FROM symbols s JOIN UNNEST($2::text[], $3::bigint[]) AS k(symbol, token) \
         ON s.symbol = k.symbol WHERE s.lease_token = k.token AND s.owner = $1 ORDER BY s.symbol FOR UPDATE OF s) \
         UPDATE symbols s SET lease_expires = now() + make_interval(secs => $4) FROM held \
         WHERE s.symbol = held.symbol RETURNING s.symbol",
    )
    .bind(me)
    .bind(symbols)
    .bind(tokens)
    .bind(interval(lease))
    .fetch_all(pool)
    .await;
    observation
        .finish(rows)?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// Takes a symbol's lease if it is free or expired (or already ours); returns the new token.
pub async fn acquire(
    pool: &PgPool,
    me: &str,
    symbol: &str,
    lease: Duration,
) -> Result<Option<i64>, sqlx::Error> {
    let observation = Observation::start(Op::Lease);
    let row = sqlx::query(
        "UPDATE symbols SET owner = $1, lease_token = lease_token + 1, \
         lease_expires = now() + make_interval(secs => $3) \
         WHERE symbol = $2 AND (owner IS NULL OR owner = $1 OR lease_expires IS NULL OR lease_expires <= now()) \
         RETURNING lease_token",
    )
    .bind(me)
    .bind(symbol)
    .bind(interval(lease))
    .fetch_optional(pool)
    .await;
    observation.finish(row)?.map(|r| r.try_get(0)).transpose()
}

/// Gives a symbol's lease up (a handover): the next owner need not wait for it to expire.
pub async fn release(
    pool: &PgPool,
    me: &str,
    symbol: &str,
    token: i64,
) -> Result<bool, sqlx::Error> {
    let observation = Observation::start(Op::Lease);
    let done = sqlx::query(
        "UPDATE symbols SET owner = NULL, lease_expires = NULL WHERE symbol = $2 AND owner = $1 AND lease_token = $3",
    )
    .bind(me)
    .bind(symbol)
    .bind(token)
    .execute(pool)
    .await;
    Ok(observation.finish(done)?.rows_affected() == 1)
}

/// Creates the rows of symbols that have none yet, so that they can be leased.
pub async fn ensure_symbols(pool: &PgPool, symbols: &[String]) -> Result<(), sqlx::Error> {
    let observation = Observation::start(Op::Lease);
    let done = sqlx::query("INSERT INTO symbols (symbol) SELECT * FROM UNNEST($1::text[]) ON CONFLICT (symbol) DO NOTHING")
        .bind(symbols)
        .execute(pool)
        .await
        .map(|_| ());
    observation.finish(done)
}
