//! MFA rows: enrolments with their encrypted TOTP secrets, recovery codes and login
//! challenges (the rules are in [`crate::mfa`]).

use super::BeginWrite as _;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::audit::audit_in;
use super::{NewAuditEvent, Store, with_pool};

/// A user's MFA row: the sealed secret and whether a code confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRecord {
    /// The user.
    pub user_id: i64,
    /// Id of the key that sealed the secret.
    pub key_id: String,
    /// The sealed secret ([`crate::mfa::crypto`]).
    pub secret_ciphertext: String,
    /// Whether the enrolment was confirmed: MFA is on.
    pub enabled: bool,
}

/// A live login challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRow {
    /// Row id.
    pub id: i64,
    /// Whose login it completes.
    pub user_id: i64,
}

impl Store {
    /// The user's MFA row, if they enrolled.
    pub async fn mfa_record(&self, user_id: i64) -> Result<Option<MfaRecord>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserRead, pool => {
            let row = sqlx::query(
                "SELECT user_id, key_id, secret_ciphertext, enabled_at IS NOT NULL AS enabled FROM user_mfa WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(MfaRecord {
                    user_id: r.try_get("user_id")?,
                    key_id: r.try_get("key_id")?,
                    secret_ciphertext: r.try_get("secret_ciphertext")?,
                    enabled: r.try_get("enabled")?,
                })
            })
            .transpose()
        })
    }

    /// Starts (or restarts) an enrolment with a new sealed secret, audited as `mfa_enrolled`.
    /// `false` when MFA is already on (nothing written).
    pub async fn mfa_enroll(
        &self,
        user_id: i64,
        key_id: &str,
        secret_ciphertext: &str,
        request_id: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let now = Utc::now();
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM user_mfa WHERE user_id = $1 AND enabled_at IS NULL")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO user_mfa (user_id, key_id, secret_ciphertext, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(key_id)
            .bind(secret_ciphertext)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                audit_in!(&mut *tx, &NewAuditEvent {
                    actor: format!("user:{user_id}"),
                    action: "mfa_enrolled".into(),
                    subject: Some(format!("user:{user_id}")),
                    request_id: request_id.map(str::to_owned),
                    details: serde_json::json!({ "key_id": key_id }),
                })?;
            }
            tx.commit().await?;
            Ok(inserted)
        }.await)
    }

    /// Turns a pending enrolment on: records `step` as used, replaces the recovery codes by
    /// `code_hashes`, audits `mfa_confirmed`. `false` when there was no pending enrolment.
    pub async fn mfa_confirm(
        &self,
        user_id: i64,
        step: i64,
        code_hashes: &[String],
        request_id: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let now = Utc::now();
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let confirmed = sqlx::query(
                "UPDATE user_mfa SET enabled_at = $2, last_used_step = $3 WHERE user_id = $1 AND enabled_at IS NULL",
            )
            .bind(user_id)
            .bind(now)
            .bind(step)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !confirmed {
                return Ok(false);
            }
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for hash in code_hashes {
                sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(user_id)
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            audit_in!(&mut *tx, &NewAuditEvent {
                actor: format!("user:{user_id}"),
                action: "mfa_confirmed".into(),
                subject: Some(format!("user:{user_id}")),
                request_id: request_id.map(str::to_owned),
                details: serde_json::json!({ "recovery_codes": code_hashes.len() }),
            })?;
            tx.commit().await?;
            Ok(true)
        }.await)
    }

    /// Spends TOTP step `step` of an enabled MFA: `false` when that step or a later one was
    /// already used (a replay) or MFA is off.
    pub async fn mfa_use_step(&self, user_id: i64, step: i64) -> Result<bool, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => sqlx::query(
            "UPDATE user_mfa SET last_used_step = $2 WHERE user_id = $1 AND enabled_at IS NOT NULL \
             AND (last_used_step IS NULL OR last_used_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
    }

    /// Spends a recovery code (by hash): `false` when unknown or already used.
    pub async fn mfa_use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &str,
    ) -> Result<bool, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
    }

    /// Unused recovery codes of the user.
    pub async fn mfa_recovery_codes_left(&self, user_id: i64) -> Result<i64, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserRead, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await)
    }

    /// Removes the user's MFA (secret, recovery codes, challenges), audited as
    /// `mfa_disabled` with `details`. `false` when there was none.
    pub async fn mfa_disable(
        &self,
        user_id: i64,
        request_id: Option<&str>,
        details: serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let deleted = sqlx::query("DELETE FROM user_mfa WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            for table in ["mfa_recovery_codes", "mfa_challenges"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            if deleted {
                audit_in!(&mut *tx, &NewAuditEvent {
                    actor: format!("user:{user_id}"),
                    action: "mfa_disabled".into(),
                    subject: Some(format!("user:{user_id}")),
                    request_id: request_id.map(str::to_owned),
                    details,
                })?;
            }
            tx.commit().await?;
            Ok(deleted)
        }.await)
    }

    /// Stores a login challenge (by hash), and drops challenges that expired an hour ago.
    pub async fn insert_mfa_challenge(
        &self,
        user_id: i64,
        challenge_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
                .bind(now - chrono::Duration::hours(1))
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO mfa_challenges (user_id, challenge_hash, expires_at, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(user_id)
            .bind(challenge_hash)
            .bind(expires_at)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        }.await)
    }

    /// The live challenge with this hash: unused, unexpired at `now`, with fewer than
    /// `max_attempts` wrong codes.
    pub async fn mfa_challenge(
        &self,
        challenge_hash: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<ChallengeRow>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserRead, pool => {
            let row = sqlx::query(
                "SELECT id, user_id FROM mfa_challenges WHERE challenge_hash = $1 AND used_at IS NULL \
                 AND expires_at > $2 AND attempts < $3",
            )
            .bind(challenge_hash)
            .bind(now)
            .bind(max_attempts)
            .fetch_optional(pool)
            .await?;
            row.map(|r| Ok(ChallengeRow { id: r.try_get("id")?, user_id: r.try_get("user_id")? }))
                .transpose()
        })
    }

    /// Counts a wrong code against a challenge.
    pub async fn mfa_challenge_failed(&self, id: i64) -> Result<(), sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => sqlx::query(
            "UPDATE mfa_challenges SET attempts = attempts + 1 WHERE id = $1",
        )
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// Spends a challenge: `false` when it was already spent (a concurrent completion).
    pub async fn consume_mfa_challenge(&self, id: i64) -> Result<bool, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => sqlx::query(
            "UPDATE mfa_challenges SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
        )
        .bind(id)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
    }

    /// Every stored secret not sealed with `key_id`: `(user id, key id, ciphertext)`, for
    /// re-encryption under the current key.
    pub async fn mfa_secrets_not_under(
        &self,
        key_id: &str,
    ) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserRead, pool => sqlx::query_as(
            "SELECT user_id, key_id, secret_ciphertext FROM user_mfa WHERE key_id <> $1 ORDER BY user_id",
        )
        .bind(key_id)
        .fetch_all(pool)
        .await)
    }

    /// Replaces a sealed secret, if it is still the one sealed with `old_key_id`; audited as
    /// `mfa.key_rotated`. `false` when the row changed meanwhile.
    pub async fn mfa_reseal(
        &self,
        user_id: i64,
        old_key_id: &str,
        key_id: &str,
        secret_ciphertext: &str,
    ) -> Result<bool, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE user_mfa SET key_id = $3, secret_ciphertext = $4 WHERE user_id = $1 AND key_id = $2",
            )
            .bind(user_id)
            .bind(old_key_id)
            .bind(key_id)
            .bind(secret_ciphertext)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if updated {
                audit_in!(&mut *tx, &NewAuditEvent {
                    actor: "system".into(),
                    action: "mfa.key_rotated".into(),
                    subject: Some(format!("user:{user_id}")),
                    request_id: None,
                    details: serde_json::json!({ "from_key_id": old_key_id, "to_key_id": key_id }),
                })?;
            }
            tx.commit().await?;
            Ok(updated)
        }.await)
    }
}
