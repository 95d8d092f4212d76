//! Archive retention: after `backup --keep-days/--keep-last` pruned old backups, the segments
//! that no kept backup needs go too. A kept backup of this archive needs every segment from its
//! manifest's `start_segment` on; without any such backup nothing is deleted (a backup taken
//! before archiving began cannot use the archive, but deleting it all would be a surprise).

use super::storage::ArchiveStorage;
use crate::backup::format::Manifest;
use crate::backup::{BackupError, Location};

/// What pruning the archive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchivePruned {
    /// Segments deleted.
    pub deleted: u64,
    /// The oldest segment kept, when any backup needs the archive.
    pub oldest_kept: Option<i64>,
}

/// The first segment any of `kept` needs for archive `archive_id` (pure, for tests).
pub fn oldest_needed<'a>(
    kept: impl IntoIterator<Item = &'a Manifest>,
    archive_id: &str,
) -> Option<i64> {
    kept.into_iter()
        .filter_map(|m| m.archive.as_ref())
        .filter(|a| a.archive_id == archive_id)
        .map(|a| a.start_segment)
        .min()
}

/// Deletes the segments of `place`'s archive that come before every kept backup's start.
pub async fn prune(place: &Location) -> Result<ArchivePruned, BackupError> {
    let storage = ArchiveStorage::for_place(place)?;
    let Some(identity) = storage.identity().await? else {
        return Ok(ArchivePruned::default());
    };
    let kept = super::backups_in(place).await?;
    let Some(first) = oldest_needed(kept.iter().map(|(_, m)| m), &identity.archive_id) else {
        return Ok(ArchivePruned::default());
    };
    let mut deleted = 0;
    for n in storage.segments().await? {
        if n >= first {
            break;
        }
        storage.delete(n).await?;
        deleted += 1;
    }
    if deleted > 0 {
        tracing::info!(archive = %storage, deleted, oldest_kept = first, "pruned archive segments no kept backup needs");
    }
    Ok(ArchivePruned {
        deleted,
        oldest_kept: Some(first),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::format::{ArchivePoint, PayloadInfo, Source};

    fn manifest(archive: Option<(&str, i64)>) -> Manifest {
        Manifest {
            format_version: 1,
            created_at: chrono::Utc::now(),
            tool_version: "test".into(),
            backend: "postgres".into(),
            source: Source {
                database: "db".into(),
                host: "host".into(),
            },
            schema_version: 70,
            tables: Vec::new(),
            total_rows: 0,
            payload: PayloadInfo {
                bytes: 0,
                sha256: String::new(),
                compression: "gzip".into(),
                object: None,
            },
            encryption: None,
            duration_seconds: 0.0,
            outcome: "complete".into(),
            archive: archive.map(|(id, start)| ArchivePoint {
                archive_id: id.into(),
                start_segment: start,
                snapshot: "1:1:".into(),
            }),
        }
    }

    #[test]
    fn the_oldest_kept_backup_of_this_archive_decides() {
        let kept = [
            manifest(Some(("a", 40))),
            manifest(Some(("a", 12))),
            manifest(Some(("other", 3))),
            manifest(None),
        ];
        assert_eq!(oldest_needed(&kept, "a"), Some(12));
        assert_eq!(oldest_needed(&kept, "other"), Some(3));
        assert_eq!(
            oldest_needed(&kept, "none"),
            None,
            "no backup of it: keep everything"
        );
        assert_eq!(oldest_needed(&kept[3..], "a"), None);
    }
}
