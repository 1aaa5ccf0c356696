//! The table stage as the pipeline drives it: files that are durable in offset order are
//! staged per topic and partition, and every `table.commit_interval_ms` one commit per table
//! runs on a blocking thread while consumption goes on. Each partition has a cursor: the txn
//! version its next staged range follows (the table's version, plus what is staged or in
//! flight). A partition that is revoked or fenced gets a new epoch, and answers of commits
//! started before are not reported for it.
//!
//! Maintenance (compaction, the orphan sweep, checkpoints) runs beside the commits, on a thread and a table
//! object of its own, one table at a time: a compaction that rewrites a bin for seconds never
//! holds a commit back (the two meet only at the log, where the one that loses a version reads
//! the other's and tries again), and its share of CPU and memory is one bin on one thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use url::Url;

use super::{DataFile, Outcome, Settings, Staged, Table, TableError};
use crate::source::TopicPartition;

/// Where each topic's table is: its root URL, in the store the engine is given.
pub type Roots = Arc<dyn Fn(&str) -> Result<Url, String> + Send + Sync>;

/// A commit that finished, as the pipeline sees it.
pub struct Committed {
    pub topic: String,
    /// The partitions of the answer whose epoch is still current; the others are left out.
    pub result: Result<Outcome, TableError>,
    pub millis: u64,
}

/// A maintenance round that finished: what compaction did (if it was due), what the sweep
/// removed, the version a checkpoint was written for (if one was due), and how many log
/// entries past the log retention went behind it.
pub struct Maintained {
    pub topic: String,
    pub compacted: Option<Result<super::compact::Compacted, TableError>>,
    pub swept: super::orphans::Swept,
    pub checkpointed: Option<Result<u64, TableError>>,
    pub log_entries_removed: usize,
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
    table: Option<Table>,
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
    /// started (see [`super::compact::Policy::idle_ms`]).
    idle_since: Option<Instant>,
    /// When orphans were last looked for (at most every quarter of the retention).
    last_sweep: Option<Instant>,
    /// The latest version a commit or a compaction of ours wrote, and the one the last
    /// checkpoint round started at (a checkpoint is due `checkpoint_interval` versions on).
    latest_version: Option<u64>,
    checkpoint_from: u64,
    /// The maintenance round's own table object (its snapshot read incrementally); `None`
    /// before the first round and while one holds it.
    maintainer: Option<Table>,
}

struct Task {
    topic: String,
    table: Option<Table>,
    /// What the commit was given, handed back for the next attempt when it failed.
    staged: Vec<Staged>,
    result: Result<Outcome, TableError>,
    epochs: HashMap<i32, u64>,
    started: Instant,
}

pub struct Tables {
    store: Arc<dyn ObjectStore>,
    roots: Roots,
    interval: Duration,
    /// Every table's (see [`Settings`]).
    settings: Settings,
    slots: HashMap<String, Slot>,
    cursors: HashMap<TopicPartition, Option<i64>>,
    epochs: HashMap<TopicPartition, u64>,
    next_epoch: u64,
    tasks: tokio::task::JoinSet<Task>,
    compaction: Option<super::compact::Policy>,
    /// At most one maintenance round at a time, of any table.
    maintenance: tokio::task::JoinSet<(Maintained, Option<Table>)>,
    /// Set on shutdown: a compaction under way stops after its bin.
    stop: Arc<AtomicBool>,
}

/// Reads the tables' txn versions of assigned partitions inside the consumer's rebalance (see
/// [`crate::source::TableOffsets`]): on the thread that polls, blocking it while the log is read
/// (the runtime moves its other tasks away meanwhile), a few attempts while the store heals.
pub fn offsets_reader(store: Arc<dyn ObjectStore>, roots: Roots) -> crate::source::TableOffsets {
    Arc::new(move |tps: &[TopicPartition]| {
        tokio::runtime::Handle::try_current().map_err(|e| format!("the rebalance runs outside the runtime: {e}"))?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in tps {
            by_topic.entry(topic.as_str()).or_default().push(*partition);
        }
        tokio::task::block_in_place(|| {
            let mut out = Vec::with_capacity(tps.len());
            for (topic, partitions) in by_topic {
                let root = roots(topic)?;
                let mut last = String::new();
                let mut found = None;
                for attempt in 0..3 {
                    if attempt > 0 {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    let mut table = Table::new(store.clone(), root.clone(), topic, Settings::default());
                    match table.versions(&partitions) {
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
    pub fn new(store: Arc<dyn ObjectStore>, roots: Roots, interval: Duration, settings: Settings) -> Self {
        Self {
            store,
            roots,
            interval,
            settings,
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

    /// Compaction after commits (see [`super::compact`]).
    pub fn with_compaction(mut self, policy: Option<super::compact::Policy>) -> Self {
        self.compaction = policy;
        self
    }

    fn table(&self, topic: &str) -> Result<Table, TableError> {
        let root = (self.roots)(topic).map_err(|reason| TableError::Root { topic: topic.to_string(), reason })?;
        Ok(Table::new(self.store.clone(), root, topic, self.settings.clone()))
    }

    /// The table's txn version of each partition now (`None`: none yet), read afresh from the log.
    pub async fn versions(&self, topic: &str, partitions: Vec<i32>) -> Result<BTreeMap<i32, Option<i64>>, TableError> {
        let mut table = self.table(topic)?;
        let name = table.root().to_string();
        tokio::task::spawn_blocking(move || table.versions(&partitions))
            .await
            .map_err(|e| TableError::Task { table: name, reason: e.to_string() })?
    }

    /// The partition is (again) at `version` of the table: what is staged for it is dropped,
    /// answers of commits already under way are no longer reported for it, and its next range
    /// follows `version`.
    pub fn position(&mut self, tp: &TopicPartition, version: Option<i64>) {
        self.forget(tp);
        self.cursors.insert(tp.clone(), version);
    }

    /// Revoked: nothing of the partition is committed from here on.
    pub fn forget(&mut self, tp: &TopicPartition) {
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
    pub fn stage(&mut self, tp: &TopicPartition, next: i64, files: Vec<DataFile>) {
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
        let staged = slot.staged.entry(tp.1).or_insert_with(|| Staged { partition: tp.1, start, next, files: Vec::new() });
        staged.next = next;
        staged.files.extend(files);
    }

    /// Whether the partition has a range staged or in a commit under way.
    pub fn busy(&self, tp: &TopicPartition) -> bool {
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
        let retention = self.settings.orphan_retention_ms;
        let every = self.settings.checkpoint_interval;
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
        let policy = compaction.and_then(|idle| policy.map(|p| if idle { super::compact::Policy { min_files: 2, ..p } } else { p }));
        let (store, stop, name) = (self.store.clone(), self.stop.clone(), topic.clone());
        self.maintenance.spawn(async move {
            let joined = tokio::task::spawn_blocking(move || {
                let compacted = policy.map(|p| table.root_key().and_then(|root| table.compact(&store, &root, &p, &stop)));
                let mut swept = Default::default();
                if let Some(ms) = sweep {
                    let now = crate::health::now_ms();
                    match table.root_key().and_then(|root| table.remove_orphans(&store, &root, ms, now)) {
                        Ok(s) => swept = s,
                        Err(e) => tracing::warn!(table = %table.root(), error = %e, "looking for orphan files failed; tried again later"),
                    }
                }
                // Last, so it takes in the compaction's version too. No table yet: nothing due.
                let checkpointed = checkpoint.then(|| table.checkpoint()).and_then(Result::transpose);
                // Expired log entries go behind a new checkpoint, as Spark's cleanup does.
                let mut log_entries_removed = 0;
                if matches!(checkpointed, Some(Ok(_))) {
                    match table.root_key().and_then(|root| table.clean_log(&store, &root, crate::health::now_ms())) {
                        Ok(n) => log_entries_removed = n,
                        Err(e) => tracing::warn!(table = %table.root(), error = %e, "removing expired log entries failed; tried again after the next checkpoint"),
                    }
                }
                (table, compacted, swept, checkpointed, log_entries_removed)
            })
            .await;
            match joined {
                Ok((table, compacted, swept, checkpointed, log_entries_removed)) => {
                    (Maintained { topic: name, compacted, swept, checkpointed, log_entries_removed }, Some(table))
                }
                // The kernel panicked: the table object is lost with it; the next round reads
                // the log afresh.
                Err(e) => {
                    let compacted = Some(Err(TableError::Task { table: name.clone(), reason: e.to_string() }));
                    (Maintained { topic: name, compacted, swept: Default::default(), checkpointed: None, log_entries_removed: 0 }, None)
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

    fn maintained(&mut self, joined: Result<(Maintained, Option<Table>), tokio::task::JoinError>) -> Option<Maintained> {
        match joined {
            Ok((done, table)) => {
                let slot = self.slots.entry(done.topic.clone()).or_default();
                slot.maintainer = table;
                if let Some(Ok(c)) = &done.compacted {
                    slot.latest_version = slot.latest_version.max(c.version);
                }
                Some(done)
            }
            Err(e) if e.is_cancelled() => None,
            Err(e) => Some(Maintained {
                topic: String::new(),
                compacted: Some(Err(TableError::Task { table: String::new(), reason: e.to_string() })),
                swept: Default::default(),
                checkpointed: None,
                log_entries_removed: 0,
            }),
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
                    Some(newer) => Staged { partition: old.partition, start: old.start, next: newer.next, files: newer.files },
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
