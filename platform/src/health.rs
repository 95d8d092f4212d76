//! Health state with Kubernetes semantics.
//!
//! Probes never touch a dependency themselves: a background task ([`Health::spawn_checker`])
//! checks the database, Redis and the disk every few seconds and the probes read the last result,
//! so a probe storm cannot overload the database. The three probes answer different questions:
//!
//! - liveness: can this process serve at all? Never depends on the database, or a database outage
//!   would make Kubernetes restart every pod.
//! - startup: are configuration, migrations and warm-up done?
//! - readiness: should this instance receive traffic now? Not while starting or draining, and not
//!   after its database has failed *continuously* for the grace period (one slow check, or a short
//!   outage shared by every replica, must not empty the Service).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheMode};
use crate::resilience::breaker::{Breaker, BreakerState};
use crate::store::Store;

/// How long one database check may take before it counts as a failure.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Free disk below this many bytes makes the disk check fail (reported, not a readiness gate).
const MIN_FREE_DISK_BYTES: u64 = 100 * 1024 * 1024;

/// Result of the last database check.
#[derive(Debug, Clone, Default)]
struct DbState {
    checked: bool,
    ok: bool,
    failing_since: Option<Instant>,
    last_error: Option<String>,
    latency: Duration,
}

/// Result of the last disk check.
#[derive(Debug, Clone, Default)]
struct DiskState {
    free_bytes: Option<u64>,
    error: Option<String>,
}

/// Shared health state; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    cache: Cache,
    data_dir: PathBuf,
    db_failure_grace: Duration,
    started_at: Instant,
    started: AtomicBool,
    draining: AtomicBool,
    db: Mutex<DbState>,
    disk: Mutex<DiskState>,
    breakers: std::sync::OnceLock<Vec<Breaker>>,
}

/// One check in a health report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Check {
    /// `ok`, `degraded` or `failing`.
    pub status: String,
    /// What the check saw, for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why readiness is false, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotReady {
    /// Start-up has not finished.
    Starting,
    /// A graceful shutdown is under way.
    Draining,
    /// The database has failed for longer than the grace period.
    Database,
}

impl NotReady {
    /// The name of the failing check, as reported in the 503 body.
    pub fn check(self) -> &'static str {
        match self {
            NotReady::Starting => "startup",
            NotReady::Draining => "shutdown",
            NotReady::Database => "database",
        }
    }
}

impl Health {
    /// New state: not started, not draining, nothing checked yet.
    pub fn new(
        store: Store,
        cache: Cache,
        data_dir: PathBuf,
        db_failure_grace: Duration,
    ) -> Health {
        Health {
            inner: Arc::new(Inner {
                store,
                cache,
                data_dir,
                db_failure_grace,
                started_at: Instant::now(),
                started: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                db: Mutex::new(DbState::default()),
                disk: Mutex::new(DiskState::default()),
                breakers: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Attaches the circuit breakers: they are reported in `/health`, and the background
    /// database check feeds the one named `database` (so it closes again without traffic).
    pub fn set_breakers(&self, breakers: Vec<Breaker>) {
        let _ = self.inner.breakers.set(breakers);
    }

    fn breakers(&self) -> &[Breaker] {
        self.inner.breakers.get().map(Vec::as_slice).unwrap_or(&[])
    }

    /// Marks start-up (migrations, warm-up) as done.
    pub fn mark_started(&self) {
        self.inner.started.store(true, Ordering::SeqCst);
    }

    /// Marks the instance as draining: readiness fails from now on.
    pub fn mark_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether start-up is done.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// Whether a shutdown is under way.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Seconds since the process started.
    pub fn uptime(&self) -> Duration {
        self.inner.started_at.elapsed()
    }

    /// `Ok` when this instance should receive traffic, else the reason it should not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        if !self.is_started() {
            return Err(NotReady::Starting);
        }
        let db = self.db_state();
        match db.failing_since {
            Some(since) if since.elapsed() >= self.inner.db_failure_grace => {
                Err(NotReady::Database)
            }
            _ => Ok(()),
        }
    }

    fn db_state(&self) -> DbState {
        self.inner
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs every check once and records the results.
    pub async fn run_checks(&self) {
        let begin = Instant::now();
        let result = tokio::time::timeout(DB_CHECK_TIMEOUT, self.inner.store.ping()).await;
        let latency = begin.elapsed();
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {DB_CHECK_TIMEOUT:?}")),
        };
        if let Some(b) = self.breakers().iter().find(|b| b.name() == "database") {
            match &error {
                None => b.success(),
                Some(_) => b.failure(),
            }
        }
        {
            let mut db = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
            db.checked = true;
            db.latency = latency;
            match error {
                None => {
                    if db.failing_since.is_some() {
                        tracing::info!("database check recovered");
                    }
                    db.ok = true;
                    db.failing_since = None;
                    db.last_error = None;
                }
                Some(e) => {
                    if db.failing_since.is_none() {
                        tracing::warn!(error = %e, "database check failed");
                    }
                    db.ok = false;
                    db.failing_since.get_or_insert_with(Instant::now);
                    db.last_error = Some(e);
                }
            }
        }

        self.inner.cache.check().await;

        let disk = match fs4::available_space(&self.inner.data_dir) {
            Ok(free) => DiskState {
                free_bytes: Some(free),
                error: None,
            },
            Err(e) => DiskState {
                free_bytes: None,
                error: Some(e.to_string()),
            },
        };
        *self.inner.disk.lock().unwrap_or_else(|p| p.into_inner()) = disk;
    }

    /// Runs the checks every `interval` until `stop` is cancelled.
    pub fn spawn_checker(
        &self,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => health.run_checks().await,
                }
            }
        })
    }

    /// The detailed report served at `/health`.
    pub fn report(&self) -> Report {
        let db = self.db_state();
        let database = if !db.checked {
            Check {
                status: "unknown".into(),
                detail: Some("not checked yet".into()),
            }
        } else if db.ok {
            Check {
                status: "ok".into(),
                detail: Some(format!(
                    "{:?} round trip {} ms",
                    self.inner.store.backend(),
                    db.latency.as_millis()
                )),
            }
        } else {
            let secs = db.failing_since.map(|s| s.elapsed().as_secs()).unwrap_or(0);
            Check {
                status: "failing".into(),
                detail: Some(format!(
                    "failing for {secs}s: {}",
                    db.last_error.as_deref().unwrap_or("unknown error")
                )),
            }
        };
        let redis = match self.inner.cache.mode() {
            CacheMode::Redis => Check {
                status: "ok".into(),
                detail: Some("redis".into()),
            },
            CacheMode::Fallback => Check {
                status: "degraded".into(),
                detail: Some("redis unreachable; using the in-process fallback".into()),
            },
            CacheMode::Local => Check {
                status: "ok".into(),
                detail: Some("no REDIS_URL; in-process cache".into()),
            },
        };
        let disk_state = self
            .inner
            .disk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let disk = match (disk_state.free_bytes, disk_state.error) {
            (Some(free), _) if free >= MIN_FREE_DISK_BYTES => Check {
                status: "ok".into(),
                detail: Some(format!("{} MiB free", free / (1024 * 1024))),
            },
            (Some(free), _) => Check {
                status: "failing".into(),
                detail: Some(format!("only {free} bytes free")),
            },
            (None, Some(e)) => Check {
                status: "failing".into(),
                detail: Some(e),
            },
            (None, None) => Check {
                status: "unknown".into(),
                detail: Some("not checked yet".into()),
            },
        };
        let ready = self.readiness();
        Report {
            status: match ready {
                Ok(())
                    if database.status == "ok" && redis.status == "ok" && disk.status == "ok" =>
                {
                    "ok"
                }
                Ok(()) => "degraded",
                Err(_) => "unavailable",
            }
            .into(),
            ready: ready.is_ok(),
            started: self.is_started(),
            draining: self.is_draining(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: option_env!("TRADEPLANE_GIT_COMMIT")
                .unwrap_or("unknown")
                .into(),
            uptime_seconds: self.uptime().as_secs(),
            database_backend: format!("{:?}", self.inner.store.backend()).to_lowercase(),
            checks: Checks {
                database,
                redis,
                disk,
            },
            breakers: self
                .breakers()
                .iter()
                .map(|b| (b.name().to_owned(), b.state()))
                .collect(),
        }
    }
}

/// Every check by name.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Checks {
    /// The database round trip.
    pub database: Check,
    /// Redis, or the fallback in use.
    pub redis: Check,
    /// Free space where the service writes.
    pub disk: Check,
}

/// The detailed health report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Report {
    /// `ok`, `degraded` (serving with a failing dependency) or `unavailable` (not ready).
    pub status: String,
    /// Whether readiness passes.
    pub ready: bool,
    /// Whether start-up finished.
    pub started: bool,
    /// Whether a shutdown is under way.
    pub draining: bool,
    /// Build version.
    pub version: String,
    /// Build commit, when the build recorded one.
    pub commit: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// `postgres` or `sqlite`.
    pub database_backend: String,
    /// Each check.
    pub checks: Checks,
    /// Circuit breaker state by dependency (`closed`, `open`, `half_open`).
    #[serde(default)]
    pub breakers: std::collections::BTreeMap<String, BreakerState>,
}
