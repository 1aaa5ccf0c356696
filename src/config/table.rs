//! `output.format` and the `[table]` section: Delta Lake tables (`output.format = "delta"`).

use serde::{Deserialize, Serialize};

/// `files`: Parquet files under `<prefix>/topics/<topic>/partition=<p>/`, offsets committed to
/// the group (what the Confluent S3 sink does); `delta`: one Delta Lake table per topic at
/// `<prefix>/topics/<topic>/`, offsets committed in the table's log.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Files,
    Delta,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TableConfig {
    /// One commit per table at most this often: it gathers every file that became durable
    /// since the last one, across the topic's partitions. Rows are visible to readers then.
    pub commit_interval_ms: u64,
    /// A checkpoint (Parquet summary of the log) every this many versions; 0: never.
    pub checkpoint_interval: u64,
    /// Compaction: a partition value holding this many committed files smaller than
    /// `target_file_bytes` has them rewritten into one file near the target, in one version;
    /// 0: never. Looked at after every this many commits of the table.
    pub compaction_min_files: usize,
    /// A table that has taken no new rows for this long after a commit is compacted once
    /// more, every partition value with two small files or more, however few: the tail of a
    /// burst, or an hour that has closed, does not stay in small files. 0: only by
    /// `compaction_min_files`.
    pub compaction_idle_ms: u64,
    /// The size compaction writes files up to (and what counts as small).
    pub target_file_bytes: u64,
    /// Data files no version names (a crash's, a fenced member's) are removed once older than
    /// this, unless a version this recent swapped them out; 0: never.
    pub orphan_retention_ms: u64,
    /// A column whose type widens (Debezium's `int` → `bigint`) widens in the table too, by
    /// Delta's type widening: the table's protocol gains the `typeWidening` feature, which
    /// readers must support (Spark 4, DuckDB's delta extension; not deltalake/delta-rs 1.6).
    /// Off: such rows fail their partition, and the table stays readable by every reader.
    pub type_widening: bool,
    /// Delta table properties a new table is created with (`"delta.logRetentionDuration" =
    /// "interval 30 days"`): the retentions, log cleanup and the number of columns with
    /// statistics ([`TABLE_PROPERTIES`]). A table that exists keeps its own, set by whoever
    /// created or altered it, and the sink honours those. Unset, a table is created with
    /// `delta.deletedFileRetentionDuration = "interval 7 days"`, Spark's default, spelled out.
    pub properties: std::collections::BTreeMap<String, String>,
}

/// The table properties `table.properties` may set: (key, whether its value is an interval).
pub const TABLE_PROPERTIES: &[(&str, bool)] = &[
    ("delta.logRetentionDuration", true),
    ("delta.deletedFileRetentionDuration", true),
    ("delta.enableExpiredLogCleanup", false),
    ("delta.dataSkippingNumIndexedCols", false),
];

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            commit_interval_ms: 2_000,
            checkpoint_interval: 10,
            compaction_min_files: 10,
            compaction_idle_ms: 60_000,
            target_file_bytes: 128 * 1024 * 1024,
            orphan_retention_ms: 3_600_000,
            type_widening: false,
            properties: Default::default(),
        }
    }
}

/// Whether `v` is an interval as Delta spells one (`interval 7 days`), in the units the Delta
/// readers take (no months or years).
fn is_interval(v: &str) -> bool {
    let words: Vec<&str> = v.split_whitespace().collect();
    let units = ["nanosecond", "microsecond", "millisecond", "second", "minute", "hour", "day", "week"];
    matches!(words.as_slice(), ["interval", n, unit] if n.parse::<u64>().is_ok() && units.contains(&unit.trim_end_matches('s')))
}

impl TableConfig {
    /// Problems of the `[table]` keys.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(100..=3_600_000).contains(&self.commit_interval_ms) {
            e.push(format!("table.commit_interval_ms: 100 .. 3600000 ms, got {}", self.commit_interval_ms));
        }
        if self.compaction_min_files == 1 {
            e.push("table.compaction_min_files: 0 (off) or at least 2 (one file is already compact)".to_string());
        }
        if self.target_file_bytes < 1024 * 1024 {
            e.push(format!("table.target_file_bytes: at least 1048576 (1 MiB), got {}", self.target_file_bytes));
        }
        if self.orphan_retention_ms != 0 && self.orphan_retention_ms < 60_000.max(10 * self.commit_interval_ms) {
            e.push(format!(
                "table.orphan_retention_ms: 0 (never) or at least 60000 and ten commit intervals ({} ms), got {}",
                60_000.max(10 * self.commit_interval_ms),
                self.orphan_retention_ms
            ));
        }
        for (key, value) in &self.properties {
            let known = TABLE_PROPERTIES.iter().find(|(k, _)| k == key);
            match known {
                None => e.push(format!(
                    "table.properties: {key:?} is not one the sink sets at creation (one of {})",
                    TABLE_PROPERTIES.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                )),
                Some((_, true)) if !is_interval(value) => {
                    e.push(format!("table.properties: {key} must be an interval such as \"interval 7 days\", got {value:?}"))
                }
                Some((k, false)) if *k == "delta.enableExpiredLogCleanup" && !["true", "false"].contains(&value.as_str()) => {
                    e.push(format!("table.properties: {key} is true or false, got {value:?}"))
                }
                Some((k, false)) if *k == "delta.dataSkippingNumIndexedCols" && value.parse::<i64>().map_or(true, |n| n < -1) => {
                    e.push(format!("table.properties: {key} is -1 (all columns) or a column count, got {value:?}"))
                }
                Some(_) => {}
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_properties_are_checked_naming_the_key() {
        let with = |k: &str, v: &str| TableConfig { properties: [(k.to_string(), v.to_string())].into(), ..TableConfig::default() }.problems();
        assert!(with("delta.logRetentionDuration", "interval 2 hours").is_empty());
        assert!(with("delta.deletedFileRetentionDuration", "interval 1 week").is_empty());
        assert!(with("delta.enableExpiredLogCleanup", "false").is_empty());
        assert!(with("delta.dataSkippingNumIndexedCols", "8").is_empty());
        let cases = [
            ("delta.logRetentionDuration", "30 days", "table.properties: delta.logRetentionDuration must be an interval"),
            ("delta.deletedFileRetentionDuration", "interval 1 month", "table.properties: delta.deletedFileRetentionDuration must be an interval"),
            ("delta.enableDeletionVectors", "true", "table.properties: \"delta.enableDeletionVectors\" is not one the sink sets"),
            ("delta.enableExpiredLogCleanup", "no", "table.properties: delta.enableExpiredLogCleanup is true or false"),
        ];
        for (k, v, want) in cases {
            let problems = with(k, v);
            assert!(problems.len() == 1 && problems[0].starts_with(want), "{k} = {v:?}: {problems:?}");
        }
    }
}
