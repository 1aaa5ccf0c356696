//! The table stage as the pipeline drives it, whatever the format: files that are durable in
//! offset order are staged per topic and partition, and every `table.commit_interval_ms` one
//! commit per table runs on a blocking thread while consumption goes on. Each partition has a
//! cursor: the table offset its next staged range follows (the table's, plus what is staged or
//! in flight). A partition that is revoked or fenced gets a new epoch, and answers of commits
//! started before are not reported for it.
//!
//! Maintenance (compaction, the sweep, checkpoints: whatever the format's `maintain` does) runs
//! beside the commits, on a thread and a table object of its own, one table at a time: a
//! compaction that rewrites a bin for seconds never holds a commit back (the two meet only at
//! the table's log, where the one that loses a version reads the other's and tries again), and
//! its share of CPU and memory is one bin on one thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DataFile, Due, Format, Maintenance, Outcome, Policy, Positions, Settings, Staged, Table, TableError};
use crate::source::TopicPartition;

/// A commit that finished, as the pipeline sees it.
pub struct Committed {
    pub topic: String,
    /// The partitions of the answer whose epoch is still current; the others are left out.
    pub result: Result<Outcome, TableError>,
    pub millis: u64,
}

/// A maintenance round that finished, and what it did.
pub struct Maintained {
    pub topic: String,
    pub done: Maintenance,
}

/// What [`Tables::next_finished`] hands back.
pub enum Finished {
    Committed(Committed),
    Maintained(Maintained),
}

#[derive(Default)]
struct Slot {
    /// The table with the snapshot it last read; `None` before the first commit, while a commit
    /// task holds it, and after a task lost it.
    table: Option<Box<dyn Table>>,
    in_flight: bool,
    staged: BTreeMap<i32, Staged>,
    /// The ranges of a commit that failed (its outcome unknown): committed, alone, before
    /// anything staged since, so each attempt carries the same ranges and the log tells which
    /// landed.
    retry: Vec<Staged>,
    last_commit: Option<Instant>,
    /// Commits since compaction last looked at the table.
    commits_since_compaction: usize,
    /// When the last commit that added files finished, until an idle look after it has
    /// started (see [`Policy::idle_ms`]).
    idle_since: Option<Instant>,
    /// When orphans were last looked for (at most every quarter of the retention).
    last_sweep: Option<Instant>,
    /// The latest version a commit or a compaction of ours wrote, and the one the last
    /// checkpoint round started at (a checkpoint is due `checkpoint_interval` versions on).
    latest_version: Option<u64>,
    checkpoint_from: u64,
    /// The maintenance round's own table object (its snapshot read incrementally); `None`
    /// before the first round and while one holds it.
    maintainer: Option<Box<dyn Table>>,
}

struct Task {
    topic: String,
    table: Option<Box<dyn Table>>,
    /// What the commit was given, handed back for the next attempt when it failed.
    staged: Vec<Staged>,
    result: Result<Outcome, TableError>,
    epochs: HashMap<i32, u64>,
    started: Instant,
}

pub struct Tables {
    format: Arc<dyn Format>,
    interval: Duration,
    /// `table.orphan_retention_ms` (`None`: orphans stay) and `table.checkpoint_interval`.
    orphan_retention_ms: Option<i64>,
    checkpoint_interval: u64,
    /// Where each assigned partition stands between the loop and the table.
    pub positions: Positions,
    slots: HashMap<String, Slot>,
    cursors: HashMap<TopicPartition, Option<i64>>,
    epochs: HashMap<TopicPartition, u64>,
    next_epoch: u64,
    tasks: tokio::task::JoinSet<Task>,
    compaction: Option<Policy>,
    /// At most one maintenance round at a time, of any table.
    maintenance: tokio::task::JoinSet<(Maintained, Option<Box<dyn Table>>)>,
    /// Set on shutdown: a compaction under way stops after its bin.
    stop: Arc<AtomicBool>,
}

/// Reads the tables' txn versions of assigned partitions inside the consumer's rebalance (see
/// [`crate::source::TableOffsets`]): on the thread that polls, blocking it while the log is read
/// (the runtime moves its other tasks away meanwhile), a few attempts while the store heals.
pub fn offsets_reader(format: Arc<dyn Format>) -> crate::source::TableOffsets {
    Arc::new(move |tps: &[TopicPartition]| {
        tokio::runtime::Handle::try_current().map_err(|e| format!("the rebalance runs outside the runtime: {e}"))?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in tps {
            by_topic.entry(topic.as_str()).or_default().push(*partition);
        }
        tokio::task::block_in_place(|| {
            let mut out = Vec::with_capacity(tps.len());
            for (topic, partitions) in by_topic {
                let mut last = String::new();
                let mut found = None;
                for attempt in 0..3 {
                    if attempt > 0 {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    let versions = format.open(topic).and_then(|mut table| table.versions(&partitions));
                    match versions {
                        Ok(v) => {
                            found = Some(v);
                            break;
                        }
                        Err(e) if e.retryable() => last = e.to_string(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                let versions = found.ok_or(last)?;
                out.extend(versions.into_iter().map(|(p, v)| ((topic.to_string(), p), v)));
            }
            Ok(out)
        })
    })
}

impl Tables {
    pub fn new(format: Arc<dyn Format>, interval: Duration, settings: &Settings) -> Self {
        Self {
            format,
            interval,
            orphan_retention_ms: settings.orphan_retention_ms,
            checkpoint_interval: settings.checkpoint_interval,
            positions: Positions::default(),
            slots: HashMap::new(),
            cursors: HashMap::new(),
            epochs: HashMap::new(),
            next_epoch: 1,
            tasks: tokio::task::JoinSet::new(),
            compaction: None,
            maintenance: tokio::task::JoinSet::new(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Compaction after commits (see [`Policy`]).
    pub fn with_compaction(mut self, policy: Option<Policy>) -> Self {
        self.compaction = policy;
        self
    }

    /// The format's tables: how the encoder shapes their files.
    pub fn format(&self) -> &Arc<dyn Format> {
        &self.format
    }

    fn table(&self, topic: &str) -> Result<Box<dyn Table>, TableError> {
        self.format.open(topic)
    }

    /// The table's txn version of each partition now (`None`: none yet), read afresh from the log.
    pub async fn versions(&self, topic: &str, partitions: Vec<i32>) -> Result<BTreeMap<i32, Option<i64>>, TableError> {
        let mut table = self.table(topic)?;
        let name = table.name();
        tokio::task::spawn_blocking(move || table.versions(&partitions))
            .await
            .map_err(|e| TableError::Task { table: name, reason: e.to_string() })?
    }

    /// A partition newly assigned, at the offset the rebalance read from its table (`None`:
    /// that read failed; it waits, paused, until the loop positions it). `committed` is the
    /// group's offset this member holds for it. Returns whether it is positioned.
    pub fn assigned(&mut self, tp: &TopicPartition, read: Option<Option<i64>>, committed: Option<i64>) -> bool {
        self.revoked(tp);
        match read {
            Some(offset) => {
                self.positioned(tp, offset, committed);
                true
            }
            None => {
                self.positions.wait(tp);
                false
            }
        }
    }

    /// The partition is (again) at the table's `offset` (`None`: the table has none for it):
    /// what is landed or staged for it is dropped, answers of commits already under way are no longer
    /// reported for it, its next range follows `offset`, and messages below it are dropped.
    pub fn positioned(&mut self, tp: &TopicPartition, offset: Option<i64>, committed: Option<i64>) {
        self.revoked(tp);
        self.cursors.insert(tp.clone(), offset);
        self.positions.set(tp, offset, committed);
    }

    /// Revoked, or its rows refused by the table: nothing of the partition is committed or
    /// kept from here on.
    pub fn revoked(&mut self, tp: &TopicPartition) {
        self.forget(tp);
        self.positions.clear(tp);
    }

    /// The files of a durable group, kept until its range is in the committable prefix.
    pub fn land(&mut self, tp: &TopicPartition, start_offset: i64, files: Vec<DataFile>) {
        self.positions.land(tp, start_offset, files);
    }

    /// The partition's durable prefix now ends at `next`: its range and the files landed for
    /// it go to the table's next commit.
    pub fn stage_through(&mut self, tp: &TopicPartition, next: i64) {
        let files = self.positions.take_below(tp, next);
        self.stage(tp, next, files);
    }

    /// Whether the table has not yet committed all this member holds of the partition (not
    /// positioned, files landed, a range staged or in a commit).
    pub fn holds(&self, tp: &TopicPartition) -> bool {
        self.positions.is_awaiting(tp) || self.positions.has_landed(tp) || self.busy(tp)
    }

    /// Nothing staged for the partition is committed any more; a new epoch.
    fn forget(&mut self, tp: &TopicPartition) {
        if let Some(slot) = self.slots.get_mut(&tp.0) {
            slot.staged.remove(&tp.1);
            slot.retry.retain(|s| s.partition != tp.1);
        }
        self.cursors.remove(tp);
        self.epochs.insert(tp.clone(), self.next_epoch);
        self.next_epoch += 1;
    }

    /// Stages the durable range of the partition up to `next` with its files, for the next
    /// commit. Ignored for a partition without a cursor (not positioned, or forgotten).
    fn stage(&mut self, tp: &TopicPartition, next: i64, files: Vec<DataFile>) {
        let Some(cursor) = self.cursors.get_mut(tp) else { return };
        let start = *cursor;
        if start.is_some_and(|s| next <= s) {
            if !files.is_empty() {
                tracing::warn!(topic = %tp.0, partition = tp.1, next, table_version = ?start, "a range at or below the table's version is not staged (its rows are in the table already)");
            }
            return;
        }
        *cursor = Some(next);
        let slot = self.slots.entry(tp.0.clone()).or_default();
        let staged = slot.staged.entry(tp.1).or_insert_with(|| Staged { partition: tp.1, start, next, ..Default::default() });
        staged.next = next;
        staged.files.extend(files);
    }

    /// Whether the partition has a range staged or in a commit under way.
    fn busy(&self, tp: &TopicPartition) -> bool {
        self.slots.get(&tp.0).is_some_and(|s| s.staged.contains_key(&tp.1) || s.retry.iter().any(|r| r.partition == tp.1) || s.in_flight)
    }

    /// Whether any table has ranges staged or to retry.
    pub fn has_staged(&self) -> bool {
        self.slots.values().any(|s| !s.staged.is_empty() || !s.retry.is_empty())
    }

    /// Commits under way.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Commits and maintenance rounds under way.
    pub fn working(&self) -> usize {
        self.tasks.len() + self.maintenance.len()
    }

    /// Shutdown: the maintenance round under way ends after its bin; none starts any more.
    pub fn stop_maintenance(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Starts a maintenance round for the first table that has one due, unless a round is
    /// under way: a compaction after every `compaction_min_files` commits or once the table
    /// has been idle for the policy's `idle_ms` after a commit, an orphan sweep at most every
    /// quarter of the retention, and a checkpoint every `checkpoint_interval` versions.
    pub fn start_maintenance(&mut self) -> Result<(), TableError> {
        if !self.maintenance.is_empty() || self.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let policy = self.compaction.clone();
        let idle = policy.as_ref().and_then(|p| p.idle_ms).map(Duration::from_millis);
        let retention = self.orphan_retention_ms;
        let every = self.checkpoint_interval;
        let due = self.slots.iter().find_map(|(topic, slot)| {
            let by_count = policy.as_ref().is_some_and(|p| p.min_files > 0 && slot.commits_since_compaction >= p.min_files);
            let idle = idle.is_some_and(|d| slot.idle_since.is_some_and(|t| t.elapsed() >= d) && !slot.in_flight && slot.staged.is_empty());
            let sweep = retention.filter(|ms| slot.last_commit.is_some() && slot.last_sweep.is_none_or(|t| t.elapsed().as_millis() as i64 >= ms / 4));
            let checkpoint = every > 0 && slot.latest_version.is_some_and(|v| v >= slot.checkpoint_from + every);
            (by_count || idle || sweep.is_some() || checkpoint).then(|| (topic.clone(), (by_count || idle).then_some(idle), sweep, checkpoint))
        });
        let Some((topic, compaction, sweep, checkpoint)) = due else { return Ok(()) };
        let existing = self.slots.get_mut(&topic).and_then(|s| s.maintainer.take());
        let mut table = match existing {
            Some(t) => t,
            None => self.table(&topic)?,
        };
        let Some(slot) = self.slots.get_mut(&topic) else { return Ok(()) };
        // A round by count leaves the idle mark alone: when it follows the last commit, the
        // idle round still comes after it and merges what the round by count left.
        if let Some(idle) = compaction {
            slot.commits_since_compaction = 0;
            if idle {
                slot.idle_since = None;
            }
        }
        if sweep.is_some() {
            slot.last_sweep = Some(Instant::now());
        }
        if checkpoint {
            slot.checkpoint_from = slot.latest_version.unwrap_or(0);
        }
        // Idle: every value with two small files or more is merged, however few.
        let compaction = compaction.and_then(|idle| policy.map(|p| if idle { Policy { min_files: 2, ..p } } else { p }));
        let due = Due { compaction, sweep, checkpoint };
        let (stop, name) = (self.stop.clone(), topic.clone());
        self.maintenance.spawn(async move {
            let joined = tokio::task::spawn_blocking(move || {
                let done = table.maintain(&due, &stop);
                (table, done)
            })
            .await;
            match joined {
                Ok((table, done)) => (Maintained { topic: name, done }, Some(table)),
                // The format panicked: the table object is lost with it; the next round reads
                // the table afresh.
                Err(e) => {
                    let compacted = Some(Err(TableError::Task { table: name.clone(), reason: e.to_string() }));
                    (Maintained { topic: name, done: Maintenance { compacted, ..Default::default() } }, None)
                }
            }
        });
        Ok(())
    }

    /// Starts the commit of each table with something staged whose last commit is at least the
    /// interval ago (every one with `now`), unless one is under way.
    pub fn start_due(&mut self, now: bool) -> Result<(), TableError> {
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.in_flight && (!s.staged.is_empty() || !s.retry.is_empty()))
            .filter(|(_, s)| now || s.last_commit.is_none_or(|t| t.elapsed() >= self.interval))
            .map(|(t, _)| t.clone())
            .collect();
        for topic in due {
            let existing = self.slots.get_mut(&topic).and_then(|s| s.table.take());
            let mut table = match existing {
                Some(t) => t,
                None => self.table(&topic)?,
            };
            let Some(slot) = self.slots.get_mut(&topic) else { continue };
            let staged: Vec<Staged> =
                if slot.retry.is_empty() { std::mem::take(&mut slot.staged).into_values().collect() } else { std::mem::take(&mut slot.retry) };
            slot.in_flight = true;
            slot.last_commit = Some(Instant::now());
            let epochs: HashMap<i32, u64> =
                staged.iter().map(|s| (s.partition, self.epochs.get(&(topic.clone(), s.partition)).copied().unwrap_or(0))).collect();
            let started = Instant::now();
            let name = topic.clone();
            self.tasks.spawn(async move {
                let given = staged.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let result = table.commit(staged);
                    (table, result)
                })
                .await;
                match joined {
                    Ok((table, result)) => Task { topic: name, table: Some(table), staged: given, result, epochs, started },
                    // The kernel panicked: the table object is lost with it; a fresh one reads
                    // the log again, and the answer is unknown, so the ranges are staged again.
                    Err(e) => {
                        let result = Err(TableError::Task { table: name.clone(), reason: e.to_string() });
                        Task { topic: name, table: None, staged: given, result, epochs, started }
                    }
                }
            });
        }
        Ok(())
    }

    /// The next commit or maintenance round to finish (`None`: none under way).
    pub async fn next_finished(&mut self) -> Option<Finished> {
        loop {
            if self.maintenance.is_empty() {
                return self.next_committed().await.map(Finished::Committed);
            }
            if self.tasks.is_empty() {
                return self.next_maintained().await.map(Finished::Maintained);
            }
            tokio::select! {
                c = self.tasks.join_next() => if let Some(c) = self.committed(c?) { return Some(Finished::Committed(c)) },
                m = self.maintenance.join_next() => if let Some(m) = self.maintained(m?) { return Some(Finished::Maintained(m)) },
            }
        }
    }

    /// The next finished commit (`None`: none under way), with only the partitions whose epoch
    /// has not changed since it started.
    pub async fn next_committed(&mut self) -> Option<Committed> {
        loop {
            let joined = self.tasks.join_next().await?;
            if let Some(c) = self.committed(joined) {
                return Some(c);
            }
        }
    }

    async fn next_maintained(&mut self) -> Option<Maintained> {
        loop {
            let joined = self.maintenance.join_next().await?;
            if let Some(m) = self.maintained(joined) {
                return Some(m);
            }
        }
    }

    fn maintained(&mut self, joined: Result<(Maintained, Option<Box<dyn Table>>), tokio::task::JoinError>) -> Option<Maintained> {
        match joined {
            Ok((done, table)) => {
                let slot = self.slots.entry(done.topic.clone()).or_default();
                slot.maintainer = table;
                if let Some(Ok(c)) = &done.done.compacted {
                    slot.latest_version = slot.latest_version.max(c.version);
                }
                Some(done)
            }
            Err(e) if e.is_cancelled() => None,
            Err(e) => {
                let compacted = Some(Err(TableError::Task { table: String::new(), reason: e.to_string() }));
                Some(Maintained { topic: String::new(), done: Maintenance { compacted, ..Default::default() } })
            }
        }
    }

    /// A commit task's answer folded into the slot (`None`: a cancelled task).
    fn committed(&mut self, joined: Result<Task, tokio::task::JoinError>) -> Option<Committed> {
        let task = match joined {
            Ok(t) => t,
            Err(e) if e.is_cancelled() => return None,
            Err(e) => {
                let result = Err(TableError::Task { table: String::new(), reason: e.to_string() });
                return Some(Committed { topic: String::new(), result, millis: 0 });
            }
        };
        let Task { topic, table, staged, result, epochs, started } = task;
        let current = |p: &i32| epochs.get(p).copied().unwrap_or(0) == self.epochs.get(&(topic.clone(), *p)).copied().unwrap_or(0);
        let slot = self.slots.entry(topic.clone()).or_default();
        slot.table = table;
        slot.in_flight = false;
        if let Ok(o) = &result {
            if o.version.is_some() {
                slot.commits_since_compaction += 1;
                slot.idle_since = Some(Instant::now());
                slot.latest_version = slot.latest_version.max(o.version);
            }
        }
        if result.is_err() {
            slot.retry = staged.into_iter().filter(|s| current(&s.partition)).collect();
        }
        if let Ok(o) = &result {
            for old in o.deferred.iter().filter(|s| current(&s.partition)) {
                let merged = match slot.staged.remove(&old.partition) {
                    Some(newer) => Staged { start: old.start, ..newer },
                    None => old.clone(),
                };
                slot.staged.insert(old.partition, merged);
            }
        }
        let result = result.map(|mut o| {
            o.committed.retain(|(p, _)| current(p));
            o.fenced.retain(|(p, _)| current(p));
            o.refused.retain(|(p, _)| current(p));
            o
        });
        Some(Committed { topic, result, millis: started.elapsed().as_millis() as u64 })
    }
}
