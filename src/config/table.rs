//! `output.format` and the `[table]` section: Delta Lake tables (`output.format = "delta"`).

use serde::{Deserialize, Serialize};

use super::{OutputConfig, Partitioner};

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
}

impl Default for TableConfig {
    fn default() -> Self {
        Self { commit_interval_ms: 2_000, checkpoint_interval: 10 }
    }
}

impl TableConfig {
    /// Problems of the `[table]` keys and of the output settings a table cannot take.
    pub(super) fn problems(&self, output: &OutputConfig) -> Vec<String> {
        let mut e = Vec::new();
        if !(100..=3_600_000).contains(&self.commit_interval_ms) {
            e.push(format!("table.commit_interval_ms: 100 .. 3600000 ms, got {}", self.commit_interval_ms));
        }
        if output.format == Format::Delta && output.partitioner != Partitioner::Kafka {
            e.push(format!(
                "output.partitioner: output.format = \"delta\" partitions each table by the Kafka partition; {:?} is for output.format = \"files\"",
                output.partitioner
            ));
        }
        e
    }
}
