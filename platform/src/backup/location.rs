//! Where backups live: a local directory or an S3-compatible bucket and prefix.
//!
//! Every command takes the same spelling: a path (`/backups`, `/backups/<name>.tpb`) or a URL
//! (`s3://bucket/prefix`, `s3://bucket/prefix/<name>.tpb`). A last segment that is a backup
//! name ([`super::format::parse_file_name`]) names one backup; anything else names the place
//! that holds them. The object-store settings (endpoint, region, credentials…) are taken from
//! the `AWS_*` variables when the location is parsed, so a test can pass its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::BackupError;
use super::format;

/// A place that holds backups.
#[derive(Debug, Clone)]
pub enum Location {
    /// A local directory (a PersistentVolumeClaim in Kubernetes).
    Dir(PathBuf),
    /// A bucket and key prefix in an S3-compatible object store.
    S3(S3Target),
}

/// One backup: a file, or a manifest object in a bucket.
#[derive(Debug, Clone)]
pub enum BackupRef {
    /// A backup file.
    File(PathBuf),
    /// The backup named `name` under `target`'s prefix.
    S3 {
        /// Bucket and prefix (and the client settings).
        target: S3Target,
        /// The backup's name, `tradeplane-backup-<timestamp>.tpb`.
        name: String,
    },
}

/// What a location argument names.
#[derive(Debug, Clone)]
pub enum Reference {
    /// The place that holds backups (for `backup --dest`, `list`, `restore --until`).
    Place(Location),
    /// One backup (for `verify` and `restore`).
    Backup(BackupRef),
}

/// A bucket, a key prefix and the settings to reach them. `Debug` never shows the settings
/// (they may hold a secret key).
#[derive(Clone)]
pub struct S3Target {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// `AWS_*` variables (upper-case names) captured when the location was parsed.
    pub settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Target({self})")
    }
}

impl std::fmt::Display for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl S3Target {
    /// The object key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The same bucket with `sub` appended to the prefix (e.g. the change log's `wal`).
    pub fn child(&self, sub: &str) -> S3Target {
        S3Target {
            prefix: self.key(sub),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "{}", p.display()),
            Location::S3(t) => write!(f, "{t}"),
        }
    }
}

impl std::fmt::Display for BackupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupRef::File(p) => write!(f, "{}", p.display()),
            BackupRef::S3 { target, name } => write!(f, "{target}/{name}"),
        }
    }
}

impl Location {
    /// The sub-location `sub` (a subdirectory, or a longer prefix).
    pub fn child(&self, sub: &str) -> Location {
        match self {
            Location::Dir(p) => Location::Dir(p.join(sub)),
            Location::S3(t) => Location::S3(t.child(sub)),
        }
    }
}

impl Reference {
    /// Parses a location argument, taking object-store settings from the process environment.
    pub fn parse(text: &str) -> Result<Reference, BackupError> {
        Reference::parse_with(text, std::env::vars())
    }

    /// Parses a location argument with the given `AWS_*` variables.
    pub fn parse_with(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Reference, BackupError> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.contains("://") {
                return Err(BackupError::Usage(format!(
                    "{text:?}: only local paths and s3://bucket/prefix are supported"
                )));
            }
            if text.is_empty() {
                return Err(BackupError::Usage("the location is empty".into()));
            }
            let path = PathBuf::from(text);
            let is_backup = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(format::FILE_SUFFIX));
            return Ok(if is_backup || path.is_file() {
                Reference::Backup(BackupRef::File(path))
            } else {
                Reference::Place(Location::Dir(path))
            });
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err(BackupError::Usage(format!(
                "{text:?}: {bucket:?} is not a valid bucket name (3-63 characters: lower-case \
                 letters, digits, dots and hyphens)"
            )));
        }
        let key = key.trim_matches('/');
        if key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
            && !key.is_empty()
        {
            return Err(BackupError::Usage(format!(
                "{text:?}: the prefix has an empty, `.` or `..` segment"
            )));
        }
        let settings = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) if format::parse_file_name(n).is_some() => (p, Some(n)),
            None if format::parse_file_name(key).is_some() => ("", Some(key)),
            _ => (key, None),
        };
        let target = S3Target {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            settings,
        };
        Ok(match name {
            Some(n) => Reference::Backup(BackupRef::S3 {
                target,
                name: n.to_owned(),
            }),
            None => Reference::Place(Location::S3(target)),
        })
    }

    /// The place, refusing a single backup (for `backup --dest` and `list`).
    pub fn into_place(self, what: &str) -> Result<Location, BackupError> {
        match self {
            Reference::Place(l) => Ok(l),
            Reference::Backup(b) => Err(BackupError::Usage(format!(
                "{what} takes a directory or s3://bucket/prefix, not the backup {b}"
            ))),
        }
    }
}

/// S3 bucket naming rules (the portable subset every S3-compatible store accepts).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// The backup directory of a backup file (where retention and the change log live).
pub fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Reference, BackupError> {
        Reference::parse_with(
            s,
            [
                ("AWS_REGION".to_owned(), "eu-west-1".to_owned()),
                ("HOME".to_owned(), "/root".to_owned()),
            ],
        )
    }

    #[test]
    fn s3_places_and_backups() {
        let Reference::Place(Location::S3(t)) = parse("s3://my-bucket/a/b/").expect("place") else {
            panic!("not a place")
        };
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("my-bucket", "a/b"));
        assert_eq!(t.key("x"), "a/b/x");
        assert_eq!(t.settings.len(), 1, "only AWS_* variables are kept");
        let Reference::Backup(BackupRef::S3 { target, name }) =
            parse("s3://my-bucket/a/tradeplane-backup-20261122T020005.123Z.tpb").expect("one")
        else {
            panic!("not a backup")
        };
        assert_eq!(target.prefix, "a");
        assert_eq!(name, "tradeplane-backup-20261122T020005.123Z.tpb");
        let Reference::Place(Location::S3(root)) = parse("s3://bkt").expect("root") else {
            panic!("not a place")
        };
        assert_eq!(root.key("x"), "x");
        assert!(
            !format!("{root:?}").contains("eu-west-1"),
            "settings stay hidden"
        );
    }

    #[test]
    fn bad_locations_are_usage_errors() {
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "s3://ab/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "gs://bucket/x",
            "",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.exit_code(), super::super::EXIT_USAGE, "{bad}: {err}");
        }
    }

    #[test]
    fn paths_are_files_or_directories() {
        assert!(matches!(
            parse("/backups/x.tpb").expect("file"),
            Reference::Backup(BackupRef::File(_))
        ));
        assert!(matches!(
            parse("/backups").expect("dir"),
            Reference::Place(Location::Dir(_))
        ));
    }
}
