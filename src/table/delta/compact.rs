//! Compaction, built in: small files of one partition value are rewritten into files near
//! `table.target_file_bytes` and swapped in one log version (adds and removes, `dataChange =
//! false`), so readers see the same rows before and after, in fewer files. Only files with the
//! same Arrow schema are merged into one (a schema change starts a new bin), so no value is
//! converted on the way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::scan::state::ScanFile;
use delta_kernel::snapshot::SnapshotRef;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel::FilteredEngineData;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{actions, Compacted, DataFile, DeltaTable, Policy, TableError, ENGINE_INFO};

/// Versions a compaction tries for one rewrite before it gives up the round.
const MAX_ATTEMPTS: usize = 20;
/// Rewrites of one partition value per round whose inputs another writer removed.
const MAX_REWRITES: usize = 3;

/// A bin rewritten into one file, put in the store and named by no version yet.
#[derive(Debug, Clone)]
pub(super) struct Rewrite {
    inputs: Vec<Listed>,
    pub(super) file: DataFile,
    kafka_partition: i32,
    /// The partition value, as [`Listed::partition`].
    partition: String,
}

/// The files of one version, as a scan lists them.
pub(super) struct Listing {
    snapshot: SnapshotRef,
    batches: Vec<FilteredEngineData>,
    files: Vec<Listed>,
}

/// How a swap ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Landed {
    /// In this version (or found in it, when the answer of its commit was lost).
    Committed(u64),
    /// Another writer removed one of its inputs: the rewrite is not named.
    InputGone,
    /// Every version it tried was taken first.
    Contended,
}

/// A committed file as the scan lists it.
#[derive(Debug, Clone)]
struct Listed {
    batch: usize,
    row: usize,
    /// Its key relative to the root (the log's path decoded).
    path: String,
    size: u64,
    /// Its partition values, as one key (files are only merged with files of the same).
    partition: String,
    values: std::collections::HashMap<String, String>,
    /// Its deletion vector, if any: the rows a rewrite leaves out.
    dv: delta_kernel::scan::state::DvInfo,
}

impl DeltaTable {
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
    /// when no value is due. The rewrite is read and written once: a version lost to a writer
    /// that only added files (the sink's own next commit, mostly) is taken again on top of it
    /// with the same file; only when one of its inputs is gone is the rewrite given up (its
    /// file left to orphan removal) and the bin chosen again.
    fn compact_one(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        root_key: &str,
        policy: &Policy,
        skip: &std::collections::BTreeSet<String>,
        done: &mut Compacted,
    ) -> Result<Option<String>, TableError> {
        for _attempt in 0..MAX_REWRITES {
            let Some((rewrite, listing)) = self.rewrite_bin(store, root_key, policy, skip)? else { return Ok(None) };
            match self.land(&rewrite, Some(listing))? {
                Landed::Committed(version) => {
                    done.version = Some(version);
                    done.files_in += rewrite.inputs.len();
                    done.files_out += 1;
                    done.bytes_in += rewrite.inputs.iter().map(|f| f.size).sum::<u64>();
                    done.bytes_out += rewrite.file.size;
                    return Ok(Some(rewrite.partition));
                }
                Landed::InputGone => {
                    tracing::info!(table = %self.root, file = %rewrite.file.path, "a file compaction rewrote was removed by another writer; its rewrite is left to orphan removal, the bin chosen again");
                }
                Landed::Contended => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Lists the files of `snapshot`'s version: the scan's batches (what removes are made
    /// from) and each file with its place in them.
    fn list(&self, snapshot: &SnapshotRef) -> Result<Listing, TableError> {
        let engine = self.engine.clone();
        let scan = snapshot.clone().scan_builder().build().map_err(|e| self.err(e))?;
        let mut batches: Vec<FilteredEngineData> = Vec::new();
        let mut files = Vec::new();
        for meta in scan.scan_metadata(engine.as_ref()).map_err(|e| self.err(e))? {
            let meta = meta.map_err(|e| self.err(e))?;
            let (data, selection) = (meta.scan_files.data(), meta.scan_files.selection_vector());
            let rows: Vec<usize> = (0..data.len()).filter(|i| selection.get(*i).copied().unwrap_or(true)).collect();
            let scanned: Vec<ScanFile> = meta.visit_scan_files(Vec::new(), |acc: &mut Vec<ScanFile>, f| acc.push(f)).map_err(|e| self.err(e))?;
            let batch = batches.len();
            for (row, f) in rows.into_iter().zip(scanned) {
                let mut key: Vec<(&String, &String)> = f.partition_values.iter().collect();
                key.sort();
                let partition = key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("/");
                let values = f.partition_values.clone();
                let path = super::paths::from_log(&f.path).into_owned();
                files.push(Listed { batch, row, path, size: f.size.max(0) as u64, partition, values, dv: f.dv_info });
            }
            batches.push(meta.scan_files);
        }
        Ok(Listing { snapshot: snapshot.clone(), batches, files })
    }

    /// The next bin of the latest version, rewritten into one file put in the store (named by
    /// no version yet), with the listing it was chosen from.
    pub(super) fn rewrite_bin(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        root_key: &str,
        policy: &Policy,
        skip: &std::collections::BTreeSet<String>,
    ) -> Result<Option<(Rewrite, Listing)>, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(None) };
        let listing = self.list(&snapshot)?;
        let candidates: Vec<Listed> = listing.files.iter().filter(|f| !skip.contains(&f.partition)).cloned().collect();
        let Some((inputs, rewritten)) = self.next_bin(store, root_key, &candidates, policy)? else { return Ok(None) };
        let relative = unique_name(&inputs[0].path);
        let crate::encode::Finished { rows, bytes: rewritten, stats } = rewritten;
        let size = rewritten.len() as u64;
        let schema = DataFile::schema_of(&rewritten, &self.topic)?;
        let path = self.key(root_key, &relative)?;
        tokio::runtime::Handle::current().block_on(store.put(&path, rewritten.into())).map_err(|e| self.err(e.into()))?;
        let values = &inputs[0].values;
        let partition_values = self.settings.path_columns.iter().map(|c| (c.clone(), values.get(c).cloned())).collect();
        let file = DataFile { path: relative, size, rows, modification_time: crate::health::now_ms(), schema, partition_values, stats };
        let kafka_partition = values.get(actions::PARTITION_COLUMN).and_then(|p| p.parse().ok()).unwrap_or_default();
        let partition = inputs[0].partition.clone();
        Ok(Some((Rewrite { inputs, file, kafka_partition, partition }, listing)))
    }

    /// Swaps `rewrite` in: its file added, its inputs removed, in one version on top of
    /// `given` (`None`: of the latest version). A version taken meanwhile is read: if it
    /// already names the new file (an answer lost after the put) the swap is done; if every
    /// input is still there the swap is tried on top of it; if one is gone, it is given up.
    pub(super) fn land(&mut self, rewrite: &Rewrite, mut given: Option<Listing>) -> Result<Landed, TableError> {
        for attempt in 0..MAX_ATTEMPTS {
            // The listing it was chosen from, then the latest version after each loss.
            let mut listing = match given.take() {
                Some(l) => l,
                None => match self.refresh()? {
                    Some(s) => self.list(&s)?,
                    None => return Ok(Landed::InputGone),
                },
            };
            if listing.files.iter().any(|f| f.path == rewrite.file.path) {
                tracing::info!(table = %self.root, version = listing.snapshot.version(), "compaction found in the log");
                return Ok(Landed::Committed(listing.snapshot.version()));
            }
            let inputs: std::collections::HashSet<&str> = rewrite.inputs.iter().map(|f| f.path.as_str()).collect();
            let present: Vec<&Listed> = listing.files.iter().filter(|f| inputs.contains(f.path.as_str())).collect();
            if present.len() < inputs.len() {
                return Ok(Landed::InputGone);
            }
            let staged = super::Staged { partition: rewrite.kafka_partition, files: vec![rewrite.file.clone()], ..Default::default() };
            if !self.files_still_there(&staged)? {
                return Ok(Landed::InputGone);
            }
            let engine = self.engine.clone();
            let mut txn = listing
                .snapshot
                .clone()
                .update_table(UpdateTableOperation::Optimize, ENGINE_INFO, false)
                .build(engine.as_ref(), Box::new(FileSystemCommitter::new()))
                .map_err(|e| self.err(e))?;
            for adds in actions::add_files(&[&rewrite.file], std::slice::from_ref(&staged)).map_err(|e| self.err(e))? {
                txn.add_files(adds);
            }
            for (i, data) in std::mem::take(&mut listing.batches).into_iter().enumerate() {
                let (data, _) = data.into_parts();
                let selection: Vec<bool> = (0..data.len()).map(|row| present.iter().any(|f| f.batch == i && f.row == row)).collect();
                if selection.iter().any(|s| *s) {
                    txn.remove_files(FilteredEngineData::try_new(data, selection).map_err(|e| self.err(e))?);
                }
            }
            match txn.commit(engine.as_ref()).map_err(|e| self.err(e))? {
                CommitResult::Committed(c) => {
                    self.snapshot = c.post_commit_snapshot().cloned().or(self.snapshot.take());
                    tracing::info!(table = %self.root, version = c.commit_version(), partition = %rewrite.partition, attempt, files_in = rewrite.inputs.len(), bytes_out = rewrite.file.size, "compacted");
                    return Ok(Landed::Committed(c.commit_version()));
                }
                CommitResult::Conflicted(c) => {
                    tracing::info!(table = %self.root, version = c.conflict_version(), attempt, "compaction lost its version to another writer; trying again on top of it");
                }
                CommitResult::Retryable(r) => {
                    tracing::warn!(table = %self.root, attempt, error = %r.error, "compaction's commit outcome unknown; reading the log to find out");
                }
            }
        }
        tracing::info!(table = %self.root, attempts = MAX_ATTEMPTS, "compaction lost every version it tried; its rewrite is left to orphan removal");
        Ok(Landed::Contended)
    }

    /// The next bin: the oldest small files of the first partition value that has enough of
    /// them, with one schema, read and rewritten into one file.
    fn next_bin(&self, store: &Arc<dyn ObjectStore>, root_key: &str, listed: &[Listed], policy: &Policy) -> Result<Option<(Vec<Listed>, crate::encode::Finished)>, TableError> {
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
                let path = self.key(root_key, &f.path)?;
                let data = tokio::runtime::Handle::current()
                    .block_on(async { store.get(&path).await?.bytes().await })
                    .map_err(|e| self.err(e.into()))?;
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)
                    .map_err(|source| TableError::File { table: self.root.to_string(), source })?;
                if schema.as_ref().is_some_and(|s| s != reader.schema()) {
                    break; // a schema change: the next bin starts here
                }
                schema = Some(reader.schema().clone());
                // Rows its deletion vector marks are not carried over (sorted, the first row 0).
                let deleted = f.dv.get_row_indexes(self.engine.as_ref(), &self.root).map_err(|e| self.err(e))?.unwrap_or_default();
                let mut at = 0u64;
                for batch in reader.build().map_err(|source| TableError::File { table: self.root.to_string(), source })? {
                    let batch = batch.map_err(|e| TableError::File { table: self.root.to_string(), source: e.into() })?;
                    let rows = batch.num_rows() as u64;
                    let batch = if deleted.is_empty() {
                        batch
                    } else {
                        let keep = arrow::array::BooleanArray::from_iter((at..at + rows).map(|i| Some(deleted.binary_search(&i).is_err())));
                        arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| TableError::File { table: self.root.to_string(), source: e.into() })?
                    };
                    at += rows;
                    let w = match writer.as_mut() {
                        Some(w) => w,
                        None => writer.insert(
                            crate::encode::ParquetFile::new(&batch, policy.props.clone())
                                .map_err(|e| self.rewrite(e))?
                                .with_stats(super::stats::file_stats(&batch.schema())),
                        ),
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
            return Ok(Some((chosen, w.finish_with_stats().map_err(|e| self.rewrite(e))?)));
        }
        Ok(None)
    }

    fn rewrite(&self, e: crate::encode::EncodeError) -> TableError {
        TableError::Schema { table: self.root.to_string(), reason: format!("rewriting files for compaction: {e}") }
    }
}

/// `<the first file's directory>/<its start offset>-compacted-<uuid>.parquet` (relative to the
/// root): beside the files it replaces (they share their partition values).
fn unique_name(first: &str) -> String {
    let (dir, name) = first.rsplit_once('/').unwrap_or(("", first));
    let start = name.split('-').next().unwrap_or("0");
    let name = format!("{start}-compacted-{}.parquet", uuid::Uuid::new_v4());
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

