//! `ARCHIVE_*`: continuous archiving of the change log for point-in-time restore
//! ([`crate::archive`]).

use std::time::Duration;

use super::{ConfigError, number};
use crate::backup::{BackupKey, Location, Reference};

/// Archiving settings; present when `ARCHIVE_DEST` is set.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// `ARCHIVE_DEST`: the backup place (directory or `s3://bucket/prefix`, the same as the
    /// backups' `--dest`); segments go to its `wal/`.
    pub dest: Location,
    /// `ARCHIVE_INTERVAL_SECONDS`: a segment is closed and shipped at least this often, so at
    /// most this much is lost with the whole database.
    pub interval: Duration,
    /// `ARCHIVE_MARK_INTERVAL_MS`: how often an automatic restore point is written: the
    /// precision of `restore --until <time>`.
    pub mark_interval: Duration,
    /// `BACKUP_ENCRYPTION_KEY`: segments are encrypted like backups when it is set.
    pub key: Option<BackupKey>,
}

impl ArchiveConfig {
    /// Reads the variables through `get`; `vars` supplies the `AWS_*` settings of an S3
    /// destination. `None` without `ARCHIVE_DEST`.
    pub(super) fn read<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        vars: impl IntoIterator<Item = (String, String)>,
        database_url: &str,
    ) -> Result<Option<ArchiveConfig>, ConfigError> {
        let Some(dest) = get("ARCHIVE_DEST") else {
            return Ok(None);
        };
        let err = |var: &'static str| move |reason: String| ConfigError { var, reason };
        if !database_url.starts_with("postgres") {
            return Err(err("ARCHIVE_DEST")(
                "point-in-time archiving needs PostgreSQL (DATABASE_URL is SQLite, whose \
                 backups are consistent copies of the one file); unset ARCHIVE_DEST"
                    .into(),
            ));
        }
        let dest = Reference::parse_with(dest, vars)
            .and_then(|r| r.into_place("ARCHIVE_DEST"))
            .map_err(|e| err("ARCHIVE_DEST")(e.to_string()))?;
        let key = get("BACKUP_ENCRYPTION_KEY")
            .map(BackupKey::from_base64)
            .transpose()
            .map_err(|e| err("BACKUP_ENCRYPTION_KEY")(e.to_string()))?;
        Ok(Some(ArchiveConfig {
            dest,
            interval: Duration::from_secs(number(
                get("ARCHIVE_INTERVAL_SECONDS"),
                "ARCHIVE_INTERVAL_SECONDS",
                5,
                1,
                3600,
            )?),
            mark_interval: Duration::from_millis(number(
                get("ARCHIVE_MARK_INTERVAL_MS"),
                "ARCHIVE_MARK_INTERVAL_MS",
                1000,
                100,
                60_000,
            )?),
            key,
        }))
    }
}
