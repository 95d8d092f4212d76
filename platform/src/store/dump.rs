//! The SQL of taking a backup's snapshot ([`crate::backup::dump`] has the design and the record
//! format): starting the consistent read transaction, reading the schema version, each table's
//! rows in primary-key order (streamed, never collected), the sequence counters and the archive
//! position.
//!
//! It lives in the storage layer with the rest of the SQL; the backup's flow (records, progress,
//! pacing) stays in [`crate::backup::dump`]. The text-format settings and the SQLite value type
//! are shared with the restore ([`super::restore`]).

use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::{PgConnection, PgPool, Row, SqliteConnection, TypeInfo, ValueRef};

use super::catalog::{TableInfo, quote_ident};

/// Session settings that fix PostgreSQL's text output (and input) formats, applied by both the
/// dump and the restore.
pub const PG_TEXT_SETTINGS: &str = "SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; \
     SET LOCAL bytea_output = 'hex'; SET LOCAL TimeZone = 'UTC';";

const SCHEMA_VERSION_SQL: &str =
    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";

/// One SQLite value, by storage class: what the dump reads and the restore binds (the backup
/// format tags them in JSON, see [`crate::backup::dump`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SqliteValue {
    /// SQL NULL.
    Null,
    /// A boolean (only from a restore's input; SQLite stores it as an INTEGER).
    Bool(bool),
    /// INTEGER.
    Integer(i64),
    /// REAL (infinities included).
    Real(f64),
    /// TEXT (and any declared type SQLite does not store as one of the others).
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// ` ORDER BY <primary key>`, or nothing for a table without one.
fn order_by(t: &TableInfo) -> String {
    if t.primary_key.is_empty() {
        String::new()
    } else {
        let cols: Vec<String> = t.primary_key.iter().map(|c| quote_ident(c)).collect();
        format!(" ORDER BY {}", cols.join(", "))
    }
}

/// Starts the snapshot on PostgreSQL: a `REPEATABLE READ, READ ONLY` transaction with
/// [`PG_TEXT_SETTINGS`] applied.
pub async fn pg_begin_snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    pg_set_text_formats(&mut tx).await?;
    Ok(tx)
}

/// Applies [`PG_TEXT_SETTINGS`] to the caller's transaction.
pub async fn pg_set_text_formats(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(PG_TEXT_SETTINGS).execute(conn).await?;
    Ok(())
}

/// The newest applied migration (PostgreSQL).
pub async fn pg_schema_version(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(SCHEMA_VERSION_SQL).fetch_one(conn).await
}

/// The newest applied migration (SQLite). As the transaction's first read, it fixes the WAL
/// snapshot for the rest of it.
pub async fn sqlite_schema_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(SCHEMA_VERSION_SQL).fetch_one(conn).await
}

/// Whether the database has the archive's `archive_state` table (PostgreSQL; a database
/// migrated before archiving existed lacks it).
pub async fn pg_archive_state_exists(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass('archive_state') IS NOT NULL")
        .fetch_one(conn)
        .await
}

/// The snapshot of the caller's transaction (`pg_current_snapshot()` as text).
pub async fn pg_current_snapshot(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_current_snapshot()::text")
        .fetch_one(conn)
        .await
}

/// The query reading one table's rows on PostgreSQL, each as a JSON array of the columns' text
/// forms (SQL NULL as `null`), in primary-key order.
pub struct PgTableRows {
    sql: String,
}

impl PgTableRows {
    /// The query for table `t` of `schema`.
    pub fn new(schema: &str, t: &TableInfo) -> PgTableRows {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect();
        let sql = format!(
            "SELECT array_to_json(ARRAY[{}]::text[])::text FROM {}{}",
            cols.join(", "),
            qualified(schema, &t.name),
            order_by(t)
        );
        PgTableRows { sql }
    }

    /// Streams the rows in the caller's transaction.
    pub fn fetch<'e>(
        &'e self,
        conn: &'e mut PgConnection,
    ) -> BoxStream<'e, Result<String, sqlx::Error>> {
        sqlx::query_scalar::<_, String>(&self.sql).fetch(conn)
    }
}

/// A sequence's counter: `(last_value, is_called)` (PostgreSQL).
pub async fn pg_sequence_value(
    conn: &mut PgConnection,
    schema: &str,
    sequence: &str,
) -> Result<(i64, bool), sqlx::Error> {
    let sql = format!(
        "SELECT last_value, is_called FROM {}",
        qualified(schema, sequence)
    );
    let row = sqlx::query(&sql).fetch_one(conn).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The query reading one table's rows on SQLite, each as its values in column order, in
/// primary-key order.
pub struct SqliteTableRows {
    sql: String,
    columns: usize,
}

impl SqliteTableRows {
    /// The query for table `t`.
    pub fn new(t: &TableInfo) -> SqliteTableRows {
        let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(c)).collect();
        let sql = format!(
            "SELECT {} FROM {}{}",
            cols.join(", "),
            quote_ident(&t.name),
            order_by(t)
        );
        SqliteTableRows {
            sql,
            columns: t.columns.len(),
        }
    }

    /// Streams the rows in the caller's transaction.
    pub fn fetch<'e>(
        &'e self,
        conn: &'e mut SqliteConnection,
    ) -> BoxStream<'e, Result<Vec<SqliteValue>, sqlx::Error>> {
        let columns = self.columns;
        sqlx::query(&self.sql)
            .fetch(conn)
            .map(move |row| {
                let row = row?;
                (0..columns).map(|i| sqlite_value(&row, i)).collect()
            })
            .boxed()
    }
}

/// One SQLite value, by the storage class it has in this row.
fn sqlite_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<SqliteValue, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(SqliteValue::Null);
    }
    let kind = raw.type_info().name().to_owned();
    Ok(match kind.as_str() {
        "INTEGER" => SqliteValue::Integer(row.try_get_unchecked::<i64, _>(i)?),
        "REAL" => SqliteValue::Real(row.try_get_unchecked::<f64, _>(i)?),
        "BLOB" => SqliteValue::Blob(row.try_get_unchecked::<Vec<u8>, _>(i)?),
        _ => SqliteValue::Text(row.try_get_unchecked::<String, _>(i)?),
    })
}

/// The `sqlite_sequence` counters, `(table, seq)` by table name (call only when
/// [`super::catalog::sqlite_has_sequences`]).
pub async fn sqlite_sequences(
    conn: &mut SqliteConnection,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, seq FROM sqlite_sequence ORDER BY name")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}
