//! Reading and verifying a backup file without touching any database.
//!
//! [`BackupReader::open`] checks the header, the payload length, the SHA-256 and the key;
//! [`BackupReader::verify`] then decodes the whole payload (decryption, decompression, every
//! record) and checks it against the manifest. `restore` runs both before its first write.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde_json::de::IoRead;
use sha2::{Digest, Sha256};

use super::BackupError;
use super::crypto::{self, BackupKey, DecryptReader, NONCE_PREFIX_BYTES};
use super::format::{self, Manifest, Record, TableCount};

/// An opened backup whose header, length, checksum and key have been checked.
#[derive(Debug)]
pub struct BackupReader {
    path: PathBuf,
    /// The file's manifest.
    pub manifest: Manifest,
    header_len: u64,
    key: Option<(BackupKey, [u8; NONCE_PREFIX_BYTES])>,
    /// A downloaded payload's local copy, removed when the reader is dropped.
    _download: Option<tempfile::TempPath>,
}

/// What a full verification found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// The manifest, as read from the file.
    pub manifest: Manifest,
    /// Row counts found in the payload (equal to the manifest's when verification passes).
    pub tables: Vec<TableCount>,
    /// Sequence counters found.
    pub sequences: usize,
}

/// Iterator over the payload's records.
pub struct Records {
    inner: serde_json::StreamDeserializer<'static, IoRead<Box<dyn Read + Send>>, Record>,
}

impl Iterator for Records {
    type Item = Result<Record, BackupError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| r.map_err(decode_error))
    }
}

fn decode_error(e: serde_json::Error) -> BackupError {
    if e.is_io() {
        // Decryption, gzip (including its CRC) and read errors surface here.
        BackupError::Verification(format!("the payload cannot be decoded: {e}"))
    } else if e.is_eof() {
        BackupError::Verification(format!(
            "the payload ends in the middle of a record (truncated): {e}"
        ))
    } else {
        BackupError::Verification(format!("the payload has a malformed record: {e}"))
    }
}

impl BackupReader {
    /// Opens `path`, checks the header, the payload length and SHA-256, and that `key` can
    /// decrypt it when it is encrypted. Reads the file once; touches nothing else.
    pub fn open(path: &Path, key: Option<&BackupKey>) -> Result<BackupReader, BackupError> {
        let file = File::open(path)
            .map_err(|e| BackupError::io(&format!("cannot open {}", path.display()), e))?;
        let (manifest, header_len) = format::read_header(&mut BufReader::new(file))?;
        Self::open_parts(path, header_len, manifest, key, None)
    }

    /// Checks the payload stored in `path` from byte `header_len` against `manifest` (length,
    /// SHA-256, key). `download` is a temporary copy to delete with the reader.
    pub fn open_parts(
        path: &Path,
        header_len: u64,
        manifest: Manifest,
        key: Option<&BackupKey>,
        download: Option<tempfile::TempPath>,
    ) -> Result<BackupReader, BackupError> {
        let mut file = File::open(path)
            .map_err(|e| BackupError::io(&format!("cannot open {}", path.display()), e))?;
        let file_len = file
            .metadata()
            .map_err(|e| BackupError::io(&format!("cannot stat {}", path.display()), e))?
            .len();
        file.seek(SeekFrom::Start(header_len))
            .map_err(|e| BackupError::io("cannot read the payload", e))?;
        let mut reader = BufReader::new(file);
        let expected = manifest.payload.bytes;
        let actual = file_len.saturating_sub(header_len);
        if actual < expected {
            return Err(BackupError::Verification(format!(
                "the file is truncated: the payload has {actual} of {expected} bytes"
            )));
        }
        if actual > expected {
            return Err(BackupError::Verification(format!(
                "the file has {} unexpected bytes after the payload",
                actual - expected
            )));
        }
        let mut hasher = Sha256::new();
        let copied = std::io::copy(&mut reader.by_ref().take(expected), &mut hasher)
            .map_err(|e| BackupError::io("cannot read the payload", e))?;
        if copied != expected {
            return Err(BackupError::Verification(format!(
                "the file is truncated: read {copied} of {expected} payload bytes"
            )));
        }
        let digest = hex::encode(hasher.finalize());
        if !digest.eq_ignore_ascii_case(&manifest.payload.sha256) {
            return Err(BackupError::Verification(format!(
                "checksum mismatch: the payload's SHA-256 is {digest}, the manifest says {}; \
                 the file is corrupted",
                manifest.payload.sha256
            )));
        }
        let key = match (&manifest.encryption, key) {
            (None, _) => None,
            (Some(enc), _) if enc.algorithm != crypto::ALGORITHM => {
                return Err(BackupError::Verification(format!(
                    "unsupported encryption algorithm {:?} (this build supports {})",
                    enc.algorithm,
                    crypto::ALGORITHM
                )));
            }
            (Some(enc), _) if enc.segment_bytes as usize != crypto::SEGMENT_BYTES => {
                return Err(BackupError::Verification(format!(
                    "unsupported encryption segment size {}",
                    enc.segment_bytes
                )));
            }
            (Some(_), None) => {
                return Err(BackupError::Verification(
                    "the backup is encrypted but BACKUP_ENCRYPTION_KEY is not set".into(),
                ));
            }
            (Some(enc), Some(k)) => {
                if k.id() != enc.key_id {
                    return Err(BackupError::Verification(format!(
                        "wrong key: the backup was encrypted with key id {}, \
                         BACKUP_ENCRYPTION_KEY has key id {}",
                        enc.key_id,
                        k.id()
                    )));
                }
                let prefix: [u8; NONCE_PREFIX_BYTES] = hex::decode(&enc.nonce_prefix)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| {
                        BackupError::Verification(format!(
                            "malformed nonce prefix {:?} in the manifest",
                            enc.nonce_prefix
                        ))
                    })?;
                Some((k.clone(), prefix))
            }
        };
        Ok(BackupReader {
            path: path.to_owned(),
            manifest,
            header_len,
            key,
            _download: download,
        })
    }

    /// A fresh decoding pass over the payload's records.
    pub fn records(&self) -> Result<Records, BackupError> {
        let mut file = File::open(&self.path)
            .map_err(|e| BackupError::io(&format!("cannot open {}", self.path.display()), e))?;
        file.seek(SeekFrom::Start(self.header_len))
            .map_err(|e| BackupError::io("cannot read the payload", e))?;
        let payload = BufReader::new(file.take(self.manifest.payload.bytes));
        let compressed: Box<dyn Read + Send> = match &self.key {
            None => Box::new(payload),
            Some((key, prefix)) => {
                Box::new(BufReader::new(DecryptReader::new(payload, key, prefix)))
            }
        };
        let plain: Box<dyn Read + Send> =
            Box::new(BufReader::new(GzDecoder::new(BufReader::new(compressed))));
        Ok(Records {
            inner: serde_json::Deserializer::new(IoRead::new(plain)).into_iter(),
        })
    }

    /// Decodes every record and checks the stream against the manifest: table order and row
    /// counts, row shapes, the end record, nothing after it.
    pub fn verify(&self) -> Result<VerifyReport, BackupError> {
        let bad = |m: String| Err(BackupError::Verification(m));
        let sqlite = self.manifest.backend == "sqlite";
        let mut tables: Vec<TableCount> = Vec::new();
        let mut columns = 0usize;
        let mut seen = BTreeSet::new();
        let mut sequences = 0usize;
        let mut records = self.records()?;
        let end = loop {
            let Some(record) = records.next() else {
                return bad("the payload ends before its end record (truncated)".into());
            };
            match record? {
                Record::Table(h) => {
                    if !seen.insert(h.name.clone()) {
                        return bad(format!("table {} appears twice in the payload", h.name));
                    }
                    columns = h.columns.len();
                    tables.push(TableCount {
                        name: h.name,
                        rows: 0,
                    });
                }
                Record::Row(raw) => {
                    let Some(current) = tables.last_mut() else {
                        return bad("a row precedes the first table header".into());
                    };
                    let ok =
                        serde_json::from_str::<Vec<serde_json::Value>>(raw.get()).is_ok_and(|v| {
                            v.len() == columns
                                && (sqlite || v.iter().all(|x| x.is_string() || x.is_null()))
                        });
                    if !ok {
                        return bad(format!(
                            "row {} of table {} does not match its header",
                            current.rows + 1,
                            current.name
                        ));
                    }
                    current.rows += 1;
                }
                Record::Sequence(_) => sequences += 1,
                Record::End(end) => break end,
            }
        };
        if let Some(extra) = records.next() {
            extra?;
            return bad("the payload has data after its end record".into());
        }
        if end.tables != tables || end.schema_version != self.manifest.schema_version {
            return bad("the payload's end record does not match its contents".into());
        }
        if self.manifest.tables != tables {
            return bad(format!(
                "the manifest's table counts ({}) do not match the payload ({})",
                summary(&self.manifest.tables),
                summary(&tables)
            ));
        }
        let total: u64 = tables.iter().map(|t| t.rows).sum();
        if total != self.manifest.total_rows {
            return bad(format!(
                "the manifest says {} rows, the payload has {total}",
                self.manifest.total_rows
            ));
        }
        Ok(VerifyReport {
            manifest: self.manifest.clone(),
            tables,
            sequences,
        })
    }
}

/// `name=rows, …` for messages.
pub fn summary(tables: &[TableCount]) -> String {
    tables
        .iter()
        .map(|t| format!("{}={}", t.name, t.rows))
        .collect::<Vec<_>>()
        .join(", ")
}
