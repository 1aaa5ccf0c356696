//! What the service knows about itself, for `/readyz` and `/status`: the state of each assigned
//! partition and whether each dependency (broker, registry, object store) answered last time.
//! Every change is mirrored in the `kps_partition_state` and `kps_dependency_up` gauges.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntGaugeVec;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartitionState {
    Running,
    /// Consumption paused: the partition is waiting for a dependency.
    Paused,
    /// Stopped on a record it cannot write (`errors.tolerance = "none"`); needs an operator.
    Failed,
}

impl PartitionState {
    pub const ALL: [PartitionState; 3] = [PartitionState::Running, PartitionState::Paused, PartitionState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            PartitionState::Running => "RUNNING",
            PartitionState::Paused => "PAUSED",
            PartitionState::Failed => "FAILED",
        }
    }
}

/// A dependency whose reachability is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    Kafka,
    SchemaRegistry,
    ObjectStore,
}

impl Dependency {
    pub const ALL: [Dependency; 3] = [Dependency::Kafka, Dependency::SchemaRegistry, Dependency::ObjectStore];

    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Kafka => "kafka",
            Dependency::SchemaRegistry => "schema_registry",
            Dependency::ObjectStore => "object_store",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub state: PartitionState,
    /// The offset after the last file written, as committed.
    pub committed_offset: Option<i64>,
    /// Unix milliseconds of the last upload.
    pub last_flush_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Table mode: the partition's txn version in its table (the next offset the table holds),
    /// beside the group's `committed_offset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
}

/// Table mode: a table's latest log version as this member last read or wrote it.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub topic: String,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DependencyStatus {
    pub dependency: Dependency,
    pub up: bool,
    pub last_error: Option<String>,
}

/// Where files go and where the credentials come from (never a secret).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStatus {
    pub location: String,
    pub credentials: Option<String>,
}

/// The `/status` document.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// RUNNING, DEGRADED (a dependency is down or a partition FAILED) or STARTING (no
    /// assignment received yet).
    pub state: &'static str,
    pub partitions: Vec<PartitionStatus>,
    pub dependencies: Vec<DependencyStatus>,
    pub object_store: StoreStatus,
    /// Table mode: each table's latest version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableStatus>,
}

#[derive(Default)]
struct Board {
    joined: bool,
    partitions: BTreeMap<(String, i32), PartitionStatus>,
    down: BTreeMap<Dependency, String>,
    store: StoreStatus,
    tables: BTreeMap<String, u64>,
}

#[derive(Clone)]
pub struct Health {
    board: Arc<Mutex<Board>>,
    state_gauge: IntGaugeVec,
    up_gauge: IntGaugeVec,
}

/// The wall clock in Unix milliseconds (0 before 1970): one reading for every stage.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Health {
    pub fn new(state_gauge: IntGaugeVec, up_gauge: IntGaugeVec) -> Self {
        for d in Dependency::ALL {
            up_gauge.with_label_values(&[d.as_str()]).set(1);
        }
        Self { board: Arc::new(Mutex::new(Board::default())), state_gauge, up_gauge }
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        // A panic while holding the lock cannot leave the board half-written: every update is
        // one assignment. Recover it rather than propagate the poison.
        self.board.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_gauge(&self, topic: &str, partition: i32, state: Option<PartitionState>) {
        let p = partition.to_string();
        for s in PartitionState::ALL {
            self.state_gauge.with_label_values(&[topic, &p, s.as_str()]).set(i64::from(Some(s) == state));
        }
    }

    pub fn assigned(&self, topic: &str, partition: i32) {
        let mut b = self.board();
        b.joined = true;
        let status = PartitionStatus {
            topic: topic.to_string(),
            partition,
            state: PartitionState::Running,
            committed_offset: None,
            last_flush_ms: None,
            last_error: None,
            table_version: None,
        };
        b.partitions.insert((topic.to_string(), partition), status);
        drop(b);
        self.set_gauge(topic, partition, Some(PartitionState::Running));
    }

    /// A rebalance completed (possibly with nothing for us).
    pub fn joined(&self) {
        self.board().joined = true;
    }

    pub fn revoked(&self, topic: &str, partition: i32) {
        self.board().partitions.remove(&(topic.to_string(), partition));
        self.set_gauge(topic, partition, None);
    }

    pub fn set_state(&self, topic: &str, partition: i32, state: PartitionState, error: Option<String>) {
        if let Some(p) = self.board().partitions.get_mut(&(topic.to_string(), partition)) {
            p.state = state;
            if error.is_some() {
                p.last_error = error;
            }
        }
        self.set_gauge(topic, partition, Some(state));
    }

    pub fn flushed(&self, topic: &str, partition: i32, committed: Option<i64>) {
        if let Some(p) = self.board().partitions.get_mut(&(topic.to_string(), partition)) {
            p.last_flush_ms = Some(now_ms());
            if committed.is_some() {
                p.committed_offset = committed;
            }
        }
    }

    /// Table mode: the partition's txn version in its table now.
    pub fn table_position(&self, topic: &str, partition: i32, version: Option<i64>) {
        if let Some(p) = self.board().partitions.get_mut(&(topic.to_string(), partition)) {
            p.table_version = version;
        }
    }

    /// Table mode: the table's latest log version.
    pub fn table_version(&self, topic: &str, version: u64) {
        self.board().tables.insert(topic.to_string(), version);
    }

    pub fn object_store(&self, location: &str, credentials: Option<String>) {
        self.board().store = StoreStatus { location: location.to_string(), credentials };
    }

    pub fn down(&self, d: Dependency, error: impl ToString) {
        self.board().down.insert(d, error.to_string());
        self.up_gauge.with_label_values(&[d.as_str()]).set(0);
    }

    pub fn up(&self, d: Dependency) {
        if self.board().down.remove(&d).is_some() {
            tracing::info!(dependency = d.as_str(), "reachable again");
        }
        self.up_gauge.with_label_values(&[d.as_str()]).set(1);
    }

    pub fn status(&self) -> Status {
        let b = self.board();
        let failed = b.partitions.values().any(|p| p.state == PartitionState::Failed);
        let state = if !b.joined {
            "STARTING"
        } else if failed || !b.down.is_empty() {
            "DEGRADED"
        } else {
            "RUNNING"
        };
        Status {
            state,
            partitions: b.partitions.values().cloned().collect(),
            dependencies: Dependency::ALL
                .iter()
                .map(|d| DependencyStatus { dependency: *d, up: !b.down.contains_key(d), last_error: b.down.get(d).cloned() })
                .collect(),
            object_store: b.store.clone(),
            tables: b.tables.iter().map(|(topic, version)| TableStatus { topic: topic.clone(), version: *version }).collect(),
        }
    }

    /// Ready: the group was joined, every dependency answers, and no partition FAILED.
    /// Otherwise, the reasons.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        let b = self.board();
        let mut why = Vec::new();
        if !b.joined {
            why.push("no partition assignment received yet".to_string());
        }
        for (d, e) in &b.down {
            why.push(format!("{} unreachable: {e}", d.as_str()));
        }
        for p in b.partitions.values().filter(|p| p.state == PartitionState::Failed) {
            why.push(format!("{}[{}] FAILED: {}", p.topic, p.partition, p.last_error.as_deref().unwrap_or("")));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    #[test]
    fn readiness_follows_dependencies_and_failed_partitions() -> Result<(), Box<dyn std::error::Error>> {
        let h = Health::new(
            IntGaugeVec::new(Opts::new("s", "s"), &["topic", "partition", "state"])?,
            IntGaugeVec::new(Opts::new("u", "u"), &["dependency"])?,
        );
        assert!(h.ready().is_err(), "ready before joining");
        h.assigned("t", 0);
        assert_eq!(h.ready(), Ok(()));
        h.down(Dependency::ObjectStore, "connection refused");
        let why = h.ready().err().ok_or("ready while the store is down")?;
        assert!(why[0].contains("object_store unreachable: connection refused"), "{why:?}");
        assert_eq!(h.status().state, "DEGRADED");
        h.up(Dependency::ObjectStore);
        h.set_state("t", 0, PartitionState::Failed, Some("offset 7: corrupt".into()));
        assert_eq!(h.state_gauge.with_label_values(&["t", "0", "FAILED"]).get(), 1);
        assert_eq!(h.state_gauge.with_label_values(&["t", "0", "RUNNING"]).get(), 0);
        assert!(h.ready().is_err_and(|w| w[0].contains("t[0] FAILED: offset 7")), "failed partition must make it unready");
        h.revoked("t", 0);
        assert_eq!(h.ready(), Ok(()));
        Ok(())
    }
}
