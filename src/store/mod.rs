//! Store stage: object keys, uploads (single put or multipart), and the clean-up of files that
//! were uploaded but never committed. Retryable failures are retried with capped backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload};

mod aws;
mod naming;
mod open;

pub use aws::CredentialInfo;
pub use open::aws_credentials;
pub use naming::{object_key, partition_dir, start_offset_of, topic_dir, Naming, TOPIC_VARIABLE};

use crate::backoff::Backoff;
use crate::config::S3Config;
use crate::health::Dependency;
use crate::metrics::Metrics;

/// Object written and deleted by the start-up check, beside the `topics/` directory.
const PROBE: &str = "_kafka-parquet-sink-probe";

#[derive(Debug, thiserror::Error)]
#[error("object store {op} of {key} failed: {source}")]
pub struct StoreError {
    pub op: &'static str,
    pub key: String,
    #[source]
    pub source: object_store::Error,
}

impl StoreError {
    /// Missing bucket, bad credentials and the like will not heal by waiting; everything else
    /// (timeouts, 5xx, refused connections) may.
    pub fn retryable(&self) -> bool {
        !matches!(
            self.source,
            object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
        )
    }
}

/// What a data file's upload found at its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// The object is ours, with the ETag the store gave it (none after a multipart upload).
    Created { e_tag: Option<String> },
    /// Another object had the key and a conditional put left it in place.
    Exists,
}

/// Object settings sent with every data file: tags (`x-amz-tagging`) and attributes such as
/// the storage class. Encryption is a setting of the client (see `open`).
#[derive(Debug, Clone, Default)]
pub struct ObjectSettings {
    pub tags: object_store::TagSet,
    pub attributes: object_store::Attributes,
}

pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    /// Data files are written with `If-None-Match: *` (`PutMode::Create`): the store refuses
    /// to replace an object that exists. Off until [`Store::probe`] finds the store keeps to it
    /// (S3, MinIO, SeaweedFS and object_store's in-memory store do).
    conditional: bool,
    naming: Naming,
    /// `s3://bucket/prefix`, `file:///dir`, ...: for logs and `status`.
    location: String,
    /// Tags, storage class and the like, sent with every data file (`[s3]`).
    put: ObjectSettings,
    /// Where credentials come from, for `check`, `doctor` and `/status` (no secrets).
    credentials: Option<CredentialInfo>,
    /// The store a Delta table's log is read and written through, and the URL of its root (a
    /// table's root is this URL joined with the topic's directory; see [`Store::table_root`]).
    tables: (Arc<dyn ObjectStore>, String),
    part_bytes: usize,
    backoff: Backoff,
    max_attempts: u32,
    metrics: Metrics,
}

impl Store {
    /// Start-up check: writes and deletes a small object under the prefix, once, without the
    /// retry loop (an outage at start-up is reported, not waited out).
    pub async fn probe(&mut self) -> Result<(), StoreError> {
        // Under the part of the prefix that names no topic.
        let fixed: Vec<&str> = self.prefix.split('/').take_while(|seg| !seg.contains(TOPIC_VARIABLE) && !seg.is_empty()).collect();
        let fixed = fixed.join("/");
        let key = if fixed.is_empty() { PROBE.to_string() } else { format!("{fixed}/{PROBE}") };
        let path = parse_path(&key)?;
        let fail = |op, source| StoreError { op, key: key.clone(), source };
        // Listing first: some S3 servers (SeaweedFS) create a missing bucket on the first put.
        let dir = (!fixed.is_empty()).then(|| Path::from(fixed.as_str()));
        self.inner.list_with_delimiter(dir.as_ref()).await.map_err(|e| fail("list", e))?;
        self.inner.put(&path, PutPayload::from_static(b"kafka-parquet-sink write probe")).await.map_err(|e| fail("put", e))?;
        // A conditional put of the key that now exists must be refused: then data files are
        // written with it. A store that overwrites, or does not implement it, gets plain puts.
        let second = self.inner.put_opts(&path, PutPayload::from_static(b"second"), PutMode::Create.into()).await;
        self.conditional = matches!(second, Err(object_store::Error::AlreadyExists { .. }));
        if !self.conditional {
            let answer = match &second {
                Ok(_) => "the object was replaced".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(answer, "the object store does not refuse a conditional put (If-None-Match) of an existing key: data files are written with plain puts, and a member that lost its partitions could replace a file of the new owner (DESIGN.md, \"Fencing\")");
        }
        self.inner.delete(&path).await.map_err(|e| fail("delete", e))?;
        Ok(())
    }

    /// Whether data files are written with conditional puts (see [`Store::probe`]).
    pub fn conditional(&self) -> bool {
        self.conditional
    }

    /// `<prefix>/topics/<topic>`
    pub fn topic_dir(&self, topic: &str) -> String {
        topic_dir(&self.prefix, topic)
    }

    /// Names data files with `naming` instead of by 20-digit offsets.
    pub fn with_naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self
    }

    /// The start offset of a data file of this store's naming, `None` for other objects.
    pub fn start_offset_of(&self, key: &str) -> Option<i64> {
        self.naming.start_offset(key)
    }

    /// Where files go, as a URL (`s3://datalake/bronze/cdc/tasks`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where credentials come from (S3 only), never a secret.
    pub fn credentials(&self) -> Option<&CredentialInfo> {
        self.credentials.as_ref()
    }

    /// How many data files the topic has, and the newest one (by modification time) with its
    /// bytes. For `doctor`.
    pub async fn newest_file(&self, topic: &str) -> Result<(usize, Option<(String, Bytes)>), StoreError> {
        let dir = self.topic_dir(topic);
        let fail = |op, source| StoreError { op, key: dir.clone(), source };
        let dir_path = parse_path(&dir)?;
        let files: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&dir_path))
            .try_filter(|m| std::future::ready(self.naming.start_offset(m.location.as_ref()).is_some()))
            .try_collect()
            .await
            .map_err(|e| fail("list", e))?;
        let Some(newest) = files.iter().max_by_key(|m| m.last_modified) else {
            return Ok((0, None));
        };
        let bytes = self.inner.get(&newest.location).await.map_err(|e| fail("get", e))?.bytes().await.map_err(|e| fail("get", e))?;
        Ok((files.len(), Some((newest.location.to_string(), bytes))))
    }

    /// The files of the partition under `path` that start after `start_offset` (a pure listing;
    /// from the key after `start_offset`'s where names sort by offset, else the whole directory).
    pub async fn files_after(&self, topic: &str, path: Option<&str>, partition: i32, start_offset: i64) -> Result<Vec<String>, StoreError> {
        let dir = partition_dir(&self.prefix, topic, path, partition);
        let dir_path = parse_path(&dir)?;
        let after = parse_path(&self.key(topic, path, partition, start_offset))?;
        let listed: Vec<String> = self
            .retrying("list", &dir, || async {
                let listing =
                    if self.naming.sorts_by_offset() { self.inner.list_with_offset(Some(&dir_path), &after) } else { self.inner.list(Some(&dir_path)) };
                listing.map_ok(|m| m.location.to_string()).try_collect::<Vec<_>>().await
            })
            .await?;
        Ok(listed.into_iter().filter(|k| self.naming.start_offset(k).is_some_and(|s| s > start_offset)).collect())
    }

    /// Deletes these keys (retrying each).
    pub async fn delete_all(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            let path = parse_path(key)?;
            self.retrying("delete", key, || self.inner.delete(&path)).await?;
        }
        Ok(())
    }

    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, c: &S3Config, metrics: Metrics) -> Self {
        Self {
            tables: (inner.clone(), "memory:///".to_string()),
            inner,
            prefix: prefix.to_string(),
            conditional: false,
            naming: Naming::default(),
            location: String::new(),
            put: ObjectSettings::default(),
            credentials: None,
            part_bytes: c.multipart_part_bytes,
            backoff: Backoff {
                initial: Duration::from_millis(c.retry_initial_backoff_ms),
                max: Duration::from_millis(c.retry_max_backoff_ms),
            },
            max_attempts: c.retry_max_attempts,
            metrics,
        }
    }

    /// The object store a table's log goes through.
    pub fn table_store(&self) -> Arc<dyn ObjectStore> {
        self.tables.0.clone()
    }

    /// The root of the topic's Delta table: `<prefix>/topics/<topic>/` as a URL of
    /// [`Store::table_store`].
    pub fn table_root(&self, topic: &str) -> Result<url::Url, StoreError> {
        (self.table_roots())(topic)
    }

    /// [`Store::table_root`] of every topic, apart from the store (a table format keeps it).
    pub fn table_roots(&self) -> impl Fn(&str) -> Result<url::Url, StoreError> + Send + Sync + 'static {
        let (prefix, base) = (self.prefix.clone(), self.tables.1.clone());
        move |topic: &str| {
            let dir = topic_dir(&prefix, topic);
            let bad = |e: url::ParseError| StoreError { op: "table root", key: dir.clone(), source: object_store::Error::Generic { store: "table", source: Box::new(e) } };
            url::Url::parse(&base).and_then(|base| base.join(&format!("{dir}/"))).map_err(bad)
        }
    }

    /// Key of a data file of the topic's table: `<table root>/[<path>/]__kafka_partition=<p>/<start
    /// offset, 20 digits>-<uuid>.parquet` (`path`: the time or field partitioner's directories),
    /// unique, so no put can meet another's file. The second value is the path relative to the
    /// table's root, as its add action names it.
    pub fn table_file_key(&self, topic: &str, partition: i32, path: Option<&str>, start_offset: i64) -> (String, String) {
        let dir = path.map(|p| format!("{p}/")).unwrap_or_default();
        let relative = format!("{dir}{}={partition}/{start_offset:020}-{}.parquet", crate::decode::envelope::KAFKA_PARTITION, uuid::Uuid::new_v4());
        (format!("{}/{relative}", topic_dir(&self.prefix, topic)), relative)
    }

    pub fn key(&self, topic: &str, path: Option<&str>, partition: i32, start_offset: i64) -> String {
        format!("{}/{}", partition_dir(&self.prefix, topic, path, partition), self.naming.file_name(topic, partition, start_offset))
    }

    /// Uploads one file, overwriting any object at the same key.
    pub async fn upload(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = parse_path(key)?;
        self.retrying("put", key, || self.put_once(&path, bytes.clone(), PutMode::Overwrite)).await.map(|_| ())
    }

    /// Uploads a data file without replacing an object at its key, where the store supports
    /// conditional puts (single puts; a file of `multipart_part_bytes` or more goes multipart,
    /// which object_store cannot make conditional, and overwrites).
    ///
    /// A refused put is read back: an attempt whose answer was lost has landed before the retry
    /// that meets it, so an object holding exactly these bytes is this upload's own, landed. It
    /// is `Created` without an ETag: the same bytes could also be another owner's replay of the
    /// same records, and nothing without an ETag of ours is ever deleted ([`Store::delete_if_ours`]).
    pub async fn upload_new(&self, key: &str, bytes: Bytes) -> Result<Uploaded, StoreError> {
        let path = parse_path(key)?;
        let mode = if self.conditional { PutMode::Create } else { PutMode::Overwrite };
        match self.retrying("put", key, || self.put_once(&path, bytes.clone(), mode.clone())).await {
            Ok(e_tag) => Ok(Uploaded::Created { e_tag }),
            Err(StoreError { source: object_store::Error::AlreadyExists { .. }, .. }) => {
                let same = self.retrying("get", key, || self.holds(&path, &bytes)).await;
                match same {
                    Ok(true) => {
                        tracing::info!(key, "the object under the key holds our bytes: a put whose answer was lost had landed");
                        Ok(Uploaded::Created { e_tag: None })
                    }
                    Ok(false) | Err(StoreError { source: object_store::Error::NotFound { .. }, .. }) => Ok(Uploaded::Exists),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the object at `path` holds exactly `bytes` (its size compared before its body).
    async fn holds(&self, path: &Path, bytes: &Bytes) -> Result<bool, object_store::Error> {
        let got = self.inner.get(path).await?;
        if got.meta.size != bytes.len() as u64 {
            return Ok(false);
        }
        Ok(got.bytes().await? == *bytes)
    }

    /// Deletes `key` if it is still the object we created (its ETag is `e_tag`): another
    /// owner may have replaced it meanwhile. Without an ETag to compare, deletes nothing.
    pub async fn delete_if_ours(&self, key: &str, e_tag: Option<&str>) -> Result<bool, StoreError> {
        let Some(ours) = e_tag else { return Ok(false) };
        let path = parse_path(key)?;
        let meta = match self.retrying("head", key, || self.inner.head(&path)).await {
            Ok(m) => m,
            Err(StoreError { source: object_store::Error::NotFound { .. }, .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.e_tag.as_deref() != Some(ours) {
            return Ok(false);
        }
        self.retrying("delete", key, || self.inner.delete(&path)).await?;
        Ok(true)
    }

    /// Deletes one object (retrying).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete_all(&[key.to_string()]).await
    }

    async fn put_once(&self, path: &Path, bytes: Bytes, mode: PutMode) -> Result<Option<String>, object_store::Error> {
        if bytes.len() < self.part_bytes {
            let opts = PutOptions { mode, tags: self.put.tags.clone(), attributes: self.put.attributes.clone(), ..PutOptions::default() };
            return Ok(self.inner.put_opts(path, PutPayload::from(bytes), opts).await?.e_tag);
        }
        let opts = PutMultipartOptions { tags: self.put.tags.clone(), attributes: self.put.attributes.clone(), ..PutMultipartOptions::default() };
        let mut upload = self.inner.put_multipart_opts(path, opts).await?;
        let mut rest = bytes;
        let result = async {
            while !rest.is_empty() {
                let part = rest.split_to(self.part_bytes.min(rest.len()));
                upload.put_part(PutPayload::from(part)).await?;
            }
            upload.complete().await
        }
        .await;
        match result {
            Ok(done) => Ok(done.e_tag),
            Err(e) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(key = %path, error = %abort, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn retrying<T, F, Fut>(&self, op: &'static str, key: &str, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => {
                    if attempt > 1 {
                        self.metrics.health.up(Dependency::ObjectStore);
                    }
                    return Ok(v);
                }
                Err(source) => {
                    let err = StoreError { op, key: key.to_string(), source };
                    self.metrics.errors.with_label_values(&["store", op]).inc();
                    if !err.retryable() || (self.max_attempts > 0 && attempt >= self.max_attempts) {
                        return Err(err);
                    }
                    self.metrics.health.down(Dependency::ObjectStore, &err);
                    let wait = self.backoff.delay(attempt);
                    tracing::warn!(op, key, attempt, wait_ms = wait.as_millis() as u64, error = %err, "object store request failed, retrying");
                    self.metrics.retries.with_label_values(&["store"]).inc();
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

fn parse_path(key: &str) -> Result<Path, StoreError> {
    Path::parse(key).map_err(|e| StoreError { op: "name", key: key.to_string(), source: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn cleanup_deletes_only_files_past_the_offset() -> Result<(), Box<dyn std::error::Error>> {
        let mem = Arc::new(InMemory::new());
        let store = Store::new(mem.clone(), "pre", &S3Config::default(), Metrics::new()?);
        for start in [0, 10, 20, 30] {
            store.upload(&store.key("t", None, 1, start), Bytes::from_static(b"x")).await?;
        }
        store.upload(&store.key("t", None, 2, 20), Bytes::from_static(b"x")).await?;
        store.upload(&store.key("t", None, 11, 50), Bytes::from_static(b"x")).await?;
        store.upload(&store.key("t", Some("dt=2026-11-24"), 1, 60), Bytes::from_static(b"x")).await?;
        let deleted = store.files_after("t", None, 1, 19).await?;
        store.delete_all(&deleted).await?;
        let mut starts: Vec<i64> = deleted.iter().filter_map(|k| start_offset_of(k)).collect();
        starts.sort();
        assert_eq!(starts, vec![20, 30], "deleted {deleted:?}");
        let left: Vec<String> = mem.list(None).map_ok(|m| m.location.to_string()).try_collect().await?;
        assert_eq!(left.len(), 5, "left {left:?}");
        assert_eq!(store.files_after("t", Some("dt=2026-11-24"), 1, 19).await?.len(), 1, "the path's own listing");
        Ok(())
    }

    #[tokio::test]
    async fn conditional_puts_never_replace_and_only_our_own_object_is_deleted() -> Result<(), Box<dyn std::error::Error>> {
        let mem = Arc::new(InMemory::new());
        let mut store = Store::new(mem.clone(), "pre", &S3Config::default(), Metrics::new()?);
        assert!(!store.conditional(), "off until probed");
        store.probe().await?;
        assert!(store.conditional(), "the in-memory store refuses a second conditional put");
        let key = store.key("t", None, 0, 500);
        let Uploaded::Created { e_tag: ours } = store.upload_new(&key, Bytes::from_static(b"zombie")).await? else {
            return Err("the first put of a new key must create it".into());
        };
        assert_eq!(store.upload_new(&key, Bytes::from_static(b"other")).await?, Uploaded::Exists);
        // The same bytes again (a put whose answer was lost, retried): ours, landed, no ETag.
        assert_eq!(store.upload_new(&key, Bytes::from_static(b"zombie")).await?, Uploaded::Created { e_tag: None }, "our own landed put");
        let back = mem.get(&Path::parse(&key)?).await?.bytes().await?;
        assert_eq!(back, Bytes::from_static(b"zombie"), "a refused put left the object as it was");
        // Another owner replaced it: its ETag differs, so ours is not deleted.
        store.upload(&key, Bytes::from_static(b"new owner")).await?;
        assert!(!store.delete_if_ours(&key, ours.as_deref()).await?, "deleted an object that is no longer ours");
        let Uploaded::Created { e_tag: theirs } = store.upload_new(&store.key("t", None, 0, 900), Bytes::from_static(b"x")).await? else {
            return Err("a new key".into());
        };
        assert!(store.delete_if_ours(&store.key("t", None, 0, 900), theirs.as_deref()).await?, "our own object, unchanged");
        assert!(mem.head(&Path::parse(store.key("t", None, 0, 900))?).await.is_err(), "it is gone");
        Ok(())
    }

    #[tokio::test]
    async fn large_files_go_multipart() -> Result<(), Box<dyn std::error::Error>> {
        let mem = Arc::new(InMemory::new());
        let cfg = S3Config { multipart_part_bytes: 5 * 1024 * 1024, ..S3Config::default() };
        let store = Store::new(mem.clone(), "pre", &cfg, Metrics::new()?);
        let data = Bytes::from(vec![7u8; 12 * 1024 * 1024]);
        let key = store.key("t", None, 0, 0);
        store.upload(&key, data.clone()).await?;
        let back = mem.get(&Path::parse(&key)?).await?.bytes().await?;
        assert_eq!(back.len(), data.len());
        assert_eq!(back, data);
        Ok(())
    }
}
