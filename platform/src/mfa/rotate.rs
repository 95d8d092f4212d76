//! `tradeplane-platform rotate-keys`: re-encrypts every TOTP secret that is not sealed with the
//! current `MFA_ENCRYPTION_KEY`, opening each with the key it names (the current one or one of
//! `MFA_ENCRYPTION_KEYS_OLD`). Run it after moving the old key into `MFA_ENCRYPTION_KEYS_OLD`
//! and setting a new `MFA_ENCRYPTION_KEY` (docs/security.md, "Rotating the key"); once it
//! reports no failures the old key can be dropped.

use crate::backup::{EXIT_DATABASE, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE};
use crate::config::Config;
use crate::store::{Store, StoreOptions};

use super::MfaKeyring;

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Secrets re-encrypted under the current key.
    pub resealed: usize,
    /// Secrets that could not be opened (their key is missing, or they are corrupt): user ids.
    pub failed: Vec<i64>,
}

/// Re-encrypts every secret not under the current key.
pub async fn rotate(store: &Store, keys: &MfaKeyring) -> Result<Rotation, sqlx::Error> {
    let mut rotation = Rotation::default();
    for (user_id, key_id, sealed) in store.mfa_secrets_not_under(keys.current_id()).await? {
        let resealed = keys
            .open(user_id, &key_id, &sealed)
            .and_then(|secret| keys.seal(user_id, &secret));
        match resealed {
            Ok((new_id, new_sealed)) => {
                if store
                    .mfa_reseal(user_id, &key_id, &new_id, &new_sealed)
                    .await?
                {
                    rotation.resealed += 1;
                }
            }
            Err(e) => {
                tracing::warn!(user_id, error = %e, "cannot re-encrypt a TOTP secret");
                rotation.failed.push(user_id);
            }
        }
    }
    Ok(rotation)
}

/// The subcommand; returns the exit code: 0 done, 1 some secrets could not be opened, 2 no
/// `MFA_ENCRYPTION_KEY`, 4 database failure.
pub async fn run(config: &Config) -> u8 {
    let Some(keys) = config.mfa_keys.as_deref() else {
        eprintln!(
            "tradeplane-platform rotate-keys: MFA_ENCRYPTION_KEY is not set (the key to encrypt under)"
        );
        return EXIT_USAGE;
    };
    let store = match Store::open(&StoreOptions {
        url: config.database_url.clone(),
        max_connections: 2,
        acquire_timeout: config.database_connect_timeout,
        statement_timeout: None,
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tradeplane-platform rotate-keys: DATABASE_URL cannot be used: {e}");
            return EXIT_DATABASE;
        }
    };
    let result = match store.migrate().await {
        Ok(()) => rotate(&store, keys).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    store.close().await;
    match result {
        Ok(r) if r.failed.is_empty() => {
            println!(
                "re-encrypted {} TOTP secret(s) under key {}",
                r.resealed,
                keys.current_id()
            );
            EXIT_OK
        }
        Ok(r) => {
            eprintln!(
                "re-encrypted {} TOTP secret(s); {} could not be opened (users {:?}): add their key to MFA_ENCRYPTION_KEYS_OLD",
                r.resealed,
                r.failed.len(),
                r.failed
            );
            EXIT_INTERNAL
        }
        Err(e) => {
            eprintln!("tradeplane-platform rotate-keys: database failure: {e}");
            EXIT_DATABASE
        }
    }
}
