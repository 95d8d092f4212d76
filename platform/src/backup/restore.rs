//! Restoring a verified backup into a database, in one transaction.
//!
//! Order of work: the target is migrated to the backup's schema version (never beyond, so the
//! data fits the schema it was taken from); its tables are compared with the backup's; a
//! non-empty target is refused unless `force`; then, in one transaction, existing rows are
//! cleared (with `force`), user triggers that would fire on the inserts are switched off, rows
//! are inserted table by table in dependency order, sequences are set, triggers come back and
//! the transaction commits. Any failure rolls everything back. After the commit the remaining
//! migrations of this build run, exactly as a platform upgrade would.
//!
//! The statements are in the storage layer ([`crate::store::restore`]); this module reads the
//! backup's records and decides what to run.

use std::collections::BTreeMap;

use base64::Engine;
use sqlx::Connection;
use sqlx::migrate::MigrateError;

use super::BackupError;
use super::format::{Record, SequenceValue, TableCount, TableHeader};
use super::progress::Progress;
use super::reader::BackupReader;
use crate::store::catalog::{self, TableInfo};
use crate::store::dump::SqliteValue;
use crate::store::restore::{self as sql, PgRowInsert, SqliteRowInsert};
use crate::store::{Backend, Store};

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// Rows restored per table, in restore order.
    pub tables: Vec<TableCount>,
    /// Sum of the rows.
    pub total_rows: u64,
    /// Sequence counters set.
    pub sequences: usize,
    /// The backup's schema version.
    pub schema_version: i64,
    /// The schema version after the post-restore migrations (higher when the backup was older
    /// than this build).
    pub migrated_to: i64,
    /// Whether existing rows were replaced (`--force` on a non-empty database).
    pub replaced_existing: bool,
    /// What the point-in-time replay applied after the backup's rows, if one ran.
    pub replayed: Option<crate::archive::replay::ReplayReport>,
}

/// Rows per multi-row INSERT statement on PostgreSQL.
const PG_BATCH_ROWS: usize = 500;
/// Payload bytes per statement on PostgreSQL.
const PG_BATCH_BYTES: usize = 1 << 20;

fn db(context: &str) -> impl FnOnce(sqlx::Error) -> BackupError + '_ {
    move |source| BackupError::Database {
        context: context.to_owned(),
        source,
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    }
}

/// Checks that `version` is one this build knows, before anything touches a database.
pub fn check_schema_version(backend: Backend, version: i64) -> Result<(), BackupError> {
    let m = sql::migrator(backend);
    let latest = m.iter().map(|m| m.version).max().unwrap_or(0);
    if version > latest {
        return Err(BackupError::Verification(format!(
            "the backup has schema version {version}, newer than this build's {latest}; \
             restore it with the platform version that made it (or newer)"
        )));
    }
    if version != 0 && !m.iter().any(|m| m.version == version) {
        return Err(BackupError::Verification(format!(
            "the backup's schema version {version} is not a migration this build knows"
        )));
    }
    Ok(())
}

/// Migrates the target up to `version` only.
async fn migrate_to(store: &Store, version: i64) -> Result<(), BackupError> {
    sql::migrate_to(store, version).await.map_err(|e| match e {
        MigrateError::VersionMissing(v) => BackupError::Refused(format!(
            "the target database already has migration {v}, newer than the backup's schema \
             version {version}; restore into a fresh database"
        )),
        other => BackupError::Database {
            context: "migrating the target database".into(),
            source: sqlx::Error::Migrate(Box::new(other)),
        },
    })
}

/// Restores the rows of `reader` (already opened and verified) into `store`, then, in the same
/// transaction, the changes of `replay` (already read and checked).
pub async fn restore(
    store: &Store,
    reader: &BackupReader,
    force: bool,
    progress: &Progress,
    replay: Option<&crate::archive::replay::ReplayPlan>,
) -> Result<RestoreReport, BackupError> {
    let manifest = &reader.manifest;
    let target = backend_name(store.backend());
    if manifest.backend != target {
        return Err(BackupError::Refused(format!(
            "the backup is from a {} database and cannot be restored into {target}",
            manifest.backend
        )));
    }
    check_schema_version(store.backend(), manifest.schema_version)?;
    migrate_to(store, manifest.schema_version).await?;
    progress.set_total(manifest.total_rows);

    let (sequences, replaced_existing, replayed) = match store {
        Store::Postgres(pool) => {
            let mut conn = pool.acquire().await.map_err(db("connecting"))?;
            let mut tx = conn.begin().await.map_err(db("starting the restore"))?;
            let r = restore_postgres(&mut tx, reader, force, progress, replay).await?;
            tx.commit().await.map_err(db("committing the restore"))?;
            r
        }
        Store::Sqlite(_) if replay.is_some() => {
            return Err(BackupError::Refused(
                "point-in-time restore needs PostgreSQL (SQLite is not archived)".into(),
            ));
        }
        Store::Sqlite(pool) => {
            let mut conn = pool.acquire().await.map_err(db("connecting"))?;
            let mut tx = conn.begin().await.map_err(db("starting the restore"))?;
            let (sequences, replaced) = restore_sqlite(&mut tx, reader, force, progress).await?;
            tx.commit().await.map_err(db("committing the restore"))?;
            (sequences, replaced, None)
        }
    };

    store.migrate().await.map_err(|e| BackupError::Database {
        context: "applying this build's newer migrations after the restore".into(),
        source: sqlx::Error::Migrate(Box::new(e)),
    })?;
    Ok(RestoreReport {
        tables: manifest.tables.clone(),
        total_rows: manifest.total_rows,
        sequences,
        schema_version: manifest.schema_version,
        migrated_to: store.schema_version(),
        replaced_existing,
        replayed,
    })
}

/// Checks the backup's tables against the target's and returns the target's tables by name.
fn match_tables(
    reader: &BackupReader,
    target: Vec<TableInfo>,
    headers: &[TableHeader],
) -> Result<BTreeMap<String, TableInfo>, BackupError> {
    let by_name: BTreeMap<String, TableInfo> =
        target.into_iter().map(|t| (t.name.clone(), t)).collect();
    for h in headers {
        let Some(t) = by_name.get(&h.name) else {
            return Err(BackupError::Refused(format!(
                "the backup has table {} which the target database (schema version {}) lacks",
                h.name, reader.manifest.schema_version
            )));
        };
        let mut a = h.columns.clone();
        let mut b = t.columns.clone();
        a.sort();
        b.sort();
        if a != b {
            return Err(BackupError::Refused(format!(
                "table {} has columns [{}] in the backup but [{}] in the target",
                h.name,
                h.columns.join(", "),
                t.columns.join(", ")
            )));
        }
    }
    Ok(by_name)
}

/// The table headers of the payload, in order (a cheap pass that skips rows).
fn headers(reader: &BackupReader) -> Result<Vec<TableHeader>, BackupError> {
    let mut out = Vec::new();
    for r in reader.records()? {
        if let Record::Table(h) = r? {
            out.push(h);
        }
    }
    Ok(out)
}

fn refuse_non_empty(non_empty: &[(String, i64)]) -> BackupError {
    let list: Vec<String> = non_empty
        .iter()
        .map(|(t, n)| format!("{t} ({n} rows)"))
        .collect();
    BackupError::Refused(format!(
        "the target database is not empty: {}; pass --force to replace its contents",
        list.join(", ")
    ))
}

async fn restore_postgres(
    tx: &mut sqlx::PgConnection,
    reader: &BackupReader,
    force: bool,
    progress: &Progress,
    replay: Option<&crate::archive::replay::ReplayPlan>,
) -> Result<(usize, bool, Option<crate::archive::replay::ReplayReport>), BackupError> {
    let schema = catalog::pg_schema(&mut *tx)
        .await
        .map_err(db("reading the catalog"))?;
    let target = catalog::pg_tables(&mut *tx)
        .await
        .map_err(db("reading the catalog"))?;
    let headers = headers(reader)?;
    let by_name = match_tables(reader, target, &headers)?;

    let non_empty = sql::pg_non_empty(&mut *tx, &schema, by_name.keys())
        .await
        .map_err(db("checking whether the target is empty"))?;
    if !non_empty.is_empty() && !force {
        return Err(refuse_non_empty(&non_empty));
    }

    // The restored database must not continue the target's archive (its history no longer
    // matches): archiving starts afresh, with a new identity, when a platform enables it.
    let has_archive = crate::store::dump::pg_archive_state_exists(&mut *tx)
        .await
        .map_err(db("reading the archive state"))?;
    if has_archive
        && crate::store::archive::reset_in(&mut *tx)
            .await
            .map_err(db("resetting the target's archiving"))?
    {
        tracing::warn!(
            "the target database was being archived; archiving was reset (a platform with ARCHIVE_DEST starts a new archive, in a new location)"
        );
    }
    sql::pg_defer_constraints(&mut *tx)
        .await
        .map_err(db("deferring constraints"))?;
    crate::store::dump::pg_set_text_formats(&mut *tx)
        .await
        .map_err(db("setting text formats"))?;
    // User triggers that fire on INSERT (4), DELETE (8), UPDATE (16) or TRUNCATE (32) would
    // re-apply side effects the backup (and the replayed row images) already contain, or refuse
    // the replay's updates of append-only rows; switch them off inside the transaction.
    let mut disabled: Vec<(String, String)> = Vec::new();
    for t in by_name.keys() {
        let names = sql::pg_user_triggers(&mut *tx, &schema, t)
            .await
            .map_err(db("reading triggers"))?;
        for name in names {
            sql::pg_set_trigger(&mut *tx, &schema, t, &name, false)
                .await
                .map_err(db(
                    "disabling triggers (the restoring role must own the tables)",
                ))?;
            disabled.push((t.clone(), name));
        }
    }
    if !non_empty.is_empty() {
        sql::pg_truncate(&mut *tx, &schema, by_name.keys())
            .await
            .map_err(db("clearing the target tables"))?;
    }

    let mut sequences: Vec<SequenceValue> = Vec::new();
    let mut current: Option<PgRowInsert> = None;
    let mut batch = String::new();
    let mut batch_rows = 0usize;
    async fn flush(
        tx: &mut sqlx::PgConnection,
        insert: &PgRowInsert,
        batch: &mut String,
        rows: &mut usize,
        progress: &Progress,
    ) -> Result<(), BackupError> {
        if *rows == 0 {
            return Ok(());
        }
        batch.push(']');
        insert
            .execute(&mut *tx, batch)
            .await
            .map_err(db(&format!("inserting rows into {}", insert.table())))?;
        batch.clear();
        progress.inc(*rows as u64);
        *rows = 0;
        Ok(())
    }
    for record in reader.records()? {
        match record? {
            Record::Table(h) => {
                progress.set_table(&h.name);
                if let Some(target) = &current {
                    flush(tx, target, &mut batch, &mut batch_rows, progress).await?;
                }
                let info = by_name.get(&h.name).ok_or_else(|| {
                    BackupError::Refused(format!("the target lacks table {}", h.name))
                })?;
                let mut columns = Vec::with_capacity(h.columns.len());
                for c in &h.columns {
                    let ty = info
                        .columns
                        .iter()
                        .position(|x| x == c)
                        .and_then(|p| info.types.get(p))
                        .ok_or_else(|| {
                            BackupError::Refused(format!("the target lacks column {}.{c}", h.name))
                        })?;
                    columns.push((c.as_str(), ty.as_str()));
                }
                current = Some(PgRowInsert::new(&schema, &h.name, columns));
            }
            Record::Row(raw) => {
                let Some(target) = &current else {
                    return Err(BackupError::Verification("a row precedes its table".into()));
                };
                batch.push(if batch_rows == 0 { '[' } else { ',' });
                batch.push_str(raw.get());
                batch_rows += 1;
                if batch_rows >= PG_BATCH_ROWS || batch.len() >= PG_BATCH_BYTES {
                    flush(tx, target, &mut batch, &mut batch_rows, progress).await?;
                }
            }
            Record::Sequence(s) => sequences.push(s),
            Record::End(_) => break,
        }
    }
    if let Some(target) = &current {
        flush(tx, target, &mut batch, &mut batch_rows, progress).await?;
    }
    let replayed = match replay {
        Some(plan) => Some(crate::archive::replay::apply(&mut *tx, plan, &schema, &by_name).await?),
        None => None,
    };

    // Check deferred constraints now, so that nothing non-transactional (setval) happens before
    // a constraint failure would roll the restore back.
    sql::pg_check_constraints(&mut *tx)
        .await
        .map_err(db("checking constraints"))?;
    let existing = catalog::pg_sequences(&mut *tx)
        .await
        .map_err(db("reading sequences"))?;
    let mut set = 0usize;
    for s in &sequences {
        if !existing.contains(&s.name) {
            tracing::warn!(sequence = %s.name, "sequence from the backup does not exist in the target; skipped");
            continue;
        }
        sql::pg_set_sequence(&mut *tx, &schema, &s.name, s.value, s.called)
            .await
            .map_err(db("restoring sequences"))?;
        set += 1;
    }
    let mut replayed = replayed;
    if let Some(r) = replayed.as_mut() {
        r.sequences =
            crate::archive::replay::advance_sequences(&mut *tx, &schema, &by_name).await?;
    }
    for (table, trigger) in &disabled {
        sql::pg_set_trigger(&mut *tx, &schema, table, trigger, true)
            .await
            .map_err(db("re-enabling triggers"))?;
    }
    Ok((set, !non_empty.is_empty(), replayed))
}

async fn restore_sqlite(
    tx: &mut sqlx::SqliteConnection,
    reader: &BackupReader,
    force: bool,
    progress: &Progress,
) -> Result<(usize, bool), BackupError> {
    let target = catalog::sqlite_tables(&mut *tx)
        .await
        .map_err(db("reading the catalog"))?;
    let headers = headers(reader)?;
    let by_name = match_tables(reader, target, &headers)?;

    let non_empty = sql::sqlite_non_empty(&mut *tx, by_name.keys())
        .await
        .map_err(db("checking whether the target is empty"))?;
    if !non_empty.is_empty() && !force {
        return Err(refuse_non_empty(&non_empty));
    }

    // Foreign keys are checked at commit; triggers (append-only guards, side effects) are dropped
    // for the duration and recreated from their original SQL, all inside the transaction.
    sql::sqlite_defer_foreign_keys(&mut *tx)
        .await
        .map_err(db("deferring foreign keys"))?;
    let triggers = sql::sqlite_triggers(&mut *tx)
        .await
        .map_err(db("reading triggers"))?;
    let mut saved: Vec<(String, String)> = Vec::new();
    for trigger in triggers {
        if let (true, Some(definition)) = (by_name.contains_key(&trigger.table), trigger.sql) {
            sql::sqlite_drop_trigger(&mut *tx, &trigger.name)
                .await
                .map_err(db("suspending triggers"))?;
            saved.push((trigger.name, definition));
        }
    }
    if !non_empty.is_empty() {
        sql::sqlite_clear(&mut *tx, by_name.keys())
            .await
            .map_err(db("clearing the target tables"))?;
    }

    let mut sequences: Vec<SequenceValue> = Vec::new();
    let mut insert: Option<(String, SqliteRowInsert)> = None;
    for record in reader.records()? {
        match record? {
            Record::Table(h) => {
                progress.set_table(&h.name);
                let statement = SqliteRowInsert::new(&h.name, &h.columns);
                insert = Some((h.name, statement));
            }
            Record::Row(raw) => {
                let Some((table, statement)) = &insert else {
                    return Err(BackupError::Verification("a row precedes its table".into()));
                };
                let values: Vec<serde_json::Value> = serde_json::from_str(raw.get())
                    .map_err(|e| BackupError::Verification(format!("bad row in {table}: {e}")))?;
                let values = values
                    .into_iter()
                    .map(untagged)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| BackupError::Verification(format!("bad value in {table}: {m}")))?;
                statement
                    .execute(&mut *tx, values)
                    .await
                    .map_err(db(&format!("inserting rows into {table}")))?;
                progress.inc(1);
            }
            Record::Sequence(s) => sequences.push(s),
            Record::End(_) => break,
        }
    }

    let mut set = 0usize;
    if !sequences.is_empty()
        && catalog::sqlite_has_sequences(&mut *tx)
            .await
            .map_err(db("reading sqlite_sequence"))?
    {
        for s in &sequences {
            sql::sqlite_set_sequence(&mut *tx, &s.name, s.value)
                .await
                .map_err(db("restoring sqlite_sequence"))?;
            set += 1;
        }
    }
    for (_, definition) in &saved {
        sql::sqlite_recreate_trigger(&mut *tx, definition)
            .await
            .map_err(db("recreating triggers"))?;
    }
    Ok((set, !non_empty.is_empty()))
}

/// One tagged SQLite value of the payload (see [`super::dump`]), as the value to bind.
fn untagged(v: serde_json::Value) -> Result<SqliteValue, String> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => SqliteValue::Null,
        Value::Bool(b) => SqliteValue::Bool(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqliteValue::Integer(i)
            } else if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                SqliteValue::Real(f)
            } else {
                return Err(format!("number {n} is out of range"));
            }
        }
        Value::String(s) => SqliteValue::Text(s),
        Value::Object(o) => match (o.get("blob"), o.get("real")) {
            (Some(Value::String(b)), None) => SqliteValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("bad blob: {e}"))?,
            ),
            (None, Some(Value::String(r))) if r == "inf" => SqliteValue::Real(f64::INFINITY),
            (None, Some(Value::String(r))) if r == "-inf" => SqliteValue::Real(f64::NEG_INFINITY),
            _ => return Err("unknown tagged value".into()),
        },
        Value::Array(_) => return Err("unexpected array".into()),
    })
}
