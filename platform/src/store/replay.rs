//! The SQL of point-in-time replay (PostgreSQL only; [`crate::archive::replay`] has the design):
//! writing the net effect of archived changes as set-based statements over a JSON array of row
//! images, emptying a truncated table, and moving the column-owned sequences past the ids the
//! replay wrote.
//!
//! It lives in the storage layer with the rest of the SQL; reading the segments and working out
//! the net effect stays in [`crate::archive::replay`]. Everything runs in the restore's
//! transaction.

use sqlx::PgConnection;

use super::catalog::{TableInfo, quote_ident};
use super::dump::qualified;

/// Empties `table` (a replayed `TRUNCATE`) with a `DELETE`.
pub async fn delete_all(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!("DELETE FROM {}", qualified(schema, table));
    sqlx::query(&sql).execute(conn).await?;
    Ok(())
}

/// Upserts the row images of `rows_json` (a JSON array of objects, one per row, keyed by
/// column) into `info`'s table by primary key: the images replace what is there.
pub async fn upsert_rows(
    conn: &mut PgConnection,
    schema: &str,
    info: &TableInfo,
    rows_json: String,
) -> Result<(), sqlx::Error> {
    let t = qualified(schema, &info.name);
    let cols: Vec<String> = info.columns.iter().map(|c| quote_ident(c)).collect();
    let pk: Vec<String> = info.primary_key.iter().map(|c| quote_ident(c)).collect();
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| !pk.contains(c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    let sql = format!(
        "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE \
         SELECT {cols} FROM jsonb_populate_recordset(NULL::{t}, $1::jsonb) \
         ON CONFLICT ({pk}) {on_conflict}",
        cols = cols.join(", "),
        pk = pk.join(", ")
    );
    sqlx::query(&sql).bind(rows_json).execute(conn).await?;
    Ok(())
}

/// Deletes the rows whose primary keys the row images of `rows_json` (as for [`upsert_rows`])
/// hold.
pub async fn delete_rows(
    conn: &mut PgConnection,
    schema: &str,
    info: &TableInfo,
    rows_json: String,
) -> Result<(), sqlx::Error> {
    let t = qualified(schema, &info.name);
    let pk: Vec<String> = info.primary_key.iter().map(|c| quote_ident(c)).collect();
    let sql = format!(
        "DELETE FROM {t} WHERE ({pk}) IN (SELECT {pk} FROM jsonb_populate_recordset(NULL::{t}, $1::jsonb))",
        pk = pk.join(", ")
    );
    sqlx::query(&sql).bind(rows_json).execute(conn).await?;
    Ok(())
}

/// A sequence owned by a table column (`serial`, identity or `OWNED BY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSequence {
    /// The sequence (unqualified).
    pub sequence: String,
    /// The table that owns it (unqualified).
    pub table: String,
    /// The owning column.
    pub column: String,
}

/// Every column-owned sequence of `schema`, by sequence name.
pub async fn owned_sequences(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<OwnedSequence>, sqlx::Error> {
    let owned: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT s.relname::text, t.relname::text, a.attname::text FROM pg_class s \
         JOIN pg_namespace n ON n.oid = s.relnamespace \
         JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass \
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
         JOIN pg_class t ON t.oid = d.refobjid \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
         WHERE s.relkind = 'S' AND n.nspname = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(conn)
    .await?;
    Ok(owned
        .into_iter()
        .map(|(sequence, table, column)| OwnedSequence {
            sequence,
            table,
            column,
        })
        .collect())
}

/// Moves `owned` past the largest value its column holds, if that is beyond the sequence's
/// current value; returns whether it moved.
pub async fn advance_sequence(
    conn: &mut PgConnection,
    schema: &str,
    owned: &OwnedSequence,
) -> Result<bool, sqlx::Error> {
    let s = qualified(schema, &owned.sequence);
    let sql = format!(
        "SELECT setval($1::text::regclass, m) FROM (SELECT MAX({c}) AS m FROM {t}) x \
         WHERE m IS NOT NULL AND m > (SELECT last_value FROM {s})",
        c = quote_ident(&owned.column),
        t = qualified(schema, &owned.table),
    );
    let r = sqlx::query(&sql).bind(&s).fetch_optional(conn).await?;
    Ok(r.is_some())
}
