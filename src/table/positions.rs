//! Where each assigned partition stands between the loop and its table: waiting to be
//! positioned, the floor below which its offsets are in the table already, the files of durable
//! groups not yet in its committable prefix, and the group offsets to commit because the table
//! holds everything below them. The loop asks; the stage keeps it ([`super::Tables`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::DataFile;
use crate::source::TopicPartition;

#[derive(Default)]
pub struct Positions {
    /// Assigned (and paused) but not yet positioned where the table says; their messages are
    /// ignored until then.
    awaiting: HashSet<TopicPartition>,
    /// Files of durable groups whose range is not yet the committable prefix, by the group's
    /// first offset.
    landed: HashMap<TopicPartition, BTreeMap<i64, Vec<DataFile>>>,
    /// Each partition's table offset when it was positioned; offsets below are in the table.
    floors: HashMap<TopicPartition, i64>,
    /// Group offsets to commit because the table is there (a hint for lag dashboards).
    hints: HashMap<TopicPartition, i64>,
}

impl Positions {
    /// Newly assigned or revoked: nothing of the partition is kept.
    pub(super) fn clear(&mut self, tp: &TopicPartition) {
        self.awaiting.remove(tp);
        self.landed.remove(tp);
        self.floors.remove(tp);
        self.hints.remove(tp);
    }

    pub(super) fn wait(&mut self, tp: &TopicPartition) {
        self.awaiting.insert(tp.clone());
    }

    /// The partition is at the table's `offset`: offsets below are dropped as they come (fetched
    /// before a seek took effect), and the group's offset follows when it is behind
    /// (`committed`), even when nothing is left to read (a member fenced at the end of the log).
    pub(super) fn set(&mut self, tp: &TopicPartition, offset: Option<i64>, committed: Option<i64>) {
        self.awaiting.remove(tp);
        match offset {
            Some(v) => {
                self.floors.insert(tp.clone(), v);
                if committed.is_none_or(|c| c < v) {
                    self.hints.insert(tp.clone(), v);
                }
            }
            None => {
                self.floors.remove(tp);
            }
        }
    }

    /// The partitions waiting to be positioned.
    pub fn awaiting(&self) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = self.awaiting.iter().cloned().collect();
        out.sort();
        out
    }

    pub fn is_awaiting(&self, tp: &TopicPartition) -> bool {
        self.awaiting.contains(tp)
    }

    /// Whether a message at `offset` is to be dropped: the partition is not positioned yet, or
    /// the offset is in the table already.
    pub fn skips(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.awaiting.contains(tp) || self.floors.get(tp).is_some_and(|f| offset < *f)
    }

    /// Keeps a durable group's files until its range is in the committable prefix.
    pub(super) fn land(&mut self, tp: &TopicPartition, start_offset: i64, files: Vec<DataFile>) {
        self.landed.entry(tp.clone()).or_default().insert(start_offset, files);
    }

    /// The landed files of the groups below `next` (the durable prefix), taken.
    pub(super) fn take_below(&mut self, tp: &TopicPartition, next: i64) -> Vec<DataFile> {
        let Some(groups) = self.landed.get_mut(tp) else { return Vec::new() };
        let later = groups.split_off(&next);
        std::mem::replace(groups, later).into_values().flatten().collect()
    }

    pub(super) fn has_landed(&self, tp: &TopicPartition) -> bool {
        self.landed.get(tp).is_some_and(|l| !l.is_empty())
    }

    /// The group offsets to commit now, taken.
    pub fn take_hints(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<(TopicPartition, i64)> = self.hints.drain().collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> DataFile {
        DataFile {
            path: path.into(),
            size: 1,
            rows: 1,
            modification_time: 0,
            schema: std::sync::Arc::new(arrow_schema::Schema::empty()),
            partition_values: Vec::new(),
            stats: None,
        }
    }

    #[test]
    fn a_positioned_partition_skips_what_the_table_holds_and_hints_the_group_once() {
        let tp = ("t".to_string(), 0);
        let mut p = Positions::default();
        p.wait(&tp);
        assert!(p.skips(&tp, 1_000), "a partition waiting for its position drops every message");
        p.set(&tp, Some(10), Some(4));
        assert_eq!((p.skips(&tp, 9), p.skips(&tp, 10)), (true, false), "(offset 9, offset 10) dropped below the table's offset 10");
        assert_eq!(p.take_hints(), vec![(tp.clone(), 10)], "the group behind at 4 follows the table to 10");
        assert_eq!(p.take_hints(), Vec::new(), "a hint is taken once");
        p.set(&tp, Some(12), Some(12));
        assert_eq!(p.take_hints(), Vec::new(), "no hint for a group already at the table's offset");
    }

    #[test]
    fn only_the_groups_below_the_durable_prefix_are_taken() {
        let tp = ("t".to_string(), 1);
        let mut p = Positions::default();
        p.land(&tp, 0, vec![file("a")]);
        p.land(&tp, 5, vec![file("b"), file("c")]);
        p.land(&tp, 9, vec![file("d")]);
        let taken: Vec<String> = p.take_below(&tp, 9).into_iter().map(|f| f.path).collect();
        assert_eq!(taken, ["a", "b", "c"], "files of the groups starting below 9");
        assert!(p.has_landed(&tp), "the group at 9 stays");
        p.clear(&tp);
        assert!(!p.has_landed(&tp) && !p.skips(&tp, 0), "nothing kept after a revocation");
    }
}
