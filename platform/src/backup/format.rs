//! The backup file format: a magic line, a one-line JSON manifest, then the payload.
//!
//! ```text
//! tradeplane-backup 1\n          magic and container format version
//! {"format_version":1,...}\n     the manifest, one line of JSON (see `Manifest`)
//! <payload bytes>                exactly `manifest.payload.bytes` bytes
//! ```
//!
//! The payload is a gzip stream (optionally AES-256-GCM encrypted, see [`super::crypto`]) of
//! concatenated JSON records ([`Record`]): for each table a `table` header, then one `row` per
//! row, then the `sequence` counters and a final `end` record that repeats the row counts, so a
//! stream cut short or altered is detected even inside the authenticated encryption.
//!
//! Keeping manifest and payload in one file makes the final `rename` atomic for both: a crash
//! never leaves a payload without its manifest or the other way round, and `head -n 2 FILE` shows
//! the manifest without any tool.

use std::io::{BufRead, Read};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::BackupError;

/// The container format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// First bytes of every backup file, before the version number.
pub const MAGIC: &str = "tradeplane-backup";
/// File names this tool creates: `tradeplane-backup-<UTC timestamp>.tpb`.
pub const FILE_PREFIX: &str = "tradeplane-backup-";
/// Extension of finished backup files.
pub const FILE_SUFFIX: &str = ".tpb";
/// In object storage, the payload object is the manifest object's name plus this suffix.
pub const PAYLOAD_SUFFIX: &str = ".payload";
/// Layout of the timestamp in file names (UTC, millisecond precision so two runs in one second
/// still get distinct names).
pub const NAME_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";
/// Upper bound on the manifest line, so a garbage file cannot make us buffer gigabytes.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Everything known about a backup without reading its payload. Never contains a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Container format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// Version of the tool that wrote it.
    pub tool_version: String,
    /// `postgres` or `sqlite`; a backup restores only into the same backend.
    pub backend: String,
    /// Where it came from (database host/name or SQLite path, and the machine); no credentials.
    pub source: Source,
    /// The newest applied sqlx migration in the source database when the snapshot was taken.
    pub schema_version: i64,
    /// Tables in restore order (parents before children), with their row counts.
    pub tables: Vec<TableCount>,
    /// Sum of the table row counts.
    pub total_rows: u64,
    /// The payload: size, digest, compression.
    pub payload: PayloadInfo,
    /// How the payload is encrypted, or `None` for plain gzip.
    pub encryption: Option<EncryptionInfo>,
    /// How long the snapshot took, in seconds.
    pub duration_seconds: f64,
    /// Always `complete`: a file exists under its final name only once fully written.
    pub outcome: String,
    /// Where this backup starts in the point-in-time archive, when the source was archiving
    /// (absent otherwise, and in backups made before archiving existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchivePoint>,
}

/// A backup's place in the change-log archive ([`crate::archive`]): a restore from it replays
/// the segments from `start_segment` on, applying the transactions `snapshot` did not see.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchivePoint {
    /// The archive the source database feeds.
    pub archive_id: String,
    /// The first segment that can hold a change this backup lacks.
    pub start_segment: i64,
    /// The snapshot the backup was read in (`pg_current_snapshot()`, `xmin:xmax:xip,…`).
    pub snapshot: String,
}

/// Where a backup was taken; identifies the source for humans, never authenticates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Source {
    /// Database host and port, or the SQLite file path.
    pub database: String,
    /// Host name of the machine or pod that took the backup.
    pub host: String,
}

/// One table's row count in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableCount {
    /// Table name (unqualified; the platform's schema).
    pub name: String,
    /// Rows in the snapshot.
    pub rows: u64,
}

/// Facts about the payload bytes that follow the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PayloadInfo {
    /// Exact length in bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of those bytes (after compression and encryption).
    pub sha256: String,
    /// Always `gzip`.
    pub compression: String,
    /// In object storage, the name of the object holding the payload (the manifest is an object
    /// of its own, written last); absent for a file, where the payload follows the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// How the payload is encrypted: the algorithm and its public parameters, never the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncryptionInfo {
    /// `AES-256-GCM-STREAM-BE32`: AES-256-GCM in the STREAM construction (RustCrypto `aead::stream`).
    pub algorithm: String,
    /// Hex of the random 7-byte nonce prefix; each segment's nonce appends a 32-bit counter and
    /// a last-segment flag.
    pub nonce_prefix: String,
    /// Plaintext bytes per segment (each ciphertext segment is 16 bytes longer).
    pub segment_bytes: u32,
    /// A fingerprint of the key (truncated SHA-256 of a domain-separated hash), so a wrong key is
    /// named as such; reveals nothing usable about a random 256-bit key.
    pub key_id: String,
}

/// One record of the payload stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// Starts a table; the `row` records until the next header belong to it.
    Table(TableHeader),
    /// One row: an array of values in the header's column order. PostgreSQL: each column's
    /// text form or `null`. SQLite: values tagged by storage class (see [`super::dump`]).
    Row(Box<RawValue>),
    /// A sequence or autoincrement counter to restore after the rows.
    Sequence(SequenceValue),
    /// The last record, repeating the counts so truncation and tampering are detected.
    End(EndRecord),
}

/// Header of one table in the payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableHeader {
    /// Table name.
    pub name: String,
    /// Columns written for each row (generated columns excluded), in order.
    pub columns: Vec<String>,
}

/// A sequence (PostgreSQL) or `sqlite_sequence` entry (SQLite).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SequenceValue {
    /// Sequence name (PostgreSQL) or table name (SQLite).
    pub name: String,
    /// The counter.
    pub value: i64,
    /// PostgreSQL `is_called`: whether `value` itself was already handed out.
    pub called: bool,
}

/// Closing record of the payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndRecord {
    /// Same as the manifest's `schema_version`.
    pub schema_version: i64,
    /// Same as the manifest's `tables`.
    pub tables: Vec<TableCount>,
}

/// The first line of a backup file.
pub fn magic_line() -> String {
    format!("{MAGIC} {FORMAT_VERSION}\n")
}

/// The file name for a backup taken at `at`.
pub fn file_name(at: DateTime<Utc>) -> String {
    format!("{FILE_PREFIX}{}{FILE_SUFFIX}", at.format(NAME_TIME_FORMAT))
}

/// Parses a name made by [`file_name`] back into its timestamp; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    chrono::NaiveDateTime::parse_from_str(stamp, NAME_TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// Reads and checks the magic line and the manifest, leaving `reader` at the first payload byte.
/// Returns the manifest and the number of header bytes consumed.
pub fn read_header<R: BufRead>(reader: &mut R) -> Result<(Manifest, u64), BackupError> {
    let mut first = Vec::new();
    reader
        .by_ref()
        .take(64)
        .read_until(b'\n', &mut first)
        .map_err(|e| BackupError::io("cannot read the backup header", e))?;
    let first_text = String::from_utf8_lossy(&first);
    let Some(version) = first_text
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix(MAGIC))
        .and_then(|l| l.strip_prefix(' '))
    else {
        return Err(BackupError::Verification(
            "not a Tradeplane backup file (missing the `tradeplane-backup` header)".into(),
        ));
    };
    let version: u32 = version.trim().parse().map_err(|_| {
        BackupError::Verification(format!("unreadable format version {version:?} in header"))
    })?;
    if version != FORMAT_VERSION {
        return Err(BackupError::Verification(format!(
            "unsupported backup format version {version} (this build reads version {FORMAT_VERSION})"
        )));
    }
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_MANIFEST_BYTES)
        .read_until(b'\n', &mut line)
        .map_err(|e| BackupError::io("cannot read the backup manifest", e))?;
    if line.last() != Some(&b'\n') {
        return Err(BackupError::Verification(
            "the manifest line is truncated or too long".into(),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&line)
        .map_err(|e| BackupError::Verification(format!("the manifest is not valid: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(BackupError::Verification(format!(
            "unsupported manifest format version {} (this build reads version {FORMAT_VERSION})",
            manifest.format_version
        )));
    }
    if manifest.payload.compression != "gzip" {
        return Err(BackupError::Verification(format!(
            "unsupported payload compression {:?}",
            manifest.payload.compression
        )));
    }
    Ok((manifest, (first.len() + line.len()) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_others_are_ignored() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T02:00:05.123Z")
            .expect("valid")
            .with_timezone(&Utc);
        let name = file_name(at);
        assert_eq!(name, "tradeplane-backup-20261122T020005.123Z.tpb");
        assert_eq!(parse_file_name(&name), Some(at));
        for other in [
            "tradeplane-backup-20261122T020005.123Z.tpb.tmp",
            ".tradeplane-backup-20261122T020005.123Z.tpb",
            "tradeplane-backup-latest.tpb",
            "notes.txt",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn header_errors_are_clear() {
        let err = read_header(&mut &b"PK\x03\x04garbage"[..]).expect_err("not ours");
        assert!(err.to_string().contains("not a Tradeplane backup"), "{err}");
        let err = read_header(&mut &b"tradeplane-backup 9\n{}\n"[..]).expect_err("future");
        assert!(
            err.to_string()
                .contains("unsupported backup format version 9"),
            "{err}"
        );
        let err = read_header(&mut &b"tradeplane-backup 1\n{\"format_"[..]).expect_err("cut");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
