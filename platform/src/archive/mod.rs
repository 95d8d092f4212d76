//! Point-in-time recovery for PostgreSQL: a continuous, ordered change log shipped beside the
//! backups, and `restore --until` to replay it onto a backup.
//!
//! - Capture ([`crate::store::archive`]): statement-level triggers copy every committed row
//!   change of every platform table into `change_log`, tagged with the writing transaction.
//!   Restore points are change rows holding a snapshot: automatic ones every
//!   `ARCHIVE_MARK_INTERVAL_MS` (the precision of `--until <time>`), named ones on demand.
//! - Shipping ([`archiver`]): every `ARCHIVE_INTERVAL_SECONDS` the archiver moves whole
//!   transactions out of the log into a numbered segment ([`segment`]: gzip, encrypted like
//!   backups, checksummed) stored in `<ARCHIVE_DEST>/wal/` ([`storage`]); the database commit
//!   comes after the store, so nothing is lost and a retry replaces the same number.
//! - Restore ([`replay`]): the newest backup before the target, then the segments from the one
//!   its manifest names, applying exactly the transactions the target's snapshot saw and the
//!   backup's did not ([`snapshot`]), all in the restore's one transaction.
//!
//! Why triggers and not PostgreSQL's WAL: logical decoding needs `wal_level = logical` and a
//! replication slot, which managed databases often do not grant and which retains WAL without
//! bound when the archiver stops; physical WAL archiving needs a file-system view of the server.
//! Triggers need only the platform's own role and capture exactly the platform's tables. The
//! cost is one extra `INSERT … SELECT` per writing statement (measured in docs/benchmarks.md).

pub mod archiver;
pub mod command;
pub mod replay;
pub mod retention;
pub mod segment;
pub mod snapshot;
pub mod storage;

use crate::backup::format::Manifest;
use crate::backup::{
    BackupError, BackupKey, BackupRef, Location, Progress, Reference, RestoreReport, location,
    remote, restore, retention as backup_retention,
};
use crate::store::Store;

pub use replay::Target;

/// What a point-in-time restore did, for the CLI's summary.
#[derive(Debug, Clone)]
pub struct PitrReport {
    /// The backup restored first.
    pub backup: String,
    /// Its time.
    pub backup_at: chrono::DateTime<chrono::Utc>,
    /// The rows, and the replay.
    pub restore: RestoreReport,
    /// The point restored to, and the segments replayed (absent when no replay ran).
    pub point: Option<(replay::Point, (i64, i64))>,
}

/// The place that holds `backup` (where its `wal/` is).
pub fn place_of(backup: &BackupRef) -> Location {
    match backup {
        BackupRef::File(path) => Location::Dir(location::parent_dir(path)),
        BackupRef::S3 { target, .. } => Location::S3(target.clone()),
    }
}

/// One line for `backup list` about the place's change-log archive, `None` without one:
/// `archive <id> (wal/): segments A..=B, N present` and whether numbers are missing.
pub async fn describe_archive(place: &Location) -> Result<Option<String>, BackupError> {
    let storage = storage::ArchiveStorage::for_place(place)?;
    let Some(identity) = storage.identity().await? else {
        return Ok(None);
    };
    let segments = storage.segments().await?;
    Ok(Some(match (segments.first(), segments.last()) {
        (Some(a), Some(b)) => {
            let missing = (b - a + 1) as usize - segments.len();
            format!(
                "{storage}/ archive {}: segments {a}..={b}{}",
                identity.archive_id,
                if missing == 0 {
                    String::new()
                } else {
                    format!(", {missing} missing (a restore cannot pass a hole)")
                }
            )
        }
        _ => format!("{storage}/ archive {}: no segment yet", identity.archive_id),
    }))
}

/// The manifest of one backup, without its payload (the payload is opened, and downloaded,
/// once: for the restore itself).
async fn manifest_of(backup: &BackupRef) -> Result<Manifest, BackupError> {
    match backup {
        BackupRef::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| BackupError::io(&format!("cannot open {}", path.display()), e))?;
            Ok(crate::backup::format::read_header(&mut std::io::BufReader::new(file))?.0)
        }
        BackupRef::S3 { target, name } => {
            let bucket = crate::backup::s3::Bucket::connect(target)?;
            remote::read_manifest(&bucket, name).await
        }
    }
}

/// The backups in `place`, newest first, with their manifests.
async fn backups_in(place: &Location) -> Result<Vec<(BackupRef, Manifest)>, BackupError> {
    let mut out = Vec::new();
    match place {
        Location::Dir(dir) => {
            for c in backup_retention::candidates(dir)? {
                let backup = BackupRef::File(c.path);
                let m = manifest_of(&backup).await?;
                out.push((backup, m));
            }
        }
        Location::S3(target) => {
            let bucket = crate::backup::s3::Bucket::connect(target)?;
            for (c, m, _) in remote::candidates(&bucket).await?.0 {
                out.push((
                    BackupRef::S3 {
                        target: target.clone(),
                        name: c.path.to_string_lossy().into_owned(),
                    },
                    m,
                ));
            }
        }
    }
    out.sort_by_key(|(_, m)| std::cmp::Reverse(m.created_at));
    Ok(out)
}

/// Checks an opened backup fully, then restores it (and the replay, when given).
async fn restore_reader(
    store: &Store,
    reader: &crate::backup::BackupReader,
    force: bool,
    progress: &Progress,
    plan: Option<&replay::ReplayPlan>,
) -> Result<RestoreReport, BackupError> {
    restore::check_schema_version(store.backend(), reader.manifest.schema_version)?;
    reader.verify()?;
    restore::restore(store, reader, force, progress, plan).await
}

/// `restore LOCATION [--until TIME | --until-seq N]`: with a backup and no target, that backup
/// alone (as before archiving existed); with a place, or with a target, the newest fitting
/// backup and the archive replayed up to the target (everything archived without one).
pub async fn restore(
    store: &Store,
    reference: Reference,
    target: Option<Target>,
    key: Option<&BackupKey>,
    force: bool,
    progress: &Progress,
) -> Result<PitrReport, BackupError> {
    let (candidates, place, target) = match (reference, target) {
        (Reference::Backup(b), None) => {
            let reader = crate::backup::open_backup(&b, key).await?;
            let report = restore_reader(store, &reader, force, progress, None).await?;
            return Ok(PitrReport {
                backup: b.to_string(),
                backup_at: reader.manifest.created_at,
                restore: report,
                point: None,
            });
        }
        (Reference::Backup(b), Some(t)) => {
            let place = place_of(&b);
            let manifest = manifest_of(&b).await?;
            (vec![(b, manifest)], place, t)
        }
        (Reference::Place(place), t) => {
            let all = backups_in(&place).await?;
            (all, place, t.unwrap_or(Target::Latest))
        }
    };
    let storage = storage::ArchiveStorage::for_place(&place)?;
    let identity = storage.identity().await?.ok_or_else(|| {
        BackupError::Refused(format!(
            "{storage} holds no change-log archive (no {}); without one a backup restores only \
             to its own moment: name the backup, without --until",
            storage::IDENTITY_FILE
        ))
    })?;
    let mut last_refusal = None;
    for (backup, manifest) in candidates {
        let Some(point) = manifest.archive.as_ref() else {
            continue;
        };
        if point.archive_id != identity.archive_id {
            continue;
        }
        if let Target::Time(t) = &target
            && manifest.created_at > *t
        {
            continue;
        }
        match replay::plan(&storage, point, manifest.schema_version, &target, key).await {
            Ok(plan) => {
                let reader = crate::backup::open_backup(&backup, key).await?;
                let report = restore_reader(store, &reader, force, progress, Some(&plan)).await?;
                return Ok(PitrReport {
                    backup: backup.to_string(),
                    backup_at: manifest.created_at,
                    restore: report,
                    point: Some((plan.point.clone(), plan.segments)),
                });
            }
            // An older backup may still reach a target this one cannot (a point before it).
            Err(e @ BackupError::Refused(_)) => last_refusal = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_refusal.unwrap_or_else(|| {
        BackupError::Refused(format!(
            "no backup in {place} belongs to the archive {} and is older than {target}; take a \
             backup while archiving is on (its manifest then names its archive position)",
            identity.archive_id
        ))
    }))
}
