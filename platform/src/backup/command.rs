//! The CLI face of backups: opens the store from the configuration, runs the operation, logs a
//! structured summary, prints a human one on stdout, writes the metrics textfile and returns
//! the exit code (see the `EXIT_*` constants in [`super`]).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::metrics_file::{self, RunOutcome};
use super::{
    BackupError, BackupKey, BackupOptions, EXIT_OK, RetentionPolicy, create_backup,
    describe_database_url, format, host_name, reader, restore_file, verify_file,
};
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::store::{Store, StoreOptions};

fn open_store(config: &Config) -> Result<Store, BackupError> {
    let acquire_timeout = config.database_connect_timeout.max(Duration::from_secs(5));
    let db_err = |source| BackupError::Database {
        context: "opening DATABASE_URL".into(),
        source,
    };
    if config.database_url.starts_with("sqlite:") {
        return Store::open(&StoreOptions {
            url: config.database_url.clone(),
            max_connections: 2,
            acquire_timeout,
        })
        .map_err(db_err);
    }
    // Own PostgreSQL pool: a dump streams each table in one long statement, which the service's
    // slow-statement warning would report on every run; and a distinct application_name shows
    // the backup in pg_stat_activity.
    use sqlx::ConnectOptions;
    let connect =
        <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&config.database_url)
            .map_err(db_err)?
            .application_name("tradeplane-backup")
            .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(3600));
    Ok(Store::Postgres(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(connect),
    ))
}

fn fail(operation: &str, e: &BackupError) -> u8 {
    tracing::error!(operation, outcome = "failed", error_kind = e.kind(), error = %e, exit_code = e.exit_code(), "{operation} failed");
    eprintln!("tradeplane-platform {operation}: {e}");
    e.exit_code()
}

/// `backup --dest DIR [--keep-days N] [--keep-last N] [--metrics-file PATH]`.
pub async fn backup(config: &Config, args: &BackupArgs) -> u8 {
    let started = Instant::now();
    let result = backup_inner(config, args).await;
    let (code, outcome) = match &result {
        Ok(r) => {
            let m = &r.manifest;
            tracing::info!(
                operation = "backup",
                outcome = "success",
                file = %r.path.display(),
                bytes = r.file_bytes,
                rows = m.total_rows,
                tables = m.tables.len(),
                schema_version = m.schema_version,
                encrypted = m.encryption.is_some(),
                duration_seconds = started.elapsed().as_secs_f64(),
                pruned = r.pruned.deleted.len(),
                "backup complete"
            );
            if let Some(e) = &r.prune_error {
                tracing::error!(operation = "backup", error = %e, "the backup is complete but pruning old backups failed");
                eprintln!("tradeplane-platform backup: warning: pruning failed: {e}");
            }
            println!(
                "backup written: {} ({} rows in {} tables, {} bytes, {}, {:.2}s)",
                r.path.display(),
                m.total_rows,
                m.tables.len(),
                r.file_bytes,
                if m.encryption.is_some() {
                    "encrypted"
                } else {
                    "not encrypted"
                },
                started.elapsed().as_secs_f64()
            );
            for p in &r.pruned.deleted {
                println!("pruned: {}", p.display());
            }
            (
                EXIT_OK,
                RunOutcome {
                    success: true,
                    size_bytes: r.file_bytes,
                    rows: m.total_rows,
                    pruned_files: r.pruned.deleted.len(),
                    ..Default::default()
                },
            )
        }
        Err(e) => (
            fail("backup", e),
            RunOutcome {
                exit_code: e.exit_code(),
                ..Default::default()
            },
        ),
    };
    if let Some(path) = &args.metrics_file {
        let outcome = RunOutcome {
            finished_at: Utc::now().timestamp_millis() as f64 / 1000.0,
            duration_seconds: started.elapsed().as_secs_f64(),
            ..outcome
        };
        if let Err(e) = metrics_file::write(path, &outcome) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the metrics file");
        }
    }
    code
}

async fn backup_inner(
    config: &Config,
    args: &BackupArgs,
) -> Result<super::BackupReport, BackupError> {
    let dest = args
        .dest
        .clone()
        .ok_or_else(|| BackupError::Usage("--dest DIR is required".into()))?;
    let key = BackupKey::from_env()?;
    if key.is_none() {
        tracing::warn!("BACKUP_ENCRYPTION_KEY is not set: the backup is not encrypted");
    }
    let store = open_store(config)?;
    let opts = BackupOptions {
        dest,
        key,
        retention: RetentionPolicy {
            keep_days: args.keep_days,
            keep_last: args.keep_last,
        },
        now: Utc::now(),
        source: format::Source {
            database: describe_database_url(&config.database_url),
            host: host_name(),
        },
    };
    let result = create_backup(&store, &opts).await;
    store.close().await;
    result
}

/// `backup verify FILE`.
pub fn verify(file: &Path) -> u8 {
    let result = BackupKey::from_env().and_then(|key| verify_file(file, key.as_ref()));
    match result {
        Ok(r) => {
            let m = &r.manifest;
            tracing::info!(operation = "verify", outcome = "success", file = %file.display(), rows = m.total_rows, schema_version = m.schema_version, "backup verified");
            println!(
                "backup OK: {} ({} backup from {} at {}, schema version {}, {} rows: {}; {})",
                file.display(),
                m.backend,
                m.source.database,
                m.created_at.to_rfc3339(),
                m.schema_version,
                m.total_rows,
                reader::summary(&r.tables),
                if m.encryption.is_some() {
                    "encrypted"
                } else {
                    "not encrypted"
                }
            );
            EXIT_OK
        }
        Err(e) => fail("verify", &e),
    }
}

/// `backup list DIR`: the backups this tool made in `DIR`, newest first, one per line
/// (`file created_at backend schema_version rows bytes encrypted|plain`).
pub fn list(dir: &Path) -> u8 {
    let result = super::retention::candidates(dir);
    match result {
        Ok(mut found) => {
            found.sort_by_key(|c| std::cmp::Reverse(c.created_at));
            for c in &found {
                let header = std::fs::File::open(&c.path)
                    .map_err(|e| BackupError::io("cannot open", e))
                    .and_then(|f| format::read_header(&mut std::io::BufReader::new(f)));
                let size = std::fs::metadata(&c.path).map(|m| m.len()).unwrap_or(0);
                if let Ok((m, _)) = header {
                    println!(
                        "{} {} {} schema={} rows={} bytes={} {}",
                        c.path.display(),
                        m.created_at.to_rfc3339(),
                        m.backend,
                        m.schema_version,
                        m.total_rows,
                        size,
                        if m.encryption.is_some() {
                            "encrypted"
                        } else {
                            "plain"
                        }
                    );
                }
            }
            EXIT_OK
        }
        Err(e) => fail("list", &e),
    }
}

/// `restore FILE [--force]`.
pub async fn restore(config: &Config, file: &Path, force: bool) -> u8 {
    let started = Instant::now();
    let result = async {
        let key = BackupKey::from_env()?;
        let store = open_store(config)?;
        let r = restore_file(&store, file, key.as_ref(), force).await;
        store.close().await;
        r
    }
    .await;
    match result {
        Ok(r) => {
            tracing::info!(
                operation = "restore",
                outcome = "success",
                file = %file.display(),
                rows = r.total_rows,
                tables = r.tables.len(),
                sequences = r.sequences,
                schema_version = r.schema_version,
                migrated_to = r.migrated_to,
                replaced_existing = r.replaced_existing,
                duration_seconds = started.elapsed().as_secs_f64(),
                "restore complete"
            );
            println!(
                "restored {} rows into {} tables from {} (schema version {}{}){}:",
                r.total_rows,
                r.tables.len(),
                file.display(),
                r.schema_version,
                if r.migrated_to != r.schema_version {
                    format!(", then migrated to {}", r.migrated_to)
                } else {
                    String::new()
                },
                if r.replaced_existing {
                    ", replacing the previous contents"
                } else {
                    ""
                }
            );
            for t in &r.tables {
                println!("  {:<32} {:>12} rows", t.name, t.rows);
            }
            println!("  ({} sequence counters restored)", r.sequences);
            EXIT_OK
        }
        Err(e) => fail("restore", &e),
    }
}
