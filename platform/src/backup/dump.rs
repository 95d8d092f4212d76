//! Taking the snapshot: every platform table, read in one transaction so the backup is
//! consistent while the platform keeps serving.
//!
//! PostgreSQL: one `REPEATABLE READ, READ ONLY` transaction; each row is an array of the
//! columns' text forms (`array_to_json(ARRAY[col::text, …])`, SQL NULL as JSON `null`), so every
//! type (numeric, timestamptz, bytea, json holding `null`, arrays, intervals…) keeps PostgreSQL's
//! own lossless text representation and is cast back to the column type on restore. The session
//! fixes the settings that shape that text (`DateStyle`, `IntervalStyle`, `extra_float_digits`,
//! `bytea_output`, `TimeZone`) so the restore parses exactly what the dump wrote. Sequences are
//! read last (they are not transactional, so their values are at least as high as any id in the
//! snapshot).
//!
//! SQLite: one read transaction (WAL mode gives it a stable snapshot from its first read); each
//! row is an array of values tagged by their storage class: `null`, a JSON integer (INTEGER), a
//! JSON number with a fraction or exponent (REAL), a string (TEXT), `{"blob":"<base64>"}` (BLOB),
//! or `{"real":"inf"|"-inf"}` for infinities, which JSON cannot spell.
//!
//! The queries are in the storage layer ([`crate::store::dump`]); this module turns what they
//! return into payload records, counts and paces them.

use std::io::Write;

use base64::Engine;
use futures::TryStreamExt;

use super::BackupError;
use super::format::{EndRecord, Record, SequenceValue, TableCount, TableHeader};
use super::progress::Progress;
use super::writer::{PayloadSink, PayloadWriter};
use crate::store::Store;
use crate::store::catalog;
use crate::store::dump::{self as sql, SqliteValue};

/// What the dump saw: the schema version and each table's row count, in dump order.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Newest applied migration in the source.
    pub schema_version: i64,
    /// Tables in dependency order with their row counts.
    pub tables: Vec<TableCount>,
    /// The archive position, when the source was archiving.
    pub archive: Option<super::format::ArchivePoint>,
}

fn db(context: &str) -> impl FnOnce(sqlx::Error) -> BackupError + '_ {
    move |source| BackupError::Database {
        context: context.to_owned(),
        source,
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::io(context, e)
}

fn write_record(out: &mut impl Write, record: &Record) -> Result<(), BackupError> {
    serde_json::to_writer(&mut *out, record)
        .map_err(|e| BackupError::io("cannot write the payload", std::io::Error::other(e)))?;
    out.write_all(b"\n").map_err(io("cannot write the payload"))
}

/// Writes the whole snapshot as payload records into `out`, pacing the sink between rows.
pub async fn dump<S: PayloadSink>(
    store: &Store,
    out: &mut PayloadWriter<S>,
    progress: &Progress,
) -> Result<Snapshot, BackupError> {
    match store {
        Store::Postgres(pool) => dump_postgres(pool, out, progress).await,
        Store::Sqlite(pool) => dump_sqlite(pool, out, progress).await,
    }
}

/// After each row: count it, and wait for room in the sink (bounded upload buffers).
async fn row_done<S: PayloadSink>(
    out: &mut PayloadWriter<S>,
    progress: &Progress,
) -> Result<(), BackupError> {
    progress.inc(1);
    out.pace().await.map_err(io("cannot write the payload"))
}

async fn dump_postgres<S: PayloadSink>(
    pool: &sqlx::PgPool,
    out: &mut PayloadWriter<S>,
    progress: &Progress,
) -> Result<Snapshot, BackupError> {
    let mut tx = sql::pg_begin_snapshot(pool)
        .await
        .map_err(db("starting the snapshot"))?;
    let schema_version = sql::pg_schema_version(&mut tx)
        .await
        .map_err(db("reading the schema version (is the database migrated?)"))?;
    let archive = archive_point(&mut tx).await?;
    let schema = catalog::pg_schema(&mut tx)
        .await
        .map_err(db("reading the catalog"))?;
    let tables = catalog::pg_tables(&mut tx)
        .await
        .map_err(db("reading the catalog"))?;
    let mut counts = Vec::with_capacity(tables.len());
    for t in &tables {
        progress.set_table(&t.name);
        write_record(
            out,
            &Record::Table(TableHeader {
                name: t.name.clone(),
                columns: t.columns.clone(),
            }),
        )?;
        let select = sql::PgTableRows::new(&schema, t);
        let context = format!("dumping table {}", t.name);
        let mut rows = select.fetch(&mut tx);
        let mut n = 0u64;
        while let Some(json) = rows.try_next().await.map_err(db(&context))? {
            out.write_all(b"{\"row\":")
                .and_then(|_| out.write_all(json.as_bytes()))
                .and_then(|_| out.write_all(b"}\n"))
                .map_err(io("cannot write the payload"))?;
            n += 1;
            row_done(out, progress).await?;
        }
        drop(rows);
        counts.push(TableCount {
            name: t.name.clone(),
            rows: n,
        });
    }
    for seq in catalog::pg_sequences(&mut tx)
        .await
        .map_err(db("reading the catalog"))?
    {
        let (value, called) = sql::pg_sequence_value(&mut tx, &schema, &seq)
            .await
            .map_err(db("reading sequences"))?;
        let value = SequenceValue {
            name: seq,
            value,
            called,
        };
        write_record(out, &Record::Sequence(value))?;
    }
    tx.rollback().await.map_err(db("ending the snapshot"))?;
    let mut snapshot = finish(out, schema_version, counts)?;
    snapshot.archive = archive;
    Ok(snapshot)
}

/// The archive position seen by the snapshot (in its transaction): `None` unless archiving was
/// enabled before the snapshot began, so every change the backup lacks is in the change log.
async fn archive_point(
    tx: &mut sqlx::PgConnection,
) -> Result<Option<super::format::ArchivePoint>, BackupError> {
    let has_table = sql::pg_archive_state_exists(&mut *tx)
        .await
        .map_err(db("reading the archive state"))?;
    if !has_table {
        return Ok(None);
    }
    let Some(identity) = crate::store::archive::identity_in(&mut *tx)
        .await
        .map_err(db("reading the archive state"))?
    else {
        return Ok(None);
    };
    let snapshot = sql::pg_current_snapshot(&mut *tx)
        .await
        .map_err(db("reading the snapshot"))?;
    Ok(Some(super::format::ArchivePoint {
        archive_id: identity.archive_id,
        start_segment: identity.next_segment,
        snapshot,
    }))
}

async fn dump_sqlite<S: PayloadSink>(
    pool: &sqlx::SqlitePool,
    out: &mut PayloadWriter<S>,
    progress: &Progress,
) -> Result<Snapshot, BackupError> {
    let mut tx = pool.begin().await.map_err(db("starting the snapshot"))?;
    // The first read fixes the WAL snapshot for the rest of the transaction.
    let schema_version = sql::sqlite_schema_version(&mut tx)
        .await
        .map_err(db("reading the schema version (is the database migrated?)"))?;
    let tables = catalog::sqlite_tables(&mut tx)
        .await
        .map_err(db("reading the catalog"))?;
    let mut counts = Vec::with_capacity(tables.len());
    for t in &tables {
        progress.set_table(&t.name);
        write_record(
            out,
            &Record::Table(TableHeader {
                name: t.name.clone(),
                columns: t.columns.clone(),
            }),
        )?;
        let select = sql::SqliteTableRows::new(t);
        let context = format!("dumping table {}", t.name);
        let mut rows = select.fetch(&mut tx);
        let mut n = 0u64;
        let mut line = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(db(&context))? {
            let values: Vec<serde_json::Value> = row.into_iter().map(tagged).collect();
            line.clear();
            line.extend_from_slice(b"{\"row\":");
            serde_json::to_writer(&mut line, &values)
                .map_err(|e| BackupError::io("cannot encode a row", std::io::Error::other(e)))?;
            line.extend_from_slice(b"}\n");
            out.write_all(&line)
                .map_err(io("cannot write the payload"))?;
            n += 1;
            row_done(out, progress).await?;
        }
        drop(rows);
        counts.push(TableCount {
            name: t.name.clone(),
            rows: n,
        });
    }
    if catalog::sqlite_has_sequences(&mut tx)
        .await
        .map_err(db("reading the catalog"))?
    {
        let counters = sql::sqlite_sequences(&mut tx)
            .await
            .map_err(db("reading sqlite_sequence"))?;
        for (name, value) in counters {
            let value = SequenceValue {
                name,
                value,
                called: true,
            };
            write_record(out, &Record::Sequence(value))?;
        }
    }
    tx.rollback().await.map_err(db("ending the snapshot"))?;
    finish(out, schema_version, counts)
}

fn finish(
    out: &mut impl Write,
    schema_version: i64,
    tables: Vec<TableCount>,
) -> Result<Snapshot, BackupError> {
    write_record(
        out,
        &Record::End(EndRecord {
            schema_version,
            tables: tables.clone(),
        }),
    )?;
    Ok(Snapshot {
        schema_version,
        tables,
        archive: None,
    })
}

/// One SQLite value, tagged by its storage class (see the module docs).
fn tagged(v: SqliteValue) -> serde_json::Value {
    use serde_json::{Value, json};
    match v {
        SqliteValue::Null => Value::Null,
        SqliteValue::Bool(b) => Value::from(b),
        SqliteValue::Integer(i) => Value::from(i),
        SqliteValue::Real(f) => {
            if f.is_finite() {
                Value::from(f)
            } else if f > 0.0 {
                json!({ "real": "inf" })
            } else {
                json!({ "real": "-inf" })
            }
        }
        SqliteValue::Blob(bytes) => {
            json!({ "blob": base64::engine::general_purpose::STANDARD.encode(bytes) })
        }
        SqliteValue::Text(s) => Value::from(s),
    }
}
