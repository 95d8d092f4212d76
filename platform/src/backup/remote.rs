//! Backups in object storage: two objects per backup under the prefix.
//!
//! ```text
//! <prefix>/tradeplane-backup-<timestamp>.tpb.payload   the payload, streamed as a multipart upload
//! <prefix>/tradeplane-backup-<timestamp>.tpb           magic line + manifest, written LAST
//! ```
//!
//! A backup exists exactly when its manifest object does, and the manifest is written only after
//! the payload upload has completed and its stored size checked. An interrupted run therefore
//! leaves either nothing visible (an incomplete multipart upload, which the bucket's
//! `AbortIncompleteMultipartUpload` lifecycle rule removes) or a payload without a manifest,
//! which `list`, `restore` and retention never take for a backup; retention deletes such orphans
//! once they are a day old.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;
use tracing::Instrument;

use chrono::{DateTime, Utc};

use super::crypto::{self, BackupKey};
use super::format::{self, Manifest, PAYLOAD_SUFFIX};
use super::location::S3Target;
use super::reader::BackupReader;
use super::retention::{self, Candidate, PruneReport};
use super::s3::Bucket;
use super::writer::{self, PayloadWriter};
use super::{BackupError, BackupOptions, BackupReport, dump};
use crate::store::Store;

/// Payloads without a manifest younger than this may belong to a run in progress.
const ORPHAN_AGE: chrono::Duration = chrono::Duration::days(1);

/// `create_backup` into a bucket (see the module docs for the layout).
pub async fn backup(
    store: &Store,
    opts: &BackupOptions,
    target: &S3Target,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let bucket = Bucket::connect(target)?;
    let name = format::file_name(opts.now);
    if bucket.size(&name).await?.is_some() {
        return Err(BackupError::io(
            &format!("{target}/{name} already exists"),
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    let payload_name = format!("{name}{PAYLOAD_SUFFIX}");
    let prefix = crypto::random_nonce_prefix();
    let upload = bucket.upload(&payload_name).await?;
    let mut out = PayloadWriter::new(upload, opts.key.as_ref(), &prefix);
    let snapshot = match dump::dump(store, &mut out, &opts.progress)
        .instrument(crate::telemetry::otel::span_if_enabled!("backup.dump"))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            if let Ok((upload, _, _)) = out.finish() {
                upload.abort().await;
            }
            return Err(e);
        }
    };
    let (upload, sha256, bytes) = out
        .finish()
        .map_err(|e| BackupError::io("cannot finish the payload", e))?;
    upload
        .finish(&bucket, &payload_name)
        .instrument(crate::telemetry::otel::span_if_enabled!("backup.upload"))
        .await?;
    match bucket.size(&payload_name).await? {
        Some(n) if n == bytes => {}
        other => {
            return Err(BackupError::Verification(format!(
                "the uploaded payload {payload_name} has {other:?} bytes, {bytes} were sent"
            )));
        }
    }
    let manifest = super::build_manifest(
        store,
        opts,
        snapshot,
        format::PayloadInfo {
            bytes,
            sha256,
            compression: "gzip".into(),
            object: Some(payload_name),
        },
        &prefix,
        started,
    );
    let head = writer::header_bytes(&manifest)?;
    let file_bytes = head.len() as u64 + bytes;
    bucket.put(&name, head).await?;

    let (pruned, prune_error) = if opts.retention.is_active() {
        match prune(&bucket, opts.now, opts.retention, &name).await {
            Ok(r) => (r, None),
            Err(e) => (PruneReport::default(), Some(e.to_string())),
        }
    } else {
        (PruneReport::default(), None)
    };
    Ok(BackupReport {
        path: PathBuf::from(format!("{target}/{name}")),
        manifest,
        file_bytes,
        pruned,
        prune_error,
        archive_pruned: Default::default(),
    })
}

/// Reads the manifest object `name` (nothing else: cheap enough for `list`).
pub async fn read_manifest(bucket: &Bucket, name: &str) -> Result<Manifest, BackupError> {
    let head = bucket
        .get_small(name, format::MAX_MANIFEST_BYTES + 64)
        .await?;
    let mut cursor = head.as_slice();
    let (manifest, len) = format::read_header(&mut cursor)?;
    if len as usize != head.len() {
        return Err(BackupError::Verification(format!(
            "the manifest object {name} has {} unexpected bytes after the manifest",
            head.len() - len as usize
        )));
    }
    Ok(manifest)
}

/// Opens the backup `name`: reads its manifest, downloads the payload (streamed to a private
/// temporary file, so the checks and the restore's passes do not download it again) and checks
/// it like a file (length, SHA-256, key).
pub async fn open(
    target: &S3Target,
    name: &str,
    key: Option<&BackupKey>,
) -> Result<BackupReader, BackupError> {
    let bucket = Bucket::connect(target)?;
    let manifest = read_manifest(&bucket, name).await?;
    let expected = format!("{name}{PAYLOAD_SUFFIX}");
    match manifest.payload.object.as_deref() {
        Some(o) if o == expected => {}
        other => {
            return Err(BackupError::Verification(format!(
                "the manifest of {name} names the payload object {other:?}, expected {expected:?}"
            )));
        }
    }
    if bucket.size(&expected).await?.is_none() {
        return Err(BackupError::Verification(format!(
            "the payload object {target}/{expected} of this backup is missing"
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".tradeplane-download-")
        .tempfile()
        .map_err(|e| BackupError::io("cannot create a temporary file for the download", e))?;
    let (file, path) = tmp.into_parts();
    let mut out = BufWriter::with_capacity(1 << 20, file);
    bucket.download(&expected, &mut out).await?;
    let file = out
        .into_inner()
        .map_err(|e| BackupError::io("cannot store the download", e.into_error()))?;
    file.sync_all()
        .map_err(|e| BackupError::io("cannot store the download", e))?;
    drop(file);
    let local = path.to_path_buf();
    BackupReader::open_parts(&local, 0, manifest, key, Some(path))
}

/// The backups under the bucket's prefix (manifest objects that parse), and the names of
/// payload objects that have no manifest with their modification times.
pub async fn candidates(
    bucket: &Bucket,
) -> Result<
    (
        Vec<(Candidate, Manifest, u64)>,
        Vec<(String, DateTime<Utc>)>,
    ),
    BackupError,
> {
    let objects = bucket.list().await?;
    let names: BTreeSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let mut found = Vec::new();
    let mut orphans = Vec::new();
    for o in &objects {
        if format::parse_file_name(&o.name).is_some() {
            match read_manifest(bucket, &o.name).await {
                Ok(m) => {
                    let payload = objects
                        .iter()
                        .find(|p| p.name == format!("{}{PAYLOAD_SUFFIX}", o.name))
                        .map_or(0, |p| p.size);
                    found.push((
                        Candidate {
                            path: PathBuf::from(&o.name),
                            created_at: m.created_at,
                        },
                        m,
                        o.size + payload,
                    ));
                }
                Err(e) => {
                    tracing::warn!(object = %o.name, error = %e, "not a valid backup manifest; ignored")
                }
            }
        } else if let Some(base) = o.name.strip_suffix(PAYLOAD_SUFFIX)
            && format::parse_file_name(base).is_some()
            && !names.contains(base)
        {
            orphans.push((o.name.clone(), o.last_modified));
        }
    }
    Ok((found, orphans))
}

/// Retention in a bucket: the same policy as for a directory; a pruned backup loses its
/// manifest first (so it stops being a backup at once), then its payload. Payloads whose
/// manifest never came (an interrupted run) are deleted once a day old.
pub async fn prune(
    bucket: &Bucket,
    now: DateTime<Utc>,
    policy: retention::RetentionPolicy,
    just_written: &str,
) -> Result<PruneReport, BackupError> {
    let (found, orphans) = candidates(bucket).await?;
    let all = found.into_iter().map(|(c, _, _)| c).collect();
    let (keep, delete) = retention::plan(all, now, policy, std::path::Path::new(just_written));
    let url = |n: &str| PathBuf::from(format!("{}/{n}", bucket.target));
    let mut report = PruneReport {
        kept: keep
            .iter()
            .map(|c| url(&c.path.to_string_lossy()))
            .collect(),
        deleted: Vec::new(),
    };
    for c in delete {
        let name = c.path.to_string_lossy().into_owned();
        bucket.delete(&name).await?;
        bucket.delete(&format!("{name}{PAYLOAD_SUFFIX}")).await?;
        tracing::info!(backup = %url(&name).display(), created_at = %c.created_at, "pruned old backup");
        report.deleted.push(url(&name));
    }
    for (name, modified) in orphans {
        if now.signed_duration_since(modified) > ORPHAN_AGE {
            bucket.delete(&name).await?;
            tracing::warn!(object = %name, "removed the payload of an interrupted backup (it never got a manifest)");
        }
    }
    Ok(report)
}

/// `backup list s3://…`: one line per backup, newest first.
pub async fn list(target: &S3Target, out: &mut impl Write) -> Result<(), BackupError> {
    let bucket = Bucket::connect(target)?;
    let (mut found, _) = candidates(&bucket).await?;
    found.sort_by_key(|(c, _, _)| std::cmp::Reverse(c.created_at));
    for (c, m, size) in &found {
        writeln!(
            out,
            "{target}/{} {}",
            c.path.display(),
            super::command::describe(m, *size)
        )
        .map_err(|e| BackupError::io("cannot print", e))?;
    }
    Ok(())
}
