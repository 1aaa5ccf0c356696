//! Delta Lake behind the table seam: one Delta table per topic.
//!
//! Our encoder writes the Parquet data files and the upload stage puts them under unique names;
//! a commit makes them part of the table. Each commit is one log version written with a
//! put-if-absent by delta_kernel; it carries the add actions of the files closed since the
//! last one and, in the same version, one `txn` action per Kafka partition whose app id names
//! the topic and partition ([`app_id`]) and whose version is the next offset to read. The table
//! is the source of truth for where each partition resumes (DESIGN.md, "Delta tables").
//!
//! [`DeltaTable::commit`] commits only the partitions whose table version still equals the start of
//! what is staged; any other partition is reported fenced, with the table's version, and none
//! of its files is referenced. A lost race for the log version (another writer committed
//! first) and an unknown outcome (a timeout, a 5xx, a lost answer) are both resolved the same
//! way: reload the log and look at the txn versions again, so a commit that did land is found
//! and never made twice.
//!
//! The kernel's API is blocking: the stage runs it on blocking threads, off the loop that
//! consumes.

mod actions;
mod compact;
mod dv;
mod evolve;
mod features;
mod log_cleanup;
mod orphans;
pub mod paths;
mod stats;
mod types;
pub use actions::PARTITION_COLUMN;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::snapshot::{IncrementalReplay, Snapshot, SnapshotRef};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::data_layout::DataLayout;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::DefaultEngine;
use object_store::{ObjectStore, ObjectStoreExt as _};
use url::Url;

use super::{Compacted, DataFile, Deletion, Due, Maintenance, Outcome, Policy, Settings, Staged, Summary, Swept, TableError};

/// Delta Lake as the table format: each topic's table at its root under the store's prefix
/// (`<prefix>/topics/<topic>/`).
pub struct Delta {
    store: Arc<dyn ObjectStore>,
    roots: Roots,
    settings: Settings,
}

/// Where each topic's table is: its root URL (a directory, ending in `/`) in the format's store.
pub type Roots = Box<dyn Fn(&str) -> Result<Url, String> + Send + Sync>;

impl Delta {
    pub fn new(store: &crate::store::Store, settings: Settings) -> Self {
        let roots = store.table_roots();
        Self::on(store.table_store(), Box::new(move |topic| roots(topic).map_err(|e| e.to_string())), settings)
    }

    /// The tables of `store` at `roots` (tests give an in-memory store).
    pub fn on(store: Arc<dyn ObjectStore>, roots: Roots, settings: Settings) -> Self {
        Self { store, roots, settings }
    }
}

impl super::Format for Delta {
    fn kind(&self) -> &'static str {
        "Delta"
    }

    fn open(&self, topic: &str) -> Result<Box<dyn super::Table>, TableError> {
        let root = (self.roots)(topic).map_err(|reason| TableError::Root { topic: topic.to_string(), reason })?;
        Ok(Box::new(DeltaTable::new(self.store.clone(), root, topic, self.settings.clone())))
    }

    fn transform(&self) -> crate::encode::Transform {
        crate::encode::Transform { batch: actions::file_batch, schema: actions::file_schema, stats: stats::file_stats }
    }
}

impl super::Table for DeltaTable {
    fn name(&self) -> String {
        self.root.to_string()
    }

    fn versions(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, TableError> {
        DeltaTable::versions(self, partitions)
    }

    fn commit(&mut self, staged: Vec<Staged>) -> Result<Outcome, TableError> {
        DeltaTable::commit(self, staged)
    }

    /// Compaction, then the sweep, then the checkpoint (last, so that it takes in the
    /// compaction's version too), and behind a new checkpoint the expired log entries, as
    /// Spark's cleanup does. A step that fails is reported; the others still run.
    fn maintain(&mut self, due: &Due, stop: &AtomicBool) -> Maintenance {
        let mut done = Maintenance::default();
        let root = match self.root_key() {
            Ok(root) => root,
            Err(e) => {
                done.compacted = Some(Err(e));
                return done;
            }
        };
        let store = self.store.clone();
        done.compacted = due.compaction.as_ref().map(|p| self.compact(&store, &root, p, stop));
        if let Some(ms) = due.sweep {
            match self.remove_orphans(&store, &root, ms, crate::health::now_ms()) {
                Ok(s) => done.swept = s,
                Err(e) => tracing::warn!(table = %self.root, error = %e, "looking for orphan files failed; tried again later"),
            }
        }
        // No table yet: nothing due.
        done.checkpointed = due.checkpoint.then(|| self.checkpoint()).and_then(Result::transpose);
        if matches!(done.checkpointed, Some(Ok(_))) {
            match self.clean_log(&store, &root, crate::health::now_ms()) {
                Ok(n) => done.log_entries_removed = n,
                Err(e) => tracing::warn!(table = %self.root, error = %e, "removing expired log entries failed; tried again after the next checkpoint"),
            }
        }
        done
    }

    fn summary(&mut self) -> Result<Option<Summary>, TableError> {
        let files = self.file_paths()?.len();
        Ok(self.version().map(|version| Summary { version, files }))
    }
}

/// Written into each commit's `commitInfo.engineInfo`.
pub const ENGINE_INFO: &str = concat!("kafka-parquet-sink/", env!("CARGO_PKG_VERSION"));

/// The table property of the deleted-file retention (see `orphans`).
const DELETED_FILE_RETENTION: &str = "delta.deletedFileRetentionDuration";

/// Commits a table attempts in one call before it reports contention: each lost race reloads
/// the log, and each reload can only shrink what is left to commit.
const MAX_ATTEMPTS: u32 = 20;

/// The `txn` app id of one Kafka partition: the topic and partition, not the group, so a new
/// group id (or a deleted group) resumes from the table.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("kafka-parquet-sink:{topic}:{partition}")
}

/// One topic's Delta table.
pub struct DeltaTable {
    engine: Arc<DefaultEngine<TokioMultiThreadExecutor>>,
    root: Url,
    topic: String,
    /// The latest snapshot this member read or wrote.
    snapshot: Option<SnapshotRef>,
    /// The table's store, for the checks the kernel does not make.
    store: Arc<dyn ObjectStore>,
    settings: Settings,
}

impl DeltaTable {
    /// The table of `topic` at `root` (a directory URL, ending in `/`) in `store`. Nothing is
    /// read until a call needs the log. Needs a multi-threaded tokio runtime.
    pub fn new(store: Arc<dyn ObjectStore>, root: Url, topic: &str, settings: Settings) -> Self {
        let executor = Arc::new(TokioMultiThreadExecutor::new(tokio::runtime::Handle::current()));
        let engine = DefaultEngine::builder(store.clone()).with_task_executor(executor).build();
        Self { engine: Arc::new(engine), root, topic: topic.to_string(), snapshot: None, store, settings }
    }

    /// The partition columns the table is created with and must have.
    fn partition_columns(&self) -> Vec<String> {
        self.settings.path_columns.iter().cloned().chain([actions::PARTITION_COLUMN.to_string()]).collect()
    }

    /// The root as a key of the table's store.
    pub fn root_key(&self) -> Result<String, TableError> {
        object_store::path::Path::from_url_path(self.root.path())
            .map(|p| p.as_ref().to_string())
            .map_err(|e| TableError::Root { topic: self.topic.clone(), reason: e.to_string() })
    }

    /// Whether every file of `s` staged for longer than half the orphan retention is still in
    /// the store (an orphan removal by another member could have taken it).
    fn files_still_there(&self, s: &Staged) -> Result<bool, TableError> {
        let Some(retention) = self.settings.orphan_retention_ms else { return Ok(true) };
        let now = crate::health::now_ms();
        let root = self.root_key()?;
        for f in s.files.iter().filter(|f| now - f.modification_time > retention / 2) {
            let path = self.key(&root, &f.path)?;
            match tokio::runtime::Handle::current().block_on(self.store.head(&path)) {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(self.err(e.into())),
            }
        }
        Ok(true)
    }

    /// The store's path of the file at `relative` (a key relative to the root `root_key`).
    fn key(&self, root_key: &str, relative: &str) -> Result<object_store::path::Path, TableError> {
        let key = format!("{root_key}/{relative}");
        object_store::path::Path::parse(&key).map_err(|e| self.err(delta_kernel::KernelError::generic(format!("data file key {key:?}: {e}"))))
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    fn err(&self, source: delta_kernel::KernelError) -> TableError {
        TableError::Kernel { table: self.root.to_string(), source: Box::new(source) }
    }

    /// Reads the log's latest version (`None`: no table yet). Incremental from the last
    /// snapshot read.
    pub fn refresh(&mut self) -> Result<Option<SnapshotRef>, TableError> {
        if self.snapshot.is_none() && self.root.scheme() == "file" {
            // The kernel refuses a local root that does not exist yet; a new table's directory is
            // made here (what a put makes on an object store).
            if let Ok(dir) = self.root.to_file_path() {
                std::fs::create_dir_all(&dir).map_err(|e| self.err(delta_kernel::KernelError::IOError(e)))?;
            }
        }
        // The table's state (its txn versions among it) is kept in memory as the version
        // checksum (CRC) the kernel advances over each new commit, ours or another writer's.
        let built = match &self.snapshot {
            Some(s) => Snapshot::builder_from(s.clone()).with_incremental_crc_replay(IncrementalReplay::Unlimited).build(self.engine.as_ref()),
            None => Snapshot::builder_for(self.root.as_str()).with_incremental_crc_replay(IncrementalReplay::Unlimited).build(self.engine.as_ref()),
        };
        match built {
            Ok(s) => {
                // The features are looked at when the protocol or metaData changed, not on each
                // commit's read of the log.
                let unchanged = self.snapshot.as_ref().is_some_and(|prev| {
                    let (was, now) = (prev.table_configuration(), s.table_configuration());
                    was.protocol() == now.protocol() && was.metadata() == now.metadata()
                });
                if !unchanged {
                    self.keeps(&s)?;
                }
                let s = self.with_state(s);
                self.snapshot = Some(s.clone());
                Ok(Some(s))
            }
            Err(e) if self.snapshot.is_none() && no_table(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Refuses a table with a feature our writes would break, naming it (see `features`).
    fn keeps(&self, snapshot: &SnapshotRef) -> Result<(), TableError> {
        let config = snapshot.table_configuration();
        let as_json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| self.err(delta_kernel::KernelError::generic(e.to_string())));
        let protocol = as_json(serde_json::to_value(config.protocol()))?;
        let metadata = as_json(serde_json::to_value(config.metadata()))?;
        match features::unkept(&protocol, &metadata, self.settings.deletion_vectors) {
            Some(feature) => Err(TableError::Unkept { table: self.root.to_string(), feature }),
            None => Ok(()),
        }
    }

    /// `snapshot` with the table's state at its version in memory. When the kernel has none (a
    /// table without a checksum file near its latest version, or a new checkpoint that started
    /// the log segment afresh), it is computed once, by one replay, and written as the
    /// version's checksum file for the next reader; from then on each commit's post-commit
    /// snapshot carries it forward, and reading a txn version costs no request. A replay that
    /// cannot give it (an outside writer's remove without a size, say) leaves the snapshot as
    /// it is: txn versions are then read from the log, as correct and slower.
    fn with_state(&self, snapshot: SnapshotRef) -> SnapshotRef {
        if snapshot.crc_at_version().is_some() {
            return snapshot;
        }
        self.checksummed(snapshot, "no version checksum: txn versions are read from the log")
    }

    /// `snapshot` after its version's checksum file is written (its state computed first by
    /// one replay when not in memory); `snapshot` as it was, with `unavailable` logged, when
    /// the kernel cannot give it or the file exists already.
    fn checksummed(&self, snapshot: SnapshotRef, unavailable: &str) -> SnapshotRef {
        match snapshot.write_checksum(self.engine.as_ref()) {
            Ok((_, s)) => s,
            Err(e) => {
                tracing::debug!(table = %self.root, version = snapshot.version(), error = %e, "{unavailable}");
                snapshot
            }
        }
    }

    /// Keys (relative to the root) of the data files of the latest version.
    pub fn file_paths(&mut self) -> Result<Vec<String>, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(Vec::new()) };
        let scan = snapshot.scan_builder().build().map_err(|e| self.err(e))?;
        let mut paths = Vec::new();
        for meta in scan.scan_metadata(self.engine.as_ref()).map_err(|e| self.err(e))? {
            let meta = meta.map_err(|e| self.err(e))?;
            paths = meta.visit_scan_files(paths, |acc: &mut Vec<String>, f| acc.push(paths::from_log(&f.path).into_owned())).map_err(|e| self.err(e))?;
        }
        paths.sort();
        Ok(paths)
    }

    /// The latest log version, if the table exists (as of the last read).
    pub fn version(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.version())
    }

    /// Each partition's txn version in the latest log: the next offset to read.
    pub fn versions(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, TableError> {
        let Some(snapshot) = self.refresh()? else {
            return Ok(partitions.iter().map(|p| (*p, None)).collect());
        };
        self.versions_in(&snapshot, partitions)
    }

    fn versions_in(&self, snapshot: &SnapshotRef, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, TableError> {
        let mut out = BTreeMap::new();
        for p in partitions {
            let v = snapshot.get_app_id_version(&app_id(&self.topic, *p), self.engine.as_ref()).map_err(|e| self.err(e))?;
            out.insert(*p, v);
        }
        Ok(out)
    }

    /// Creates the table with the schema of the first files, partitioned by the partitioner's
    /// columns and the Kafka partition. Another member creating it first is not an error: its
    /// table is used.
    fn create(&mut self, schema: &arrow_schema::Schema) -> Result<SnapshotRef, TableError> {
        let kernel_schema = actions::kernel_schema(schema)
            .and_then(|s| actions::with_path_columns(&s, &self.settings.path_columns))
            .map_err(|reason| TableError::Schema { table: self.root.to_string(), reason })?;
        let engine = self.engine.as_ref();
        // The deleted-file retention the sweep keeps to, spelled out in the table (Spark's
        // default) unless `table.properties` says otherwise.
        let mut properties = self.settings.properties.clone();
        properties.entry(DELETED_FILE_RETENTION.into()).or_insert_with(|| "interval 7 days".into());
        if self.settings.deletion_vectors {
            properties.insert("delta.feature.deletionVectors".into(), "supported".into());
            properties.insert("delta.enableDeletionVectors".into(), "true".into());
        }
        let built = create_table(self.root.as_str(), kernel_schema, ENGINE_INFO, true)
            .with_table_properties(properties)
            .with_data_layout(DataLayout::partitioned(self.partition_columns()))
            .build(engine, Box::new(FileSystemCommitter::new()));
        let txn = match built {
            Ok(t) => t,
            Err(delta_kernel::KernelError::TableAlreadyExistsAtPath(_)) => {
                tracing::info!(table = %self.root, "delta table created by another writer meanwhile");
                return self.refresh()?.ok_or_else(|| self.err(delta_kernel::KernelError::generic("the table another writer created has no log")));
            }
            Err(e) => return Err(self.err(e)),
        };
        match txn.commit(engine).map_err(|e| self.err(e))? {
            CommitResult::Committed(c) => {
                tracing::info!(table = %self.root, version = c.commit_version(), "delta table created");
                // Its post-commit snapshot holds the new table's whole state: nothing to read.
                if let Some(s) = c.post_commit_snapshot() {
                    self.snapshot = Some(s.clone());
                }
            }
            CommitResult::Conflicted(_) => tracing::info!(table = %self.root, "delta table created by another writer meanwhile"),
            CommitResult::Retryable(r) => return Err(self.err(r.error)),
        }
        self.refresh()?.ok_or_else(|| self.err(delta_kernel::KernelError::generic("the table just created has no log")))
    }

    /// Commits what `staged` holds, as the module explains: partitions whose txn version is
    /// still their start are committed in one log version with their files; the others are
    /// fenced. `Ok` with nothing committed and nothing fenced when `staged` is empty.
    pub fn commit(&mut self, mut staged: Vec<Staged>) -> Result<Outcome, TableError> {
        let mut outcome = Outcome::default();
        for attempt in 1..=MAX_ATTEMPTS {
            let snapshot = match self.refresh()? {
                Some(s) => s,
                None => match staged.iter().flat_map(|s| &s.files).next() {
                    Some(f) => {
                        let schema = f.schema.clone();
                        self.create(&schema)?
                    }
                    // Only skipped records and no table: nothing to hold their txn yet; the
                    // ranges are committed with the first file.
                    None => {
                        outcome.deferred = staged;
                        return Ok(outcome);
                    }
                },
            };
            let theirs = snapshot.table_configuration().metadata().partition_columns().to_vec();
            if theirs != self.partition_columns() {
                return Err(TableError::Schema {
                    table: self.root.to_string(),
                    reason: format!(
                        "the table is partitioned by {theirs:?} and output.partitioner gives {:?}: write this layout under another output.prefix",
                        self.partition_columns()
                    ),
                });
            }
            let partitions: Vec<i32> = staged.iter().map(|s| s.partition).collect();
            let versions = self.versions_in(&snapshot, &partitions)?;
            // Sort what is staged by what the log says now.
            let mut pending = Vec::with_capacity(staged.len());
            for s in staged {
                let now = versions.get(&s.partition).copied().flatten();
                if now == s.start && !self.files_still_there(&s)? {
                    tracing::warn!(table = %self.root, partition = s.partition, "a staged file was removed before its commit (it waited past the orphan retention); the range is read again");
                    outcome.fenced.push((s.partition, now));
                } else if now == Some(s.next) {
                    // Our earlier attempt landed (its answer was lost), or another writer
                    // committed exactly this range: either way it is in the table, once.
                    outcome.committed.push((s.partition, s.next));
                } else if now == s.start {
                    pending.push(s);
                } else {
                    tracing::warn!(table = %self.root, partition = s.partition, staged_start = ?s.start, table_version = ?now, "fenced: another writer committed this partition; its staged files are dropped");
                    outcome.fenced.push((s.partition, now));
                }
            }
            staged = pending;
            if staged.is_empty() {
                return Ok(outcome);
            }
            // The schema the files need, partition by partition: one whose rows the table cannot
            // take is refused alone, the others go on. A change is a version of its own, then
            // this commit on top.
            let mut evolution: Option<evolve::Evolution> = None;
            let mut kept = Vec::with_capacity(staged.len());
            for s in staged {
                let schema = evolution.as_ref().map_or_else(|| snapshot.schema().as_ref().clone(), |e| e.schema.clone());
                match evolve::evolve(&schema, s.files.iter(), self.settings.type_widening) {
                    Ok(None) => kept.push(s),
                    Ok(Some(e)) => {
                        evolution = Some(match evolution.take() {
                            Some(before) => before.then(e),
                            None => e,
                        });
                        kept.push(s);
                    }
                    Err(reason) => {
                        tracing::error!(table = %self.root, partition = s.partition, %reason, "the table cannot take this partition's rows: it is refused, nothing of it committed");
                        outcome.refused.push((s.partition, reason));
                    }
                }
            }
            staged = kept;
            if staged.is_empty() {
                return Ok(outcome);
            }
            if let Some(evolution) = evolution {
                if !self.change_schema(&snapshot, &evolution)? {
                    outcome.conflicts += 1;
                }
                continue;
            }
            let engine = self.engine.as_ref();
            let builder = snapshot.clone().update_table(UpdateTableOperation::StreamingUpdate, ENGINE_INFO, true);
            let mut txn = builder.build(engine, Box::new(FileSystemCommitter::new())).map_err(|e| self.err(e))?;
            for s in &staged {
                txn = txn.with_transaction_id(app_id(&self.topic, s.partition), s.next);
            }
            let files: Vec<&DataFile> = staged.iter().flat_map(|s| &s.files).collect();
            for adds in actions::add_files(&files, &staged).map_err(|e| self.err(e))? {
                txn.add_files(adds);
            }
            let deletes: Vec<&Deletion> = staged.iter().flat_map(|s| &s.deletes).collect();
            self.mark_deleted(&snapshot, &mut txn, &deletes)?;
            match txn.commit(engine).map_err(|e| self.err(e))? {
                CommitResult::Committed(c) => {
                    let version = c.commit_version();
                    outcome.version = Some(version);
                    outcome.committed.extend(staged.iter().map(|s| (s.partition, s.next)));
                    self.snapshot = c.post_commit_snapshot().cloned().or(self.snapshot.take());
                    return Ok(outcome);
                }
                CommitResult::Conflicted(c) => {
                    outcome.conflicts += 1;
                    tracing::info!(table = %self.root, version = c.conflict_version(), attempt, "another writer took the log version; reloading");
                }
                CommitResult::Retryable(r) => {
                    tracing::warn!(table = %self.root, attempt, error = %r.error, "commit outcome unknown; reading the log to find out");
                }
            }
        }
        Err(TableError::Contended { table: self.root.to_string(), attempts: MAX_ATTEMPTS })
    }

    /// Writes a checkpoint of the latest version (`None`: no table yet). The maintenance round
    /// calls it every `checkpoint_interval` versions, off the commit's path: a checkpoint reads
    /// the whole state and puts a Parquet file, round trips a commit should not wait for.
    /// Readers replay the JSON log until it is there.
    pub fn checkpoint(&mut self) -> Result<Option<u64>, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(None) };
        let version = snapshot.version();
        // The version's checksum first: a member that lists the new checkpoint starts its log
        // segment there and finds the table's state beside it, rather than replaying the
        // checkpoint to compute it.
        let snapshot = self.checksummed(snapshot, "no version checksum beside the checkpoint");
        let (_, s) = snapshot.checkpoint(self.engine.as_ref(), None).map_err(|e| self.err(e))?;
        tracing::info!(table = %self.root, version, "checkpoint written");
        self.snapshot = Some(s);
        Ok(Some(version))
    }
}

/// The kernel's answer when the root holds no log at all.
fn no_table(e: &delta_kernel::KernelError) -> bool {
    let text = e.to_string();
    matches!(e, delta_kernel::KernelError::FileNotFound(_) | delta_kernel::KernelError::EmptyLog | delta_kernel::KernelError::MissingVersion(_))
        || text.contains("No files in log segment")
        || text.contains("not found")
}

#[cfg(test)]
mod tests;
