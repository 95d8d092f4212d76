//! One segment of the change log: a file `<number, 16 digits>.tpw` in the archive.
//!
//! Layout: a plain header line, `tradeplane-wal 1 plain` or
//! `tradeplane-wal 1 aes <nonce prefix hex> <key id>`, then a gzip stream of JSON lines,
//! encrypted like a backup's payload (AES-256-GCM STREAM, [`crate::backup::crypto`]) when a key
//! is set. The lines: one `begin` (archive id, segment number, schema version, time), one `c`
//! per change (`[id, xid, table, op, row]`), one `end` with the counts and the SHA-256 of every
//! line before it. The segment number is in the name and in `begin`; a segment that is
//! truncated, altered, renamed or from another archive is refused when read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::backup::BackupError;
use crate::backup::crypto::{self, BackupKey, DecryptReader, NONCE_PREFIX_BYTES};
use crate::backup::writer::PayloadWriter;
use crate::store::archive::ChangeRow;

/// First word of a segment file.
pub const MAGIC: &str = "tradeplane-wal";
/// Segment format version.
pub const VERSION: u32 = 1;
/// File name suffix of a segment.
pub const SUFFIX: &str = ".tpw";

/// The file name of segment `n`.
pub fn name(n: i64) -> String {
    format!("{n:016}{SUFFIX}")
}

/// The number of a segment file name, if it is one.
pub fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 1)
}

/// The first line of a segment's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Begin {
    /// The archive it belongs to.
    pub archive_id: String,
    /// Its number.
    pub segment: i64,
    /// The source's newest migration when it was written.
    pub schema_version: i64,
    /// When it was closed.
    pub created_at: DateTime<Utc>,
}

/// The last line of a segment's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct End {
    /// Change lines.
    pub changes: u64,
    /// Distinct transactions among them.
    pub transactions: u64,
    /// Hex SHA-256 of every payload line before this one (newlines included).
    pub sha256: String,
    /// When the segment ended its archiver's turn (it holds every change that turn's snapshot
    /// saw): that snapshot, a consistent point to restore to. `None` for a segment that a larger
    /// turn continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Begin(Begin),
    C((i64, i64, String, String, Box<RawValue>)),
    End(End),
}

/// One change read back.
#[derive(Debug)]
pub struct Change {
    /// Position in the source's log.
    pub id: i64,
    /// The writing transaction.
    pub xid: i64,
    /// The table (`''` for a restore point).
    pub table: String,
    /// `W`, `D`, `T` or `M`.
    pub op: String,
    /// The row's JSON.
    pub row: Box<RawValue>,
}

/// Writes a segment to `out` (a new local file) from `changes`; returns the counts.
pub struct SegmentWriter {
    payload: PayloadWriter<std::io::BufWriter<File>>,
    hasher: Sha256,
    changes: u64,
    xids: std::collections::HashSet<i64>,
    line: Vec<u8>,
}

impl SegmentWriter {
    /// Starts segment `begin.segment` in `file`.
    pub fn start(file: File, key: Option<&BackupKey>, begin: &Begin) -> std::io::Result<Self> {
        let mut sink = std::io::BufWriter::with_capacity(256 * 1024, file);
        let prefix = crypto::random_nonce_prefix();
        match key {
            None => writeln!(sink, "{MAGIC} {VERSION} plain")?,
            Some(k) => writeln!(
                sink,
                "{MAGIC} {VERSION} aes {} {}",
                hex::encode(prefix),
                k.id()
            )?,
        }
        let mut w = SegmentWriter {
            payload: PayloadWriter::new(sink, key, &prefix),
            hasher: Sha256::new(),
            changes: 0,
            xids: std::collections::HashSet::new(),
            line: Vec::with_capacity(1024),
        };
        let mut line = b"{\"begin\":".to_vec();
        serde_json::to_writer(&mut line, begin).map_err(std::io::Error::other)?;
        line.extend_from_slice(b"}\n");
        w.emit(&line)?;
        Ok(w)
    }

    fn emit(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.hasher.update(line);
        self.payload.write_all(line)
    }

    /// Appends one change.
    pub fn push(&mut self, c: &ChangeRow) -> std::io::Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        write!(line, "{{\"c\":[{},{},", c.id, c.xid)?;
        serde_json::to_writer(&mut line, &c.table).map_err(std::io::Error::other)?;
        line.push(b',');
        serde_json::to_writer(&mut line, &c.op).map_err(std::io::Error::other)?;
        line.push(b',');
        line.extend_from_slice(c.row.as_bytes());
        line.extend_from_slice(b"]}\n");
        let result = self.emit(&line);
        self.line = line;
        result?;
        self.changes += 1;
        self.xids.insert(c.xid);
        Ok(())
    }

    /// Changes pushed so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Transactions pushed so far.
    pub fn transactions(&self) -> u64 {
        self.xids.len() as u64
    }

    /// Writes the `end` line (with the turn's snapshot when this segment ends the turn),
    /// finishes compression and encryption and fsyncs the file.
    pub fn finish(mut self, snapshot: Option<String>) -> std::io::Result<End> {
        let end = End {
            changes: self.changes,
            transactions: self.xids.len() as u64,
            sha256: hex::encode(self.hasher.clone().finalize()),
            snapshot,
        };
        let mut line = b"{\"end\":".to_vec();
        serde_json::to_writer(&mut line, &end).map_err(std::io::Error::other)?;
        line.extend_from_slice(b"}\n");
        self.payload.write_all(&line)?;
        let (sink, _, _) = self.payload.finish()?;
        let file = sink.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(end)
    }
}

/// A segment file opened for reading: its header checked, its payload decoded line by line.
pub struct SegmentReader {
    lines: Box<dyn BufRead + Send>,
    hasher: Sha256,
    label: String,
    /// The `begin` line.
    pub begin: Begin,
    end: Option<End>,
    changes: u64,
}

impl SegmentReader {
    /// Opens `path` (segment `expected` of archive `archive_id`) with `key` when encrypted.
    pub fn open(
        path: &Path,
        expected: i64,
        archive_id: &str,
        key: Option<&BackupKey>,
    ) -> Result<SegmentReader, BackupError> {
        let label = name(expected);
        let bad = |m: String| BackupError::Verification(format!("segment {label}: {m}"));
        let file = File::open(path)
            .map_err(|e| BackupError::io(&format!("cannot open {}", path.display()), e))?;
        let mut head = BufReader::new(file);
        let mut header = String::new();
        (&mut head)
            .take(512)
            .read_line(&mut header)
            .map_err(|e| BackupError::io(&format!("cannot read {}", path.display()), e))?;
        let words: Vec<&str> = header.trim_end().split(' ').collect();
        let compressed: Box<dyn Read + Send> = match words.as_slice() {
            [MAGIC, "1", "plain"] => Box::new(head),
            [MAGIC, "1", "aes", prefix, key_id] => {
                let Some(k) = key else {
                    return Err(bad(
                        "it is encrypted but BACKUP_ENCRYPTION_KEY is not set".into()
                    ));
                };
                if k.id() != *key_id {
                    return Err(bad(format!(
                        "encrypted with key id {key_id}, BACKUP_ENCRYPTION_KEY has key id {}",
                        k.id()
                    )));
                }
                let prefix: [u8; NONCE_PREFIX_BYTES] = hex::decode(prefix)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| bad("malformed nonce prefix".into()))?;
                Box::new(BufReader::new(DecryptReader::new(head, k, &prefix)))
            }
            [MAGIC, v, ..] => return Err(bad(format!("unsupported segment version {v}"))),
            _ => return Err(bad("not a change-log segment (bad header)".into())),
        };
        let lines: Box<dyn BufRead + Send> =
            Box::new(BufReader::new(GzDecoder::new(BufReader::new(compressed))));
        let mut reader = SegmentReader {
            lines,
            hasher: Sha256::new(),
            label: label.clone(),
            begin: Begin {
                archive_id: String::new(),
                segment: 0,
                schema_version: 0,
                created_at: DateTime::<Utc>::MIN_UTC,
            },
            end: None,
            changes: 0,
        };
        match reader.line()? {
            Some(Line::Begin(b)) => reader.begin = b,
            _ => return Err(bad("the first line is not `begin`".into())),
        }
        if reader.begin.segment != expected {
            return Err(bad(format!(
                "it says it is segment {} (renamed or misplaced)",
                reader.begin.segment
            )));
        }
        if reader.begin.archive_id != archive_id {
            return Err(bad(format!(
                "it belongs to archive {}, not {archive_id}",
                reader.begin.archive_id
            )));
        }
        Ok(reader)
    }

    fn line(&mut self) -> Result<Option<Line>, BackupError> {
        let label = self.label.clone();
        let bad = move |m: String| BackupError::Verification(format!("segment {label}: {m}"));
        let mut buf = Vec::new();
        let n = self
            .lines
            .read_until(b'\n', &mut buf)
            .map_err(|e| bad(format!("corrupted or truncated ({e})")))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            return Err(bad("truncated in the middle of a line".into()));
        }
        let parsed: Line =
            serde_json::from_slice(&buf).map_err(|e| bad(format!("malformed line: {e}")))?;
        if !matches!(parsed, Line::End(_)) {
            self.hasher.update(&buf);
        }
        Ok(Some(parsed))
    }

    /// The `end` line, once [`SegmentReader::next_change`] has returned `None`.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The next change, `None` after a verified `end` (counts and checksum match, nothing after
    /// it); any other ending is an error.
    pub fn next_change(&mut self) -> Result<Option<Change>, BackupError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let label = self.label.clone();
        let bad = move |m: String| BackupError::Verification(format!("segment {label}: {m}"));
        match self.line()? {
            Some(Line::C((id, xid, table, op, row))) => {
                self.changes += 1;
                Ok(Some(Change {
                    id,
                    xid,
                    table,
                    op,
                    row,
                }))
            }
            Some(Line::End(end)) => {
                let digest = hex::encode(self.hasher.clone().finalize());
                if end.sha256 != digest || end.changes != self.changes {
                    return Err(bad(format!(
                        "checksum or count mismatch ({} changes read, `end` says {}): corrupted",
                        self.changes, end.changes
                    )));
                }
                if self.line()?.is_some() {
                    return Err(bad("lines after `end`".into()));
                }
                self.end = Some(end);
                Ok(None)
            }
            Some(Line::Begin(_)) => Err(bad("a second `begin`".into())),
            None => Err(bad("it ends before its `end` line (truncated)".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64, xid: i64) -> ChangeRow {
        ChangeRow {
            id,
            xid,
            table: "orders".into(),
            op: "W".into(),
            row: format!("{{\"id\": {id}, \"note\": \"a\\nb\"}}"),
        }
    }

    fn write(path: &Path, key: Option<&BackupKey>, n: i64) -> End {
        let begin = Begin {
            archive_id: "arch".into(),
            segment: n,
            schema_version: 70,
            created_at: Utc::now(),
        };
        let file = File::create(path).expect("create");
        let mut w = SegmentWriter::start(file, key, &begin).expect("start");
        for i in 1..=50 {
            w.push(&change(i, 1000 + i / 10)).expect("push");
        }
        w.finish(Some("5:9:7".into())).expect("finish")
    }

    fn read_all(path: &Path, key: Option<&BackupKey>, n: i64) -> Result<Vec<Change>, BackupError> {
        let mut r = SegmentReader::open(path, n, "arch", key)?;
        let mut out = Vec::new();
        while let Some(c) = r.next_change()? {
            out.push(c);
        }
        Ok(out)
    }

    #[test]
    fn names_round_trip_and_reject_strangers() {
        assert_eq!(name(7), "0000000000000007.tpw");
        assert_eq!(parse_name(&name(7)), Some(7));
        assert_eq!(parse_name("0000000000000000.tpw"), None);
        assert_eq!(parse_name("7.tpw"), None);
        assert_eq!(parse_name("archive.json"), None);
    }

    #[test]
    fn segments_round_trip_plain_and_encrypted() {
        let dir = tempfile::tempdir().expect("dir");
        let key = BackupKey::from_base64(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [9u8; 32],
        ))
        .expect("key");
        for k in [None, Some(&key)] {
            let path = dir.path().join(name(3));
            let end = write(&path, k, 3);
            assert_eq!((end.changes, end.transactions), (50, 6));
            let back = read_all(&path, k, 3).expect("reads");
            assert_eq!(back.len(), 50);
            assert_eq!(back[0].id, 1);
            assert_eq!(back[49].xid, 1005);
            assert_eq!(back[0].row.get(), "{\"id\": 1, \"note\": \"a\\nb\"}");
        }
        let path = dir.path().join(name(3));
        write(&path, Some(&key), 3);
        let err = read_all(&path, None, 3).expect_err("needs the key");
        assert!(err.to_string().contains("BACKUP_ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn corruption_renames_and_strangers_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(name(4));
        write(&path, None, 4);
        assert!(read_all(&path, None, 5).is_err(), "renamed");
        let err = SegmentReader::open(&path, 4, "other", None)
            .err()
            .expect("another archive");
        assert!(err.to_string().contains("belongs to archive"), "{err}");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 9]).expect("truncate");
        assert!(read_all(&path, None, 4).is_err(), "truncated");
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x40;
        std::fs::write(&path, &flipped).expect("flip");
        let err = read_all(&path, None, 4).expect_err("flipped byte");
        assert_eq!(err.exit_code(), crate::backup::EXIT_VERIFICATION, "{err}");
    }
}
