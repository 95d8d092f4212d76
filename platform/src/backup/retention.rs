//! Retention: which old backups `backup --keep-days/--keep-last` deletes.
//!
//! Only files this tool made are candidates: the name must match
//! `tradeplane-backup-<timestamp>.tpb` AND the file must start with a valid manifest. Anything
//! else in the directory (temporary files, notes, a hand-copied dump) is never touched. A
//! candidate is kept when it is among the newest `keep_last` OR younger than `keep_days` days
//! (the policies add up, like restic's `forget`); the backup just written is always kept. Ages
//! come from the manifest's `created_at`, not from file times, which copies and restores change.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use super::BackupError;
use super::format;

/// How many backups to keep; both `None` means keep everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep backups younger than this many days.
    pub keep_days: Option<u32>,
    /// Keep this many newest backups.
    pub keep_last: Option<u32>,
}

impl RetentionPolicy {
    /// Whether the policy deletes anything at all.
    pub fn is_active(&self) -> bool {
        self.keep_days.is_some() || self.keep_last.is_some()
    }
}

/// A backup file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its path.
    pub path: PathBuf,
    /// The manifest's `created_at`.
    pub created_at: DateTime<Utc>,
}

/// The outcome of pruning.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Backups kept (including the one just written).
    pub kept: Vec<PathBuf>,
    /// Backups deleted.
    pub deleted: Vec<PathBuf>,
}

/// Splits candidates into (keep, delete); pure, so the policy is tested without files.
pub fn plan(
    mut candidates: Vec<Candidate>,
    now: DateTime<Utc>,
    policy: RetentionPolicy,
    always_keep: &Path,
) -> (Vec<Candidate>, Vec<Candidate>) {
    if !policy.is_active() {
        return (candidates, Vec::new());
    }
    candidates.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.path.cmp(&a.path)));
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    for (i, c) in candidates.into_iter().enumerate() {
        let by_count = policy.keep_last.is_some_and(|n| i < n as usize);
        let by_age = policy.keep_days.is_some_and(|d| {
            now.signed_duration_since(c.created_at) < Duration::days(i64::from(d))
        });
        if by_count || by_age || c.path == always_keep {
            keep.push(c);
        } else {
            delete.push(c);
        }
    }
    (keep, delete)
}

/// The backups this tool made in `dir` (name pattern and a valid manifest).
pub fn candidates(dir: &Path) -> Result<Vec<Candidate>, BackupError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BackupError::io(&format!("cannot list {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| BackupError::io(&format!("cannot list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if format::parse_file_name(name).is_none() {
            continue;
        }
        let path = entry.path();
        let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if !is_file {
            continue;
        }
        let manifest = File::open(&path)
            .map_err(|e| BackupError::io("cannot open", e))
            .and_then(|f| format::read_header(&mut BufReader::new(f)));
        match manifest {
            Ok((m, _)) => out.push(Candidate {
                path,
                created_at: m.created_at,
            }),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "not pruning a file without a valid manifest")
            }
        }
    }
    Ok(out)
}

/// Deletes the backups in `dir` that `policy` does not keep; never `just_written`.
pub fn prune(
    dir: &Path,
    now: DateTime<Utc>,
    policy: RetentionPolicy,
    just_written: &Path,
) -> Result<PruneReport, BackupError> {
    let (keep, delete) = plan(candidates(dir)?, now, policy, just_written);
    let mut report = PruneReport {
        kept: keep.into_iter().map(|c| c.path).collect(),
        deleted: Vec::new(),
    };
    for c in delete {
        std::fs::remove_file(&c.path)
            .map_err(|e| BackupError::io(&format!("cannot delete {}", c.path.display()), e))?;
        tracing::info!(file = %c.path.display(), created_at = %c.created_at, "pruned old backup");
        report.deleted.push(c.path);
    }
    Ok(report)
}

/// Removes temporary files of backup runs that died (OOM-killed, node lost) more than a day ago,
/// so a crashing CronJob cannot slowly fill the volume. Only hidden files named
/// `.tradeplane-backup-*.tmp` are considered; a run in progress is far younger than a day.
pub fn remove_stale_temps(dir: &Path, max_age: std::time::Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.starts_with(&format!(".{}", format::FILE_PREFIX)) && name.ends_with(".tmp");
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if ours && old && std::fs::remove_file(entry.path()).is_ok() {
            tracing::warn!(file = %entry.path().display(), "removed a stale temporary file of an interrupted backup");
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, days_ago: i64, now: DateTime<Utc>) -> Candidate {
        Candidate {
            path: PathBuf::from(name),
            created_at: now - Duration::days(days_ago) - Duration::minutes(1),
        }
    }

    fn names(v: &[Candidate]) -> Vec<&str> {
        let mut n: Vec<&str> = v.iter().filter_map(|c| c.path.to_str()).collect();
        n.sort();
        n
    }

    #[test]
    fn only_old_temporary_files_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir
            .path()
            .join(".tradeplane-backup-20200101T000000.000Z.tpb.7.tmp");
        let other = dir.path().join(".something-else.tmp");
        for p in [&stale, &other] {
            std::fs::write(p, b"x").expect("write");
        }
        assert!(remove_stale_temps(dir.path(), std::time::Duration::from_secs(3600)).is_empty());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let removed = remove_stale_temps(dir.path(), std::time::Duration::from_millis(1));
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!stale.exists() && other.exists());
    }

    #[test]
    fn policies_add_up_and_the_new_backup_survives() {
        let now = Utc::now();
        let all = vec![
            c("d0", 0, now),
            c("d1", 1, now),
            c("d5", 5, now),
            c("d40", 40, now),
        ];
        let p = |d, l| RetentionPolicy {
            keep_days: d,
            keep_last: l,
        };
        let (k, d) = plan(all.clone(), now, p(None, None), Path::new("d0"));
        assert_eq!((k.len(), d.len()), (4, 0), "no policy keeps all");
        let (k, d) = plan(all.clone(), now, p(Some(2), None), Path::new("d0"));
        assert_eq!(
            (names(&k), names(&d)),
            (vec!["d0", "d1"], vec!["d40", "d5"])
        );
        let (k, d) = plan(all.clone(), now, p(None, Some(3)), Path::new("d0"));
        assert_eq!(
            (names(&k), names(&d)),
            (vec!["d0", "d1", "d5"], vec!["d40"])
        );
        let (k, d) = plan(all.clone(), now, p(Some(1), Some(2)), Path::new("d0"));
        assert_eq!(
            (names(&k), names(&d)),
            (vec!["d0", "d1"], vec!["d40", "d5"])
        );
        let (k, d) = plan(all, now, p(Some(100), Some(1)), Path::new("d0"));
        assert_eq!(
            (k.len(), d.len()),
            (4, 0),
            "age keeps what count would drop"
        );
        // The just-written file is kept even when its clock says it is old.
        let (k, _) = plan(
            vec![c("old", 90, now)],
            now,
            p(Some(1), None),
            Path::new("old"),
        );
        assert_eq!(names(&k), vec!["old"]);
    }
}
