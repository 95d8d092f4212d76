//! Optional payload encryption: AES-256-GCM in the STREAM construction (RustCrypto
//! `aead::stream::StreamBE32`), so arbitrarily large payloads are encrypted in bounded memory
//! while reordering, truncation and tampering of segments are all detected.
//!
//! The payload is cut into [`SEGMENT_BYTES`] plaintext segments; each is sealed with the nonce
//! `prefix(7 random bytes) || counter(u32 BE) || last(1 byte)` and grows by a 16-byte tag. The
//! prefix is stored in the manifest; the key comes from `BACKUP_ENCRYPTION_KEY` and is never
//! written anywhere.

use std::io::{self, BufRead, Read, Write};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::BackupError;

/// Name recorded in the manifest for this scheme.
pub const ALGORITHM: &str = "AES-256-GCM-STREAM-BE32";
/// Plaintext bytes per sealed segment.
pub const SEGMENT_BYTES: usize = 64 * 1024;
/// Bytes the tag adds to each segment.
const TAG_BYTES: usize = 16;
/// Length of the random nonce prefix (GCM's 12-byte nonce minus STREAM's 5-byte overhead).
pub const NONCE_PREFIX_BYTES: usize = 7;

/// A 256-bit backup key. `Debug` never prints it.
#[derive(Clone)]
pub struct BackupKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey(id {})", self.id())
    }
}

impl BackupKey {
    /// Parses `BACKUP_ENCRYPTION_KEY`: standard base64 of exactly 32 bytes (e.g. the output of
    /// `openssl rand -base64 32`). Surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<BackupKey, BackupError> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| {
                BackupError::Usage(format!("BACKUP_ENCRYPTION_KEY is not valid base64 ({e})"))
            })?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| {
            BackupError::Usage(format!(
                "BACKUP_ENCRYPTION_KEY must decode to 32 bytes, got {} (use `openssl rand -base64 32`)",
                v.len()
            ))
        })?;
        Ok(BackupKey { bytes })
    }

    /// Reads `BACKUP_ENCRYPTION_KEY` from the environment; `None` when unset or empty.
    pub fn from_env() -> Result<Option<BackupKey>, BackupError> {
        match std::env::var("BACKUP_ENCRYPTION_KEY") {
            Ok(v) if !v.trim().is_empty() => Self::from_base64(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A short public fingerprint of the key, stored in manifests so that a wrong key is reported
    /// as such. Domain-separated so it is never equal to any other hash of the key.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"tradeplane-backup-key-id\0");
        h.update(self.bytes);
        hex::encode(&h.finalize()[..8])
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.bytes))
    }
}

/// A fresh random nonce prefix.
pub fn random_nonce_prefix() -> [u8; NONCE_PREFIX_BYTES] {
    let mut prefix = [0u8; NONCE_PREFIX_BYTES];
    OsRng.fill_bytes(&mut prefix);
    prefix
}

/// Encrypts everything written to it into `inner`; [`EncryptWriter::finish`] seals the last
/// segment and must be called (dropping it without `finish` leaves an undecryptable stream).
pub struct EncryptWriter<W: Write> {
    inner: W,
    encryptor: Option<EncryptorBE32<Aes256Gcm>>,
    buf: Vec<u8>,
}

impl<W: Write> EncryptWriter<W> {
    /// Starts a stream under `key` with the given nonce prefix.
    pub fn new(inner: W, key: &BackupKey, prefix: &[u8; NONCE_PREFIX_BYTES]) -> Self {
        let encryptor = EncryptorBE32::from_aead(key.cipher(), prefix.as_slice().into());
        EncryptWriter {
            inner,
            encryptor: Some(encryptor),
            buf: Vec::with_capacity(SEGMENT_BYTES),
        }
    }

    /// The inner writer (for pacing an upload; writing to it directly breaks the stream).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Seals the final segment and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| io::Error::other("encryption stream already finished"))?;
        let sealed = encryptor
            .encrypt_last(self.buf.as_slice())
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.inner.write_all(&sealed)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Seal a full segment only when more data follows, so the last segment is always sealed
        // by `finish` with the "last" flag, even when the payload is a multiple of the segment.
        if self.buf.len() == SEGMENT_BYTES && !data.is_empty() {
            let encryptor = self
                .encryptor
                .as_mut()
                .ok_or_else(|| io::Error::other("encryption stream already finished"))?;
            let sealed = encryptor
                .encrypt_next(self.buf.as_slice())
                .map_err(|_| io::Error::other("encryption failed"))?;
            self.inner.write_all(&sealed)?;
            self.buf.clear();
        }
        let n = data.len().min(SEGMENT_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a stream made by [`EncryptWriter`]; any tampering, truncation or wrong key surfaces
/// as an `InvalidData` error naming the segment.
pub struct DecryptReader<R: BufRead> {
    inner: R,
    decryptor: Option<DecryptorBE32<Aes256Gcm>>,
    plain: Vec<u8>,
    pos: usize,
    segment: u64,
}

impl<R: BufRead> DecryptReader<R> {
    /// Starts decrypting `inner` under `key` with the manifest's nonce prefix.
    pub fn new(inner: R, key: &BackupKey, prefix: &[u8; NONCE_PREFIX_BYTES]) -> Self {
        DecryptReader {
            inner,
            decryptor: Some(DecryptorBE32::from_aead(
                key.cipher(),
                prefix.as_slice().into(),
            )),
            plain: Vec::new(),
            pos: 0,
            segment: 0,
        }
    }

    fn next_segment(&mut self) -> io::Result<()> {
        if self.decryptor.is_none() {
            return Ok(());
        }
        let mut sealed = Vec::with_capacity(SEGMENT_BYTES + TAG_BYTES);
        (&mut self.inner)
            .take((SEGMENT_BYTES + TAG_BYTES) as u64)
            .read_to_end(&mut sealed)?;
        let at_end = self.inner.fill_buf()?.is_empty();
        let bad = |what: &str, segment: u64| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decryption failed at segment {segment}: {what}"),
            )
        };
        if sealed.len() < TAG_BYTES {
            return Err(bad("the encrypted payload is truncated", self.segment));
        }
        let plain = if at_end {
            let decryptor = self.decryptor.take().ok_or_else(|| bad("finished", 0))?;
            decryptor.decrypt_last(sealed.as_slice()).map_err(|_| {
                bad(
                    "wrong key, or the payload is corrupted or truncated",
                    self.segment,
                )
            })?
        } else {
            let decryptor = self.decryptor.as_mut().ok_or_else(|| bad("finished", 0))?;
            decryptor
                .decrypt_next(sealed.as_slice())
                .map_err(|_| bad("wrong key, or the payload is corrupted", self.segment))?
        };
        self.segment += 1;
        self.plain = plain;
        self.pos = 0;
        Ok(())
    }
}

impl<R: BufRead> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if self.decryptor.is_none() {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BackupKey {
        BackupKey { bytes: [byte; 32] }
    }

    fn seal(data: &[u8], k: &BackupKey, prefix: &[u8; 7]) -> Vec<u8> {
        let mut w = EncryptWriter::new(Vec::new(), k, prefix);
        w.write_all(data).expect("write");
        w.finish().expect("finish")
    }

    fn open(sealed: &[u8], k: &BackupKey, prefix: &[u8; 7]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        DecryptReader::new(sealed, k, prefix).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_segment_boundaries() {
        let prefix = random_nonce_prefix();
        for len in [
            0,
            1,
            SEGMENT_BYTES - 1,
            SEGMENT_BYTES,
            SEGMENT_BYTES + 1,
            3 * SEGMENT_BYTES,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&data, &key(1), &prefix);
            assert_eq!(
                open(&sealed, &key(1), &prefix).expect("opens"),
                data,
                "{len}"
            );
        }
    }

    #[test]
    fn wrong_key_truncation_and_tampering_are_refused() {
        let prefix = random_nonce_prefix();
        let data = vec![7u8; 2 * SEGMENT_BYTES + 10];
        let sealed = seal(&data, &key(1), &prefix);
        assert!(open(&sealed, &key(2), &prefix).is_err(), "wrong key");
        // Cut exactly at a segment boundary: the remaining last segment lacks the "last" flag.
        let cut = &sealed[..2 * (SEGMENT_BYTES + TAG_BYTES)];
        assert!(
            open(cut, &key(1), &prefix).is_err(),
            "truncated at a boundary"
        );
        assert!(open(&sealed[..sealed.len() - 1], &key(1), &prefix).is_err());
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(open(&flipped, &key(1), &prefix).is_err(), "bit flip");
    }

    #[test]
    fn keys_parse_from_base64_and_never_print() {
        let text = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let k = BackupKey::from_base64(&format!(" {text}\n")).expect("valid");
        assert!(!format!("{k:?}").contains(&text));
        assert_eq!(k.id().len(), 16);
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        let err = BackupKey::from_base64(&short).expect_err("16 bytes");
        assert!(err.to_string().contains("32 bytes"), "{err}");
        assert!(BackupKey::from_base64("not base64!").is_err());
    }
}
