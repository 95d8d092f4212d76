//! Users, their accounts and refresh tokens.

use super::BeginWrite as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::audit::audit_in;
use super::{NewAuditEvent, Store, with_pool};
use crate::auth::Role;

/// A stored user with the id of their brokerage account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// User id.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// The user's brokerage account.
    pub account_id: i64,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The username is taken.
    #[error("username already taken")]
    Taken,
    /// Any database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Why a cash deposit was refused.
#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    /// The new balance would not fit the account's 64-bit cash column; nothing was written.
    #[error("the deposit would overflow the account's cash balance")]
    Overflow,
    /// The amount is not positive.
    #[error("the deposit amount must be positive")]
    NotPositive,
    /// Any database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was valid and is now spent; a new one was stored in the same family (the
    /// session id).
    Rotated {
        /// The token's owner.
        user: UserRecord,
        /// The refresh-token family: the session id.
        family: String,
    },
    /// The token had already been used: its whole family is revoked (likely theft).
    Reused {
        /// The revoked family: the session that ended.
        family: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// An account's balances as stored (amounts in raw `10^-8` units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRow {
    /// Account id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// Total cash.
    pub cash: i64,
    /// Cash reserved by resting buys.
    pub cash_reserved: i64,
    /// May go short.
    pub allow_short: bool,
    /// Limit of resting orders.
    pub max_open_orders: i32,
    /// Resting orders now.
    pub open_orders: i32,
    /// Positions.
    pub positions: Vec<PositionRow>,
}

/// One stored position (amounts in raw `10^-8` units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionRow {
    /// Instrument.
    pub symbol: String,
    /// Signed quantity.
    pub qty: i64,
    /// Reserved by resting sells.
    pub reserved: i64,
    /// Signed cost of the open quantity.
    pub cost_basis: i64,
    /// Realized P&L.
    pub realized_pnl: i64,
}

const USER_COLUMNS: &str = "u.id, u.username, u.password_hash, u.role, a.id AS account_id";

fn user_from_row<R: Row>(row: &R) -> Result<UserRecord, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        account_id: row.try_get("account_id")?,
    })
}

impl Store {
    /// Creates a user and their (empty) account in one transaction, with an audit record.
    /// `username_key` ([`crate::input::username_key`]) is unique: a name with the key of an
    /// existing one is [`CreateUserError::Taken`].
    pub async fn create_user(
        &self,
        username: &str,
        username_key: &str,
        password_hash: &str,
        role: Role,
        request_id: Option<&str>,
    ) -> Result<UserRecord, CreateUserError> {
        let now: DateTime<Utc> = Utc::now();
        let result: Result<UserRecord, sqlx::Error> = with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let user_id: i64 = sqlx::query(
                "INSERT INTO users (username, username_key, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(username)
            .bind(username_key)
            .bind(password_hash)
            .bind(role.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            let account_id: i64 = sqlx::query("INSERT INTO accounts (user_id, created_at) VALUES ($1, $2) RETURNING id")
                .bind(user_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            audit_in!(&mut *tx, &NewAuditEvent {
                actor: format!("user:{user_id}"),
                action: "user.registered".into(),
                subject: Some(format!("account:{account_id}")),
                request_id: request_id.map(str::to_owned),
                details: serde_json::json!({ "username": username, "role": role.as_str() }),
            })?;
            tx.commit().await?;
            Ok(UserRecord {
                id: user_id,
                username: username.to_owned(),
                password_hash: password_hash.to_owned(),
                role,
                account_id,
            })
        }.await);
        result.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => CreateUserError::Taken,
            _ => CreateUserError::Db(e),
        })
    }

    /// Finds a user by login name: the exact name, else the name with the same
    /// [`crate::input::username_key`] (so `Alice` logs in as `alice`).
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, sqlx::Error> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN accounts a ON a.user_id = u.id \
             WHERE u.username = $1 OR u.username_key = $2 \
             ORDER BY CASE WHEN u.username = $1 THEN 0 ELSE 1 END LIMIT 1"
        );
        let key = crate::input::username_key(username);
        with_pool!(self, super::telemetry::Op::UserRead, pool => {
            let row = sqlx::query(&sql).bind(username).bind(&key).fetch_optional(pool).await?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    /// Finds a user by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, sqlx::Error> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN accounts a ON a.user_id = u.id WHERE u.id = $1"
        );
        with_pool!(self, super::telemetry::Op::UserRead, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    /// Stores a new refresh token (by hash) in `family`.
    pub async fn insert_refresh_token(
        &self,
        user_id: i64,
        family: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserWrite, pool => sqlx::query(
            "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(family)
        .bind(token_hash)
        .bind(expires_at)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// Spends a refresh token and stores its successor in one transaction. Presenting a token
    /// that was already spent revokes its whole family, so a stolen token dies with its copy.
    pub async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        new_hash: &str,
        new_expires_at: DateTime<Utc>,
    ) -> Result<RotateOutcome, sqlx::Error> {
        let now = Utc::now();
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let spent = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 \
                 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                 RETURNING user_id, family",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(spent) = spent else {
                let known = sqlx::query("SELECT family, used_at IS NOT NULL AS used FROM refresh_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                let outcome = match known {
                    Some(row) if row.try_get::<bool, _>("used")? => {
                        let family: String = row.try_get("family")?;
                        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL")
                            .bind(&family)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        RotateOutcome::Reused { family }
                    }
                    _ => RotateOutcome::Invalid,
                };
                tx.commit().await?;
                return Ok(outcome);
            };
            let user_id: i64 = spent.try_get("user_id")?;
            let family: String = spent.try_get("family")?;
            sqlx::query(
                "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(&family)
            .bind(new_hash)
            .bind(new_expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let sql = format!("SELECT {USER_COLUMNS} FROM users u JOIN accounts a ON a.user_id = u.id WHERE u.id = $1");
            let row = sqlx::query(&sql).bind(user_id).fetch_one(&mut *tx).await?;
            let user = user_from_row(&row)?;
            tx.commit().await?;
            Ok(RotateOutcome::Rotated { user, family })
        }.await)
    }

    /// Revokes the family of a refresh token (logout). Returns the family (the session id) when
    /// the token is known.
    pub async fn revoke_refresh_family(
        &self,
        token_hash: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let now = Utc::now();
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let family: Option<String> =
                sqlx::query_scalar("SELECT family FROM refresh_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(family) = &family {
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL AND family = $1")
                    .bind(family)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(family)
        }.await)
    }

    /// Whether session `family` of user `user_id` is live: it has a refresh token that is neither
    /// revoked nor expired, and the user and their account `account_id` still exist.
    pub async fn session_live(
        &self,
        user_id: i64,
        account_id: i64,
        family: &str,
    ) -> Result<bool, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserRead, pool => {
            let row = sqlx::query(
                "SELECT 1 FROM refresh_tokens t \
                 JOIN users u ON u.id = t.user_id \
                 JOIN accounts a ON a.user_id = u.id \
                 WHERE t.family = $1 AND t.user_id = $2 AND a.id = $3 \
                 AND t.revoked_at IS NULL AND t.expires_at > $4 LIMIT 1",
            )
            .bind(family)
            .bind(user_id)
            .bind(account_id)
            .bind(Utc::now())
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }

    /// Credits cash to an account (an admin deposit), with its audit record, atomically.
    /// Returns the new cash balance, or `None` when the account does not exist. A deposit whose
    /// new balance would not fit 64 bits is refused before anything is written (PostgreSQL would
    /// fail the statement; SQLite would silently turn the sum into a float).
    pub async fn deposit(
        &self,
        account_id: i64,
        amount_raw: i64,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<Option<i64>, DepositError> {
        if amount_raw <= 0 {
            return Err(DepositError::NotPositive);
        }
        let headroom = i64::MAX - amount_raw;
        with_pool!(self, super::telemetry::Op::UserWrite, pool => async {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query("UPDATE accounts SET cash = cash + $2 WHERE id = $1 AND cash <= $3 RETURNING cash")
                .bind(account_id)
                .bind(amount_raw)
                .bind(headroom)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                let exists = sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
                    .bind(account_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                return if exists { Err(DepositError::Overflow) } else { Ok(None) };
            };
            let cash: i64 = row.try_get(0)?;
            audit_in!(&mut *tx, &NewAuditEvent {
                actor: actor.to_owned(),
                action: "account.deposit".into(),
                subject: Some(format!("account:{account_id}")),
                request_id: request_id.map(str::to_owned),
                details: serde_json::json!({ "amount_raw": amount_raw, "cash_raw": cash }),
            })?;
            tx.commit().await?;
            Ok(Some(cash))
        }.await)
    }

    /// An account with its positions.
    pub async fn account(&self, account_id: i64) -> Result<Option<AccountRow>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::UserRead, pool => async {
            let Some(row) = sqlx::query(
                "SELECT id, user_id, cash, cash_reserved, allow_short, max_open_orders, open_orders FROM accounts WHERE id = $1",
            )
            .bind(account_id)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let positions = sqlx::query(
                "SELECT symbol, qty, reserved, cost_basis, realized_pnl FROM positions WHERE account_id = $1 ORDER BY symbol",
            )
            .bind(account_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|p| {
                Ok(PositionRow {
                    symbol: p.try_get("symbol")?,
                    qty: p.try_get("qty")?,
                    reserved: p.try_get("reserved")?,
                    cost_basis: p.try_get("cost_basis")?,
                    realized_pnl: p.try_get("realized_pnl")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(Some(AccountRow {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                cash: row.try_get("cash")?,
                cash_reserved: row.try_get("cash_reserved")?,
                allow_short: row.try_get("allow_short")?,
                max_open_orders: row.try_get("max_open_orders")?,
                open_orders: row.try_get("open_orders")?,
                positions,
            }))
        }.await)
    }
}
