//! The table seam (`output.format = "delta"`): the pipeline hands this stage the files that
//! landed for a partition's offsets and gets back the offsets the table committed up to.
//!
//! Behind it, [`Tables`] (the stage: what is staged per partition, when a commit or a
//! maintenance round is due, the tasks that run them) drives one [`Table`] per topic through
//! the [`Format`] it was given. A format owns the rest: its log or catalog, where each partition
//! resumes (its offsets live in the table's own commits, never beside them), fencing, and its
//! maintenance. Delta Lake is [`delta`]; the pipeline names no format (DESIGN.md, "The table
//! seam").
//!
//! A table's calls block (the kernel's API does): the stage runs them on blocking threads, off
//! the loop that consumes.

pub mod delta;
#[cfg(test)]
mod double;
mod positions;
mod stage;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parquet::file::properties::WriterProperties;

pub use positions::Positions;
pub use stage::{offsets_reader, Committed, Finished, Maintained, Tables};

/// One format's tables: opens the table of each topic and says how its files are encoded.
pub trait Format: Send + Sync {
    /// Its name in messages: `Delta`.
    fn kind(&self) -> &'static str;
    /// The table of `topic`; nothing is read until a call needs it. Called on the runtime.
    fn open(&self, topic: &str) -> Result<Box<dyn Table>, TableError>;
    /// How the encoder shapes the rows and footers of this format's data files.
    fn transform(&self) -> crate::encode::Transform;
}

/// One topic's table, as the stage drives it. Every call blocks (run it on a blocking thread
/// inside the runtime) and keeps what it read for the next call.
pub trait Table: Send + Sync {
    /// The table's name in messages (its root URL, or the catalog's identifier).
    fn name(&self) -> String;
    /// Each partition's offset the table says it resumes from (`None`: none yet), read afresh.
    fn versions(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, TableError>;
    /// Commits the staged ranges whose start still equals the table's offset, each range's
    /// files and offsets in one atomic step; reports the others fenced (see [`Outcome`]).
    fn commit(&mut self, staged: Vec<Staged>) -> Result<Outcome, TableError>;
    /// Runs the maintenance that is due; `stop` ends a compaction after its current bin.
    fn maintain(&mut self, due: &Due, stop: &AtomicBool) -> Maintenance;
    /// The latest version and how many data files it names (`None`: no table yet).
    fn summary(&mut self) -> Result<Option<Summary>, TableError>;
}

/// A table format and the settings of its tables.
pub type Chosen = (Arc<dyn Format>, Settings);

/// The table format `output.format` names (`None` in files mode), its tables under `store`'s
/// prefix, with the settings `[table]` and the partitioner give every table (an error names
/// the key).
pub fn format(config: &crate::config::Config, store: &crate::store::Store, paths: &crate::partition::PathScheme) -> Result<Option<Chosen>, String> {
    let settings = || -> Result<Settings, String> {
        Ok(Settings {
            checkpoint_interval: config.table.checkpoint_interval,
            orphan_retention_ms: (config.table.orphan_retention_ms > 0).then_some(config.table.orphan_retention_ms as i64),
            type_widening: config.table.type_widening,
            path_columns: paths.columns()?,
            properties: config.table.properties.clone(),
            deletion_vectors: false,
        })
    };
    Ok(match config.output.format {
        crate::config::Format::Delta => {
            let settings = settings()?;
            Some((Arc::new(delta::Delta::new(store, settings.clone())), settings))
        }
        crate::config::Format::Files => None,
    })
}

/// `[table]`'s compaction policy (`None`: `compaction_min_files = 0`, no compaction).
pub fn compaction(config: &crate::config::Config) -> Option<Policy> {
    (config.table.compaction_min_files > 0).then(|| Policy {
        min_files: config.table.compaction_min_files,
        target_file_bytes: config.table.target_file_bytes,
        idle_ms: (config.table.compaction_idle_ms > 0).then_some(config.table.compaction_idle_ms),
        props: crate::encode::writer_properties(&config.output),
    })
}

/// What a maintenance round is to do.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// Compact small files, with this policy.
    pub compaction: Option<Policy>,
    /// Sweep: orphans older than this many ms go, and removed files past the table's retention.
    pub sweep: Option<i64>,
    /// Write a checkpoint of the latest version, then remove expired log entries behind it.
    pub checkpoint: bool,
}

/// What a maintenance round did: compaction's result (if it was due), what the sweep removed,
/// the version a checkpoint was written for (if one was due), and how many log entries past
/// the log retention went behind it.
#[derive(Debug, Default)]
pub struct Maintenance {
    pub compacted: Option<Result<Compacted, TableError>>,
    pub swept: Swept,
    pub checkpointed: Option<Result<u64, TableError>>,
    pub log_entries_removed: usize,
}

/// A table's latest version and the data files it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub version: u64,
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("delta table {table}: {source}")]
    Kernel {
        table: String,
        #[source]
        source: Box<delta_kernel::KernelError>,
    },
    /// The files' schema cannot become the table's (a type change Delta cannot express).
    #[error("delta table {table}: the records' schema cannot become the table's: {reason}")]
    Schema { table: String, reason: String },
    #[error("delta table {table}: {attempts} commit attempts in a row lost to other writers")]
    Contended { table: String, attempts: u32 },
    #[error("delta table {table}: the commit task failed: {reason}")]
    Task { table: String, reason: String },
    /// The table holds a feature whose rules our writes would break (see `features`).
    #[error("delta table {table} has {feature}, which this sink cannot keep: write this topic to another table (output.prefix), or drop the feature from the table")]
    Unkept { table: String, feature: String },
    /// A commit was to mark rows of a file the table no longer names (another writer removed
    /// it): whoever located those rows must locate them again.
    #[error("table {table}: rows to delete in {path}, a file the table no longer names")]
    Vanished { table: String, path: String },
    /// The table's root cannot be named as a URL.
    #[error("delta table of {topic}: no root URL: {reason}")]
    Root { topic: String, reason: String },
    /// A data file we wrote has no readable footer (a bug: the encoder just closed it).
    #[error("data file of {table}: {source}")]
    File {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl TableError {
    /// The store timing out, refusing for a while or losing an answer heals; a schema the table
    /// cannot take, a corrupt log or a protocol this kernel cannot write does not.
    pub fn retryable(&self) -> bool {
        match self {
            TableError::Kernel { source, .. } => match source.as_ref() {
                delta_kernel::KernelError::ObjectStore(e) => !matches!(
                    e,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                        | object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented { .. }
                ),
                delta_kernel::KernelError::IOError(_) | delta_kernel::KernelError::Reqwest(_) | delta_kernel::KernelError::JoinFailure(_) => true,
                _ => false,
            },
            TableError::Contended { .. } | TableError::Task { .. } => true,
            TableError::Schema { .. } | TableError::File { .. } | TableError::Root { .. } | TableError::Unkept { .. } | TableError::Vanished { .. } => false,
        }
    }
}

/// One data file, put under the table's root and not yet referenced by it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    /// The object key relative to the table's root (`title=a%2Fb c/__kafka_partition=0/...parquet`);
    /// the log spells it as a URI ([`delta::paths`]).
    pub path: String,
    pub size: u64,
    pub rows: u64,
    /// Milliseconds since the epoch: when it was put.
    pub modification_time: i64,
    /// The Arrow schema of its rows (as written in its footer).
    pub schema: arrow_schema::SchemaRef,
    /// Its values of the table's partition columns besides the Kafka partition (the time or
    /// field partitioner's directories), in the table's order; `None` is null.
    pub partition_values: Vec<(String, Option<String>)>,
    /// Its column statistics as the encoder gathered them (one row, see `stats`); `None`:
    /// `numRecords` alone.
    pub stats: Option<arrow::array::ArrayRef>,
}

impl DataFile {
    /// The Arrow schema in a Parquet file's footer (the one our encoder embeds).
    pub fn schema_of(bytes: &bytes::Bytes, topic: &str) -> Result<arrow_schema::SchemaRef, TableError> {
        parquet::arrow::arrow_reader::ArrowReaderMetadata::load(bytes, Default::default())
            .map(|m| m.schema().clone())
            .map_err(|source| TableError::File { table: topic.to_string(), source })
    }
}

/// What one partition asks a commit to make durable: the offsets `[start, next)`, the files
/// holding their rows (none when every record of the range was skipped), and the rows of files
/// already in the table that the range replaces or deletes (a table of current rows; none in
/// bronze).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Staged {
    pub partition: i32,
    /// The partition's txn version this range follows (`None`: the table has none for it yet).
    pub start: Option<i64>,
    pub next: i64,
    pub files: Vec<DataFile>,
    pub deletes: Vec<Deletion>,
}

/// Rows of one data file of the table that a commit marks deleted: their positions in the file
/// (0 the first row), whatever earlier commits marked already.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    /// The file's key relative to the table's root, as [`DataFile::path`].
    pub path: String,
    pub rows: Vec<u64>,
}

/// What a commit did, per partition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// The log version written, if one was.
    pub version: Option<u64>,
    /// Partitions whose txn version is now their staged `next`.
    pub committed: Vec<(i32, i64)>,
    /// Partitions whose table version is no longer their staged start: another member wrote
    /// them. The table's version (where to read from now) is given; their files are never
    /// referenced.
    pub fenced: Vec<(i32, Option<i64>)>,
    /// Partitions whose rows the table cannot take (a column type Delta cannot change), with
    /// the reason; none of their files is referenced.
    pub refused: Vec<(i32, String)>,
    /// Log versions lost to other writers on the way.
    pub conflicts: u32,
    /// Ranges of skipped records only, given before the table exists: no schema to create it
    /// with yet, so they wait for the first file.
    pub deferred: Vec<Staged>,
}

/// What the `[table]` config (and the partitioner) set for every table of the sink.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Write a checkpoint every this many versions (0: never).
    pub checkpoint_interval: u64,
    /// `table.orphan_retention_ms` when orphans are removed (`None`: they stay): a file staged
    /// for longer than half of it is checked before a commit names it.
    pub orphan_retention_ms: Option<i64>,
    /// Whether a column may widen its type (`table.type_widening`, see `evolve`).
    pub type_widening: bool,
    /// The partition columns before the Kafka partition (the time or field partitioner's).
    pub path_columns: Vec<String>,
    /// Table properties a new table is created with (`table.properties`).
    pub properties: BTreeMap<String, String>,
    /// Tables whose commits mark rows deleted ([`Staged::deletes`]): created with deletion
    /// vectors, which the format then keeps (compaction leaves the deleted rows out).
    pub deletion_vectors: bool,
}

/// When and how far to compact.
#[derive(Debug, Clone)]
pub struct Policy {
    /// A partition value is compacted once it holds this many files below the target.
    pub min_files: usize,
    pub target_file_bytes: u64,
    /// A table that has taken no commit for this long after one is looked at once more, and
    /// every value with two small files or more merged (`None`: only by `min_files`).
    pub idle_ms: Option<u64>,
    pub props: WriterProperties,
}

/// What one compaction did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Compacted {
    pub version: Option<u64>,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Files no version named, past the orphan retention.
    pub orphans: usize,
    /// Files a version removed, past the table's deleted-file retention.
    pub expired: usize,
}

