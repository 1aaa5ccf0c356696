//! Table mode (`output.format = "delta"`) in the loop: where an assigned partition resumes (the
//! table's txn version, not the group's offset), what becomes of a durable prefix (staged for
//! the table's next commit instead of committed to the group), and what a commit's answer does
//! (the group's offset follows as a hint; a fenced partition drops its state and reads again
//! from the table's version).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::{Offset, TopicPartitionList};

use super::Pipeline;
use crate::commit;
use crate::commit::uploads::Ownership;
use crate::error::SinkError;
use crate::health::PartitionState;
use crate::source::TopicPartition;
use crate::table::{Committed, Finished, Maintained};

impl Pipeline {
    /// Table mode: a partition newly assigned starts where the rebalance read its table
    /// (`position`); when that read failed it waits, paused, until the loop positions it.
    pub(super) fn assigned_to_table(&mut self, tp: &TopicPartition, position: Option<Option<i64>>) {
        let committed = self.partitions.get(tp).and_then(|b| b.committed);
        let Some(tables) = self.tables.as_mut() else { return };
        if tables.assigned(tp, position, committed) {
            self.metrics.health.table_position(&tp.0, tp.1, position.flatten());
        }
    }

    /// Commits the group offsets that follow table positions: the table holds every offset
    /// below them.
    pub(super) async fn commit_hints(&mut self) {
        let hints = self.tables.as_mut().map(|t| t.positions.take_hints()).unwrap_or_default();
        for (tp, v) in hints {
            if self.owns(&tp) && self.partitions.get(&tp).is_some_and(|b| b.committed.is_none_or(|c| c < v)) {
                self.commit(&tp, v).await;
            }
        }
    }

    pub(super) fn revoked_from_table(&mut self, tp: &TopicPartition) {
        if let Some(tables) = self.tables.as_mut() {
            tables.revoked(tp);
        }
    }

    /// Positions every partition that waits: reads the table's offsets, seeks there (or, for a
    /// partition the table does not know, to the group's committed offset, else where
    /// `kafka.auto_offset_reset` says) and resumes it. A store that does not answer leaves them
    /// waiting until the next tick; a table that cannot be read is fatal.
    pub(super) async fn position_awaiting(&mut self) -> Result<(), SinkError> {
        let Some(tables) = self.tables.as_ref() else { return Ok(()) };
        let awaiting = tables.positions.awaiting();
        if awaiting.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in awaiting {
            by_topic.entry(topic).or_default().push(partition);
        }
        let mut found = Vec::new();
        for (topic, partitions) in by_topic {
            match tables.versions(&topic, partitions).await {
                Ok(versions) => found.extend(versions.into_iter().map(|(p, v)| ((topic.clone(), p), v))),
                Err(e) if e.retryable() => {
                    self.metrics.errors.with_label_values(&["table", "read"]).inc();
                    tracing::warn!(error = %e, "cannot read the table's offsets yet; the partitions stay paused and are tried again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        for (tp, version) in found {
            if !self.tables.as_ref().is_some_and(|t| t.positions.is_awaiting(&tp)) {
                continue;
            }
            self.seek_to_table(&tp, version).await?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&tp.0, tp.1);
            self.consumer.resume(&tpl).map_err(SinkError::Source)?;
        }
        Ok(())
    }

    /// Seeks the partition to the table's `version` and makes it the start of what is staged
    /// next. Without one: the group's committed offset, else `kafka.auto_offset_reset`.
    async fn seek_to_table(&mut self, tp: &TopicPartition, version: Option<i64>) -> Result<(), SinkError> {
        let group = match version {
            Some(_) => None,
            None => commit::broker_committed(self.consumer.clone(), &tp.0, tp.1).await?,
        };
        let target = match (version, group) {
            (Some(v), _) => Offset::Offset(v),
            (None, Some(c)) => Offset::Offset(c),
            (None, None) if self.auto_offset_reset == "latest" => Offset::End,
            (None, None) => Offset::Beginning,
        };
        tracing::info!(topic = %tp.0, partition = tp.1, table_version = ?version, group_offset = ?group, "positioned from the table");
        self.consumer.seek(&tp.0, tp.1, target, Duration::from_secs(10)).map_err(SinkError::Source)?;
        // The group's offset follows once the partition is idle (`commit_caught_up`): a member
        // fenced at the end of the log has nothing more to commit, and its lag still reaches 0.
        let committed = self.partitions.get(tp).and_then(|b| b.committed);
        if let Some(tables) = self.tables.as_mut() {
            tables.positioned(tp, version, committed);
        }
        self.metrics.health.table_position(&tp.0, tp.1, version);
        Ok(())
    }

    /// Starts the commits that are due (all of them with `now`).
    pub(super) fn start_table_commits(&mut self, now: bool) -> Result<(), SinkError> {
        match self.tables.as_mut() {
            Some(t) => t.start_due(now).map_err(SinkError::from),
            None => Ok(()),
        }
    }

    /// Starts the maintenance round that is due, if none is under way. A table that cannot be
    /// opened for it is reported and tried again later: the commits say what is wrong with it.
    pub(super) fn start_table_maintenance(&mut self) {
        if let Some(Err(e)) = self.tables.as_mut().map(|t| t.start_maintenance()) {
            self.metrics.errors.with_label_values(&["table", "compaction"]).inc();
            tracing::warn!(error = %e, "table maintenance could not start; tried again later");
        }
    }

    pub(super) async fn table_finished(&mut self, done: Finished) -> Result<(), SinkError> {
        match done {
            Finished::Committed(c) => self.table_committed(c).await,
            Finished::Maintained(m) => {
                self.table_maintained(m);
                Ok(())
            }
        }
    }

    /// A maintenance round's answer: its metrics. A compaction that failed leaves the small
    /// files as they were and is tried again later.
    fn table_maintained(&mut self, done: Maintained) {
        let Maintained { topic, done } = done;
        let crate::table::Maintenance { compacted, swept, checkpointed, log_entries_removed } = done;
        if let Some(Err(e)) = checkpointed {
            self.metrics.errors.with_label_values(&["table", "checkpoint"]).inc();
            tracing::warn!(topic, error = %e, "checkpoint failed; readers replay the log meanwhile, and the next one is tried in time");
        }
        self.metrics.table_orphans_removed.with_label_values(&[topic.as_str()]).inc_by(swept.orphans as u64);
        self.metrics.table_files_expired.with_label_values(&[topic.as_str()]).inc_by(swept.expired as u64);
        self.metrics.table_log_entries_removed.with_label_values(&[topic.as_str()]).inc_by(log_entries_removed as u64);
        if swept.orphans + swept.expired > 0 {
            tracing::info!(topic, orphans = swept.orphans, expired = swept.expired, "data files no reader needs removed");
        }
        match compacted {
            Some(Ok(c)) => {
                self.metrics.table_compaction_bytes.with_label_values(&[topic.as_str(), "in"]).inc_by(c.bytes_in);
                self.metrics.table_compaction_bytes.with_label_values(&[topic.as_str(), "out"]).inc_by(c.bytes_out);
            }
            Some(Err(e)) => {
                self.metrics.errors.with_label_values(&["table", "compaction"]).inc();
                tracing::warn!(topic, error = %e, "compaction failed; the files stay as they are");
            }
            None => {}
        }
    }

    /// A table commit's answer: the group's offsets follow the committed partitions (a hint
    /// for lag dashboards: the table decides where a partition resumes); a fenced partition is
    /// positioned again at the table's version. A failure the store may heal is retried by the
    /// next commit with the same ranges; any other stops the sink.
    pub(super) async fn table_committed(&mut self, done: Committed) -> Result<(), SinkError> {
        let Committed { topic, result, millis } = done;
        self.metrics.table_commit_duration.observe(millis as f64 / 1000.0);
        // Present at 0 from the first commit on, so dashboards see the series before they move.
        self.metrics.table_fenced.with_label_values(&[topic.as_str()]);
        self.metrics.table_orphans_removed.with_label_values(&[topic.as_str()]);
        self.metrics.table_files_expired.with_label_values(&[topic.as_str()]);
        self.metrics.table_log_entries_removed.with_label_values(&[topic.as_str()]);
        for direction in ["in", "out"] {
            self.metrics.table_compaction_bytes.with_label_values(&[topic.as_str(), direction]);
        }
        let outcome = match result {
            Ok(o) => o,
            Err(e) if e.retryable() => {
                self.metrics.errors.with_label_values(&["table", "commit"]).inc();
                tracing::warn!(error = %e, "table commit failed; its ranges are committed again once the store answers");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.metrics.table_conflicts.with_label_values(&[topic.as_str()]).inc_by(outcome.conflicts.into());
        if let Some(v) = outcome.version {
            self.metrics.table_commits.with_label_values(&[topic.as_str()]).inc();
            self.metrics.table_version.with_label_values(&[topic.as_str()]).set(v as i64);
            self.metrics.health.table_version(&topic, v);
            tracing::info!(topic, version = v, partitions = ?outcome.committed, duration_ms = millis, "table commit");
        }
        for (partition, next) in outcome.committed {
            let tp = (topic.clone(), partition);
            self.metrics.health.table_position(&topic, partition, Some(next));
            if self.owns(&tp) {
                self.commit(&tp, next).await;
            }
        }
        for (partition, version) in outcome.fenced {
            let tp = (topic.clone(), partition);
            self.metrics.table_fenced.with_label_values(&[topic.as_str()]).inc();
            self.fenced_by_table(&tp, version).await?;
        }
        for (partition, reason) in outcome.refused {
            self.refused_by_table(&(topic.clone(), partition), reason);
        }
        Ok(())
    }

    /// Another writer moved the partition's table version: what this member holds of it (open
    /// file, uploads in flight, staged files) is dropped, never referenced, and it reads again
    /// from the table's version.
    async fn fenced_by_table(&mut self, tp: &TopicPartition, version: Option<i64>) -> Result<(), SinkError> {
        if !self.drop_held(tp) {
            return Ok(());
        }
        tracing::warn!(topic = %tp.0, partition = tp.1, table_version = ?version, "fenced by the table: reading again from its version");
        self.seek_to_table(tp, version).await
    }

    /// The table cannot take the partition's rows (a column type Delta cannot change): the
    /// partition stops, FAILED, as a record that cannot be written stops it under
    /// `errors.tolerance = "none"`, whatever the tolerance: the records are well-formed, and
    /// sending every later change to the dead-letter topic would empty the table of them
    /// silently. Nothing of it is committed past the table's version; a restart after the fix
    /// (`table.type_widening` for a widening, else a new table) reads it again from there.
    fn refused_by_table(&mut self, tp: &TopicPartition, reason: String) {
        if !self.drop_held(tp) {
            return;
        }
        if let Some(tables) = self.tables.as_mut() {
            tables.revoked(tp); // no cursor: nothing of it is staged any more
        }
        if let Some(buf) = self.partitions.get_mut(tp) {
            buf.failed = true;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        if let Err(err) = self.consumer.pause(&tpl) {
            tracing::warn!(topic = %tp.0, partition = tp.1, error = %err, "could not pause the failed partition; its records are ignored");
        }
        self.metrics.errors.with_label_values(&["table", "schema"]).inc();
        tracing::error!(topic = %tp.0, partition = tp.1, %reason, "the table cannot take the partition's rows: partition FAILED; nothing is committed past the table's version");
        self.metrics.health.set_state(&tp.0, tp.1, PartitionState::Failed, Some(format!("delta table: {reason}")));
    }

    /// Drops what this member holds of the partition (open file, uploads in flight), never to
    /// be referenced; `false` when it does not own it. Its files landed or staged go with the
    /// table stage's `positioned` or `revoked` that follows.
    fn drop_held(&mut self, tp: &TopicPartition) -> bool {
        if !self.partitions.contains_key(tp) {
            return false;
        }
        if let Some(old) = self.owners.insert(tp.clone(), Ownership::new(tp.clone(), self.group.clone())) {
            old.release(); // its uploads in flight report to an epoch that is gone
        }
        self.uploads.forget(tp);
        if let Some(buf) = self.partitions.get_mut(tp) {
            buf.discard();
            buf.pending_commit = None;
            buf.replay_through = None;
        }
        self.remeasure(tp);
        true
    }

    /// Shutdown in table mode: commits everything staged, trying again while the store heals
    /// for a bounded number of rounds. A compaction under way stops after its bin, and none
    /// starts: its files are not needed for a clean stop.
    pub(super) async fn drain_tables(&mut self) -> Result<(), SinkError> {
        if let Some(t) = self.tables.as_mut() {
            t.stop_maintenance();
        }
        for _ in 0..10 {
            self.start_table_commits(true)?;
            let Some(tables) = self.tables.as_mut() else { return Ok(()) };
            if tables.in_flight() == 0 {
                return Ok(());
            }
            while self.tables.as_ref().is_some_and(|t| t.in_flight() > 0) {
                let Some(done) = next_finished(&mut self.tables).await else { break };
                self.table_finished(done).await?;
            }
            if self.tables.as_ref().is_some_and(|t| t.has_staged()) {
                tokio::time::sleep(Duration::from_millis(500)).await; // a failed commit: let the store heal
            }
        }
        Ok(())
    }
}

/// The next table commit or maintenance round to finish; pending forever when there is no
/// table stage.
pub(super) async fn next_finished(tables: &mut Option<crate::table::Tables>) -> Option<Finished> {
    match tables {
        Some(t) => t.next_finished().await,
        None => std::future::pending().await,
    }
}
