//! `spec.backup.storage.s3`: backups in an S3-compatible bucket instead of a claim (types
//! only; re-exported from [`crate::crd`]). The backup Job gets the bucket as `--dest
//! s3://bucket/prefix` and the client settings as the `AWS_*` variables the platform reads
//! (docs/backups.md), credentials from a Secret.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::crd::SecretKeyRef;

/// An S3-compatible bucket and key prefix holding the backups (AWS S3, MinIO, Ceph RGW, GCS in
/// S3 mode, …).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.kmsKeyId) || (has(self.serverSideEncryption) && self.serverSideEncryption == 'aws:kms')").message("spec.backup.storage.s3.kmsKeyId needs serverSideEncryption aws:kms").field_path(".kmsKeyId"))]
#[x_kube(validation = Rule::new("!has(self.endpoint) || self.forcePathStyle || self.endpoint.contains(self.bucket)").message("with an endpoint and virtual-hosted addressing the endpoint must name the bucket (https://BUCKET.host); most S3-compatible stores want forcePathStyle: true").field_path(".forcePathStyle"))]
pub struct S3Storage {
    /// Bucket name (3-63 characters: lower-case letters, digits, dots and hyphens).
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,
    /// Key prefix under which the backups are written, e.g. `tradeplane/prod`; the bucket's
    /// root if unset. Segments are separated by `/` and may not be empty or start with a dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^[-_a-zA-Z0-9][-_.a-zA-Z0-9]*(/[-_a-zA-Z0-9][-_.a-zA-Z0-9]*)*$")
    )]
    pub prefix: Option<String>,
    /// Endpoint URL of a store that is not AWS S3 (e.g. `http://minio.storage:9000`), passed as
    /// `AWS_ENDPOINT_URL`; an `http://` endpoint also sets `AWS_ALLOW_HTTP`. AWS's regional
    /// endpoint if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 8, max = 512),
        regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    )]
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`), e.g. `eu-west-1`; `us-east-1` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,
    /// Path-style addressing (`https://host/BUCKET/key`), which most S3-compatible stores need;
    /// `false` uses virtual-hosted style (`https://BUCKET.host/key`, AWS's preference).
    #[serde(default)]
    pub force_path_style: bool,
    /// Access keys from Secrets. Without them the pod's own identity is used (EKS IRSA or pod
    /// identity, through the platform service account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<S3Credentials>,
    /// Server-side encryption the store applies on top of the platform's own AES-256-GCM
    /// (`AWS_SERVER_SIDE_ENCRYPTION`): `AES256` or `aws:kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// KMS key for `serverSideEncryption: aws:kms` (`AWS_SSE_KMS_KEY_ID`); the bucket's default
    /// key if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
}

/// Access keys of the backup's bucket, each a key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// Secret key holding the access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: SecretKeyRef,
    /// Secret key holding the secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: SecretKeyRef,
    /// Secret key holding a session token (`AWS_SESSION_TOKEN`), for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretKeyRef>,
}

/// Server-side encryption by the object store.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ServerSideEncryption {
    /// SSE-S3: keys managed by the store.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS: keys in AWS KMS (`kmsKeyId`).
    #[serde(rename = "aws:kms")]
    AwsKms,
}

impl ServerSideEncryption {
    /// The value of `AWS_SERVER_SIDE_ENCRYPTION`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerSideEncryption::Aes256 => "AES256",
            ServerSideEncryption::AwsKms => "aws:kms",
        }
    }
}

impl S3Storage {
    /// The `--dest` URL: `s3://bucket/prefix` (or `s3://bucket`).
    pub fn url(&self) -> String {
        match &self.prefix {
            Some(p) => format!("s3://{}/{}", self.bucket, p),
            None => format!("s3://{}", self.bucket),
        }
    }
}
