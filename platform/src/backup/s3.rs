//! S3-compatible object storage, through `object_store`'s `AmazonS3` (SigV4 signing, multipart
//! uploads, retries with backoff; nothing of the protocol is written here).
//!
//! Settings are the usual `AWS_*` variables, read by name exactly as `object_store`'s
//! `AmazonS3Builder::from_env` reads them: `AWS_ENDPOINT_URL`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` (path-style addressing otherwise), `AWS_ALLOW_HTTP`,
//! `AWS_SERVER_SIDE_ENCRYPTION`, `AWS_SSE_KMS_KEY_ID`, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`
//! with `AWS_ROLE_ARN`) and container credentials. On top, `AWS_SHARED_CREDENTIALS_FILE` (with
//! `AWS_PROFILE`, default `default`) reads the keys from a mounted secret file in the AWS
//! shared-credentials format; variables set directly win, as with the AWS SDKs.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::BackupError;
use super::location::S3Target;
use super::writer::PayloadSink;

/// Size of one multipart upload part. With [`PARTS_IN_FLIGHT`], the upload buffers at most
/// `(PARTS_IN_FLIGHT + 1) * PART_BYTES` (24 MiB) whatever the database size; S3's limit of
/// 10,000 parts caps one backup payload at 80 GB compressed.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently.
pub const PARTS_IN_FLIGHT: usize = 2;

/// A connected bucket and prefix.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Where it points.
    pub target: S3Target,
}

/// One object directly under the prefix.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Name relative to the prefix.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's modification time.
    pub last_modified: DateTime<Utc>,
}

/// The innermost sink of a payload streamed to a multipart upload (see [`PayloadSink`]).
pub struct UploadSink {
    upload: WriteMultipart,
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.upload.write(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PayloadSink for UploadSink {
    async fn pace(&mut self) -> std::io::Result<()> {
        self.upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(std::io::Error::other)
    }
}

impl UploadSink {
    /// Uploads the last part and completes the upload: only now does the object exist.
    pub async fn finish(self, bucket: &Bucket, name: &str) -> Result<(), BackupError> {
        self.upload
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| storage_error(&bucket.target, &format!("uploading {name}"), e))
    }

    /// Abandons the upload and asks the store to drop the parts already sent.
    pub async fn abort(self) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "cannot abort the multipart upload; the bucket's lifecycle rule must remove it");
        }
    }
}

fn credentials_from_file(
    target: &S3Target,
) -> Result<Vec<(AmazonS3ConfigKey, String)>, BackupError> {
    let s = &target.settings;
    let Some(file) = s
        .get("AWS_SHARED_CREDENTIALS_FILE")
        .filter(|f| !f.is_empty())
    else {
        return Ok(Vec::new());
    };
    if s.contains_key("AWS_ACCESS_KEY_ID") {
        return Ok(Vec::new());
    }
    let profile = s
        .get("AWS_PROFILE")
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or("default");
    let text = std::fs::read_to_string(file)
        .map_err(|e| BackupError::Usage(format!("AWS_SHARED_CREDENTIALS_FILE {file}: {e}")))?;
    let ini = ini::Ini::load_from_str(&text).map_err(|e| {
        BackupError::Usage(format!(
            "AWS_SHARED_CREDENTIALS_FILE {file}: not a credentials file ({e})"
        ))
    })?;
    let section = ini.section(Some(profile)).ok_or_else(|| {
        BackupError::Usage(format!(
            "AWS_SHARED_CREDENTIALS_FILE {file} has no [{profile}] profile"
        ))
    })?;
    let mut out = Vec::new();
    for (name, key, required) in [
        ("aws_access_key_id", AmazonS3ConfigKey::AccessKeyId, true),
        (
            "aws_secret_access_key",
            AmazonS3ConfigKey::SecretAccessKey,
            true,
        ),
        ("aws_session_token", AmazonS3ConfigKey::Token, false),
    ] {
        match section.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => out.push((key, v.to_owned())),
            None if required => {
                return Err(BackupError::Usage(format!(
                    "AWS_SHARED_CREDENTIALS_FILE {file}: [{profile}] lacks {name}"
                )));
            }
            None => {}
        }
    }
    Ok(out)
}

impl Bucket {
    /// Builds the client for `target` (no request is sent yet).
    pub fn connect(target: &S3Target) -> Result<Bucket, BackupError> {
        crate::tls::install_crypto_provider();
        let mut builder = AmazonS3Builder::new().with_bucket_name(&target.bucket);
        for (name, value) in &target.settings {
            if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        for (key, value) in credentials_from_file(target)? {
            builder = builder.with_config(key, value);
        }
        let store = builder.build().map_err(|e| {
            BackupError::Usage(format!(
                "the object store settings for {target} are invalid: {e}"
            ))
        })?;
        Ok(Bucket {
            store: Arc::new(store),
            target: target.clone(),
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(self.target.key(name))
    }

    fn err(&self, context: String) -> impl FnOnce(object_store::Error) -> BackupError + '_ {
        move |e| storage_error(&self.target, &context, e)
    }

    /// Starts a multipart upload of `name`; nothing is visible until [`UploadSink::finish`].
    pub async fn upload(&self, name: &str) -> Result<UploadSink, BackupError> {
        let upload = self
            .store
            .put_multipart(&self.path(name))
            .await
            .map_err(self.err(format!("starting the upload of {name}")))?;
        Ok(UploadSink {
            upload: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
        })
    }

    /// Writes a small object in one request.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(self.err(format!("writing {name}")))
    }

    /// Reads a small object whole, refusing one larger than `max` bytes.
    pub async fn get_small(&self, name: &str, max: u64) -> Result<Vec<u8>, BackupError> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(self.err(format!("reading {name}")))?;
        if got.meta.size > max {
            return Err(BackupError::Verification(format!(
                "{name} is {} bytes, more than the {max} expected",
                got.meta.size
            )));
        }
        let bytes = got
            .bytes()
            .await
            .map_err(self.err(format!("reading {name}")))?;
        Ok(bytes.to_vec())
    }

    /// Streams an object into `out` in bounded memory; returns the bytes copied.
    pub async fn download(&self, name: &str, out: &mut impl Write) -> Result<u64, BackupError> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(self.err(format!("reading {name}")))?;
        let mut stream = got.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(self.err(format!("reading {name}")))?
        {
            out.write_all(&chunk)
                .map_err(|e| BackupError::io(&format!("cannot store {name} locally"), e))?;
            n += chunk.len() as u64;
        }
        Ok(n)
    }

    /// The size of `name`, or `None` when it does not exist.
    pub async fn size(&self, name: &str) -> Result<Option<u64>, BackupError> {
        match self.store.head(&self.path(name)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(&self.target, &format!("checking {name}"), e)),
        }
    }

    /// The objects directly under the prefix (not in deeper "directories" such as `wal/`):
    /// one delimited LIST under a prefix; at a bucket's root, a plain LIST filtered here (a
    /// bucket root of backups holds little else).
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, BackupError> {
        let metas: Vec<object_store::ObjectMeta> = if self.target.prefix.is_empty() {
            self.store
                .list(None)
                .try_collect::<Vec<_>>()
                .await
                .map_err(self.err("listing the backups".into()))?
                .into_iter()
                .filter(|m| m.location.parts().count() == 1)
                .collect()
        } else {
            let prefix = ObjectPath::from(self.target.prefix.as_str());
            self.store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(self.err("listing the backups".into()))?
                .objects
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                Some(ObjectInfo {
                    name: m.location.filename()?.to_owned(),
                    size: m.size,
                    last_modified: m.last_modified,
                })
            })
            .collect())
    }

    /// Deletes `name` (deleting a missing object is not an error).
    pub async fn delete(&self, name: &str) -> Result<(), BackupError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(&self.target, &format!("deleting {name}"), e)),
        }
    }
}

/// The S3 error code in an error response body (`<Code>NoSuchBucket</Code>`), if any.
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

/// Turns an object-store error into a message an operator can act on: a missing bucket, denied
/// access (wrong or missing credentials, exit code 7) or the store's own words.
pub fn storage_error(target: &S3Target, context: &str, e: object_store::Error) -> BackupError {
    let text = e.to_string();
    let code = s3_code(&text).map(str::to_owned);
    let denied_code = matches!(
        code.as_deref(),
        Some(
            "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "ExpiredToken"
                | "InvalidToken"
                | "InvalidSecurity"
                | "AllAccessDisabled"
        )
    );
    let access_denied = denied_code
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        );
    let detail = if code.as_deref() == Some("NoSuchBucket") {
        format!("bucket {:?} does not exist", target.bucket)
    } else if access_denied {
        format!(
            "access denied by the object store ({}); check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or AWS_SHARED_CREDENTIALS_FILE) and the bucket's policy",
            code.as_deref().unwrap_or("403")
        )
    } else if let object_store::Error::NotFound { path, .. } = &e {
        format!("{path} does not exist")
    } else {
        let mut t = text;
        if t.len() > 400 {
            let cut = (0..=400)
                .rev()
                .find(|i| t.is_char_boundary(*i))
                .unwrap_or(0);
            t.truncate(cut);
            t.push('…');
        }
        t
    };
    BackupError::Storage {
        context: format!("{context} at {target}"),
        detail,
        access_denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_codes_are_found_in_error_bodies() {
        assert_eq!(
            s3_code(
                "...404 Not Found: <?xml?><Error><Code>NoSuchBucket</Code><Message>x</Message>"
            ),
            Some("NoSuchBucket")
        );
        assert_eq!(s3_code("connection refused"), None);
    }

    #[test]
    fn credentials_come_from_a_shared_credentials_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIDEFAULT\naws_secret_access_key = s1\n\n\
             [backup]\naws_access_key_id=AKIBACKUP\naws_secret_access_key=s2\naws_session_token=t\n",
        )
        .expect("write");
        let target = |extra: &[(&str, &str)]| S3Target {
            bucket: "b".into(),
            prefix: String::new(),
            settings: std::iter::once((
                "AWS_SHARED_CREDENTIALS_FILE",
                file.to_str().expect("utf-8"),
            ))
            .chain(extra.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        };
        let got = credentials_from_file(&target(&[])).expect("default");
        assert_eq!(got[0].1, "AKIDEFAULT");
        let got = credentials_from_file(&target(&[("AWS_PROFILE", "backup")])).expect("profile");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, "AKIBACKUP");
        assert!(
            credentials_from_file(&target(&[("AWS_ACCESS_KEY_ID", "env")]))
                .expect("env")
                .is_empty()
        );
        let err = credentials_from_file(&target(&[("AWS_PROFILE", "nope")])).expect_err("missing");
        assert!(err.to_string().contains("[nope]"), "{err}");
    }
}
