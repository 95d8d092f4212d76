//! Account creation: the one way a user and their brokerage account come to exist, whoever asks
//! (registration, the admin bootstrap at start-up, the demo).
//!
//! It applies the username and password rules of [`crate::input`], hashes the password off the
//! async workers, and stores the user under the key of [`crate::input::username_key`], so a name
//! that differs from an existing one only in case or in look-alike characters is taken.

use crate::auth::Role;
use crate::error::ApiError;
use crate::input::{self, InputError};
use crate::passwords::{HashError, Passwords};
use crate::store::{CreateUserError, Store, UserRecord};

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The username or password breaks its rule (422).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The name, or one the same under case folding and confusables, exists (409).
    #[error(
        "username {0:?} is taken (names that differ only in case or look-alike characters are the same name)"
    )]
    Taken(String),
    /// Every hashing slot is taken (503 `overloaded`).
    #[error("too many password checks at once, retry shortly")]
    Overloaded,
    /// Hashing or the database failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<HashError> for AccountError {
    fn from(e: HashError) -> AccountError {
        match e {
            HashError::Overloaded => AccountError::Overloaded,
            HashError::Failed(e) => AccountError::Failed(e),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        match e {
            AccountError::Input(e) => e.into(),
            e @ AccountError::Taken(_) => ApiError::Conflict(e.to_string()),
            e @ AccountError::Overloaded => ApiError::Overloaded(e.to_string()),
            AccountError::Failed(e) => ApiError::Internal(e),
            AccountError::Db(e) => e.into(),
        }
    }
}

/// Creates a user with `role` and an empty account, audited as `user.registered`. The password
/// is hashed in the bounded pool `passwords` (off the async workers).
pub async fn create(
    store: &Store,
    passwords: &Passwords,
    username: &str,
    password: &str,
    role: Role,
    request_id: Option<&str>,
) -> Result<UserRecord, AccountError> {
    input::username("username", username)?;
    input::password("password", password)?;
    let hash = passwords.hash(password.to_owned()).await?;
    let key = input::username_key(username);
    store
        .create_user(username, &key, &hash, role, request_id)
        .await
        .map_err(|e| match e {
            CreateUserError::Taken => AccountError::Taken(username.to_owned()),
            CreateUserError::Db(e) => AccountError::Db(e),
        })
}
