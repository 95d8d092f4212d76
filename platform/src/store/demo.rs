//! SQL of the `--demo` market ([`crate::demo`]): the bot registry, the maker's resting quotes,
//! pruning the bots' old history, and disabling the demo logins after a non-demo start.

use super::BeginWrite as _;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, with_pool};

/// Rows removed per statement, so a prune never holds the (SQLite) writer for long.
const PRUNE_BATCH: i64 = 2_000;

/// A password hash no password verifies against (not a PHC string).
pub const DISABLED_PASSWORD_HASH: &str = "!disabled";

/// One of the bots' resting orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Order id.
    pub id: i64,
    /// Whether it is a bid.
    pub buy: bool,
    /// Limit price (raw units).
    pub price: i64,
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Trades between two bots.
    pub trades: u64,
    /// Finished bot orders no trade refers to.
    pub orders: u64,
    /// Audit records of bots.
    pub audit: u64,
}

const PRUNE_TRADES: &str = "DELETE FROM trades WHERE id IN (SELECT id FROM trades
    WHERE created_at < $1
      AND taker_account_id IN (SELECT account_id FROM demo_bots)
      AND maker_account_id IN (SELECT account_id FROM demo_bots)
    LIMIT $2)";
const PRUNE_ORDERS: &str = "DELETE FROM orders WHERE id IN (SELECT o.id FROM orders o
    WHERE o.account_id IN (SELECT account_id FROM demo_bots)
      AND o.status IN ('filled', 'cancelled') AND o.updated_at < $1
      AND NOT EXISTS (SELECT 1 FROM trades t WHERE t.taker_order_id = o.id)
      AND NOT EXISTS (SELECT 1 FROM trades t WHERE t.maker_order_id = o.id)
    LIMIT $2)";
const PRUNE_AUDIT: &str = "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events
    WHERE occurred_at < $1
      AND actor IN (SELECT 'account:' || account_id FROM demo_bots)
    LIMIT $2)";

impl Store {
    /// Marks an account as a demo bot (idempotent).
    pub async fn register_demo_bot(&self, account_id: i64) -> Result<(), sqlx::Error> {
        with_pool!(self, super::telemetry::Op::Demo, pool => {
            sqlx::query("INSERT INTO demo_bots (account_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(account_id)
                .execute(pool)
                .await
                .map(|_| ())
        })
    }

    /// The resting orders of `account` in `symbol` (through the partial index of resting orders).
    pub async fn resting_quotes(
        &self,
        account: i64,
        symbol: &str,
    ) -> Result<Vec<Quote>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::Demo, pool => {
            let rows = sqlx::query(
                "SELECT id, side, price FROM orders WHERE symbol = $1 \
                 AND status IN ('new', 'partially_filled') AND account_id = $2",
            )
            .bind(symbol)
            .bind(account)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Quote {
                        id: r.try_get("id")?,
                        buy: r.try_get::<String, _>("side")? == "buy",
                        price: r.try_get::<Option<i64>, _>("price")?.unwrap_or(0),
                    })
                })
                .collect()
        })
    }

    /// Deletes the demo bots' history: trades between two bots older than `trades_before`, then
    /// finished bot orders older than `rest_before` that no remaining trade refers to, and bot
    /// audit records older than `rest_before`. Trades with a person on either side, and the
    /// orders they refer to, are kept.
    pub async fn prune_demo_bots(
        &self,
        trades_before: DateTime<Utc>,
        rest_before: DateTime<Utc>,
    ) -> Result<Pruned, sqlx::Error> {
        let mut pruned = Pruned::default();
        for (sql, before, count) in [
            (PRUNE_TRADES, trades_before, &mut pruned.trades),
            (PRUNE_ORDERS, rest_before, &mut pruned.orders),
            (PRUNE_AUDIT, rest_before, &mut pruned.audit),
        ] {
            loop {
                let n = with_pool!(self, super::telemetry::Op::Demo, pool => {
                    sqlx::query(sql)
                        .bind(before)
                        .bind(PRUNE_BATCH)
                        .execute(pool)
                        .await
                        .map(|done| done.rows_affected())
                })?;
                *count += n;
                if n < PRUNE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }

    /// Sets a user's password hash and revokes every refresh token of the user; returns whether
    /// the user exists. Used to reset and to disable the demo logins.
    pub async fn reset_password(&self, user_id: i64, hash: &str) -> Result<bool, sqlx::Error> {
        let now = Utc::now();
        with_pool!(self, super::telemetry::Op::Demo, pool => {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(found)
        })
    }
}
