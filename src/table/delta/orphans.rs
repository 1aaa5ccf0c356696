//! The sweep of data files no reader needs any more, as Spark's and delta-rs's VACUUM decide:
//! - a file the latest version names (an add) is never removed;
//! - a file a version removed (compaction swapped it out) is kept for the table's
//!   `delta.deletedFileRetentionDuration` (7 days unless set) after its removal: a stream that
//!   reads the table from an older version, or a time-travel query, still opens it;
//! - a file no version ever named (a crash between its put and its commit, a fenced member's, a
//!   compaction whose swap lost) goes once older than `table.orphan_retention_ms`.
//!
//! Removals are read from the table's state as the kernel replays it (its checkpoint, which keeps
//! every remove younger than the retention, and the commits after it), so the sweep costs one
//! replay of the log and one listing of the table. The commit, for its part, checks that a file
//! staged for longer than half the orphan retention is still there before naming it (see
//! [`DeltaTable::commit`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::schema::{DataType, StructField, StructType};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{DeltaTable, Swept, TableError};

/// Spark's and the kernel's default `delta.deletedFileRetentionDuration`.
pub const DELETED_FILE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl DeltaTable {
    /// Sweeps the table as the module says. `orphan_retention_ms` is `table.orphan_retention_ms`
    /// and `now_ms` the clock (Unix ms).
    pub fn remove_orphans(&mut self, store: &Arc<dyn ObjectStore>, root_key: &str, orphan_retention_ms: i64, now_ms: i64) -> Result<Swept, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(Swept::default()) };
        let named: HashSet<String> = self.file_paths()?.into_iter().collect();
        let removed = self.removals(&snapshot)?;
        let retention = snapshot.table_properties().deleted_file_retention_duration.unwrap_or(DELETED_FILE_RETENTION);
        let deleted_retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let handle = tokio::runtime::Handle::current();
        let root = Path::from(root_key);
        let log = Path::from(format!("{root_key}/_delta_log"));
        let listed: Vec<object_store::ObjectMeta> = handle.block_on(store.list(Some(&root)).try_collect()).map_err(|e| self.err(e.into()))?;
        let prefix = format!("{root_key}/");
        let mut swept = Swept::default();
        for meta in &listed {
            let key = meta.location.as_ref();
            let Some(relative) = key.strip_prefix(&prefix) else { continue };
            if meta.location.prefix_match(&log).is_some() || !relative.ends_with(".parquet") || named.contains(relative) {
                continue;
            }
            let expired = match removed.get(relative) {
                // Removed by a version: kept for the deleted-file retention after its removal.
                Some(at) => now_ms - at > deleted_retention_ms,
                // Named by no version: an orphan once older than the orphan retention.
                None => now_ms - meta.last_modified.timestamp_millis() > orphan_retention_ms,
            };
            if !expired {
                continue;
            }
            handle.block_on(store.delete(&meta.location)).map_err(|e| self.err(e.into()))?;
            if removed.contains_key(relative) {
                tracing::info!(table = %self.root, file = relative, "removed a data file past the table's deleted-file retention");
                swept.expired += 1;
            } else {
                tracing::info!(table = %self.root, file = relative, "removed a data file no version names");
                swept.orphans += 1;
            }
        }
        Ok(swept)
    }

    /// Every file the table's state holds a remove of (its key), with when it was removed (Unix
    /// ms; 0 when the remove does not say, which makes it expired as Spark takes it).
    fn removals(&self, snapshot: &delta_kernel::snapshot::SnapshotRef) -> Result<HashMap<String, i64>, TableError> {
        let remove = StructType::try_new([StructField::not_null("path", DataType::STRING), StructField::nullable("deletionTimestamp", DataType::LONG)])
            .map_err(|e| self.err(e))?;
        let schema = Arc::new(StructType::try_new([StructField::nullable("remove", remove)]).map_err(|e| self.err(e))?);
        let mut out = HashMap::new();
        for batch in snapshot.log_segment().read_actions(self.engine.as_ref(), schema).map_err(|e| self.err(e))? {
            let data = ArrowEngineData::try_from_engine_data(batch.map_err(|e| self.err(e))?.actions).map_err(|e| self.err(e))?;
            let Some(removes) = data.record_batch().column_by_name("remove").and_then(|c| c.as_struct_opt()) else { continue };
            let (Some(paths), Some(times)) = (
                removes.column_by_name("path").and_then(|c| c.as_string_opt::<i32>()),
                removes.column_by_name("deletionTimestamp").and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>()),
            ) else {
                continue;
            };
            for i in (0..removes.len()).filter(|i| removes.is_valid(*i) && paths.is_valid(*i)) {
                let at = if times.is_valid(i) { times.value(i) } else { 0 };
                let key = super::paths::from_log(paths.value(i)).into_owned();
                // A path removed twice (removed, added back, removed) counts from its last removal.
                out.entry(key).and_modify(|t: &mut i64| *t = (*t).max(at)).or_insert(at);
            }
        }
        Ok(out)
    }
}
