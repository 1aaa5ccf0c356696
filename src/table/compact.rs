//! Compaction, built in: small files of one partition value are rewritten into files near
//! `table.target_file_bytes` and swapped in one log version (adds and removes, `dataChange =
//! false`), so readers see the same rows before and after, in fewer files. Only files with the
//! same Arrow schema are merged into one (a schema change starts a new bin), so no value is
//! converted on the way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::scan::state::ScanFile;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel::FilteredEngineData;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::file::properties::WriterProperties;

use super::{actions, DataFile, Table, TableError, ENGINE_INFO};

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

/// A committed file as the scan lists it.
#[derive(Debug, Clone)]
struct Listed {
    batch: usize,
    row: usize,
    path: String,
    size: u64,
    /// Its partition values, as one key (files are only merged with files of the same).
    partition: String,
    values: std::collections::HashMap<String, String>,
}

impl Table {
    /// Compacts every partition value that `policy` says is due, one bin per partition value
    /// per call (the largest share of the work is bounded by `target_file_bytes` read and
    /// written). `store` is the table's store and `root_key` its root as a key in it. A commit
    /// of another writer meanwhile is read and the swap tried again on top of it; a file
    /// removed meanwhile ends this round (its new file is left unnamed). `stop` set ends the
    /// round after the bin under way (a shutdown does not wait for every value's).
    pub fn compact(&mut self, store: &Arc<dyn ObjectStore>, root_key: &str, policy: &Policy, stop: &AtomicBool) -> Result<Compacted, TableError> {
        let mut done = Compacted::default();
        let mut compacted = std::collections::BTreeSet::new();
        // One bin per partition value and round, each its own version, so every value gets its
        // turn (not only the first in order).
        while !stop.load(Ordering::Relaxed) {
            let Some(partition) = self.compact_one(store, root_key, policy, &compacted, &mut done)? else { break };
            compacted.insert(partition);
        }
        Ok(done)
    }

    /// One bin of a partition value not in `skip`, swapped in; the partition value, or `None`
    /// when no value is due.
    fn compact_one(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        root_key: &str,
        policy: &Policy,
        skip: &std::collections::BTreeSet<String>,
        done: &mut Compacted,
    ) -> Result<Option<String>, TableError> {
        for _attempt in 0..5 {
            let Some(snapshot) = self.refresh()? else { return Ok(None) };
            let engine = self.engine.clone();
            let scan = snapshot.clone().scan_builder().build().map_err(|e| self.err(e))?;
            let mut batches: Vec<FilteredEngineData> = Vec::new();
            let mut listed = Vec::new();
            for meta in scan.scan_metadata(engine.as_ref()).map_err(|e| self.err(e))? {
                let meta = meta.map_err(|e| self.err(e))?;
                let (data, selection) = (meta.scan_files.data(), meta.scan_files.selection_vector());
                let rows: Vec<usize> = (0..data.len()).filter(|i| selection.get(*i).copied().unwrap_or(true)).collect();
                let files: Vec<ScanFile> = meta.visit_scan_files(Vec::new(), |acc: &mut Vec<ScanFile>, f| acc.push(f)).map_err(|e| self.err(e))?;
                let batch = batches.len();
                for (row, f) in rows.into_iter().zip(files) {
                    let mut key: Vec<(&String, &String)> = f.partition_values.iter().collect();
                    key.sort();
                    let partition = key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("/");
                    let values = f.partition_values.clone();
                    listed.push(Listed { batch, row, path: f.path, size: f.size.max(0) as u64, partition, values });
                }
                batches.push(meta.scan_files);
            }
            listed.retain(|f| !skip.contains(&f.partition));
            let Some(bin) = self.next_bin(store, root_key, &listed, policy)? else { return Ok(None) };
            let (files, rewritten) = bin;
            let (key, relative) = unique_key(root_key, &files[0].path);
            let size = rewritten.len() as u64;
            let schema = DataFile::schema_of(&rewritten, &self.topic)?;
            let rows = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&rewritten, Default::default())
                .map(|m| m.metadata().file_metadata().num_rows() as u64)
                .map_err(|source| TableError::File { table: self.root.to_string(), source })?;
            let path: object_store::path::Path = key.as_str().into();
            tokio::runtime::Handle::current().block_on(store.put(&path, rewritten.into())).map_err(|e| self.err(e.into()))?;
            let mut txn = snapshot
                .clone()
                .update_table(UpdateTableOperation::Optimize, ENGINE_INFO, false)
                .build(engine.as_ref(), Box::new(FileSystemCommitter::new()))
                .map_err(|e| self.err(e))?;
            let modification_time = crate::health::now_ms();
            let values = &files[0].values;
            let partition: i32 = values.get(actions::PARTITION_COLUMN).and_then(|p| p.parse().ok()).unwrap_or_default();
            let partition_values = self.settings.path_columns.iter().map(|c| (c.clone(), values.get(c).cloned())).collect();
            let new_file = DataFile { path: relative, size, rows, modification_time, schema, partition_values };
            let staged = [super::Staged { partition, start: None, next: 0, files: vec![new_file.clone()] }];
            txn.add_files(actions::add_files(&[&new_file], &staged).map_err(|e| self.err(e))?);
            for (i, data) in batches.into_iter().enumerate() {
                let (data, _) = data.into_parts();
                let len = data.len();
                let selection: Vec<bool> = (0..len).map(|row| files.iter().any(|f| f.batch == i && f.row == row)).collect();
                if selection.iter().any(|s| *s) {
                    txn.remove_files(FilteredEngineData::try_new(data, selection).map_err(|e| self.err(e))?);
                }
            }
            match txn.commit(engine.as_ref()).map_err(|e| self.err(e))? {
                CommitResult::Committed(c) => {
                    done.version = Some(c.commit_version());
                    done.files_in += files.len();
                    done.files_out += 1;
                    done.bytes_in += files.iter().map(|f| f.size).sum::<u64>();
                    done.bytes_out += size;
                    self.snapshot = c.post_commit_snapshot().cloned().or(self.snapshot.take());
                    tracing::info!(table = %self.root, version = c.commit_version(), partition, files_in = files.len(), bytes_out = size, "compacted");
                    return Ok(Some(files[0].partition.clone()));
                }
                CommitResult::Conflicted(_) | CommitResult::Retryable(_) => {
                    // Another writer took the version (or the answer was lost): the new file is
                    // unnamed; read the log again and start over from what it says.
                    tracing::info!(table = %self.root, "compaction lost its version to another writer; trying again on top of it");
                }
            }
        }
        Ok(None)
    }

    /// The next bin: the oldest small files of the first partition value that has enough of
    /// them, with one schema, read and rewritten into one file.
    fn next_bin(&self, store: &Arc<dyn ObjectStore>, root_key: &str, listed: &[Listed], policy: &Policy) -> Result<Option<(Vec<Listed>, Bytes)>, TableError> {
        let mut by_partition: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
        for f in listed.iter().filter(|f| f.size < policy.target_file_bytes) {
            by_partition.entry(f.partition.as_str()).or_default().push(f);
        }
        for (_, mut small) in by_partition {
            if small.len() < policy.min_files {
                continue;
            }
            small.sort_by(|a, b| a.path.cmp(&b.path));
            let mut chosen: Vec<Listed> = Vec::new();
            let mut writer: Option<crate::encode::ParquetFile> = None;
            let mut schema = None;
            let mut bytes_in = 0;
            for f in small {
                if bytes_in + f.size > policy.target_file_bytes && chosen.len() >= 2 {
                    break;
                }
                let path: object_store::path::Path = format!("{root_key}/{}", f.path).as_str().into();
                let data = tokio::runtime::Handle::current()
                    .block_on(async { store.get(&path).await?.bytes().await })
                    .map_err(|e| self.err(e.into()))?;
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)
                    .map_err(|source| TableError::File { table: self.root.to_string(), source })?;
                if schema.as_ref().is_some_and(|s| s != reader.schema()) {
                    break; // a schema change: the next bin starts here
                }
                schema = Some(reader.schema().clone());
                for batch in reader.build().map_err(|source| TableError::File { table: self.root.to_string(), source })? {
                    let batch = batch.map_err(|e| TableError::File { table: self.root.to_string(), source: e.into() })?;
                    let w = match writer.as_mut() {
                        Some(w) => w,
                        None => writer.insert(crate::encode::ParquetFile::new(&batch, policy.props.clone()).map_err(|e| self.rewrite(e))?),
                    };
                    w.write(&batch).map_err(|e| self.rewrite(e))?;
                }
                bytes_in += f.size;
                chosen.push(f.clone());
            }
            if chosen.len() < 2 {
                continue;
            }
            let Some(w) = writer else { continue };
            return Ok(Some((chosen, w.finish().map_err(|e| self.rewrite(e))?)));
        }
        Ok(None)
    }

    fn rewrite(&self, e: crate::encode::EncodeError) -> TableError {
        TableError::Schema { table: self.root.to_string(), reason: format!("rewriting files for compaction: {e}") }
    }
}

/// `<root>/<the first file's directory>/<its start offset>-compacted-<uuid>.parquet`: beside
/// the files it replaces (they share their partition values).
fn unique_key(root_key: &str, first: &str) -> (String, String) {
    let (dir, name) = first.rsplit_once('/').unwrap_or(("", first));
    let start = name.split('-').next().unwrap_or("0");
    let name = format!("{start}-compacted-{}.parquet", uuid::Uuid::new_v4());
    let relative = if dir.is_empty() { name } else { format!("{dir}/{name}") };
    (format!("{root_key}/{relative}"), relative)
}

