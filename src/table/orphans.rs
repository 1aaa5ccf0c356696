//! Files no version names: a crash between a data file's put and its commit, a fenced member,
//! a compaction whose swap lost leave them under the table's root. No reader sees them; they
//! only cost storage. A file is removed once it is older than `table.orphan_retention_ms`, named
//! by no add of the latest version and by no remove of a version younger than the retention (a
//! reader of an older snapshot may still be reading a file compaction swapped out). Never a
//! file the latest version names. The commit, for its part, checks that a file staged for
//! longer than half the retention is still there before naming it (see [`Table::commit`]).

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{Table, TableError};

impl Table {
    /// Removes the orphans as the module says; how many. `now_ms` is the clock (Unix ms).
    pub fn remove_orphans(&mut self, store: &Arc<dyn ObjectStore>, root_key: &str, retention_ms: i64, now_ms: i64) -> Result<usize, TableError> {
        if self.refresh()?.is_none() {
            return Ok(0);
        }
        let named: HashSet<String> = self.file_paths()?.into_iter().collect();
        let handle = tokio::runtime::Handle::current();
        let root = Path::from(root_key);
        let log = Path::from(format!("{root_key}/_delta_log"));
        let listed: Vec<object_store::ObjectMeta> = handle.block_on(store.list(Some(&root)).try_collect()).map_err(|e| self.err(e.into()))?;
        // Removes of recent versions: files a reader of a recent snapshot may still read.
        let mut swapped_out = HashSet::new();
        for meta in listed.iter().filter(|m| m.location.prefix_match(&log).is_some() && m.location.as_ref().ends_with(".json")) {
            if now_ms - meta.last_modified.timestamp_millis() > retention_ms {
                continue;
            }
            let bytes = handle.block_on(async { store.get(&meta.location).await?.bytes().await }).map_err(|e| self.err(e.into()))?;
            for line in String::from_utf8_lossy(&bytes).lines() {
                if let Ok(action) = serde_json::from_str::<serde_json::Value>(line) {
                    if let Some(path) = action.get("remove").and_then(|r| r.get("path")).and_then(|p| p.as_str()) {
                        swapped_out.insert(super::paths::from_log(path).into_owned());
                    }
                }
            }
        }
        let prefix = format!("{root_key}/");
        let mut removed = 0;
        for meta in &listed {
            let key = meta.location.as_ref();
            let Some(relative) = key.strip_prefix(&prefix) else { continue };
            if meta.location.prefix_match(&log).is_some() || !relative.ends_with(".parquet") {
                continue;
            }
            if named.contains(relative) || swapped_out.contains(relative) || now_ms - meta.last_modified.timestamp_millis() <= retention_ms {
                continue;
            }
            handle.block_on(store.delete(&meta.location)).map_err(|e| self.err(e.into()))?;
            tracing::info!(table = %self.root, file = relative, "removed a data file no version names");
            removed += 1;
        }
        Ok(removed)
    }
}
