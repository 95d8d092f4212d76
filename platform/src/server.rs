//! The `serve` command: start-up, serving, and the graceful drain on SIGTERM.
//!
//! The listener is bound first, so that the probes answer while migrations run: liveness says
//! 200, startup and readiness say 503 until start-up completes. A database that is down at
//! start-up is retried with backoff rather than crashing the pod into a restart loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{Store, StoreOptions};

/// Builds the shared state from a configuration: opens the store and the cache, nothing else.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let store = Store::open(&StoreOptions {
        url: config.database_url.clone(),
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_connect_timeout,
        statement_timeout: config.observability.db_statement_timeout,
    })
    .context("DATABASE_URL: cannot be used")?;
    crate::store::telemetry::set_slow_threshold(config.observability.db_slow_statement);
    crate::audit::runtime::set_large_order_notional(tradeplane_engine::num::Cash::from_raw(
        i128::from(config.observability.audit_large_order_notional)
            * i128::from(tradeplane_engine::num::SCALE),
    ));
    let cache = match &config.redis_url {
        Some(url) => Cache::connect(url, &config.redis_key_prefix)
            .await
            .context("REDIS_URL: cannot be used")?,
        None => Cache::local(&config.redis_key_prefix),
    };
    let data_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let health = Health::new(
        store.clone(),
        cache.clone(),
        data_dir,
        config.ready_db_failure_grace,
    );
    let metrics = Metrics::with_latency_threshold(config.observability.slo.latency_threshold)
        .context("registering metrics")?;
    let trading_metrics = crate::trading::TradingMetrics::register(metrics.registry())
        .context("registering trading metrics")?;
    let me = crate::store::leases::Replica {
        id: uuid::Uuid::new_v4().simple().to_string(),
        address: config.advertise_addr.clone(),
    };
    let lease_pool = crate::store::leases::pool(&store, config.matcher_db_timeout);
    let (ownership, forwarder) = match &lease_pool {
        Some(_) => (
            crate::trading::ownership::Ownership::leased(me),
            Some(crate::trading::forward::Forwarder::new(
                crate::trading::forward::ForwardKey::derive(config.jwt_secret.as_bytes()),
            )),
        ),
        None => (crate::trading::ownership::Ownership::single(me), None),
    };
    let trading = crate::trading::Trading::start(
        store.clone(),
        config.instruments.clone(),
        trading_metrics,
        crate::trading::TradingOptions {
            request_timeout: config.request_timeout,
            db_timeout: config.matcher_db_timeout,
            approval_timeout: config.approval_timeout,
            approval_sweep_interval: config.approval_sweep_interval,
        },
        ownership,
        forwarder,
    )?;
    let shutdown = CancellationToken::new();
    trading.spawn_approval_sweeper(shutdown.clone());
    if let Some(pool) = lease_pool {
        trading.spawn_leases(
            pool,
            crate::trading::ownership::LeaseOptions {
                lease: config.symbol_lease,
            },
            shutdown.clone(),
        );
    }
    let redis_client = config
        .redis_url
        .as_deref()
        .map(redis::Client::open)
        .transpose()
        .context("REDIS_URL: cannot be used")?;
    let resilience = crate::resilience::Resilience::new(
        &config.resilience,
        redis_client,
        &config.redis_key_prefix,
        cache.clone(),
        config.instruments.iter().map(|i| i.symbol.clone()),
        metrics.registry(),
    )
    .context("registering resilience metrics")?;
    resilience
        .market
        .spawn_invalidator(&trading, shutdown.clone());
    // The matcher probes its database on its own cadence while it is down; when it answers,
    // the HTTP database breaker closes too, so orders are not held back for its open period.
    {
        let (trading, breaker, stop) = (
            trading.clone(),
            resilience.db_breaker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = trading.database_back() => breaker.success(),
                }
            }
        });
    }
    health.set_breakers(resilience.breakers().map(Clone::clone).to_vec());
    if let Some(url) = &config.redis_url {
        let client = redis::Client::open(url.as_str()).context("REDIS_URL: cannot be used")?;
        crate::trading::fanout::start(&trading, client, &config.redis_key_prefix, shutdown.clone());
    }
    let passwords = crate::passwords::Passwords::new(
        config.password_hash_concurrency,
        config.password_hash_queue,
    )
    .with_metrics(metrics.registry())
    .context("registering password-hashing metrics")?;
    let ws =
        crate::http::ws::WsHub::start(&trading, &config.ws, metrics.registry(), shutdown.clone())
            .context("registering WebSocket metrics")?;
    let mfa = crate::mfa::Mfa::new(
        config.mfa_keys.clone(),
        config.require_admin_mfa,
        metrics.registry(),
    )
    .context("registering MFA metrics")?;
    let config_slo = config.observability.slo;
    Ok(AppState::new(crate::state::Shared {
        ws,
        passwords,
        trading,
        keys: crate::auth::TokenKeys::new(config.jwt_secret.as_bytes()),
        config: Arc::new(config),
        store,
        cache,
        health,
        slo: {
            let slo = crate::slo::Slo::new(config_slo, metrics.http_duration.clone());
            slo.spawn(shutdown.clone());
            slo
        },
        mfa,
        clock: crate::clock::Clock::default(),
        metrics,
        resilience,
        shutdown,
    }))
}

/// Starts the change-log archiver when `ARCHIVE_DEST` is set (PostgreSQL only; the
/// configuration refuses it with SQLite).
pub fn start_archiver(state: &AppState, stop: &CancellationToken) -> anyhow::Result<()> {
    let crate::store::Store::Postgres(pool) = &state.store else {
        return Ok(());
    };
    let Some(archive) = &state.config.archive else {
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Ok(mut conn) = pool.acquire().await
                && let Ok(Some(id)) = crate::store::archive::identity_in(&mut conn).await
            {
                tracing::warn!(archive = %id.archive_id, "the database is archived (every change is logged for point-in-time restore) but this replica has no ARCHIVE_DEST: another replica must ship the log, or run `tradeplane-platform archive disable`");
            }
        });
        return Ok(());
    };
    let metrics = crate::archive::archiver::ArchiveMetrics::new(state.metrics.registry())
        .context("registering archive metrics")?;
    crate::archive::archiver::spawn(
        pool.clone(),
        crate::archive::archiver::ArchiverConfig {
            dest: archive.dest.clone(),
            interval: archive.interval,
            mark_interval: archive.mark_interval,
            key: archive.key.clone(),
            source: crate::backup::describe_database_url(&state.config.database_url),
        },
        metrics,
        stop.clone(),
    );
    Ok(())
}

/// Takes the SQLite file's lock ([`Store::lock_file`]), waiting (and saying why) while another
/// process holds it, as during a rolling restart. `Ok(None)` when `stop` fired first;
/// `Ok(Some(None))` when there is nothing to lock (PostgreSQL).
async fn wait_for_file_lock(
    store: &Store,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Option<crate::store::FileLock>>> {
    let mut waited = Duration::ZERO;
    loop {
        match store.lock_file() {
            Ok(lock) => return Ok(Some(lock)),
            Err(e @ crate::store::FileLockError::InUse(_)) => {
                if waited.as_secs().is_multiple_of(10) {
                    tracing::warn!(waited = ?waited, "{e}; waiting for it to stop");
                }
            }
            Err(e) => return Err(e).context("DATABASE_URL"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_secs(1)) => waited += Duration::from_secs(1),
        }
    }
}

/// Why a migration attempt ended without success.
#[derive(Debug)]
enum MigrateAttempt {
    /// `stop` fired before a retry: give up quietly.
    Stopped,
    /// The migration failed; retried only when the cause is transient. With the cause of a
    /// pool timeout, when a direct connection attempt could name it.
    Failed(sqlx::migrate::MigrateError, Option<String>),
}

/// Runs migrations, retrying transient failures with capped exponential backoff (backon, 250 ms
/// doubling to 10 s, no attempt limit) until they succeed (`Ok(true)`) or `stop` fires
/// (`Ok(false)`). An attempt in progress is never cut short: `stop` ends the wait between
/// attempts, and no attempt starts after it fired. Other errors are returned at once.
pub(crate) async fn migrate_with_retry(
    store: &Store,
    stop: &CancellationToken,
) -> anyhow::Result<bool> {
    use backon::{ExponentialBuilder, Retryable};
    use sqlx::migrate::MigrateError;

    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times();
    let sleep_stop = stop.clone();
    let mut first = true;
    let attempt = || {
        // The first attempt always runs (as `serve` and `migrate` did before backoff existed);
        // a retry after `stop` fired does not.
        let stopped = !std::mem::replace(&mut first, false) && stop.is_cancelled();
        async move {
            if stopped {
                return Err(MigrateAttempt::Stopped);
            }
            match store.migrate().await {
                Ok(()) => Ok(()),
                Err(e @ MigrateError::Execute(sqlx::Error::PoolTimedOut)) => {
                    Err(MigrateAttempt::Failed(e, store.connect_error().await))
                }
                Err(e) => Err(MigrateAttempt::Failed(e, None)),
            }
        }
    };
    let result = attempt
        .retry(backoff)
        .sleep(move |delay| {
            let stop = sleep_stop.clone();
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        })
        .when(
            |e| matches!(e, MigrateAttempt::Failed(MigrateError::Execute(e), _) if is_transient(e)),
        )
        .notify(|e, delay| match e {
            MigrateAttempt::Failed(_, Some(cause)) => {
                tracing::warn!(cause = %cause, retry_in = ?delay, "database not reachable yet ({cause}); retrying migrations");
            }
            MigrateAttempt::Failed(e, None) => {
                tracing::warn!(error = %e, retry_in = ?delay, "database not reachable yet; retrying migrations");
            }
            MigrateAttempt::Stopped => {}
        })
        .await;
    match result {
        Ok(()) => Ok(true),
        Err(MigrateAttempt::Stopped) => Ok(false),
        Err(MigrateAttempt::Failed(e, cause)) => match cause {
            Some(cause) => Err(e).context(format!("applying database migrations ({cause})")),
            None => Err(e).context("applying database migrations"),
        },
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    ) || matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("57P03"))
}

/// Creates the configured admin user if it does not exist yet.
pub async fn ensure_admin(state: &AppState) -> anyhow::Result<()> {
    let Some((username, password)) = &state.config.admin else {
        return Ok(());
    };
    if state.store.find_user(username).await?.is_some() {
        return Ok(());
    }
    match crate::accounts::create(
        &state.store,
        &state.passwords,
        username,
        password,
        crate::auth::Role::Admin,
        None,
    )
    .await
    {
        Ok(user) => {
            tracing::info!(username, user_id = user.id, "admin user created");
            Ok(())
        }
        // Another replica created it first.
        Err(crate::accounts::AccountError::Taken(_)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating the admin user: {e}")),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// Serves until `shutdown` resolves, then drains: readiness fails at once, long-lived connections
/// are told to close, in-flight requests get up to `DRAIN_TIMEOUT_SECONDS`, the pool is closed.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<Stopped> {
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", config.listen_addr))?;
    if config.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret; tokens will not survive a restart"
        );
    }
    let drain_timeout = config.drain_timeout;
    let check_interval = config.health_check_interval;
    let mut serve_options = crate::http::serve::ServeOptions::from_config(&config);
    match crate::http::serve::raise_fd_limit() {
        Ok(limit) => {
            let max =
                crate::http::serve::effective_max_connections(serve_options.max_connections, limit);
            if max < serve_options.max_connections {
                tracing::warn!(
                    max_connections = serve_options.max_connections,
                    applied = max,
                    rlimit_nofile = limit,
                    "MAX_CONNECTIONS lowered to keep file descriptors in reserve"
                );
                serve_options.max_connections = max;
                serve_options.max_connections_per_ip = serve_options
                    .max_connections_per_ip
                    .min(max.saturating_sub(1).max(1));
            }
            tracing::info!(
                rlimit_nofile = limit,
                "open-file limit raised to the hard limit"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let state = build_state(config).await?;
    let conn_metrics = crate::http::serve::ConnMetrics::register(state.metrics.registry())
        .context("registering connection metrics")?;
    tracing::info!(
        addr = %listener.local_addr()?,
        database = ?state.store.backend(),
        cache = ?state.cache.mode(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    let app = crate::http::router(state.clone());
    let stop = state.shutdown.clone();
    let served =
        crate::http::serve::serve(listener, app, serve_options, conn_metrics, stop.clone());
    let crate::http::serve::Served {
        task: mut server,
        in_flight,
    } = served;

    let startup = {
        let state = state.clone();
        let stop = stop.clone();
        async move {
            let Some(file_lock) = wait_for_file_lock(&state.store, &stop).await? else {
                return anyhow::Ok(None);
            };
            if !migrate_with_retry(&state.store, &stop).await? {
                return anyhow::Ok(None);
            }
            ensure_admin(&state).await?;
            start_archiver(&state, &stop)?;
            if state.config.demo {
                let accounts = crate::demo::seed(&state).await?;
                crate::demo::spawn_market_maker(state.clone(), accounts, stop.clone());
            } else {
                crate::demo::retire(&state).await?;
            }
            state.health.run_checks().await;
            state.health.mark_started();
            tracing::info!(
                schema_version = state.store.schema_version(),
                "start-up complete"
            );
            state.health.spawn_checker(check_interval, stop);
            Ok(file_lock)
        }
    };

    tokio::pin!(shutdown);
    let mut startup = std::pin::pin!(startup);
    let mut startup_done = false;
    // Held until the process has drained: no second process serves the same SQLite file.
    let mut _file_lock = None;
    loop {
        tokio::select! {
            res = &mut startup, if !startup_done => {
                startup_done = true;
                match res {
                    Ok(lock) => _file_lock = lock,
                    Err(e) => {
                        stop.cancel();
                        let _ = server.await;
                        return Err(e);
                    }
                }
            }
            res = &mut server => {
                // The server only ends by itself on an I/O error.
                res.context("server task")?.context("serving HTTP")?;
                return Ok(Stopped::Clean);
            }
            _ = &mut shutdown => break,
        }
    }

    tracing::info!(drain_timeout = ?drain_timeout, "draining: readiness now fails, finishing in-flight requests");
    state.health.mark_draining();
    // Hand this replica's symbols over while still serving (other replicas keep forwarding
    // here until they learn the new owners).
    state.trading.hand_over_all(drain_timeout).await;
    stop.cancel();
    let cut = match tokio::time::timeout(drain_timeout, &mut server).await {
        Ok(res) => {
            res.context("server task")?.context("serving HTTP")?;
            0
        }
        Err(_) => {
            let cut = in_flight.get();
            tracing::warn!(
                requests_cut = cut,
                drain_timeout = ?drain_timeout,
                "drain timeout reached with requests still in flight; closing them"
            );
            server.abort();
            cut.max(1)
        }
    };
    // Closing waits for every connection, including connection attempts still in flight; with
    // the database unreachable those last until their timeout, so the stop does not wait on them.
    if tokio::time::timeout(Duration::from_secs(2), state.store.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections did not close within 2 s; exiting anyway");
    }
    if cut > 0 {
        tracing::warn!(
            requests_cut = cut,
            exit_code = EXIT_DRAIN_TIMEOUT,
            "shutdown forced"
        );
        return Ok(Stopped::Forced { requests_cut: cut });
    }
    tracing::info!("shutdown complete");
    Ok(Stopped::Clean)
}

/// How a served process stopped, so that `main` can tell a clean stop from a forced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request finished within the drain (exit 0).
    Clean,
    /// `DRAIN_TIMEOUT_SECONDS` ran out and requests were cut (exit [`EXIT_DRAIN_TIMEOUT`]).
    Forced {
        /// How many requests were still in flight.
        requests_cut: usize,
    },
}

impl Stopped {
    /// The process exit code for this stop.
    pub fn exit_code(self) -> u8 {
        match self {
            Stopped::Clean => 0,
            Stopped::Forced { .. } => EXIT_DRAIN_TIMEOUT,
        }
    }
}

/// Exit code of `serve` when `DRAIN_TIMEOUT_SECONDS` ran out and requests were cut (a clean
/// drain exits 0).
pub const EXIT_DRAIN_TIMEOUT: u8 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str) -> Store {
        Store::open(&StoreOptions {
            url: url.into(),
            max_connections: 1,
            acquire_timeout: Duration::from_millis(200),
            statement_timeout: None,
        })
        .expect("store options")
    }

    /// A port nothing listens on, so connecting is refused (a transient error).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn succeeds_on_a_reachable_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let stop = CancellationToken::new();
        assert!(
            migrate_with_retry(&store(&url), &stop)
                .await
                .expect("migrates")
        );
    }

    #[tokio::test]
    async fn retries_an_unreachable_database_until_stop_fires() {
        let url = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
        let stop = CancellationToken::new();
        let canceller = {
            let stop = stop.clone();
            tokio::spawn(async move {
                // Long enough for several attempts (200 ms each, 250 ms then 500 ms apart).
                tokio::time::sleep(Duration::from_millis(1500)).await;
                stop.cancel();
            })
        };
        // The outer timeout only keeps a regression from hanging the suite.
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            migrate_with_retry(&store(&url), &stop),
        )
        .await
        .expect("returns once stop fires");
        canceller.abort();
        assert!(
            !r.expect("a transient error is not returned"),
            "stopped, not migrated"
        );
    }

    #[tokio::test]
    async fn does_not_retry_a_permanent_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        // SQLite cannot create a file in a directory that does not exist.
        let url = format!("sqlite:{}", dir.path().join("missing/t.db").display());
        let stop = CancellationToken::new();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            migrate_with_retry(&store(&url), &stop),
        )
        .await
        .expect("returns without waiting for stop");
        assert!(r.is_err(), "a permanent error is returned: {r:?}");
    }
}
