//! TOTP secrets at rest: AES-256-GCM with a key from `MFA_ENCRYPTION_KEY`, every ciphertext
//! stored with the id of the key that sealed it, so keys rotate: the previous keys stay in
//! `MFA_ENCRYPTION_KEYS_OLD` for decrypting until `tradeplane-platform rotate-keys` has
//! re-encrypted every secret under the current key (docs/security.md).
//!
//! A sealed secret is `v1.` + base64(12-byte random nonce ‖ ciphertext ‖ tag). The user id is the
//! associated data, so a ciphertext copied onto another user's row does not decrypt.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use sha2::{Digest, Sha256};

const VERSION: &str = "v1.";
const NONCE_BYTES: usize = 12;

/// One 256-bit key and its public id. `Debug` prints the id only.
#[derive(Clone)]
pub struct MfaKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MfaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MfaKey(id {})", self.id)
    }
}

impl MfaKey {
    /// Parses standard base64 of exactly 32 bytes (`openssl rand -base64 32`).
    pub fn from_base64(text: &str) -> Result<MfaKey, String> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("not valid base64 ({e}); use `openssl rand -base64 32`"))?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| {
            format!(
                "must decode to 32 bytes, got {} (use `openssl rand -base64 32`)",
                v.len()
            )
        })?;
        let mut h = Sha256::new();
        h.update(b"tradeplane-mfa-key-id\0");
        h.update(bytes);
        Ok(MfaKey {
            id: hex::encode(&h.finalize()[..8]),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// The key's public fingerprint (16 hex digits), stored beside each secret it sealed.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key and the old ones still accepted for decryption.
#[derive(Debug, Clone)]
pub struct MfaKeyring {
    current: MfaKey,
    old: Vec<MfaKey>,
}

/// Why a stored secret could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The secret was sealed with a key that is neither current nor listed as old.
    #[error(
        "the TOTP secret was encrypted with key {0}, which is neither MFA_ENCRYPTION_KEY nor in MFA_ENCRYPTION_KEYS_OLD"
    )]
    UnknownKey(String),
    /// Malformed or tampered ciphertext, or the wrong user (or, sealing, a failed encryption).
    #[error("the stored TOTP secret does not decrypt (tampered, or copied from another user)")]
    Corrupt,
}

impl MfaKeyring {
    /// The keyring of `MFA_ENCRYPTION_KEY` and the comma-separated `MFA_ENCRYPTION_KEYS_OLD`.
    pub fn parse(current: &str, old: Option<&str>) -> Result<MfaKeyring, (&'static str, String)> {
        let current = MfaKey::from_base64(current).map_err(|e| ("MFA_ENCRYPTION_KEY", e))?;
        let old = old
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| MfaKey::from_base64(s).map_err(|e| ("MFA_ENCRYPTION_KEYS_OLD", e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MfaKeyring { current, old })
    }

    /// The id of the key new secrets are sealed with.
    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// Seals `secret` of user `user_id` under the current key: `(key id, ciphertext)`.
    pub fn seal(&self, user_id: i64, secret: &[u8]) -> Result<(String, String), CryptoError> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(user_id);
        let sealed = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Corrupt)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok((
            self.current.id.clone(),
            format!(
                "{VERSION}{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
        ))
    }

    /// Opens a secret sealed by [`MfaKeyring::seal`] with the key `key_id` (current or old).
    pub fn open(&self, user_id: i64, key_id: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or(CryptoError::Corrupt)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(user_id),
                },
            )
            .map_err(|_| CryptoError::Corrupt)
    }
}

fn aad(user_id: i64) -> Vec<u8> {
    format!("tradeplane-mfa-secret:v1:{user_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "HxcdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn seals_open_only_with_the_key_and_the_user() {
        let ring = MfaKeyring::parse(A, None).expect("key");
        let (id, sealed) = ring.seal(7, b"twenty secret bytes!").expect("seal");
        assert_eq!(id, ring.current_id());
        assert!(!sealed.contains("twenty"));
        assert_eq!(
            ring.open(7, &id, &sealed).expect("open"),
            b"twenty secret bytes!"
        );
        assert_eq!(
            ring.open(8, &id, &sealed),
            Err(CryptoError::Corrupt),
            "other user"
        );
        let mut tampered = sealed.clone();
        tampered.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
        assert_eq!(ring.open(7, &id, &tampered), Err(CryptoError::Corrupt));
        let other = MfaKeyring::parse(B, None).expect("key");
        assert!(matches!(
            other.open(7, &id, &sealed),
            Err(CryptoError::UnknownKey(_))
        ));
        let rotated = MfaKeyring::parse(B, Some(&format!(" {A} ,"))).expect("keys");
        assert_eq!(
            rotated.open(7, &id, &sealed).expect("old key"),
            b"twenty secret bytes!"
        );
        assert_ne!(rotated.current_id(), id);
    }

    #[test]
    fn bad_keys_name_their_variable() {
        assert_eq!(
            MfaKeyring::parse("short", None).expect_err("bad").0,
            "MFA_ENCRYPTION_KEY"
        );
        assert_eq!(
            MfaKeyring::parse(A, Some("QUJD")).expect_err("bad").0,
            "MFA_ENCRYPTION_KEYS_OLD"
        );
    }
}
