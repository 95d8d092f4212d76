//! Durable storage: PostgreSQL in production, an embedded SQLite file by default.
//!
//! [`Store`] is an enum over the two sqlx pools rather than `sqlx::Any`, so each backend keeps its
//! native types (timestamps, advisory locks later) while sharing one SQL text wherever the
//! dialects agree. Each backend has its own migrations folder, applied at start-up with
//! `sqlx::migrate!`. The same test suite runs against both (see `tests/store.rs`).

pub mod approvals;
pub mod archive;
pub(crate) mod audit;
pub mod candles;
pub mod catalog;
pub mod demo;
pub mod dump;
pub mod leases;
pub mod market;
pub mod matching;
pub mod mfa;
pub mod replay;
pub mod restore;
pub mod schema;
pub mod telemetry;
mod users;
pub mod views;

pub use audit::{AuditEvent, AuditFilter, NewAuditEvent};
pub use users::{
    AccountRow, CreateUserError, DepositError, PositionRow, RotateOutcome, UserRecord,
};

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The body is compiled once
/// per backend, so it may use backend-specific sqlx types while the SQL text is shared. With an
/// [`telemetry::Op`] first, the call is timed and counted under that operation (the body must
/// then evaluate to a `Result`; an early `?` return counts as an error).
macro_rules! with_pool {
    ($store:expr, $op:expr, $pool:ident => $body:expr) => {{
        let observation = $crate::store::telemetry::Observation::start($op);
        let result = match $store {
            $crate::store::Store::Postgres($pool) => $body,
            $crate::store::Store::Sqlite($pool) => $body,
        };
        observation.finish(result)
    }};
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Postgres($pool) => $body,
            $crate::store::Store::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A transaction that will write. On SQLite it takes the write lock at `BEGIN IMMEDIATE`: a
/// deferred transaction that reads first and writes later fails at once with
/// `SQLITE_BUSY_SNAPSHOT` when another connection committed in between (WAL mode), which
/// `busy_timeout` cannot wait out, so a logout during the demo's trading answered 503. On
/// PostgreSQL a plain `BEGIN`: its row locks need nothing of the kind.
pub(crate) trait BeginWrite {
    /// The backend.
    type Db: sqlx::Database;
    /// Begins the transaction.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

impl BeginWrite for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A PostgreSQL server; safe for several platform replicas.
    Postgres,
    /// An embedded SQLite file; one replica only.
    Sqlite,
}

/// Connection pool statistics, exported as metrics and in `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Configured upper bound.
    pub max: u32,
}

/// Options for opening a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgres://…` or `sqlite:…`.
    pub url: String,
    /// Pool upper bound.
    pub max_connections: u32,
    /// How long acquiring a connection may take before the call fails.
    pub acquire_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_SECONDS`: the server cancels a statement running longer
    /// (PostgreSQL `statement_timeout` on every connection of the pool and of the pools derived
    /// from it; SQLite's `busy_timeout`, its only bound on a statement, which otherwise runs to
    /// completion on a local file). `None` keeps the server's own setting (PostgreSQL) or 5 s
    /// (SQLite).
    pub statement_timeout: Option<Duration>,
}

/// The lock [`Store::lock_file`] takes; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] std::fs::File);

/// Why [`Store::lock_file`] could not take the lock.
#[derive(Debug, thiserror::Error)]
pub enum FileLockError {
    /// Another process serves this SQLite file.
    #[error(
        "the SQLite database is in use by another tradeplane process (it holds {0}); SQLite serves one replica: stop the other process, or use PostgreSQL for several"
    )]
    InUse(std::path::PathBuf),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {0}: {1}")]
    Io(std::path::PathBuf, #[source] std::io::Error),
}

/// A handle to the database; cheap to clone (it wraps a pool).
#[derive(Debug, Clone)]
pub enum Store {
    /// PostgreSQL pool.
    Postgres(PgPool),
    /// SQLite pool.
    Sqlite(SqlitePool),
}

impl Store {
    /// Opens a pool for the URL's backend. Connections are opened lazily, so a database that is
    /// down at start-up surfaces in [`Store::migrate`] and the health checks rather than here.
    pub fn open(opts: &StoreOptions) -> Result<Store, sqlx::Error> {
        if opts.url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(&opts.url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(opts.statement_timeout.unwrap_or(Duration::from_secs(5)))
                .disable_statement_logging();
            let pool = SqlitePoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                // A local file: a ping before every use is a hand-off to the connection's
                // worker thread (two thread wake-ups) that can only find it open.
                .test_before_acquire(false)
                .connect_lazy_with(connect);
            Ok(Store::Sqlite(pool))
        } else {
            let mut connect = PgConnectOptions::from_str(&opts.url)?
                .application_name("tradeplane-platform")
                // The slow-statement log is ours (see `telemetry`): by operation name, without
                // the SQL text.
                .disable_statement_logging();
            if let Some(timeout) = opts.statement_timeout {
                // Sent in the startup packet, after DATABASE_URL's own `options`: this one wins.
                connect =
                    connect.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_lazy_with(connect);
            Ok(Store::Postgres(pool))
        }
    }

    /// Applies pending migrations for this backend. Safe to run from several replicas at once:
    /// sqlx takes a database lock while migrating. A database that a newer build migrated is
    /// accepted only if those newer migrations are all `expand` ones (see [`schema`]); otherwise
    /// this fails with [`schema::NewerSchema`] inside `MigrateError::Source`.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        use sqlx::migrate::MigrateError;
        let known = self.schema_version();
        let newer = schema::applied_beyond(self, known)
            .await
            .map_err(MigrateError::Execute)?;
        let blocking: Vec<(i64, String)> = newer
            .iter()
            .filter(|(_, d)| !schema::is_expand(d))
            .cloned()
            .collect();
        if !blocking.is_empty() {
            return Err(MigrateError::Source(Box::new(schema::NewerSchema {
                known,
                blocking,
            })));
        }
        if let Some((version, _)) = newer.last() {
            tracing::warn!(
                known,
                database = version,
                "the database was migrated by a newer release with expand-only migrations; running on it"
            );
        }
        match self {
            Store::Postgres(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/postgres");
                migrator.set_ignore_missing(!newer.is_empty());
                // Migrations are exempt from DATABASE_STATEMENT_TIMEOUT_SECONDS (an index build
                // on a large table takes longer): they run on a connection of their own, taken
                // out of the pool and closed afterwards, whose session turns the timeout off.
                let mut conn = pool.acquire().await?.detach();
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut conn)
                    .await?;
                let result = migrator.run(&mut conn).await;
                sqlx::Connection::close(conn).await.ok();
                result
            }
            Store::Sqlite(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/sqlite");
                migrator.set_ignore_missing(!newer.is_empty());
                migrator.run(pool).await
            }
        }
    }

    /// The newest migration version known to this build, for backups and `/health`.
    pub fn schema_version(&self) -> i64 {
        let migrator = match self {
            Store::Postgres(_) => sqlx::migrate!("./migrations/postgres"),
            Store::Sqlite(_) => sqlx::migrate!("./migrations/sqlite"),
        };
        migrator.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// A round trip to the database, used by the health checker.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, telemetry::Op::Ping, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    /// Why a new connection cannot be opened right now (refused, unknown host, authentication
    /// failed, …), or `None` when one opens. The pool's own error for the same situation only
    /// says that it timed out waiting, so start-up asks this to name the cause. PostgreSQL only
    /// (an SQLite file opens or fails with its own message).
    pub async fn connect_error(&self) -> Option<String> {
        use sqlx::Connection;
        let Store::Postgres(pool) = self else {
            return None;
        };
        let options = pool.connect_options();
        let timeout = pool.options().get_acquire_timeout();
        match tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "no answer from the server within {timeout:?} (host unreachable or filtered?)"
            )),
        }
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Postgres(_) => Backend::Postgres,
            Store::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Current pool statistics.
    pub fn pool_stats(&self) -> PoolStats {
        with_pool!(self, pool => PoolStats {
            size: pool.size(),
            idle: pool.num_idle() as u32,
            max: pool.options().get_max_connections(),
        })
    }

    /// For SQLite, takes an exclusive lock on `<database file>.lock` for as long as the returned
    /// guard lives: one platform process serves an SQLite file (two would race on migrations and
    /// each match against a stale book). `Ok(None)` for PostgreSQL and in-memory databases;
    /// [`FileLockError::InUse`] when another process holds it.
    pub fn lock_file(&self) -> Result<Option<FileLock>, FileLockError> {
        let Store::Sqlite(pool) = self else {
            return Ok(None);
        };
        let file = pool.connect_options().get_filename().to_path_buf();
        if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
            return Ok(None);
        }
        let mut path = file.into_os_string();
        path.push(".lock");
        let path = std::path::PathBuf::from(path);
        let handle = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FileLockError::Io(path.clone(), e))?;
        match handle.try_lock() {
            Ok(()) => Ok(Some(FileLock(handle))),
            Err(std::fs::TryLockError::WouldBlock) => Err(FileLockError::InUse(path)),
            Err(std::fs::TryLockError::Error(e)) => Err(FileLockError::Io(path, e)),
        }
    }

    /// Closes every connection; used at the end of a graceful shutdown.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}
