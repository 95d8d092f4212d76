//! The CLI face of backups: opens the store from the configuration, runs the operation, logs a
//! structured summary, prints a human one on stdout, writes the metrics textfile and returns
//! the exit code (see the `EXIT_*` constants in [`super`]).

use std::time::{Duration, Instant};
use tracing::Instrument;

use chrono::Utc;

use super::metrics_file::{self, RunOutcome};
use super::result_file;
use super::{
    BackupError, BackupKey, BackupOptions, BackupRef, EXIT_OK, Location, Manifest, Progress,
    Reference, RetentionPolicy, create_backup, describe_database_url, format, host_name, reader,
    remote, verify_backup,
};
use crate::cli::{BackupArgs, RestoreArgs};
use crate::config::Config;
use crate::store::{Store, StoreOptions};

pub(crate) fn open_store(config: &Config) -> Result<Store, BackupError> {
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
            statement_timeout: None,
        })
        .map_err(db_err);
    }
    // Own PostgreSQL pool: a dump streams each table in one long statement, which the service's
    // slow-statement warning would report on every run; and a distinct application_name shows
    // the backup in pg_stat_activity. A dump or restore of a large database runs far longer
    // than any sane statement timeout of the service (from DATABASE_URL's `options`, the role or
    // the database), so the session switches those timeouts off: the later `-c` wins.
    use sqlx::ConnectOptions;
    let connect =
        <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&config.database_url)
            .map_err(db_err)?
            .application_name("tradeplane-backup")
            .options([
                ("statement_timeout", "0"),
                ("idle_in_transaction_session_timeout", "0"),
            ])
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

/// `backup --dest DIR|s3://… [--keep-days N] [--keep-last N] [--metrics-file PATH]`.
pub async fn backup(config: &Config, args: &BackupArgs) -> u8 {
    let started = Instant::now();
    let result = backup_inner(config, args).await;
    let result_line = args
        .result_file
        .as_ref()
        .map(|_| run_result(&result, started));
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
    if let (Some(path), Some(line)) = (&args.result_file, &result_line)
        && let Err(e) = result_file::write(path, line)
    {
        tracing::warn!(file = %path.display(), error = %e, "cannot write the result file");
    }
    code
}

fn run_result(
    result: &Result<super::BackupReport, BackupError>,
    started: Instant,
) -> result_file::RunResult {
    let base = result_file::RunResult {
        operation: "backup".into(),
        finished_at: Utc::now().timestamp_millis() as f64 / 1000.0,
        duration_seconds: started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    match result {
        Ok(r) => result_file::RunResult {
            success: true,
            size_bytes: r.file_bytes,
            rows: r.manifest.total_rows,
            backup: Some(r.path.display().to_string()),
            ..base
        },
        Err(e) => result_file::RunResult {
            exit_code: e.exit_code(),
            error: Some(e.to_string()),
            ..base
        },
    }
}

async fn backup_inner(
    config: &Config,
    args: &BackupArgs,
) -> Result<super::BackupReport, BackupError> {
    let dest = args
        .dest
        .as_deref()
        .ok_or_else(|| BackupError::Usage("--dest DIR is required".into()))?;
    let dest = Reference::parse(dest)?.into_place("--dest")?;
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
        progress: Progress::for_cli("backup", None, Progress::interval_from_env()),
    };
    let result = create_backup(&store, &opts)
        .instrument(crate::telemetry::otel::span_if_enabled!("backup"))
        .await;
    opts.progress.finish();
    store.close().await;
    result
}

/// `created_at backend schema=… rows=… bytes=… encrypted|plain`: one backup in `list`.
pub fn describe(m: &Manifest, size: u64) -> String {
    format!(
        "{} {} schema={} rows={} bytes={} {}",
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
    )
}

fn backup_ref(text: &str) -> Result<BackupRef, BackupError> {
    match Reference::parse(text)? {
        Reference::Backup(b) => Ok(b),
        Reference::Place(l) => Err(BackupError::Usage(format!(
            "{l} is not a backup: name one file or object (`backup list {l}` shows them)"
        ))),
    }
}

/// `backup verify BACKUP`.
pub async fn verify(backup: &str) -> u8 {
    let result = async {
        let key = BackupKey::from_env()?;
        let b = backup_ref(backup)?;
        verify_backup(&b, key.as_ref()).await
    }
    .await;
    match result {
        Ok(r) => {
            let m = &r.manifest;
            tracing::info!(
                operation = "verify",
                outcome = "success",
                backup,
                rows = m.total_rows,
                schema_version = m.schema_version,
                "backup verified"
            );
            println!(
                "backup OK: {} ({} backup from {} at {}, schema version {}, {} rows: {}; {})",
                backup,
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

/// `backup list DIR|s3://…`: the backups this tool made there, newest first, one per line
/// (`backup created_at backend schema=… rows=… bytes=… encrypted|plain`).
pub async fn list(location: &str) -> u8 {
    let result = async {
        let place = Reference::parse(location)?.into_place("list")?;
        match &place {
            Location::Dir(dir) => list_dir(dir)?,
            Location::S3(target) => remote::list(target, &mut std::io::stdout().lock()).await?,
        }
        if let Some(line) = crate::archive::describe_archive(&place).await? {
            println!("{line}");
        }
        Ok::<_, BackupError>(())
    }
    .await;
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => fail("list", &e),
    }
}

fn list_dir(dir: &std::path::Path) -> Result<(), BackupError> {
    let mut found = super::retention::candidates(dir)?;
    found.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    for c in &found {
        let header = std::fs::File::open(&c.path)
            .map_err(|e| BackupError::io("cannot open", e))
            .and_then(|f| format::read_header(&mut std::io::BufReader::new(f)));
        let size = std::fs::metadata(&c.path).map(|m| m.len()).unwrap_or(0);
        if let Ok((m, _)) = header {
            println!("{} {}", c.path.display(), describe(&m, size));
        }
    }
    Ok(())
}

/// `restore BACKUP|PLACE [--until TIME|latest | --until-seq N] [--force]`.
pub async fn restore(config: &Config, args: &RestoreArgs) -> u8 {
    let started = Instant::now();
    let file = &args.backup;
    let result = async {
        let key = BackupKey::from_env()?;
        let target = restore_target(args)?;
        let reference = Reference::parse(file)?;
        let store = open_store(config)?;
        let progress = Progress::for_cli("restore", None, Progress::interval_from_env());
        let r = crate::archive::restore(
            &store,
            reference,
            target,
            key.as_ref(),
            args.force,
            &progress,
        )
        .await;
        progress.finish();
        store.close().await;
        r
    }
    .await;
    match result {
        Ok(pitr) => {
            let r = &pitr.restore;
            let replay = r.replayed.clone().unwrap_or_default();
            tracing::info!(
                operation = "restore",
                outcome = "success",
                backup = %pitr.backup,
                rows = r.total_rows,
                tables = r.tables.len(),
                sequences = r.sequences,
                schema_version = r.schema_version,
                migrated_to = r.migrated_to,
                replaced_existing = r.replaced_existing,
                replayed_transactions = replay.transactions,
                replayed_changes = replay.changes,
                restore_point = pitr.point.as_ref().map(|(p, _)| p.at.to_rfc3339()),
                duration_seconds = started.elapsed().as_secs_f64(),
                "restore complete"
            );
            println!(
                "restored {} rows into {} tables from {} (taken {}, schema version {}{}){}:",
                r.total_rows,
                r.tables.len(),
                pitr.backup,
                pitr.backup_at.to_rfc3339(),
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
            if let Some((point, (first, last))) = &pitr.point {
                println!(
                    "then replayed {} transactions ({} row changes) from archive segments {first}..={last} \
                     up to {} at {}",
                    replay.transactions,
                    replay.changes,
                    match (&point.seq, point.name.as_str()) {
                        (Some(n), "") => format!("restore point #{n}"),
                        (Some(n), name) => format!("restore point #{n} {name:?}"),
                        (None, _) => format!("the end of segment {last}"),
                    },
                    point.at.to_rfc3339()
                );
            }
            EXIT_OK
        }
        Err(e) => fail("restore", &e),
    }
}

fn restore_target(args: &RestoreArgs) -> Result<Option<crate::archive::Target>, BackupError> {
    use crate::archive::Target;
    Ok(match (&args.until, args.until_seq) {
        (_, Some(n)) => Some(Target::Seq(n)),
        (Some(t), None) if t.eq_ignore_ascii_case("latest") => Some(Target::Latest),
        (Some(t), None) => Some(Target::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    BackupError::Usage(format!(
                        "--until {t:?} is not an RFC 3339 time such as 2026-12-03T14:05:00Z ({e})"
                    ))
                })?
                .with_timezone(&Utc),
        )),
        (None, None) => None,
    })
}
