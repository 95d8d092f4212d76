//! Where segments live: `<place>/wal/` beside the backups, in a directory or under a bucket
//! prefix, through the same [`crate::backup::s3::Bucket`] as backups.
//!
//! A segment appears under its final name only once complete: a file is written under a hidden
//! temporary name, fsynced and renamed; an object is a completed multipart upload. Storing the
//! same number again (an archiver that died before its database commit) replaces it whole.
//! `archive.json` names the archive a place holds, so that two databases never mix their
//! segments in one place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::segment;
use crate::backup::s3::Bucket;
use crate::backup::{BackupError, Location, writer};

/// Name of the archive's identity file.
pub const IDENTITY_FILE: &str = "archive.json";
/// The archive's sub-location under a backup place.
pub const WAL_DIR: &str = "wal";

/// The identity file's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentityFile {
    /// The archive id ([`crate::store::archive::ArchiveIdentity`]).
    pub archive_id: String,
    /// When the first archiver wrote it.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The source, for humans (host/database, never credentials).
    pub source: String,
}

/// A connected archive location.
#[derive(Clone)]
pub enum ArchiveStorage {
    /// `<dir>/wal`.
    Dir(PathBuf),
    /// `s3://bucket/prefix/wal`.
    S3(Bucket),
}

impl std::fmt::Display for ArchiveStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveStorage::Dir(p) => write!(f, "{}", p.display()),
            ArchiveStorage::S3(b) => write!(f, "{}", b.target),
        }
    }
}

/// A local copy of a segment: the file itself in a directory, a temporary download for S3.
pub struct LocalSegment {
    /// Where to read it.
    pub path: PathBuf,
    _download: Option<tempfile::TempPath>,
}

impl ArchiveStorage {
    /// The archive of the backup place `place` (its `wal` child).
    pub fn for_place(place: &Location) -> Result<ArchiveStorage, BackupError> {
        Ok(match place.child(WAL_DIR) {
            Location::Dir(p) => ArchiveStorage::Dir(p),
            Location::S3(t) => ArchiveStorage::S3(Bucket::connect(&t)?),
        })
    }

    /// Reads the identity file, `None` when the archive is new.
    pub async fn identity(&self) -> Result<Option<IdentityFile>, BackupError> {
        let bytes = match self {
            ArchiveStorage::Dir(dir) => match std::fs::read(dir.join(IDENTITY_FILE)) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BackupError::io("cannot read the archive identity", e)),
            },
            ArchiveStorage::S3(b) => {
                if b.size(IDENTITY_FILE).await?.is_none() {
                    return Ok(None);
                }
                b.get_small(IDENTITY_FILE, 64 * 1024).await?
            }
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            BackupError::Verification(format!("{self}/{IDENTITY_FILE} is malformed: {e}"))
        })
    }

    /// Writes the identity file.
    pub async fn write_identity(&self, id: &IdentityFile) -> Result<(), BackupError> {
        let bytes = serde_json::to_vec_pretty(id)
            .map_err(|e| BackupError::io("cannot encode", std::io::Error::other(e)))?;
        match self {
            ArchiveStorage::Dir(dir) => {
                writer::create_private_dir(dir)?;
                let tmp = dir.join(format!(".{IDENTITY_FILE}.tmp"));
                std::fs::write(&tmp, &bytes)
                    .and_then(|()| std::fs::rename(&tmp, dir.join(IDENTITY_FILE)))
                    .map_err(|e| BackupError::io("cannot write the archive identity", e))
            }
            ArchiveStorage::S3(b) => b.put(IDENTITY_FILE, bytes).await,
        }
    }

    /// A new private temporary file for segment `n` (in the archive directory, so the final
    /// rename stays on one file system; in the system's temporary directory for S3).
    pub fn temp_file(&self, n: i64) -> Result<(std::fs::File, tempfile::TempPath), BackupError> {
        let builder_in = |dir: &Path| {
            tempfile::Builder::new()
                .prefix(&format!(".{}.", segment::name(n)))
                .suffix(".tmp")
                .tempfile_in(dir)
        };
        let tmp = match self {
            ArchiveStorage::Dir(dir) => {
                writer::create_private_dir(dir)?;
                builder_in(dir)
            }
            ArchiveStorage::S3(_) => builder_in(&std::env::temp_dir()),
        }
        .map_err(|e| BackupError::io("cannot create a temporary segment file", e))?;
        Ok(tmp.into_parts())
    }

    /// Puts the finished local file `tmp` in place as segment `n`.
    pub async fn store(&self, n: i64, tmp: tempfile::TempPath) -> Result<(), BackupError> {
        let name = segment::name(n);
        match self {
            ArchiveStorage::Dir(dir) => {
                let fin = dir.join(&name);
                tmp.persist(&fin)
                    .map_err(|e| BackupError::io(&format!("cannot store {name}"), e.error))?;
                if let Ok(d) = std::fs::File::open(dir) {
                    // Makes the rename durable; not supported everywhere, so not fatal.
                    let _ = d.sync_all();
                }
                Ok(())
            }
            ArchiveStorage::S3(b) => {
                let mut file = std::fs::File::open(&tmp)
                    .map_err(|e| BackupError::io("cannot reopen the segment", e))?;
                let mut upload = b.upload(&name).await?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file
                        .read(&mut buf)
                        .map_err(|e| BackupError::io("cannot read the segment", e))?;
                    if n == 0 {
                        break;
                    }
                    upload
                        .write_all(&buf[..n])
                        .map_err(|e| BackupError::io("cannot upload the segment", e))?;
                    crate::backup::writer::PayloadSink::pace(&mut upload)
                        .await
                        .map_err(|e| BackupError::io("cannot upload the segment", e))?;
                }
                upload.finish(b, &name).await
            }
        }
    }

    /// The segment numbers present, ascending.
    pub async fn segments(&self) -> Result<Vec<i64>, BackupError> {
        let mut out: Vec<i64> = match self {
            ArchiveStorage::Dir(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().and_then(segment::parse_name))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(BackupError::io(
                        &format!("cannot list {}", dir.display()),
                        e,
                    ));
                }
            },
            ArchiveStorage::S3(b) => b
                .list()
                .await?
                .iter()
                .filter_map(|o| segment::parse_name(&o.name))
                .collect(),
        };
        out.sort_unstable();
        Ok(out)
    }

    /// A readable local copy of segment `n`.
    pub async fn fetch(&self, n: i64) -> Result<LocalSegment, BackupError> {
        let name = segment::name(n);
        match self {
            ArchiveStorage::Dir(dir) => Ok(LocalSegment {
                path: dir.join(name),
                _download: None,
            }),
            ArchiveStorage::S3(b) => {
                let tmp = tempfile::Builder::new()
                    .prefix(".tradeplane-segment-")
                    .tempfile()
                    .map_err(|e| BackupError::io("cannot create a temporary file", e))?;
                let (file, path) = tmp.into_parts();
                let mut out = std::io::BufWriter::new(file);
                b.download(&name, &mut out).await?;
                out.flush()
                    .map_err(|e| BackupError::io("cannot store the download", e))?;
                Ok(LocalSegment {
                    path: path.to_path_buf(),
                    _download: Some(path),
                })
            }
        }
    }

    /// Deletes segment `n` (retention).
    pub async fn delete(&self, n: i64) -> Result<(), BackupError> {
        let name = segment::name(n);
        match self {
            ArchiveStorage::Dir(dir) => std::fs::remove_file(dir.join(&name))
                .map_err(|e| BackupError::io(&format!("cannot delete {name}"), e)),
            ArchiveStorage::S3(b) => b.delete(&name).await,
        }
    }
}
