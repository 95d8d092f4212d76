//! Writing a backup file: payload to a temporary file (gzip, optionally encrypted, hashed on the
//! way out), then the final file (magic, manifest, payload) under a temporary name, fsynced and
//! renamed into place, so a crash at any point leaves no file that looks like a backup.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BackupError;
use super::crypto::{BackupKey, EncryptWriter, NONCE_PREFIX_BYTES};
use super::format::{self, Manifest};

/// Counts and hashes every byte written through it.
pub struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    pub fn into_parts(self) -> (W, String, u64) {
        (
            self.inner,
            super::crypto::hex(&self.hasher.finalize()),
            self.bytes,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the compressed stream goes: straight to the file, or through encryption.
pub enum Sink<W: Write> {
    /// No encryption.
    Plain(W),
    /// AES-256-GCM STREAM.
    Encrypted(Box<EncryptWriter<W>>),
}

impl<W: Write> Sink<W> {
    /// Builds the sink for an optional key.
    pub fn new(inner: W, key: Option<&BackupKey>, prefix: &[u8; NONCE_PREFIX_BYTES]) -> Self {
        match key {
            None => Sink::Plain(inner),
            Some(k) => Sink::Encrypted(Box::new(EncryptWriter::new(inner, k, prefix))),
        }
    }

    /// Finishes the encryption (if any) and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Encrypted(e) => (*e).finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(data),
            Sink::Encrypted(e) => e.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Encrypted(e) => e.flush(),
        }
    }
}

/// Temporary files of one backup run, removed on drop unless the run completed.
pub struct TempFiles {
    /// The payload being written.
    pub payload: PathBuf,
    /// The final file before its rename.
    pub staged: PathBuf,
}

impl TempFiles {
    /// Hidden names next to `final_path` (they never match the backup name pattern).
    pub fn for_final(final_path: &Path) -> TempFiles {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let name = final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("backup");
        let pid = std::process::id();
        TempFiles {
            payload: dir.join(format!(".{name}.{pid}.payload.tmp")),
            staged: dir.join(format!(".{name}.{pid}.tmp")),
        }
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.payload);
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// Creates the payload temp file, failing if it already exists.
pub fn create_new(path: &Path) -> Result<BufWriter<File>, BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(|f| BufWriter::with_capacity(256 * 1024, f))
        .map_err(|e| BackupError::io(&format!("cannot create {}", path.display()), e))
}

/// Writes magic + manifest + the payload file into `temps.staged`, fsyncs it, renames it to
/// `final_path` (refusing to replace an existing file) and fsyncs the directory. Returns the
/// final file size.
pub fn commit(
    manifest: &Manifest,
    temps: &TempFiles,
    final_path: &Path,
) -> Result<u64, BackupError> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e| BackupError::io(&what, e)
    };
    let mut out = create_new(&temps.staged)?;
    out.write_all(format::magic_line().as_bytes())
        .map_err(fail("cannot write the backup file"))?;
    serde_json::to_writer(&mut out, manifest)
        .map_err(|e| BackupError::io("cannot write the manifest", io::Error::other(e)))?;
    out.write_all(b"\n")
        .map_err(fail("cannot write the backup file"))?;
    let mut payload = File::open(&temps.payload).map_err(fail("cannot reopen the payload"))?;
    io::copy(&mut payload, &mut out).map_err(fail("cannot write the backup file"))?;
    let file = out
        .into_inner()
        .map_err(|e| BackupError::io("cannot write the backup file", e.into_error()))?;
    file.sync_all()
        .map_err(fail("cannot fsync the backup file"))?;
    let size = file
        .metadata()
        .map_err(fail("cannot stat the backup file"))?
        .len();
    drop(file);
    if final_path.exists() {
        return Err(BackupError::io(
            &format!("{} already exists", final_path.display()),
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    std::fs::rename(&temps.staged, final_path)
        .map_err(fail("cannot move the backup file into place"))?;
    if let Some(dir) = final_path.parent()
        && let Ok(d) = File::open(dir)
    {
        // Makes the rename durable; not supported everywhere, so failures are not fatal.
        let _ = d.sync_all();
    }
    Ok(size)
}
