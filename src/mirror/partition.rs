//! One Kafka partition's mirror: the changes since its last commit, and the index of its rows
//! (the mirror table is partitioned by Kafka partition, as bronze is, so a member only ever
//! marks rows of files of the partitions it owns).
//!
//! A commit of the partition is prepared from its changes: what they leave per key
//! ([`reduce`]), the rows they replace or delete (the index says where each key's row is; a
//! truncate marks every row), the new rows ([`images`], TOASTed columns read from the table's
//! rows where the run did not carry them) in one new file, put before the commit names it. The
//! index follows only once the commit landed ([`Partition::landed`]); a partition fenced or
//! repositioned is rebuilt from the table ([`rebuild`]).
//!
//! Calls block on the store (a blocking thread inside the runtime, as the table's own).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::file::properties::WriterProperties;

use super::changes::{reduce, Fill, Final};
use super::images::{images, TableRows};
use super::keys::{key_hashes, KeyHash, KeyIndex};
use super::MirrorError;
use crate::decode::envelope::KAFKA_PARTITION;
use crate::table::{DataFile, Deletion, Staged};

/// Where the partition's table is, and how its files are written.
pub struct Io {
    pub store: Arc<dyn ObjectStore>,
    /// The table's root as a key of `store`.
    pub root: String,
    pub props: WriterProperties,
    /// How the table's format shapes a file's rows and gathers its statistics.
    pub transform: crate::encode::Transform,
}

impl Io {
    fn path(&self, relative: &str) -> Result<object_store::path::Path, MirrorError> {
        object_store::path::Path::parse(format!("{}/{relative}", self.root)).map_err(|e| self.fail(format!("object key of {relative}"), Some(e.into())))
    }

    /// `what` could not be done, for want of `source` when one is given.
    fn fail(&self, what: String, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> MirrorError {
        MirrorError::Store { table: self.root.clone(), what, source }
    }

    fn get(&self, relative: &str) -> Result<bytes::Bytes, MirrorError> {
        let path = self.path(relative)?;
        tokio::runtime::Handle::current().block_on(async { self.store.get(&path).await?.bytes().await }).map_err(|e| self.fail(format!("reading {relative}"), Some(e.into())))
    }

    /// The rows at `rows` (sorted positions) of the file at `relative`.
    fn rows(&self, relative: &str, rows: &[u64]) -> Result<Vec<RecordBatch>, MirrorError> {
        let mut selectors = Vec::new();
        let mut at = 0u64;
        for &r in rows {
            if r > at {
                selectors.push(RowSelector::skip((r - at) as usize));
            }
            selectors.push(RowSelector::select(1));
            at = r + 1;
        }
        let bad = |e: parquet::errors::ParquetError| self.fail(format!("reading {relative}"), Some(e.into()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(self.get(relative)?).map_err(bad)?.with_row_selection(RowSelection::from(selectors)).build().map_err(bad)?;
        reader.map(|b| b.map_err(|e| self.fail(format!("reading {relative}"), Some(e.into())))).collect()
    }
}

/// What a commit carries for the partition, and what becomes of the index once it lands.
#[derive(Debug)]
pub struct Prepared {
    pub staged: Staged,
    /// The new file, and each key's new row in it (`None`: deleted).
    file: Option<String>,
    moves: Vec<(KeyHash, Option<u64>)>,
    truncated: bool,
}

pub struct Partition {
    topic: String,
    partition: i32,
    /// The primary key's columns (from the records' key, or the table's property).
    key: Option<Vec<String>>,
    index: KeyIndex,
    /// Changes since the last prepare, in the mirror's form (flattened, the format's types).
    batches: Vec<RecordBatch>,
    next: Option<i64>,
}

impl Partition {
    pub fn new(topic: &str, partition: i32, key: Option<Vec<String>>, index: KeyIndex) -> Self {
        Self { topic: topic.to_string(), partition, key, index, batches: Vec::new(), next: None }
    }

    /// Changes of the partition up to the offset `next` (exclusive), after the ones pushed before.
    pub fn push(&mut self, batch: RecordBatch, next: i64) -> Result<(), MirrorError> {
        if self.key.is_none() {
            self.key = Some(super::keys::key_names(&batch, &self.topic)?);
        }
        self.batches.push(batch);
        self.next = Some(next);
        Ok(())
    }

    pub fn key(&self) -> Option<&[String]> {
        self.key.as_deref()
    }

    /// Keys the index holds.
    pub fn rows(&self) -> usize {
        self.index.len()
    }

    /// The commit of what was pushed since the last prepare, after the table's offset `start`
    /// (`None`: nothing pushed).
    pub fn prepare(&mut self, start: Option<i64>, io: &Io) -> Result<Option<Prepared>, MirrorError> {
        let Some(next) = self.next.take() else { return Ok(None) };
        let batches = std::mem::take(&mut self.batches);
        let key = self.key.clone().unwrap_or_default();
        let reduced = reduce(&batches, &key, &self.topic)?;
        // The rows the run replaces or deletes; after a truncate, every row there was (and the
        // index holds nothing the keys after it could replace).
        let mut marks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        if reduced.truncated {
            for (file, rows) in self.index.all() {
                marks.entry(file).or_default().extend(rows);
            }
        }
        let live = |k: &KeyHash| if reduced.truncated { None } else { self.index.get(*k) };
        for (k, _) in &reduced.keys {
            if let Some((file, row)) = live(k) {
                marks.entry(file.to_string()).or_default().push(row);
            }
        }
        // The table's rows of the keys whose TOASTed columns the run did not carry.
        let mut wanted: BTreeMap<String, Vec<(u64, KeyHash)>> = BTreeMap::new();
        for (k, f) in &reduced.keys {
            if let Final::Upsert { fills, .. } = f {
                if let (true, Some((file, row))) = (fills.iter().any(|(_, f)| *f == Fill::Table), live(k)) {
                    wanted.entry(file.to_string()).or_default().push((row, *k));
                }
            }
        }
        let mut table = TableRows::default();
        for (file, mut rows) in wanted {
            rows.sort();
            let positions: Vec<u64> = rows.iter().map(|(r, _)| *r).collect();
            let parts = io.rows(&file, &positions)?;
            let Some(schema) = parts.first().map(|b| b.schema()) else {
                return Err(io.fail(format!("{file} holds none of the {} rows the index has in it", rows.len()), None));
            };
            let read = arrow::compute::concat_batches(&schema, &parts).map_err(|e| io.fail(format!("reading {file}"), Some(e.into())))?;
            if read.num_rows() != rows.len() {
                return Err(io.fail(format!("{file} holds {} of the {} rows the index has in it", read.num_rows(), rows.len()), None));
            }
            let b = table.batches.len();
            table.row_of.extend(rows.iter().enumerate().map(|(i, (_, k))| (*k, (b, i))));
            table.batches.push(read);
        }
        let mut files = Vec::new();
        let mut moves: Vec<(KeyHash, Option<u64>)> = Vec::with_capacity(reduced.keys.len());
        let mut file = None;
        if let Some(rows) = images(&reduced, &batches, Some(&table), &self.topic)? {
            // Named as bronze's files are: by the offset the range starts at, unique.
            let relative = format!("{KAFKA_PARTITION}={}/{:020}-{}.parquet", self.partition, start.unwrap_or(0), uuid::Uuid::new_v4());
            let data = self.write(&rows, &relative, io)?;
            let mut row = 0u64;
            for (k, f) in &reduced.keys {
                if let Final::Upsert { .. } = f {
                    moves.push((*k, Some(row)));
                    row += 1;
                }
            }
            file = Some(relative);
            files.push(data);
        }
        moves.extend(reduced.keys.iter().filter(|(_, f)| *f == Final::Delete).map(|(k, _)| (*k, None)));
        let deletes = marks.into_iter().map(|(path, rows)| Deletion { path, rows }).collect();
        let staged = Staged { partition: self.partition, start, next, files, deletes };
        Ok(Some(Prepared { staged, file, moves, truncated: reduced.truncated }))
    }

    /// The prepared commit landed: the index follows it.
    pub fn landed(&mut self, p: Prepared) -> Result<(), MirrorError> {
        if p.truncated {
            self.index = KeyIndex::default();
        }
        for (k, row) in p.moves {
            match (row, p.file.as_deref()) {
                (Some(row), Some(file)) => {
                    self.index.insert(k, file, row)?;
                }
                _ => {
                    self.index.remove(k);
                }
            }
        }
        Ok(())
    }

    /// Encodes `rows` in the table's shape and puts them at `relative` (a new, unique name).
    fn write(&self, rows: &RecordBatch, relative: &str, io: &Io) -> Result<DataFile, MirrorError> {
        let bad = |e: Box<dyn std::error::Error + Send + Sync>| io.fail(format!("writing {relative}"), Some(e));
        let rows = (io.transform.batch)(rows.clone()).map_err(|e| bad(e.into()))?;
        let stats = (io.transform.stats)(&rows.schema());
        let mut w = crate::encode::ParquetFile::new(&rows, io.props.clone()).map_err(|e| bad(e.into()))?.with_stats(stats);
        w.write(&rows).map_err(|e| bad(e.into()))?;
        let crate::encode::Finished { rows: count, bytes, stats } = w.finish_with_stats().map_err(|e| bad(e.into()))?;
        let schema = DataFile::schema_of(&bytes, &self.topic).map_err(|e| bad(e.into()))?;
        let size = bytes.len() as u64;
        let path = io.path(relative)?;
        tokio::runtime::Handle::current()
            .block_on(io.store.put_opts(&path, bytes.into(), object_store::PutMode::Create.into()))
            .map_err(|e| bad(e.into()))?;
        Ok(DataFile { path: relative.to_string(), size, rows: count, modification_time: crate::health::now_ms(), schema, partition_values: Vec::new(), stats })
    }
}

/// The index of the partition's live rows in the table: each live file's key columns read,
/// the rows its deletion vector marks left out. `files` is the table's live files of the
/// partition with their marked rows (`DeltaTable::live_files`).
pub fn rebuild(files: &[(String, Vec<u64>)], key: &[String], topic: &str, io: &Io) -> Result<KeyIndex, MirrorError> {
    let mut index = KeyIndex::default();
    for (file, deleted) in files {
        let bad = |e: parquet::errors::ParquetError| io.fail(format!("reading {file}"), Some(e.into()));
        let builder = ParquetRecordBatchReaderBuilder::try_new(io.get(file)?).map_err(bad)?;
        let columns: Vec<usize> = key
            .iter()
            .map(|k| builder.schema().index_of(k).map_err(|_| MirrorError::Rows { topic: topic.to_string(), reason: format!("{file} has no column {k} of the primary key") }))
            .collect::<Result<_, _>>()?;
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), columns);
        let mut at = 0u64;
        for batch in builder.with_projection(mask).build().map_err(bad)? {
            let batch = batch.map_err(|e| io.fail(format!("reading {file}"), Some(e.into())))?;
            for (i, k) in key_hashes(&batch, key, topic)?.into_iter().enumerate() {
                let row = at + i as u64;
                if let (Some(k), Err(_)) = (k, deleted.binary_search(&row)) {
                    index.insert(k, file, row)?;
                }
            }
            at += batch.num_rows() as u64;
        }
    }
    Ok(index)
}
