//! Backups and restore: `backup --dest DIR|s3://bucket/prefix`, `backup verify`, `backup list`,
//! `restore`.
//!
//! A backup is one file (see [`format`]) holding a manifest and a gzip payload, optionally
//! encrypted ([`crypto`]), of every table the platform owns, found in the catalog ([`crate::store::catalog`])
//! and read in one consistent transaction ([`dump`]). In object storage ([`remote`], [`s3`]) the
//! same manifest and payload are two objects, the manifest written last. [`reader`] checks a
//! backup fully without a database; [`restore`] loads it back in one transaction; [`retention`]
//! prunes old backups; [`command`] is the CLI face (logs, stdout summary, exit codes, metrics
//! textfile, [`progress`]).
//!
//! The library entry points are [`create_backup`], [`verify_file`] and [`restore_file`]; they
//! never panic on bad input and report every failure as a [`BackupError`] whose
//! [`BackupError::exit_code`] the CLI returns.

pub mod command;
pub mod crypto;
pub mod dump;
pub mod format;
pub mod location;
pub mod metrics_file;
pub mod progress;
pub mod reader;
pub mod remote;
pub mod restore;
pub mod result_file;
pub mod retention;
pub mod s3;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::Instrument;

use chrono::{DateTime, Utc};

pub use crypto::BackupKey;
pub use format::Manifest;
pub use location::{BackupRef, Location, Reference, S3Target};
pub use progress::Progress;
pub use reader::{BackupReader, VerifyReport};
pub use restore::RestoreReport;
pub use retention::{PruneReport, RetentionPolicy};

use crate::store::{Backend, Store};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an unexpected internal failure (a bug or a resource problem such as no runtime).
pub const EXIT_INTERNAL: u8 = 1;
/// Exit code: bad command line or configuration (clap's own usage errors also exit 2).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the backup file failed verification (corrupt, truncated, wrong key, unsupported
/// version); the database was not touched.
pub const EXIT_VERIFICATION: u8 = 3;
/// Exit code: the database failed (unreachable, query or migration error); a restore was
/// rolled back.
pub const EXIT_DATABASE: u8 = 4;
/// Exit code: file-system or object-storage failure (destination not writable, disk full, file
/// or bucket not found, store unreachable).
pub const EXIT_IO: u8 = 5;
/// Exit code: restore refused (target not empty without `--force`, schema or backend mismatch);
/// the database was not changed.
pub const EXIT_REFUSED: u8 = 6;
/// Exit code: the object store denied access (wrong, expired or missing credentials, or a
/// bucket policy that does not allow the operation).
pub const EXIT_ACCESS_DENIED: u8 = 7;

/// Every way a backup, verification or restore can fail, each with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Bad arguments or configuration (e.g. a malformed `BACKUP_ENCRYPTION_KEY`).
    #[error("{0}")]
    Usage(String),
    /// The file is not a valid backup or cannot be decrypted.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A database operation failed.
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The restore was refused to protect the target database.
    #[error("restore refused: {0}")]
    Refused(String),
    /// An object-store request failed (see [`s3::storage_error`]).
    #[error("{context}: {detail}")]
    Storage {
        /// What was being done, and where.
        context: String,
        /// What went wrong, in words an operator can act on.
        detail: String,
        /// Whether the store refused the credentials or the permission.
        access_denied: bool,
    },
}

impl BackupError {
    /// An I/O error with context.
    pub fn io(context: &str, source: std::io::Error) -> BackupError {
        BackupError::Io {
            context: context.to_owned(),
            source,
        }
    }

    /// The process exit code for this error (see the `EXIT_*` constants).
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Usage(_) => EXIT_USAGE,
            BackupError::Verification(_) => EXIT_VERIFICATION,
            BackupError::Database { .. } => EXIT_DATABASE,
            BackupError::Io { .. } => EXIT_IO,
            BackupError::Refused(_) => EXIT_REFUSED,
            BackupError::Storage {
                access_denied: true,
                ..
            } => EXIT_ACCESS_DENIED,
            BackupError::Storage { .. } => EXIT_IO,
        }
    }

    /// A short stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BackupError::Usage(_) => "usage",
            BackupError::Verification(_) => "verification",
            BackupError::Database { .. } => "database",
            BackupError::Io { .. } => "io",
            BackupError::Refused(_) => "refused",
            BackupError::Storage {
                access_denied: true,
                ..
            } => "access_denied",
            BackupError::Storage { .. } => "storage",
        }
    }
}

/// What `create_backup` needs to know.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Where the backup is written: a directory (created mode 0700 if missing) or a bucket.
    pub dest: Location,
    /// Encrypt with this key when set.
    pub key: Option<BackupKey>,
    /// Pruning after a successful backup.
    pub retention: RetentionPolicy,
    /// The snapshot's timestamp (name and manifest); `Utc::now()` outside tests.
    pub now: DateTime<Utc>,
    /// Human-readable source description for the manifest.
    pub source: format::Source,
    /// Where rows done are counted ([`Progress::hidden`] outside the CLI).
    pub progress: Progress,
}

/// What `create_backup` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    /// The finished file, or the `s3://` URL of the manifest object.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// Pruning result (empty without a retention policy).
    pub pruned: PruneReport,
    /// Why pruning failed, if it did (the backup itself is complete and kept).
    pub prune_error: Option<String>,
    /// Archive segments pruned with the backups ([`crate::archive::retention`]).
    pub archive_pruned: crate::archive::retention::ArchivePruned,
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    }
}

/// Takes a consistent snapshot of `store` into a new backup in `opts.dest`, then prunes old
/// backups according to `opts.retention`. The backup appears under its final name only once it
/// is complete (a file fsynced and renamed; in a bucket, the manifest object written last).
pub async fn create_backup(
    store: &Store,
    opts: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    let mut report = match &opts.dest {
        Location::Dir(dir) => backup_to_dir(store, opts, dir).await,
        Location::S3(target) => remote::backup(store, opts, target).await,
    }?;
    // The archive's segments that no kept backup needs go with the backups pruned.
    if opts.retention.is_active() && report.prune_error.is_none() {
        match crate::archive::retention::prune(&opts.dest).await {
            Ok(a) => report.archive_pruned = a,
            Err(e) => report.prune_error = Some(format!("pruning the archive: {e}")),
        }
    }
    Ok(report)
}

/// The manifest of a finished payload.
fn build_manifest(
    store: &Store,
    opts: &BackupOptions,
    snapshot: dump::Snapshot,
    payload: format::PayloadInfo,
    prefix: &[u8; crypto::NONCE_PREFIX_BYTES],
    started: Instant,
) -> Manifest {
    Manifest {
        format_version: format::FORMAT_VERSION,
        created_at: opts.now,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: backend_name(store.backend()).to_owned(),
        source: opts.source.clone(),
        schema_version: snapshot.schema_version,
        total_rows: snapshot.tables.iter().map(|t| t.rows).sum(),
        tables: snapshot.tables,
        payload,
        encryption: opts.key.as_ref().map(|k| format::EncryptionInfo {
            algorithm: crypto::ALGORITHM.into(),
            nonce_prefix: hex::encode(prefix),
            segment_bytes: crypto::SEGMENT_BYTES as u32,
            key_id: k.id(),
        }),
        duration_seconds: started.elapsed().as_secs_f64(),
        outcome: "complete".into(),
        archive: snapshot.archive,
    }
}

async fn backup_to_dir(
    store: &Store,
    opts: &BackupOptions,
    dir: &Path,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    writer::create_private_dir(dir)?;
    retention::remove_stale_temps(dir, std::time::Duration::from_secs(24 * 3600));
    let final_path = dir.join(format::file_name(opts.now));
    if final_path.exists() {
        return Err(BackupError::io(
            &format!("{} already exists", final_path.display()),
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    let temps = writer::TempFiles::for_final(&final_path);
    let prefix = crypto::random_nonce_prefix();
    let file = writer::create_new(&temps.payload)?;
    let mut out = writer::PayloadWriter::new(file, opts.key.as_ref(), &prefix);
    let snapshot = dump::dump(store, &mut out, &opts.progress)
        .instrument(crate::telemetry::otel::span_if_enabled!("backup.dump"))
        .await?;
    let finish_io = |e| BackupError::io("cannot finish the payload", e);
    let (buffered, sha256, bytes) = out.finish().map_err(finish_io)?;
    let file = buffered
        .into_inner()
        .map_err(|e| finish_io(e.into_error()))?;
    file.sync_all().map_err(finish_io)?;
    drop(file);

    let payload = format::PayloadInfo {
        bytes,
        sha256,
        compression: "gzip".into(),
        object: None,
    };
    let manifest = build_manifest(store, opts, snapshot, payload, &prefix, started);
    let file_bytes = {
        let _phase = crate::telemetry::otel::span_if_enabled!("backup.commit").entered();
        writer::commit(&manifest, &temps, &final_path)?
    };
    drop(temps);

    let (pruned, prune_error) = if opts.retention.is_active() {
        let _phase = crate::telemetry::otel::span_if_enabled!("backup.prune").entered();
        match retention::prune(dir, opts.now, opts.retention, &final_path) {
            Ok(r) => (r, None),
            Err(e) => (PruneReport::default(), Some(e.to_string())),
        }
    } else {
        (PruneReport::default(), None)
    };
    Ok(BackupReport {
        path: final_path,
        manifest,
        file_bytes,
        pruned,
        prune_error,
        archive_pruned: Default::default(),
    })
}

/// Opens a backup file or object and checks its header, length, SHA-256 and key (downloading
/// an object's payload to a temporary file first).
pub async fn open_backup(
    backup: &BackupRef,
    key: Option<&BackupKey>,
) -> Result<BackupReader, BackupError> {
    match backup {
        BackupRef::File(path) => BackupReader::open(path, key),
        BackupRef::S3 { target, name } => remote::open(target, name, key).await,
    }
}

fn manifest_backend(manifest: &Manifest) -> Result<Backend, BackupError> {
    match manifest.backend.as_str() {
        "postgres" => Ok(Backend::Postgres),
        "sqlite" => Ok(Backend::Sqlite),
        other => Err(BackupError::Verification(format!(
            "unknown source backend {other:?}"
        ))),
    }
}

/// [`verify_file`] for a file or an object.
pub async fn verify_backup(
    backup: &BackupRef,
    key: Option<&BackupKey>,
) -> Result<VerifyReport, BackupError> {
    let reader = open_backup(backup, key).await?;
    restore::check_schema_version(
        manifest_backend(&reader.manifest)?,
        reader.manifest.schema_version,
    )?;
    reader.verify()
}

/// [`restore_file`] for a file or an object.
pub async fn restore_backup(
    store: &Store,
    backup: &BackupRef,
    key: Option<&BackupKey>,
    force: bool,
    progress: &Progress,
) -> Result<RestoreReport, BackupError> {
    let reader = open_backup(backup, key).await?;
    restore::check_schema_version(store.backend(), reader.manifest.schema_version)?;
    reader.verify()?;
    restore::restore(store, &reader, force, progress, None).await
}

/// Fully checks a backup file (header, length, SHA-256, key, decryption, decompression, every
/// record against the manifest, schema version known to this build) without a database.
pub fn verify_file(path: &Path, key: Option<&BackupKey>) -> Result<VerifyReport, BackupError> {
    let reader = BackupReader::open(path, key)?;
    restore::check_schema_version(
        manifest_backend(&reader.manifest)?,
        reader.manifest.schema_version,
    )?;
    reader.verify()
}

/// Verifies `path` completely, then restores it into `store` in one transaction (see
/// [`restore`]). Nothing touches the database before the file has passed verification.
pub async fn restore_file(
    store: &Store,
    path: &Path,
    key: Option<&BackupKey>,
    force: bool,
) -> Result<RestoreReport, BackupError> {
    let backup = BackupRef::File(path.to_owned());
    restore_backup(store, &backup, key, force, &Progress::hidden()).await
}

/// Describes a database URL for the manifest without credentials or query parameters:
/// `host:port/database` for PostgreSQL, the file path for SQLite.
pub fn describe_database_url(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return without_query
            .strip_prefix("sqlite:")
            .unwrap_or(without_query)
            .to_owned();
    };
    if scheme == "sqlite" {
        return rest.to_owned();
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{host}/{path}")
}

/// This machine's or pod's name, for the manifest.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_lose_their_credentials() {
        assert_eq!(
            describe_database_url("postgres://app:s3cret@db.prod:5432/trading?sslmode=require"),
            "db.prod:5432/trading"
        );
        assert_eq!(
            describe_database_url("sqlite:///data/tradeplane.db?mode=rwc"),
            "/data/tradeplane.db"
        );
        assert_eq!(
            describe_database_url("sqlite://tradeplane.db?mode=rwc"),
            "tradeplane.db"
        );
        assert_eq!(describe_database_url("sqlite:x.db"), "x.db");
    }

    #[test]
    fn every_error_kind_has_its_own_exit_code() {
        let errors = [
            BackupError::Usage("x".into()),
            BackupError::Verification("x".into()),
            BackupError::Database {
                context: "x".into(),
                source: sqlx::Error::PoolTimedOut,
            },
            BackupError::io("x", std::io::Error::other("x")),
            BackupError::Refused("x".into()),
            BackupError::Storage {
                context: "x".into(),
                detail: "x".into(),
                access_denied: true,
            },
        ];
        let mut codes: Vec<u8> = errors.iter().map(BackupError::exit_code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes, vec![2, 3, 4, 5, 6, 7]);
    }
}
