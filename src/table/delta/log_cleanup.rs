//! Log entries past the table's `delta.logRetentionDuration` (30 days unless set), removed behind
//! a checkpoint as Spark's and delta-rs's metadata cleanup do: the newest checkpoint at least
//! that old is kept, with everything after it, so the latest state and every version since it
//! stay readable; the commits, checksums and checkpoints before it go. Without such a checkpoint
//! nothing is removed. `delta.enableExpiredLogCleanup = false` turns it off.
//!
//! The log is listed in version order and the listing stops at the first entry younger than the
//! retention: each round reads what expired since the last one, not the whole log.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{DeltaTable, TableError};

/// Spark's and the kernel's default `delta.logRetentionDuration`.
pub const LOG_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The version of a log entry's name (`00000000000000000042.json`, `.crc`, `.checkpoint.parquet`,
/// `.checkpoint.<part>.<parts>.parquet`, `.checkpoint.<uuid>.parquet`), and whether it is a
/// checkpoint; `None` for anything else (`_last_checkpoint`, sidecars, temporary files).
fn entry(name: &str) -> Option<(u64, bool)> {
    let (digits, rest) = name.split_at_checked(20)?;
    let version = digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok()).flatten()?;
    match rest {
        ".json" | ".crc" => Some((version, false)),
        _ if rest.starts_with(".checkpoint.") && rest.ends_with(".parquet") => Some((version, true)),
        _ => None,
    }
}

impl DeltaTable {
    /// Removes the expired log entries as the module says; how many. `now_ms` is the clock.
    pub fn clean_log(&mut self, store: &Arc<dyn ObjectStore>, root_key: &str, now_ms: i64) -> Result<usize, TableError> {
        let Some(snapshot) = self.refresh()? else { return Ok(0) };
        let properties = snapshot.table_properties();
        if properties.enable_expired_log_cleanup == Some(false) {
            return Ok(0);
        }
        let retention = properties.log_retention_duration.unwrap_or(LOG_RETENTION);
        let cutoff = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let handle = tokio::runtime::Handle::current();
        let log = Path::from(format!("{root_key}/_delta_log"));
        // The entries older than the cutoff, in version order, up to the first younger one; the
        // snapshot's own version is never passed.
        let (expired, keep_from) = handle.block_on(async {
            let mut listing = store.list(Some(&log));
            let mut expired: Vec<(u64, Path)> = Vec::new();
            let mut keep_from = None;
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                let Some((version, checkpoint)) = meta.location.filename().and_then(entry) else { continue };
                if meta.last_modified.timestamp_millis() > cutoff || version >= snapshot.version() {
                    break;
                }
                if checkpoint {
                    keep_from = keep_from.max(Some(version));
                }
                expired.push((version, meta.location));
            }
            Ok::<_, object_store::Error>((expired, keep_from))
        })
        .map_err(|e| self.err(e.into()))?;
        let Some(keep_from) = keep_from else { return Ok(0) };
        let doomed: Vec<Path> = expired.into_iter().filter(|(v, _)| *v < keep_from).map(|(_, p)| p).collect();
        for p in &doomed {
            handle.block_on(store.delete(p)).map_err(|e| self.err(e.into()))?;
        }
        if !doomed.is_empty() {
            tracing::info!(table = %self.root, removed = doomed.len(), kept_from = keep_from, "log entries past the table's log retention removed");
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::entry;

    #[test]
    fn log_entries_are_known_by_their_names() {
        let cases = [
            ("00000000000000000042.json", Some((42, false))),
            ("00000000000000000042.crc", Some((42, false))),
            ("00000000000000000040.checkpoint.parquet", Some((40, true))),
            ("00000000000000000040.checkpoint.0000000001.0000000002.parquet", Some((40, true))),
            ("00000000000000000040.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.parquet", Some((40, true))),
            ("_last_checkpoint", None),
            ("00000000000000000042.json.tmp", None),
            ("0000000000000000004x.json", None),
        ];
        for (name, want) in cases {
            assert_eq!(entry(name), want, "{name}");
        }
    }
}
