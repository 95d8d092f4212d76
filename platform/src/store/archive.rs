//! The SQL of point-in-time archiving (PostgreSQL only; see [`crate::archive`] for the design).
//!
//! Every committed write reaches the `change_log` table through statement-level triggers with
//! transition tables (one `INSERT … SELECT` per statement, not one per row), created on every
//! platform table when archiving is enabled. Each change row carries the writing transaction's
//! id, so a restore can replay exactly the transactions that a given snapshot saw. Restore points
//! are change rows too (`op = 'M'`), holding the snapshot of the transaction that wrote them.
//!
//! The archiver takes changes out in whole transactions, ordered by each transaction's last
//! change, in the same transaction that advances `archive_state.next_segment`; it commits only
//! after the segment is stored, so a crash before that ships the same changes again under the
//! same number.

use sqlx::{PgConnection, PgPool, Row};

/// Name prefix of the change-log triggers (`…_i`, `…_u`, `…_d`, `…_t`).
pub const TRIGGER_PREFIX: &str = "tradeplane_archive_";

/// Which archive a database feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveIdentity {
    /// Random id, written to the archive's `archive.json` by the first archiver.
    pub archive_id: String,
    /// The number the next segment gets.
    pub next_segment: i64,
}

/// One row of the change log, as shipped.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    /// Position in the log (allocation order, not commit order).
    pub id: i64,
    /// The writing transaction (`pg_current_xact_id()`).
    pub xid: i64,
    /// The table (`''` for a restore point).
    pub table: String,
    /// `W`, `D`, `T` or `M` (see the migration).
    pub op: String,
    /// The row as JSON (`to_jsonb` of the row).
    pub row: String,
}

/// What [`ShipTx::take`] yields.
#[derive(Debug, Clone)]
pub enum Taken {
    /// A change, in log order.
    Change(ChangeRow),
    /// Last: the snapshot of the statement that took them.
    Snapshot(String),
}

/// A restore point just written.
#[derive(Debug, Clone)]
pub struct RestorePoint {
    /// Its number (`restore --until-seq`).
    pub seq: i64,
    /// Its JSON (`name`, `at`, `snapshot`).
    pub row: String,
}

const FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION tradeplane_change_log() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    x bigint := pg_current_xact_id()::text::bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (xid, tbl, op, row)
        SELECT x, TG_TABLE_NAME, 'D', to_jsonb(o) FROM old_rows o;
    ELSIF TG_OP = 'TRUNCATE' THEN
        INSERT INTO change_log (xid, tbl, op, row) VALUES (x, TG_TABLE_NAME, 'T', '{}'::jsonb);
    ELSE
        INSERT INTO change_log (xid, tbl, op, row)
        SELECT x, TG_TABLE_NAME, 'W', to_jsonb(n) FROM new_rows n;
    END IF;
    RETURN NULL;
END
$fn$"#;

/// The four triggers of one table: (suffix, the part of `CREATE TRIGGER` after its name).
fn trigger_specs(table: &str) -> [(&'static str, String); 4] {
    let t = crate::store::catalog::quote_ident(table);
    let each = "FOR EACH STATEMENT EXECUTE FUNCTION tradeplane_change_log()";
    [
        (
            "i",
            format!("AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows {each}"),
        ),
        (
            "u",
            format!("AFTER UPDATE ON {t} REFERENCING NEW TABLE AS new_rows {each}"),
        ),
        (
            "d",
            format!("AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows {each}"),
        ),
        ("t", format!("AFTER TRUNCATE ON {t} {each}")),
    ]
}

/// Turns archiving on (idempotent, safe with several replicas starting at once): creates the
/// trigger function, adds the triggers to every platform table that lacks them (tables added by
/// later migrations included) and the `archive_state` row, all in one transaction, and returns
/// the identity. Until this commits nothing is logged, and a backup only counts as a base for
/// point-in-time restore when its snapshot saw this commit (see `backup::dump`).
pub async fn enable(pool: &PgPool) -> Result<ArchiveIdentity, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tradeplane.archive'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(FUNCTION).execute(&mut *tx).await?;
    let tables = crate::store::catalog::pg_tables(&mut tx).await?;
    let existing: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, t.tgname::text FROM pg_trigger t \
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND t.tgname LIKE 'tradeplane\\_archive\\_%'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for table in &tables {
        for (suffix, spec) in trigger_specs(&table.name) {
            let name = format!("{TRIGGER_PREFIX}{suffix}");
            if existing.iter().any(|(t, n)| t == &table.name && n == &name) {
                continue;
            }
            sqlx::query(&format!("CREATE TRIGGER {name} {spec}"))
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query(
        "INSERT INTO archive_state (id, archive_id, next_segment, enabled_at) \
         VALUES (1, gen_random_uuid()::text, 1, now()) ON CONFLICT (id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    let identity = identity_in(&mut tx)
        .await?
        .ok_or_else(|| sqlx::Error::Protocol("archive_state vanished".into()))?;
    tx.commit().await?;
    Ok(identity)
}

/// The archive this database feeds, if archiving is enabled (read in the caller's transaction,
/// so a backup's snapshot names the segment its replay starts from).
pub async fn identity_in(conn: &mut PgConnection) -> Result<Option<ArchiveIdentity>, sqlx::Error> {
    let row = sqlx::query("SELECT archive_id, next_segment FROM archive_state WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok(ArchiveIdentity {
            archive_id: r.try_get(0)?,
            next_segment: r.try_get(1)?,
        })
    })
    .transpose()
}

/// Turns archiving off in the caller's transaction: drops the triggers, empties the change log
/// and forgets the identity. Used by a restore (the restored database must not continue its
/// source's archive) and by `archive disable`. Returns whether archiving was on.
pub async fn reset_in(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let triggers: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, t.tgname::text FROM pg_trigger t \
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND t.tgname LIKE 'tradeplane\\_archive\\_%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (table, name) in &triggers {
        let sql = format!(
            "DROP TRIGGER {} ON {}",
            crate::store::catalog::quote_ident(name),
            crate::store::catalog::quote_ident(table)
        );
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    let state = sqlx::query("DELETE FROM archive_state")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("TRUNCATE change_log")
        .execute(&mut *conn)
        .await?;
    Ok(state > 0 || !triggers.is_empty())
}

/// Writes a restore point named `name` in the caller's transaction: the transaction's snapshot
/// (under `REPEATABLE READ`, the one its reads see) and the time. Restoring to it gives exactly
/// the database that snapshot saw.
pub async fn restore_point_in(
    conn: &mut PgConnection,
    name: &str,
) -> Result<RestorePoint, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO change_log (xid, tbl, op, row) \
         VALUES (pg_current_xact_id()::text::bigint, '', 'M', jsonb_build_object( \
             'name', $1::text, \
             'at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             'snapshot', pg_current_snapshot()::text)) \
         RETURNING id, row::text",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(RestorePoint {
        seq: row.try_get(0)?,
        row: row.try_get(1)?,
    })
}

/// [`restore_point_in`] in a transaction of its own.
pub async fn restore_point(pool: &PgPool, name: &str) -> Result<RestorePoint, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let point = restore_point_in(&mut tx, name).await?;
    tx.commit().await?;
    Ok(point)
}

/// One archiver's turn: the locked `archive_state` row and the transaction that takes the
/// shipped changes out of the log.
pub struct ShipTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The identity and the number this segment gets.
    pub identity: ArchiveIdentity,
    /// The newest applied migration (a replay refuses to cross a schema change).
    pub schema_version: i64,
}

/// Starts a turn, or `None` when archiving is off or another replica's archiver is shipping.
pub async fn begin_ship(pool: &PgPool) -> Result<Option<ShipTx>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT archive_id, next_segment FROM archive_state WHERE id = 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let identity = ArchiveIdentity {
        archive_id: row.try_get(0)?,
        next_segment: row.try_get(1)?,
    };
    let schema_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *tx)
            .await?;
    Ok(Some(ShipTx {
        tx,
        identity,
        schema_version,
    }))
}

impl ShipTx {
    /// Takes the changes of up to `max_transactions` committed transactions out of the log, in
    /// log order, ordered between transactions by their last change (so a transaction that a
    /// restore point's snapshot saw is never shipped after the restore point). The last item is
    /// the statement's snapshot: when fewer than `max_transactions` came, the turn took every
    /// change that snapshot saw.
    pub fn take(
        &mut self,
        max_transactions: i64,
    ) -> futures::stream::BoxStream<'_, Result<Taken, sqlx::Error>> {
        use futures::{StreamExt, TryStreamExt};
        sqlx::query(
            "WITH snap AS (SELECT pg_current_snapshot()::text AS s), picked AS ( \
                 SELECT xid FROM change_log GROUP BY xid ORDER BY max(id) LIMIT $1 \
             ), gone AS ( \
                 DELETE FROM change_log c USING picked p WHERE c.xid = p.xid \
                 RETURNING c.id, c.xid, c.tbl, c.op, c.row \
             ) \
             SELECT id, xid, tbl, op::text, row::text, NULL::text FROM gone \
             UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, s FROM snap \
             ORDER BY 1 NULLS LAST",
        )
        .bind(max_transactions)
        .fetch(&mut *self.tx)
        .and_then(|r: sqlx::postgres::PgRow| async move {
            if let Some(snapshot) = r.try_get::<Option<String>, _>(5)? {
                return Ok(Taken::Snapshot(snapshot));
            }
            Ok(Taken::Change(ChangeRow {
                id: r.try_get(0)?,
                xid: r.try_get(1)?,
                table: r.try_get(2)?,
                op: r.try_get(3)?,
                row: r.try_get(4)?,
            }))
        })
        .boxed()
    }

    /// The segment is stored: advance the number and commit (the changes leave the log).
    pub async fn shipped(mut self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE archive_state SET next_segment = next_segment + 1, last_shipped_at = now() \
             WHERE id = 1",
        )
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await
    }

    /// Nothing to ship (or storing failed): keep everything in the log.
    pub async fn abandon(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// Changes waiting in the log (an estimate from the id range; exact enough for a gauge).
pub async fn backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id) - MIN(id) + 1, 0) FROM change_log")
        .fetch_one(pool)
        .await
}

/// When the last segment was shipped, if ever.
pub async fn last_shipped_at(
    conn: &mut PgConnection,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT last_shipped_at FROM archive_state WHERE id = 1")
            .fetch_optional(conn)
            .await?
            .flatten(),
    )
}
