//! Deletion vectors: rows of files already in the table that a commit marks deleted
//! ([`Staged::deletes`](super::Staged)), for a table of current rows, where a change replaces
//! or deletes a row another commit wrote. Only tables created with them
//! ([`Settings::deletion_vectors`](super::Settings)) take them.
//!
//! A file's new vector is the union of the rows its current vector marks and the new ones, so
//! a commit never unmarks a row. Every vector of one commit goes into one new file
//! (`deletion_vector_<uuid>.bin` under the root, the kernel's name and format: a version byte,
//! then per vector its size, the RoaringBitmapArray magic, a 64-bit roaring bitmap and a
//! CRC-32), put before the commit names it; the version swaps each touched file's add for one
//! carrying the new descriptor (`Transaction::update_deletion_vectors`), in the same version as
//! the partition's `txn`. A put whose version is lost is an orphan for the sweep.

use std::collections::{BTreeMap, HashMap};

use delta_kernel::actions::deletion_vector_writer::{KernelDeletionVector, StreamingDeletionVectorWriter};
use delta_kernel::expressions::Scalar;
use delta_kernel::scan::state::ScanFile;
use delta_kernel::schema::DataType;
use delta_kernel::snapshot::SnapshotRef;
use delta_kernel::transaction::Transaction;
use delta_kernel::FilteredEngineData;

use super::{DeltaTable, Deletion, TableError};

impl DeltaTable {
    /// Marks `deletes` in `txn`, on top of the vectors `snapshot` holds. Returns how many rows
    /// it marks that were not marked yet.
    pub(super) fn mark_deleted(&self, snapshot: &SnapshotRef, txn: &mut Transaction, deletes: &[&Deletion]) -> Result<u64, TableError> {
        if deletes.is_empty() {
            return Ok(0);
        }
        // The rows asked for, by the path the log spells.
        let mut asked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for d in deletes {
            asked.entry(super::paths::to_log(&d.path).into_owned()).or_default().extend(&d.rows);
        }
        let engine = self.engine.as_ref();
        let scan = snapshot.clone().scan_builder().build().map_err(|e| self.err(e))?;
        let mut scan_files: Vec<FilteredEngineData> = Vec::new();
        let mut vectors: BTreeMap<String, KernelDeletionVector> = BTreeMap::new();
        let mut marked_before = 0;
        // One marked file's partition values: the kernel names a vector file only in a context
        // bound to some (its name does not depend on them).
        let mut values: Option<HashMap<String, String>> = None;
        for meta in scan.scan_metadata(engine).map_err(|e| self.err(e))? {
            let meta = meta.map_err(|e| self.err(e))?;
            let files: Vec<ScanFile> = meta.visit_scan_files(Vec::new(), |acc: &mut Vec<ScanFile>, f| acc.push(f)).map_err(|e| self.err(e))?;
            for f in files {
                let Some(rows) = asked.get(&f.path) else { continue };
                if values.is_none() {
                    values = Some(f.partition_values.clone());
                }
                let mut dv = KernelDeletionVector::new();
                if let Some(old) = f.dv_info.get_row_indexes(engine, &self.root).map_err(|e| self.err(e))? {
                    marked_before += old.len() as u64;
                    dv.add_deleted_row_indexes(old);
                }
                dv.add_deleted_row_indexes(rows);
                vectors.insert(f.path.clone(), dv);
            }
            scan_files.push(meta.scan_files);
        }
        if let Some(missing) = asked.keys().find(|p| !vectors.contains_key(*p)) {
            // The caller's index names a file this version no longer holds (compacted away by
            // another writer): the partition's rows must be found again, not marked blindly.
            return Err(TableError::Vanished { table: self.root.to_string(), path: missing.clone() });
        }
        let marked: u64 = vectors.values().map(KernelDeletionVector::cardinality).sum();
        let bound = self.partition_scalars(snapshot, &values.unwrap_or_default())?;
        let context = txn.write_state().and_then(|w| w.write_context_builder().with_partition_values(bound).build()).map_err(|e| self.err(e))?;
        let path = context.new_deletion_vector_path(String::new());
        let mut bytes = Vec::new();
        let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
        let mut descriptors = HashMap::with_capacity(vectors.len());
        for (file, dv) in vectors {
            let written = writer.write_deletion_vector(dv).map_err(|e| self.err(e))?;
            descriptors.insert(file, written.to_descriptor(&path));
        }
        writer.finalize().map_err(|e| self.err(e))?;
        let url = path.absolute_path().map_err(|e| self.err(e))?;
        let key = object_store::path::Path::from_url_path(url.path()).map_err(|e| self.err(delta_kernel::KernelError::generic(format!("deletion vector key {url}: {e}"))))?;
        tokio::runtime::Handle::current()
            .block_on(self.store.put_opts(&key, bytes.into(), object_store::PutMode::Create.into()))
            .map_err(|e| self.err(e.into()))?;
        txn.update_deletion_vectors(descriptors, scan_files.into_iter().map(Ok)).map_err(|e| self.err(e))?;
        Ok(marked - marked_before)
    }

    /// The data files of the latest version whose Kafka partition is `partition`, each with the
    /// rows its deletion vector marks (sorted), for an index of the rows that are live.
    pub fn live_files(&mut self, partition: i32) -> Result<Vec<(String, Vec<u64>)>, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(Vec::new()) };
        let engine = self.engine.as_ref();
        let scan = snapshot.scan_builder().build().map_err(|e| self.err(e))?;
        let wanted = partition.to_string();
        let mut out = Vec::new();
        for meta in scan.scan_metadata(engine).map_err(|e| self.err(e))? {
            let meta = meta.map_err(|e| self.err(e))?;
            let files: Vec<ScanFile> = meta.visit_scan_files(Vec::new(), |acc: &mut Vec<ScanFile>, f| acc.push(f)).map_err(|e| self.err(e))?;
            for f in files.into_iter().filter(|f| f.partition_values.get(super::PARTITION_COLUMN) == Some(&wanted)) {
                let deleted = f.dv_info.get_row_indexes(engine, &self.root).map_err(|e| self.err(e))?.unwrap_or_default();
                out.push((super::paths::from_log(&f.path).into_owned(), deleted));
            }
        }
        out.sort();
        Ok(out)
    }

    /// A property of the latest version's metaData (`None`: no table, or not set).
    pub fn property(&mut self, key: &str) -> Result<Option<String>, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(None) };
        Ok(snapshot.table_configuration().metadata().configuration().get(key).cloned())
    }

    /// The table's partition columns bound to `values` (as the log spells them; absent: null),
    /// typed as the schema says.
    fn partition_scalars(&self, snapshot: &SnapshotRef, values: &HashMap<String, String>) -> Result<HashMap<String, Scalar>, TableError> {
        let schema = snapshot.schema();
        let mut out = HashMap::new();
        for column in snapshot.table_configuration().metadata().partition_columns() {
            let field = schema.field(column).ok_or_else(|| self.err(delta_kernel::KernelError::generic(format!("partition column {column} is not in the schema"))))?;
            let DataType::Primitive(kind) = field.data_type() else {
                return Err(self.err(delta_kernel::KernelError::generic(format!("partition column {column} is not of a primitive type"))));
            };
            let value = match values.get(column) {
                Some(raw) => kind.parse_scalar(raw).map_err(|e| self.err(e))?,
                None => Scalar::Null(field.data_type().clone()),
            };
            out.insert(column.clone(), value);
        }
        Ok(out)
    }
}
