//! Which tables the platform owns, read from the database catalog rather than hard-coded, so new
//! migrations are covered by backups without touching this module.
//!
//! Every user table of the platform's schema is included except sqlx's `_sqlx_migrations` (its
//! content is summarised by the manifest's `schema_version`). Tables are returned in foreign-key
//! dependency order (parents first), which is both the dump and the restore order.
//!
//! It lives in the storage layer with the rest of the SQL; the backup ([`crate::backup`]), the
//! restore and the point-in-time archive ([`super::archive`], [`crate::archive`]) all read it.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{PgConnection, Row, SqliteConnection};

/// The sqlx bookkeeping table, never part of the data.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The point-in-time archive's own tables ([`crate::archive`]): the change log waiting to be
/// shipped and the archive's identity. Never part of a backup, so that a restored database
/// starts an archive of its own instead of continuing (and overwriting) its source's.
pub const ARCHIVE_TABLES: [&str; 2] = ["change_log", "archive_state"];

/// Sequences that belong to [`ARCHIVE_TABLES`].
const ARCHIVE_SEQUENCES: [&str; 1] = ["change_log_id_seq"];

/// One table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Unqualified name.
    pub name: String,
    /// Columns that can be written (generated columns excluded), in definition order.
    pub columns: Vec<String>,
    /// SQL type of each column (PostgreSQL `format_type`, SQLite's declared type).
    pub types: Vec<String>,
    /// Primary-key columns in key order (empty when there is none); rows are dumped in this
    /// order so parents precede children within self-referencing tables.
    pub primary_key: Vec<String>,
    /// Tables this one references through foreign keys.
    pub parents: BTreeSet<String>,
}

/// Quotes an identifier for SQL (both dialects use double quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL schema the platform's tables live in (the connection's `current_schema()`).
pub async fn pg_schema(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar::<_, String>("SELECT current_schema()::text")
        .fetch_one(conn)
        .await
}

/// The platform's tables on PostgreSQL, in dependency order.
pub async fn pg_tables(conn: &mut PgConnection) -> Result<Vec<TableInfo>, sqlx::Error> {
    let schema = pg_schema(&mut *conn).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND c.relname <> $1 AND NOT (c.relname = ANY($2)) ORDER BY c.relname",
    )
    .bind(MIGRATIONS_TABLE)
    .bind(&ARCHIVE_TABLES[..])
    .fetch_all(&mut *conn)
    .await?;
    let edges = sqlx::query(
        "SELECT c.relname::text AS child, p.relname::text AS parent FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let regclass = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass \
             AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        )
        .bind(&regclass)
        .fetch_all(&mut *conn)
        .await?;
        let (columns, types) = cols.into_iter().unzip();
        let primary_key: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY k.ord",
        )
        .bind(&regclass)
        .fetch_all(&mut *conn)
        .await?;
        let mut parents = BTreeSet::new();
        for e in &edges {
            if e.try_get::<String, _>("child")? == name {
                parents.insert(e.try_get::<String, _>("parent")?);
            }
        }
        tables.push(TableInfo {
            name,
            columns,
            types,
            primary_key,
            parents,
        });
    }
    Ok(dependency_order(tables))
}

/// The platform's sequences on PostgreSQL (names, sorted).
pub async fn pg_sequences(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'S' AND NOT (c.relname = ANY($1)) \
         ORDER BY c.relname",
    )
    .bind(&ARCHIVE_SEQUENCES[..])
    .fetch_all(conn)
    .await
}

/// The platform's tables on SQLite, in dependency order.
pub async fn sqlite_tables(conn: &mut SqliteConnection) -> Result<Vec<TableInfo>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY name",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        // table_info omits generated and hidden columns, which cannot be inserted anyway.
        let cols = sqlx::query("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?;
        let mut columns = Vec::with_capacity(cols.len());
        let mut types = Vec::with_capacity(cols.len());
        let mut pk = Vec::new();
        for c in &cols {
            let col: String = c.try_get("name")?;
            let pos: i64 = c.try_get("pk")?;
            if pos > 0 {
                pk.push((pos, col.clone()));
            }
            columns.push(col);
            types.push(c.try_get::<String, _>("type")?);
        }
        pk.sort();
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?;
        tables.push(TableInfo {
            name,
            columns,
            types,
            primary_key: pk.into_iter().map(|(_, c)| c).collect(),
            parents: parents.into_iter().collect(),
        });
    }
    Ok(dependency_order(tables))
}

/// Whether the SQLite database has the `sqlite_sequence` table (it exists once any table uses
/// `AUTOINCREMENT`).
pub async fn sqlite_has_sequences(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
    )
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Sorts tables so that every table comes after the tables it references (Kahn's algorithm,
/// ties broken by name for a stable order). Self-references are ignored; tables in a cycle keep
/// name order at the end (the restore defers constraint checks where the database allows it).
pub fn dependency_order(tables: Vec<TableInfo>) -> Vec<TableInfo> {
    let known: BTreeSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    let mut pending: BTreeMap<String, TableInfo> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(pending.len());
    loop {
        let ready: Vec<String> = pending
            .values()
            .filter(|t| {
                t.parents
                    .iter()
                    .all(|p| p == &t.name || done.contains(p) || !known.contains(p))
            })
            .map(|t| t.name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            if let Some(t) = pending.remove(&name) {
                done.insert(name);
                ordered.push(t);
            }
        }
    }
    ordered.extend(pending.into_values());
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, parents: &[&str]) -> TableInfo {
        TableInfo {
            name: name.into(),
            columns: vec![],
            types: vec![],
            primary_key: vec![],
            parents: parents.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn parents_come_first() {
        let order: Vec<String> = dependency_order(vec![
            t("fills", &["orders", "accounts"]),
            t("orders", &["accounts", "orders"]),
            t("accounts", &["users"]),
            t("audit_events", &[]),
            t("users", &[]),
            t("elsewhere", &["not_ours"]),
        ])
        .into_iter()
        .map(|t| t.name)
        .collect();
        let pos = |n: &str| order.iter().position(|x| x == n).expect(n);
        assert!(pos("users") < pos("accounts"));
        assert!(pos("accounts") < pos("orders"));
        assert!(pos("orders") < pos("fills"));
        assert_eq!(order.len(), 6);
    }

    #[test]
    fn cycles_keep_every_table() {
        let order = dependency_order(vec![t("a", &["b"]), t("b", &["a"]), t("c", &[])]);
        assert_eq!(order.len(), 3);
        assert_eq!(order[0].name, "c");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
