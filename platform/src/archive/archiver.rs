//! The archiver: the background task of every replica started with `ARCHIVE_DEST`.
//!
//! At start it enables archiving in the database ([`crate::store::archive::enable`]) and claims
//! the archive location (`archive.json`: a location that names another database's archive is
//! refused, so a restored copy can never overwrite its source's history). Then, every
//! `ARCHIVE_MARK_INTERVAL_MS` it writes an automatic restore point (the granularity of
//! `restore --until <time>`), and every `ARCHIVE_INTERVAL_SECONDS` it ships what the change log
//! holds as numbered segments: taken out of the log, written and stored, then committed. With
//! several replicas only one ships at a time (the others skip their turn). On shutdown it ships
//! once more, so a drained replica leaves nothing behind.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use super::segment::{Begin, SegmentWriter};
use super::storage::{ArchiveStorage, IdentityFile};
use crate::backup::{BackupError, BackupKey, Location};
use crate::store::archive as sql;

/// Transactions per segment at most; a backlog larger than that ships as several segments.
pub const MAX_TRANSACTIONS_PER_SEGMENT: i64 = 20_000;

/// What the archiver needs.
#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    /// `ARCHIVE_DEST`: the backup place; segments go to its `wal/`.
    pub dest: Location,
    /// `ARCHIVE_INTERVAL_SECONDS`: the longest a change waits in the database.
    pub interval: Duration,
    /// `ARCHIVE_MARK_INTERVAL_MS`: how often an automatic restore point is written.
    pub mark_interval: Duration,
    /// `BACKUP_ENCRYPTION_KEY`: segments are encrypted like backups.
    pub key: Option<BackupKey>,
    /// The source, for the identity file.
    pub source: String,
}

/// The archiver's metrics.
#[derive(Clone)]
pub struct ArchiveMetrics {
    segments: IntCounterVec,
    changes: prometheus::IntCounter,
    last_shipped: IntGauge,
    last_segment: IntGauge,
    backlog: IntGauge,
    up: IntGauge,
}

impl ArchiveMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<ArchiveMetrics, prometheus::Error> {
        let m = ArchiveMetrics {
            segments: IntCounterVec::new(
                Opts::new(
                    "archive_segments_total",
                    "Change-log segments this replica tried to ship, by outcome (shipped, failed).",
                ),
                &["outcome"],
            )?,
            changes: prometheus::IntCounter::new(
                "archive_changes_shipped_total",
                "Change rows shipped to the archive by this replica.",
            )?,
            last_shipped: IntGauge::new(
                "archive_last_shipped_timestamp_seconds",
                "Unix time of the last segment this replica shipped (0: none yet).",
            )?,
            last_segment: IntGauge::new(
                "archive_last_shipped_segment",
                "Number of the last change-log segment this replica shipped (0: none yet).",
            )?,
            backlog: IntGauge::new(
                "archive_backlog_changes",
                "Change rows waiting in the database to be shipped (after this replica's last turn).",
            )?,
            up: IntGauge::new(
                "archive_up",
                "1 while archiving works (the last turn succeeded), 0 after a failure.",
            )?,
        };
        registry.register(Box::new(m.segments.clone()))?;
        registry.register(Box::new(m.changes.clone()))?;
        registry.register(Box::new(m.last_shipped.clone()))?;
        registry.register(Box::new(m.last_segment.clone()))?;
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.up.clone()))?;
        Ok(m)
    }
}

/// What one shipping turn did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// Segments stored.
    pub segments: u64,
    /// Changes in them.
    pub changes: u64,
    /// The number of the last one stored.
    pub last_segment: Option<i64>,
}

/// Enables archiving and claims the location: returns the identity the segments carry.
pub async fn start(
    pool: &sqlx::PgPool,
    storage: &ArchiveStorage,
    source: &str,
) -> Result<sql::ArchiveIdentity, BackupError> {
    let identity = sql::enable(pool)
        .await
        .map_err(|source| BackupError::Database {
            context: "enabling the change log".into(),
            source,
        })?;
    match storage.identity().await? {
        Some(found) if found.archive_id == identity.archive_id => {}
        Some(found) => {
            return Err(BackupError::Refused(format!(
                "{storage} holds the archive {} of another database (from {}, created {}); \
                 this database's archive is {}. Point ARCHIVE_DEST at a new location (a restored \
                 database starts an archive of its own)",
                found.archive_id,
                found.source,
                found.created_at.to_rfc3339(),
                identity.archive_id
            )));
        }
        None => {
            storage
                .write_identity(&IdentityFile {
                    archive_id: identity.archive_id.clone(),
                    created_at: Utc::now(),
                    source: source.to_owned(),
                })
                .await?
        }
    }
    Ok(identity)
}

/// Ships everything committed in the change log, as many segments as it takes. Returns what was
/// stored; nothing is taken out of the database before its segment is stored.
pub async fn ship(
    pool: &sqlx::PgPool,
    storage: &ArchiveStorage,
    key: Option<&BackupKey>,
) -> Result<Shipped, BackupError> {
    let db = |context: &'static str| {
        move |source| BackupError::Database {
            context: context.into(),
            source,
        }
    };
    let mut done = Shipped::default();
    loop {
        let Some(mut turn) = sql::begin_ship(pool).await.map_err(db("starting a turn"))? else {
            return Ok(done);
        };
        // Written and stored while the turn holds the row lock; on any failure the turn is
        // rolled back here, at once (a dropped transaction's rollback waits for the connection's
        // next use, and until then the next turn would find the lock taken and skip).
        let written = write_and_store(&mut turn, storage, key).await;
        let (n, changes, complete) = match written {
            Ok(Some(w)) => w,
            Ok(None) => {
                turn.abandon().await.map_err(db("ending an empty turn"))?;
                return Ok(done);
            }
            Err(e) => {
                if let Err(rollback) = turn.abandon().await {
                    tracing::warn!(error = %rollback, "cannot roll the failed turn back");
                }
                return Err(e);
            }
        };
        turn.shipped()
            .await
            .map_err(db("committing a shipped segment"))?;
        done.segments += 1;
        done.changes += changes;
        done.last_segment = Some(n);
        tracing::debug!(segment = n, changes, "change-log segment shipped");
        if complete {
            return Ok(done);
        }
    }
}

/// Writes the turn's changes as its segment and stores it: `(number, changes, whether the
/// turn took everything its snapshot saw)`, or `None` when there was nothing to ship.
async fn write_and_store(
    turn: &mut sql::ShipTx,
    storage: &ArchiveStorage,
    key: Option<&BackupKey>,
) -> Result<Option<(i64, u64, bool)>, BackupError> {
    let n = turn.identity.next_segment;
    let begin = Begin {
        archive_id: turn.identity.archive_id.clone(),
        segment: n,
        schema_version: turn.schema_version,
        created_at: Utc::now(),
    };
    let (file, tmp) = storage.temp_file(n)?;
    let io = |e| BackupError::io("cannot write the segment", e);
    let mut writer = SegmentWriter::start(file, key, &begin).map_err(io)?;
    let mut snapshot = None;
    {
        let mut rows = turn.take(MAX_TRANSACTIONS_PER_SEGMENT);
        while let Some(row) = rows.next().await {
            let row = row.map_err(|source| BackupError::Database {
                context: "reading the change log".into(),
                source,
            })?;
            match row {
                sql::Taken::Change(c) => writer.push(&c).map_err(io)?,
                sql::Taken::Snapshot(s) => snapshot = Some(s),
            }
        }
    }
    let complete = (writer.transactions() as i64) < MAX_TRANSACTIONS_PER_SEGMENT;
    let changes = writer.changes();
    if changes == 0 {
        return Ok(None);
    }
    writer.finish(snapshot.filter(|_| complete)).map_err(io)?;
    storage.store(n, tmp).await?;
    Ok(Some((n, changes, complete)))
}

/// Runs the archiver until `stop`, then ships once more.
pub fn spawn(
    pool: sqlx::PgPool,
    config: ArchiverConfig,
    metrics: ArchiveMetrics,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let storage = loop {
            let started = async {
                let storage = ArchiveStorage::for_place(&config.dest)?;
                start(&pool, &storage, &config.source).await?;
                Ok::<_, BackupError>(storage)
            }
            .await;
            match started {
                Ok(s) => break s,
                Err(e) => {
                    metrics.up.set(0);
                    tracing::error!(error = %e, dest = %config.dest, "archiving cannot start; point-in-time restore is not protected; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(config.interval.max(Duration::from_secs(5))) => {}
                    }
                }
            }
        };
        tracing::info!(archive = %storage, interval = ?config.interval, "archiving the change log");
        metrics.up.set(1);
        let mut marks = tokio::time::interval(config.mark_interval);
        marks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ships = tokio::time::interval(config.interval);
        ships.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = marks.tick() => {
                    if let Err(e) = sql::restore_point(&pool, "").await {
                        tracing::warn!(error = %e, "cannot write an automatic restore point");
                    }
                }
                _ = ships.tick() => turn(&pool, &storage, &config, &metrics).await,
            }
        }
        turn(&pool, &storage, &config, &metrics).await;
    })
}

async fn turn(
    pool: &sqlx::PgPool,
    storage: &ArchiveStorage,
    config: &ArchiverConfig,
    metrics: &ArchiveMetrics,
) {
    match ship(pool, storage, config.key.as_ref()).await {
        Ok(s) => {
            metrics.up.set(1);
            if s.segments > 0 {
                metrics
                    .segments
                    .with_label_values(&["shipped"])
                    .inc_by(s.segments);
                metrics.changes.inc_by(s.changes);
                metrics.last_shipped.set(Utc::now().timestamp());
                if let Some(n) = s.last_segment {
                    metrics.last_segment.set(n);
                }
            }
        }
        Err(e) => {
            metrics.up.set(0);
            metrics.segments.with_label_values(&["failed"]).inc();
            tracing::error!(error = %e, archive = %storage, "shipping the change log failed; the changes stay in the database and are shipped at the next turn");
        }
    }
    if let Ok(n) = sql::backlog(pool).await {
        metrics.backlog.set(n);
    }
}
