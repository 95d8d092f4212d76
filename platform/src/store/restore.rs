//! The SQL of restoring a backup ([`crate::backup::restore`] has the order of work): migrating
//! the target up to the backup's schema version, checking that it is empty, switching triggers
//! off and back on, clearing tables, inserting the rows and setting the sequence counters, all in
//! the caller's transaction.
//!
//! It lives in the storage layer with the rest of the SQL; reading the backup's records,
//! matching its tables with the target's, batching and progress stay in
//! [`crate::backup::restore`].

use std::borrow::Cow;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{PgConnection, Row, SqliteConnection};

use super::Backend;
use super::Store;
use super::catalog::quote_ident;
use super::dump::{SqliteValue, qualified};

/// This build's migrations for `backend`.
pub fn migrator(backend: Backend) -> Migrator {
    match backend {
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
    }
}

/// Migrates `store` up to `version` only (never beyond, so the data fits the schema it was
/// taken from).
pub async fn migrate_to(store: &Store, version: i64) -> Result<(), MigrateError> {
    let mut m = migrator(store.backend());
    let upto: Vec<_> = m
        .migrations
        .iter()
        .filter(|x| x.version <= version)
        .cloned()
        .collect();
    m.migrations = Cow::Owned(upto);
    match store {
        Store::Postgres(pool) => m.run(pool).await,
        Store::Sqlite(pool) => m.run(pool).await,
    }
}

/// The tables among `tables` of `schema` that hold rows, with their row counts (PostgreSQL).
pub async fn pg_non_empty<'a>(
    conn: &mut PgConnection,
    schema: &str,
    tables: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut non_empty = Vec::new();
    for t in tables {
        let sql = format!("SELECT COUNT(*) FROM {}", qualified(schema, t));
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
        if n > 0 {
            non_empty.push((t.clone(), n));
        }
    }
    Ok(non_empty)
}

/// Defers every deferrable constraint to the end of the transaction (or to
/// [`pg_check_constraints`]).
pub async fn pg_defer_constraints(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET CONSTRAINTS ALL DEFERRED")
        .execute(conn)
        .await?;
    Ok(())
}

/// Checks the deferred constraints now (`SET CONSTRAINTS ALL IMMEDIATE`).
pub async fn pg_check_constraints(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(conn)
        .await?;
    Ok(())
}

/// The enabled user triggers of `table` that fire on INSERT (4), DELETE (8), UPDATE (16) or
/// TRUNCATE (32), by name (PostgreSQL).
pub async fn pg_user_triggers(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::text::regclass \
         AND NOT tgisinternal AND tgenabled <> 'D' AND (tgtype::int & (4 | 8 | 16 | 32)) <> 0 \
         ORDER BY tgname",
    )
    .bind(qualified(schema, table))
    .fetch_all(conn)
    .await
}

/// Switches trigger `name` of `table` off (`enable = false`) or back on, inside the
/// transaction (the role must own the table).
pub async fn pg_set_trigger(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    name: &str,
    enable: bool,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "ALTER TABLE {} {} TRIGGER {}",
        qualified(schema, table),
        if enable { "ENABLE" } else { "DISABLE" },
        quote_ident(name)
    );
    sqlx::query(&sql).execute(conn).await?;
    Ok(())
}

/// Empties `tables` of `schema` in one `TRUNCATE`.
pub async fn pg_truncate<'a>(
    conn: &mut PgConnection,
    schema: &str,
    tables: impl IntoIterator<Item = &'a String>,
) -> Result<(), sqlx::Error> {
    let all: Vec<String> = tables.into_iter().map(|t| qualified(schema, t)).collect();
    sqlx::query(&format!("TRUNCATE {}", all.join(", ")))
        .execute(conn)
        .await?;
    Ok(())
}

/// The multi-row INSERT of one table on PostgreSQL: its rows come as a JSON array of the
/// dump's rows (arrays of the columns' text forms), each value cast back to the column's type.
pub struct PgRowInsert {
    table: String,
    sql: String,
}

impl PgRowInsert {
    /// The INSERT into `table` of `schema`; `columns` are the backup's columns in row order,
    /// each with the target column's SQL type.
    pub fn new<'a>(
        schema: &str,
        table: &str,
        columns: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> PgRowInsert {
        let table = qualified(schema, table);
        let mut cols = Vec::new();
        let mut casts = Vec::new();
        for (i, (c, ty)) in columns.into_iter().enumerate() {
            cols.push(quote_ident(c));
            casts.push(format!("(r->>{i})::{ty}"));
        }
        let (cols, casts) = (cols.join(", "), casts.join(", "));
        let sql = format!(
            "INSERT INTO {table} ({cols}) OVERRIDING SYSTEM VALUE \
             SELECT {casts} FROM json_array_elements($1::json) AS r"
        );
        PgRowInsert { table, sql }
    }

    /// The qualified table name, as the error messages name it.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Inserts the rows of `rows_json` (a JSON array of row arrays).
    pub async fn execute(
        &self,
        conn: &mut PgConnection,
        rows_json: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&self.sql).bind(rows_json).execute(conn).await?;
        Ok(())
    }
}

/// Sets sequence `name` of `schema` to `value` (`called`: whether `nextval` goes past it).
pub async fn pg_set_sequence(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    value: i64,
    called: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT setval($1::text::regclass, $2, $3)")
        .bind(qualified(schema, name))
        .bind(value)
        .bind(called)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tables among `tables` that hold rows, with their row counts (SQLite).
pub async fn sqlite_non_empty<'a>(
    conn: &mut SqliteConnection,
    tables: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut non_empty = Vec::new();
    for t in tables {
        let sql = format!("SELECT COUNT(*) FROM {}", quote_ident(t));
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
        if n > 0 {
            non_empty.push((t.clone(), n));
        }
    }
    Ok(non_empty)
}

/// Defers foreign-key checks to the commit (SQLite).
pub async fn sqlite_defer_foreign_keys(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(conn)
        .await?;
    Ok(())
}

/// One trigger of an SQLite database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteTrigger {
    /// Its name.
    pub name: String,
    /// The table it is on.
    pub table: String,
    /// The `CREATE TRIGGER` statement that made it (`None` when SQLite has none to show).
    pub sql: Option<String>,
}

/// Every trigger of the database, by name.
pub async fn sqlite_triggers(
    conn: &mut SqliteConnection,
) -> Result<Vec<SqliteTrigger>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SqliteTrigger {
                name: row.try_get("name")?,
                table: row.try_get("tbl_name")?,
                sql: row.try_get("sql")?,
            })
        })
        .collect()
}

/// Drops trigger `name` (the restore recreates it with [`sqlite_recreate_trigger`]).
pub async fn sqlite_drop_trigger(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP TRIGGER {}", quote_ident(name)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Recreates a dropped trigger from its [`SqliteTrigger::sql`].
pub async fn sqlite_recreate_trigger(
    conn: &mut SqliteConnection,
    sql: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await?;
    Ok(())
}

/// Empties `tables`, one `DELETE` each.
pub async fn sqlite_clear<'a>(
    conn: &mut SqliteConnection,
    tables: impl IntoIterator<Item = &'a String>,
) -> Result<(), sqlx::Error> {
    for t in tables {
        sqlx::query(&format!("DELETE FROM {}", quote_ident(t)))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The single-row INSERT of one table on SQLite.
pub struct SqliteRowInsert {
    sql: String,
}

impl SqliteRowInsert {
    /// The INSERT into `table` of `columns`, in the order [`SqliteRowInsert::execute`] gets the
    /// values.
    pub fn new(table: &str, columns: &[String]) -> SqliteRowInsert {
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let params: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_ident(table),
            cols.join(", "),
            params.join(", ")
        );
        SqliteRowInsert { sql }
    }

    /// Inserts one row.
    pub async fn execute(
        &self,
        conn: &mut SqliteConnection,
        values: Vec<SqliteValue>,
    ) -> Result<(), sqlx::Error> {
        let mut q = sqlx::query(&self.sql);
        for v in values {
            q = match v {
                SqliteValue::Null => q.bind(Option::<i64>::None),
                SqliteValue::Bool(b) => q.bind(b),
                SqliteValue::Integer(i) => q.bind(i),
                SqliteValue::Real(f) => q.bind(f),
                SqliteValue::Text(s) => q.bind(s),
                SqliteValue::Blob(b) => q.bind(b),
            };
        }
        q.execute(conn).await?;
        Ok(())
    }
}

/// Sets the `sqlite_sequence` counter of `table` to `value`, adding the row when missing (call
/// only when [`super::catalog::sqlite_has_sequences`]).
pub async fn sqlite_set_sequence(
    conn: &mut SqliteConnection,
    table: &str,
    value: i64,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query("UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1")
        .bind(table)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    if updated.rows_affected() == 0 {
        sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)")
            .bind(table)
            .bind(value)
            .execute(conn)
            .await?;
    }
    Ok(())
}
