//! Writing a backup file: payload to a temporary file (gzip, optionally encrypted, hashed on the
//! way out), then the final file (magic, manifest, payload) under a temporary name, fsynced and
//! renamed into place, so a crash at any point leaves no file that looks like a backup.
//!
//! The payload pipeline ([`PayloadWriter`]: gzip, optional encryption, SHA-256) ends in a
//! [`PayloadSink`]: a local file, or a multipart upload ([`super::s3::UploadSink`]) whose
//! [`PayloadSink::pace`] keeps the bytes buffered in memory bounded whatever the database size.
//! Files are created mode 0600 (they hold password hashes).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::BackupError;
use super::crypto::{BackupKey, EncryptWriter, NONCE_PREFIX_BYTES};
use super::format::{self, Manifest};

/// Where the payload's bytes finally go.
pub trait PayloadSink: Write + Send {
    /// Waits until the sink has room (an upload's parts in flight are below its bound). The
    /// dump calls it between rows; a file has nothing to wait for.
    fn pace(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

impl PayloadSink for BufWriter<File> {
    async fn pace(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The payload pipeline: records in, gzip, optional AES-256-GCM STREAM, SHA-256 and byte count,
/// then the sink.
pub struct PayloadWriter<S: PayloadSink> {
    gz: GzEncoder<Sink<HashWriter<S>>>,
}

impl<S: PayloadSink> PayloadWriter<S> {
    /// Starts a payload into `sink`, encrypted under `key` when given.
    pub fn new(sink: S, key: Option<&BackupKey>, prefix: &[u8; NONCE_PREFIX_BYTES]) -> Self {
        PayloadWriter {
            gz: GzEncoder::new(
                Sink::new(HashWriter::new(sink), key, prefix),
                Compression::new(6),
            ),
        }
    }

    /// Waits for room in the sink (see [`PayloadSink::pace`]).
    pub async fn pace(&mut self) -> io::Result<()> {
        self.gz.get_mut().get_mut().inner.pace().await
    }

    /// Compressed (and encrypted) bytes produced so far.
    pub fn bytes_out(&mut self) -> u64 {
        self.gz.get_mut().get_mut().bytes
    }

    /// Ends compression and encryption; returns the sink, the hex SHA-256 and the byte count.
    pub fn finish(self) -> io::Result<(S, String, u64)> {
        Ok(self.gz.finish()?.finish()?.into_parts())
    }
}

impl<S: PayloadSink> Write for PayloadWriter<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.gz.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.gz.flush()
    }
}

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
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
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

    /// The writer under the encryption (if any).
    pub fn get_mut(&mut self) -> &mut W {
        match self {
            Sink::Plain(w) => w,
            Sink::Encrypted(e) => e.get_mut(),
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

/// Creates a file only its owner can read (mode 0600), failing if it already exists.
pub fn create_new(path: &Path) -> Result<BufWriter<File>, BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
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
    out.write_all(&header_bytes(manifest)?)
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

/// The magic line and the manifest line: the head of a backup file, or a whole manifest object.
pub fn header_bytes(manifest: &Manifest) -> Result<Vec<u8>, BackupError> {
    let mut out = format::magic_line().into_bytes();
    serde_json::to_writer(&mut out, manifest)
        .map_err(|e| BackupError::io("cannot write the manifest", io::Error::other(e)))?;
    out.push(b'\n');
    Ok(out)
}

/// Creates `dir` and its missing parents; a directory created here is made mode 0700 (its
/// backups hold password hashes), an existing one is left as its owner set it.
pub fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| BackupError::io(&format!("cannot create {}", dir.display()), e))
}
