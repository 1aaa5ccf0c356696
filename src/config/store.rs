//! Settings of the object store: where files go (`[s3]`, `output.url`), how they are named,
//! compressed and written.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::REDACTED;

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Empty: AWS's own endpoint for `region` (or `AWS_ENDPOINT_URL`).
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Static keys; empty: the credential chain (`credentials`).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// With static keys: the session token of temporary ones.
    pub session_token: String,
    /// Where credentials come from: `auto` tries, in order, the keys above, the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, EKS IRSA), a profile of the shared
    /// files (`profile`), container credentials (ECS, EKS Pod Identity) and instance metadata
    /// (IMDSv2), as the AWS SDKs do; any other value takes only that source.
    pub credentials: CredentialSource,
    /// Profile of `~/.aws/credentials` / `~/.aws/config` (`AWS_SHARED_CREDENTIALS_FILE`,
    /// `AWS_CONFIG_FILE`); empty: `AWS_PROFILE`, else `default`.
    pub profile: String,
    /// Role assumed (STS AssumeRole) with whatever credentials the source gives, refreshed
    /// before they expire; empty: none.
    pub role_arn: String,
    pub external_id: String,
    pub session_name: String,
    /// Lifetime asked for the assumed role's credentials (900 .. 43200).
    pub role_duration_secs: u32,
    /// STS for AssumeRole and web identity; empty: `AWS_ENDPOINT_URL_STS`, else
    /// `https://sts.<region>.amazonaws.com`.
    pub sts_endpoint: String,
    /// Instance metadata service (IMDSv2); empty: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
    /// `http://169.254.169.254`.
    pub metadata_endpoint: String,
    /// Server-side encryption of every object: `none` (the bucket's default), `AES256`
    /// (SSE-S3), `aws:kms` (SSE-KMS, key `sse_kms_key_id`), `aws:kms:dsse`, `sse-c` (key
    /// `sse_customer_key`).
    pub sse: Sse,
    /// KMS key id or ARN for `aws:kms`; empty: the account's `aws/s3` key.
    pub sse_kms_key_id: String,
    /// Base64 of the 256-bit key for `sse-c`.
    pub sse_customer_key: String,
    /// `x-amz-storage-class` of every object (`STANDARD_IA`, `INTELLIGENT_TIERING`, ...);
    /// empty: the bucket's default.
    pub storage_class: String,
    /// Canned ACL of every object (`bucket-owner-full-control`, ...); empty: none sent.
    pub acl: String,
    /// Tags of every object (`x-amz-tagging`).
    pub tags: BTreeMap<String, String>,
    /// Plain http:// to the object store (S3, or a gs:// / az:// lake behind an emulator).
    pub allow_http: bool,
    /// Path-style addressing (`http://host/bucket/key`), what MinIO and SeaweedFS want.
    pub path_style: bool,
    /// Files at least this large are uploaded with multipart, in parts of this size.
    pub multipart_part_bytes: usize,
    /// PEM file of extra CA certificates for an https:// endpoint; empty: the system's roots.
    pub ca_file: String,
    /// Attempts of one upload, listing or delete on transient errors before the error is fatal;
    /// 0: retry until the store answers (an outage pauses the sink instead of stopping it).
    pub retry_max_attempts: u32,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    /// The process's `AWS_*` variables, read by the config loader (the only reader of the
    /// environment) for the credential chain.
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: "datalake".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            session_token: String::new(),
            credentials: CredentialSource::Auto,
            profile: String::new(),
            role_arn: String::new(),
            external_id: String::new(),
            session_name: "kafka-parquet-sink".into(),
            role_duration_secs: 3600,
            sts_endpoint: String::new(),
            metadata_endpoint: String::new(),
            sse: Sse::None,
            sse_kms_key_id: String::new(),
            sse_customer_key: String::new(),
            storage_class: String::new(),
            acl: String::new(),
            tags: BTreeMap::new(),
            allow_http: false,
            path_style: true,
            multipart_part_bytes: 16 * 1024 * 1024,
            ca_file: String::new(),
            retry_max_attempts: 0,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 30_000,
            env: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        shown.redact();
        f.debug_struct("S3Config")
            .field("endpoint", &shown.endpoint)
            .field("region", &shown.region)
            .field("bucket", &shown.bucket)
            .field("access_key_id", &shown.access_key_id)
            .field("secret_access_key", &shown.secret_access_key)
            .field("credentials", &shown.credentials)
            .field("role_arn", &shown.role_arn)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    pub(super) fn redact(&mut self) {
        for secret in [&mut self.secret_access_key, &mut self.session_token, &mut self.sse_customer_key] {
            if !secret.is_empty() {
                *secret = REDACTED.into();
            }
        }
        self.env.retain(|k, _| !k.contains("SECRET") && !k.contains("TOKEN"));
    }
}


/// A source of AWS credentials (`s3.credentials`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    Auto,
    Static,
    Environment,
    WebIdentity,
    Profile,
    Container,
    Instance,
}

/// Server-side encryption (`s3.sse`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum Sse {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
    #[serde(rename = "aws:kms:dsse")]
    KmsDsse,
    #[serde(rename = "sse-c")]
    CustomerKey,
}

/// Parquet compression codec (`output.compression`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Snappy,
    Zstd,
    Lz4,
    Gzip,
    None,
}

impl Codec {
    /// The codec's part of a Confluent file name, as parquet-mr names it (`.snappy`, `.gz`,
    /// `.zstd`, `.lz4raw`; nothing for `none`).
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Snappy => ".snappy",
            Codec::Zstd => ".zstd",
            Codec::Lz4 => ".lz4raw",
            Codec::Gzip => ".gz",
            Codec::None => "",
        }
    }

    /// Levels the codec takes (`output.compression_level`), if it has any.
    pub fn levels(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Codec::Zstd => Some(1..=22),
            Codec::Gzip => Some(0..=9),
            Codec::Snappy | Codec::Lz4 | Codec::None => None,
        }
    }
}

/// How data files are named (`output.file_naming`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileNaming {
    /// `<start offset, 20 digits>.parquet`
    Offset,
    /// `<topic>+<partition>+<start offset, padded>.<codec>.parquet`, the Confluent S3 sink's.
    Confluent,
}

/// Where files go: `output.url` parsed, or `[s3]` bucket and `output.prefix` when it is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, prefix: String },
    Gcs { bucket: String, prefix: String },
    Azure { container: String, prefix: String },
    /// An absolute directory; files go under it.
    Local { root: std::path::PathBuf, prefix: String },
}

impl Location {
    /// `output.url` (or, when empty, `s3://<s3.bucket>/<output.prefix>`), as a typed location.
    pub fn parse(url: &str, bucket: &str, prefix: &str) -> Result<Location, String> {
        if url.is_empty() {
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() });
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("output.url: not a URL (scheme://...): {url:?}"))?;
        if scheme == "file" {
            if !rest.starts_with('/') {
                return Err(format!("output.url: a file:// URL needs an absolute path (file:///data/lake), got {url:?}"));
            }
            let dir = rest.trim_end_matches('/');
            if dir.is_empty() {
                return Err(format!("output.url: a file:// URL needs a directory below / (file:///data/lake), got {url:?}"));
            }
            return Ok(Location::Local { root: std::path::PathBuf::from(dir), prefix: String::new() });
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(format!("output.url: no bucket in {url:?}"));
        }
        let path = path.trim_end_matches('/').to_string();
        let (bucket, prefix) = (host.to_string(), path);
        match scheme {
            "s3" | "s3a" => Ok(Location::S3 { bucket, prefix }),
            "gs" => Ok(Location::Gcs { bucket, prefix }),
            "az" | "azure" => Ok(Location::Azure { container: bucket, prefix }),
            other => Err(format!("output.url: scheme {other:?} is not one of s3://, gs://, az://, file://")),
        }
    }

    /// The key prefix inside the bucket (`${topic}` not yet replaced).
    pub fn prefix(&self) -> &str {
        match self {
            Location::S3 { prefix, .. } | Location::Gcs { prefix, .. } | Location::Azure { prefix, .. } | Location::Local { prefix, .. } => prefix,
        }
    }

    /// As a URL, for logs and `status` (no secrets in it).
    pub fn url(&self) -> String {
        let join = |scheme: &str, bucket: &str, prefix: &str| {
            if prefix.is_empty() { format!("{scheme}://{bucket}") } else { format!("{scheme}://{bucket}/{prefix}") }
        };
        match self {
            Location::S3 { bucket, prefix } => join("s3", bucket, prefix),
            Location::Gcs { bucket, prefix } => join("gs", bucket, prefix),
            Location::Azure { container, prefix } => join("az", container, prefix),
            Location::Local { root, .. } => format!("file://{}", root.display()),
        }
    }
}

/// S3's canned ACLs (`s3.acl`).
pub const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// Whether `key` is the base64 of 32 bytes (an SSE-C key).
pub fn is_aes256_key_base64(key: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(key.trim()).is_ok_and(|k| k.len() == 32)
}
