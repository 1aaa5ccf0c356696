//! The upload stage: each closed group of a partition is uploaded by a task of its own, at most
//! `flush.max_uploads_in_flight` at once, while the pipeline goes on consuming. A task creates
//! the group's files (conditional puts), checks after each that the partition is still ours,
//! removes leftovers of earlier owners past each file, and reports the group durable, or fenced.
//! [`Uploads`] keeps each partition's groups in offset order and hands out the offset after the
//! longest durable prefix, which is all the pipeline may commit (DESIGN.md, "Offset protocol").

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::buffer::{ClosedFile, ClosedGroup, RowTimes};
use crate::error::SinkError;
use crate::flush::FlushReason;
use crate::metrics::Metrics;
use crate::source::deadletter::Delivery;
use crate::source::TopicPartition;

use super::Group;
use crate::store::{Store, Uploaded};

/// Whether this member still owns a partition, as an upload task can see it: the pipeline's
/// flag for this assignment of the partition (cleared on revocation and fencing), librdkafka's
/// lost-assignment flag, and a queued revocation.
#[derive(Clone)]
pub struct Ownership {
    tp: TopicPartition,
    /// Which assignment of the partition this is: results of an earlier one are ignored.
    pub epoch: u64,
    owned: Arc<AtomicBool>,
    group: Arc<dyn Group>,
}

static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Ownership {
    pub fn new(tp: TopicPartition, group: Arc<dyn Group>) -> Self {
        Self { tp, epoch: EPOCHS.fetch_add(1, Ordering::Relaxed), owned: Arc::new(AtomicBool::new(true)), group }
    }

    pub fn owns(&self) -> bool {
        self.owned.load(Ordering::SeqCst) && !self.group.lost(&self.tp)
    }

    /// Revoked or fenced: every task of this assignment sees it at its next check.
    pub fn release(&self) {
        self.owned.store(false, Ordering::SeqCst);
    }
}

/// What one finished upload task reports.
pub struct Finished {
    pub tp: TopicPartition,
    /// The assignment it was uploaded under ([`Ownership::epoch`]).
    pub epoch: u64,
    pub reason: FlushReason,
    /// The group's first offset: its place in the partition's queue.
    pub start_offset: i64,
    pub outcome: Result<Outcome, SinkError>,
}

pub enum Outcome {
    /// Every file of the group is in the store and the leftovers past them are gone.
    Durable(Vec<Landed>),
    /// The partition is no longer ours (or a file another owner committed holds a key): the
    /// group must not be committed.
    Fenced,
}

/// A file that landed: what the pipeline logs and counts.
pub struct Landed {
    pub key: String,
    pub start_offset: i64,
    pub end_offset: i64,
    pub rows: u64,
    pub bytes: usize,
    pub times: RowTimes,
    pub millis: u64,
    /// In table mode: the file as the table's add action will name it.
    pub table_file: Option<crate::table::DataFile>,
}

struct Queued {
    epoch: u64,
    start_offset: i64,
    end_offset: i64,
    bytes: u64,
    durable: bool,
}

/// One partition's groups in flight, oldest first; the keys this assignment created; the
/// directories whose leftovers a group of it removes; and the lock that keeps puts out of the way
/// while one does (clean-ups hold it for writing, puts for reading).
#[derive(Default)]
struct PartitionQueue {
    groups: VecDeque<Queued>,
    created: Arc<Mutex<HashSet<String>>>,
    cleaned: HashSet<Option<String>>,
    lock: Arc<tokio::sync::RwLock<()>>,
}

/// The upload stage of the pipeline.
pub struct Uploads {
    store: Arc<Store>,
    group: Arc<dyn Group>,
    metrics: Metrics,
    limit: usize,
    tasks: tokio::task::JoinSet<Finished>,
    queues: HashMap<TopicPartition, PartitionQueue>,
    bytes_in_flight: u64,
    /// `output.format = "delta"`: files get unique names under the table's root, nothing is
    /// cleaned up or compared with the group's offsets; the table's commit fences.
    table: bool,
}

impl Uploads {
    pub fn new(store: Arc<Store>, group: Arc<dyn Group>, metrics: Metrics, limit: usize) -> Self {
        Self { store, group, metrics, limit: limit.max(1), tasks: tokio::task::JoinSet::new(), queues: HashMap::new(), bytes_in_flight: 0, table: false }
    }

    /// Uploads for `output.format = "delta"` (see [`Uploads::table`]).
    pub fn for_tables(mut self) -> Self {
        self.table = true;
        self
    }

    /// Encoded bytes of the groups not yet durable (they count toward the memory bound).
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    pub fn is_full(&self) -> bool {
        self.tasks.len() >= self.limit
    }

    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the partition has groups not yet committed.
    pub fn busy(&self, tp: &TopicPartition) -> bool {
        self.queues.get(tp).is_some_and(|q| !q.groups.is_empty())
    }

    /// Starts the upload of a closed group (the caller waits first while [`Uploads::is_full`]).
    /// `letters`: the dead-letter sends of the group's skipped records; the group is durable
    /// once its files are stored and these are acknowledged.
    pub fn submit(
        &mut self,
        tp: &TopicPartition,
        group: ClosedGroup,
        owner: &Ownership,
        reason: FlushReason,
        has_paths: bool,
        letters: Vec<Delivery>,
    ) {
        let bytes: u64 = group.files.iter().map(|f| f.bytes.len() as u64).sum();
        let queue = self.queues.entry(tp.clone()).or_default();
        // The first group submitted in a directory (offset order: here, not in the tasks) removes
        // its leftovers, before any put of it; commits follow offset order, so nothing of the
        // directory is committed before that.
        let mut dirs: Vec<Option<String>> = group.files.iter().map(|f| f.path.clone()).collect();
        if group.files.is_empty() && !has_paths {
            dirs.push(None);
        }
        let clean: Vec<Option<String>> =
            if self.table { Vec::new() } else { dirs.into_iter().filter(|d| queue.cleaned.insert(d.clone())).collect() };
        queue.groups.push_back(Queued {
            epoch: owner.epoch,
            start_offset: group.start_offset,
            end_offset: group.end_offset,
            bytes,
            durable: false,
        });
        self.bytes_in_flight += bytes;
        let job = Job {
            tp: tp.clone(),
            store: self.store.clone(),
            group: self.group.clone(),
            metrics: self.metrics.clone(),
            owner: owner.clone(),
            created: queue.created.clone(),
            lock: queue.lock.clone(),
            clean,
            reason,
            table: self.table,
            letters,
        };
        self.tasks.spawn(job.run(group));
    }

    /// The next finished upload; `None` when none is in flight.
    pub async fn next_finished(&mut self) -> Option<Finished> {
        loop {
            match self.tasks.join_next().await? {
                Ok(f) => return Some(self.record(f)),
                Err(e) if e.is_cancelled() => continue,
                Err(e) => {
                    // A panicking upload task: nothing of it is durable; treat it as an error.
                    return Some(Finished {
                        tp: (String::new(), -1),
                        epoch: 0,
                        reason: FlushReason::Shutdown,
                        start_offset: -1,
                        outcome: Err(SinkError::Store(crate::store::StoreError {
                            op: "upload task",
                            key: String::new(),
                            source: object_store::Error::JoinError { source: e },
                        })),
                    });
                }
            }
        }
    }

    fn record(&mut self, f: Finished) -> Finished {
        if let Some(q) = self.queues.get_mut(&f.tp) {
            if let Some(g) = q.groups.iter_mut().find(|g| g.epoch == f.epoch && g.start_offset == f.start_offset) {
                self.bytes_in_flight = self.bytes_in_flight.saturating_sub(g.bytes);
                g.bytes = 0;
                g.durable = matches!(f.outcome, Ok(Outcome::Durable(_)));
            }
        }
        f
    }

    /// The offset after the longest prefix of the partition's groups that is durable, removing
    /// that prefix: what may be committed now, in offset order.
    pub fn take_committable(&mut self, tp: &TopicPartition) -> Option<i64> {
        let q = self.queues.get_mut(tp)?;
        let mut next = None;
        while q.groups.front().is_some_and(|g| g.durable) {
            next = q.groups.pop_front().map(|g| g.end_offset + 1);
        }
        if let Some(n) = next {
            // Keys below what is committed can no longer be mistaken for leftovers.
            if let Ok(mut created) = q.created.lock() {
                created.retain(|k| self.store.start_offset_of(k).is_some_and(|s| s >= n));
            }
        }
        next
    }

    /// Forgets the partition (revoked or fenced): its tasks finish on their own, find it no
    /// longer owned, and nothing of it is committed.
    pub fn forget(&mut self, tp: &TopicPartition) {
        if let Some(q) = self.queues.remove(tp) {
            let pending: u64 = q.groups.iter().map(|g| g.bytes).sum();
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(pending);
        }
    }
}

/// Waits for each dead-letter send; a refused one fails the group as a failed put would.
async fn acknowledged(letters: Vec<Delivery>) -> Result<(), SinkError> {
    for l in letters {
        l.acknowledged().await?;
    }
    Ok(())
}

/// One group's upload, as a task.
struct Job {
    tp: TopicPartition,
    store: Arc<Store>,
    group: Arc<dyn Group>,
    metrics: Metrics,
    owner: Ownership,
    created: Arc<Mutex<HashSet<String>>>,
    lock: Arc<tokio::sync::RwLock<()>>,
    /// Directories whose leftovers this group removes, before its puts.
    clean: Vec<Option<String>>,
    reason: FlushReason,
    table: bool,
    /// The dead-letter sends of the group's skipped records.
    letters: Vec<Delivery>,
}

impl Job {
    async fn run(mut self, group: ClosedGroup) -> Finished {
        let (tp, start_offset, epoch, reason) = (self.tp.clone(), group.start_offset, self.owner.epoch, self.reason);
        let letters = std::mem::take(&mut self.letters);
        let outcome = match self.upload(group).await {
            Ok(Outcome::Durable(files)) => acknowledged(letters).await.map(|()| Outcome::Durable(files)),
            other => other,
        };
        Finished { tp, epoch, reason, start_offset, outcome }
    }

    async fn upload(&self, group: ClosedGroup) -> Result<Outcome, SinkError> {
        let started = Instant::now();
        if !self.clean.is_empty() {
            let _no_puts = self.lock.write().await;
            for dir in &self.clean {
                if !self.remove_stale(dir.as_deref()).await? {
                    return Ok(Outcome::Fenced);
                }
            }
        }
        let mut landed = Vec::with_capacity(group.files.len());
        if self.table {
            for file in group.files {
                let Some(l) = self.upload_table_file(file, started).await? else {
                    return Ok(Outcome::Fenced);
                };
                landed.push(l);
            }
            return Ok(if self.owner.owns() { Outcome::Durable(landed) } else { Outcome::Fenced });
        }
        for file in group.files {
            let key = self.store.key(&self.tp.0, file.path.as_deref(), self.tp.1, file.start_offset);
            if let Ok(mut created) = self.created.lock() {
                created.insert(key.clone()); // before the put: a listing that shows the file finds it here
            }
            let _putting = self.lock.read().await;
            let Some(l) = self.upload_file(key, file, started).await? else {
                return Ok(Outcome::Fenced);
            };
            landed.push(l);
        }
        Ok(if self.owner.owns() { Outcome::Durable(landed) } else { Outcome::Fenced })
    }

    /// Puts one file of a table under a name no other put uses; `None` when the partition was
    /// lost meanwhile (the file stays unreferenced: no table version will name it).
    async fn upload_table_file(&self, file: ClosedFile, started: Instant) -> Result<Option<Landed>, SinkError> {
        let (key, path) = self.store.table_file_key(&self.tp.0, self.tp.1, file.path.as_deref(), file.start_offset);
        let partition_values = file.path.as_deref().map(crate::partition::values_of).unwrap_or_default();
        let schema = crate::table::DataFile::schema_of(&file.bytes, &self.tp.0)?;
        let size = file.bytes.len();
        // The name is unique (a UUID); a put whose answer was lost is found landed by
        // `upload_new`, so another object here is a bug, not a race.
        if let Uploaded::Exists = self.store.upload_new(&key, file.bytes).await? {
            return Err(SinkError::Store(crate::store::StoreError {
                op: "put",
                key,
                source: object_store::Error::AlreadyExists { path: path.clone(), source: "a unique name was taken by other bytes".into() },
            }));
        }
        if !self.owner.owns() {
            tracing::warn!(topic = %self.tp.0, partition = self.tp.1, key, "partition lost while the file uploaded: it stays unreferenced by the table");
            return Ok(None);
        }
        let modification_time = crate::health::now_ms();
        Ok(Some(Landed {
            table_file: Some(crate::table::DataFile { path, size: size as u64, rows: file.rows, modification_time, schema, partition_values, stats: file.stats }),
            key,
            start_offset: file.start_offset,
            end_offset: file.end_offset,
            rows: file.rows,
            bytes: size,
            times: file.times,
            millis: started.elapsed().as_millis() as u64,
        }))
    }

    /// Creates one file; `None` when the group must be abandoned uncommitted:
    /// - the partition was lost while the upload was in flight: the object we just created is
    ///   removed again if it is still ours (its ETag), since the next owner may already have
    ///   committed past its offsets;
    /// - another object has the key (a conditional put refused): if it starts below the
    ///   group's committed offset it is a committed file of another owner, and we are behind:
    ///   fenced; otherwise it is a leftover nobody committed (a crashed owner's), replaced.
    async fn upload_file(&self, key: String, file: ClosedFile, started: Instant) -> Result<Option<Landed>, SinkError> {
        let (tp, start) = (&self.tp, file.start_offset);
        for _ in 0..2 {
            match self.store.upload_new(&key, file.bytes.clone()).await? {
                Uploaded::Created { e_tag } => {
                    if self.owner.owns() {
                        return Ok(Some(Landed {
                            key,
                            start_offset: file.start_offset,
                            end_offset: file.end_offset,
                            rows: file.rows,
                            bytes: file.bytes.len(),
                            times: file.times,
                            millis: started.elapsed().as_millis() as u64,
                            table_file: None,
                        }));
                    }
                    let removed = self.store.delete_if_ours(&key, e_tag.as_deref()).await?;
                    tracing::warn!(topic = %tp.0, partition = tp.1, key, removed, reason = %self.reason, "partition lost while the file uploaded: removed it again (if still ours), nothing committed");
                    return Ok(None);
                }
                Uploaded::Exists => {
                    if !self.owner.owns() {
                        tracing::warn!(topic = %tp.0, partition = tp.1, key, "partition lost while the file uploaded, and the key was taken meanwhile: nothing written, nothing committed");
                        return Ok(None);
                    }
                    let committed = broker_committed(self.group.as_ref(), &self.metrics, tp).await?;
                    if start < committed {
                        tracing::warn!(topic = %tp.0, partition = tp.1, key, committed, "fenced: the key holds a file committed by another owner; the group is dropped");
                        return Ok(None);
                    }
                    tracing::info!(topic = %tp.0, partition = tp.1, key, committed, "replacing a file uploaded but never committed by an earlier owner");
                    self.store.delete(&key).await?;
                }
            }
        }
        tracing::warn!(topic = %tp.0, partition = tp.1, key, "the key was taken again while replacing it; the group is dropped, the next owner replays it");
        Ok(None)
    }

    /// Deletes the leftovers of a directory: files that start at or past the group's committed
    /// offset as the broker reports it, uploaded but never committed by an earlier owner (or by
    /// us before a crash), whose records are being written again now. Never a key this
    /// assignment created (read after the listing: a key is recorded before its put, so a
    /// listed file of ours is found), and only while the partition is ours. Runs with puts of
    /// the partition held off. `false`: the partition is no longer ours.
    async fn remove_stale(&self, path: Option<&str>) -> Result<bool, SinkError> {
        let (topic, partition) = (self.tp.0.as_str(), self.tp.1);
        let committed = broker_committed(self.group.as_ref(), &self.metrics, &self.tp).await?;
        let listed = self.store.files_after(topic, path, partition, committed - 1).await?;
        let created = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        let doomed: Vec<String> = listed.into_iter().filter(|k| !created.contains(k)).collect();
        if !self.owner.owns() {
            return Ok(false);
        }
        if !doomed.is_empty() {
            self.store.delete_all(&doomed).await?;
            tracing::info!(topic, partition, from_offset = committed, files = ?doomed, "removed files uploaded but never committed by an earlier owner");
        }
        Ok(true)
    }
}

/// The group's committed offset as the broker has it now (0 when nothing is committed),
/// retried while the broker is away.
async fn broker_committed(group: &dyn Group, metrics: &Metrics, tp: &TopicPartition) -> Result<i64, SinkError> {
    let mut attempt = 1;
    loop {
        match group.committed(tp).await {
            Ok(o) => return Ok(o.unwrap_or(0)),
            Err(e) if attempt < 30 => {
                tracing::warn!(error = %e, attempt, "reading the committed offset failed, retrying");
                metrics.retries.with_label_values(&["commit"]).inc();
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::ClosedFile;
    use crate::commit::CommitError;
    use crate::config::S3Config;
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The group as a test sets it: a committed offset, and whether the assignment is lost.
    #[derive(Default)]
    struct FakeGroup {
        lost: AtomicBool,
        committed: Mutex<Option<i64>>,
    }

    impl Group for FakeGroup {
        fn lost(&self, _: &TopicPartition) -> bool {
            self.lost.load(Ordering::SeqCst)
        }
        fn committed(&self, _: &TopicPartition) -> futures::future::BoxFuture<'static, Result<Option<i64>, CommitError>> {
            let c = self.committed.lock().map(|c| *c).unwrap_or(None);
            Box::pin(async move { Ok(c) })
        }
    }

    struct Setup {
        mem: Arc<InMemory>,
        store: Arc<Store>,
        group: Arc<FakeGroup>,
        uploads: Uploads,
        tp: TopicPartition,
        owner: Ownership,
    }

    async fn setup(committed: Option<i64>) -> Result<Setup, Box<dyn std::error::Error>> {
        let mem = Arc::new(InMemory::new());
        let metrics = Metrics::new()?;
        let mut store = Store::new(mem.clone(), "pre", &S3Config::default(), metrics.clone());
        store.probe().await?;
        let store = Arc::new(store);
        let group = Arc::new(FakeGroup { committed: Mutex::new(committed), ..FakeGroup::default() });
        let tp: TopicPartition = ("t".into(), 0);
        let owner = Ownership::new(tp.clone(), group.clone());
        let uploads = Uploads::new(store.clone(), group.clone(), metrics, 4);
        Ok(Setup { mem, store, group, uploads, tp, owner })
    }

    fn group(start: i64, end: i64) -> ClosedGroup {
        let file = ClosedFile {
            start_offset: start,
            end_offset: end,
            rows: (end - start + 1) as u64,
            bytes: Bytes::from(format!("rows {start}..={end}")),
            stats: None,
            times: RowTimes::default(),
            path: None,
        };
        ClosedGroup { start_offset: start, end_offset: end, skipped: 0, files: vec![file] }
    }

    async fn content(s: &Setup, start: i64) -> Result<Option<Bytes>, Box<dyn std::error::Error>> {
        match s.mem.get(&Path::parse(s.store.key("t", None, 0, start))?).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(s: &Setup, start: i64, body: &'static str) -> TestResult {
        s.store.upload(&s.store.key("t", None, 0, start), Bytes::from_static(body.as_bytes())).await?;
        Ok(())
    }

    async fn outcome(s: &mut Setup) -> Result<&'static str, Box<dyn std::error::Error>> {
        let f = s.uploads.next_finished().await.ok_or("nothing in flight")?;
        Ok(match f.outcome? {
            Outcome::Durable(_) => "durable",
            Outcome::Fenced => "fenced",
        })
    }

    #[tokio::test]
    async fn commits_follow_offset_order_and_only_leftovers_are_removed() -> TestResult {
        let mut s = setup(Some(100)).await?;
        put(&s, 50, "another owner's committed file").await?;
        put(&s, 150, "a crashed owner's leftover").await?;
        put(&s, 260, "another leftover").await?;
        s.uploads.submit(&s.tp, group(100, 199), &s.owner, FlushReason::Size, false, Vec::new());
        s.uploads.submit(&s.tp, group(200, 299), &s.owner, FlushReason::Size, false, Vec::new());
        let mut committable = Vec::new();
        for _ in 0..2 {
            assert_eq!(outcome(&mut s).await?, "durable");
            committable.extend(s.uploads.take_committable(&s.tp));
        }
        assert_eq!(committable.last(), Some(&300), "the durable prefix ends after the second group: {committable:?}");
        assert!(committable.iter().all(|c| *c == 200 || *c == 300), "only group boundaries, in order: {committable:?}");
        assert_eq!(s.uploads.bytes_in_flight(), 0);
        assert!(!s.uploads.busy(&s.tp));
        assert!(content(&s, 50).await?.is_some(), "a file below the committed offset is never deleted");
        assert!(content(&s, 150).await?.is_none() && content(&s, 260).await?.is_none(), "leftovers past our first file are removed");
        assert_eq!(content(&s, 200).await?, Some(Bytes::from_static(b"rows 200..=299")), "our second file is not a leftover");
        Ok(())
    }

    #[tokio::test]
    async fn a_key_taken_by_a_committed_file_fences_and_a_leftover_is_replaced() -> TestResult {
        // Another owner committed past 100: its file at 100 stays, the group is fenced.
        let mut s = setup(Some(150)).await?;
        put(&s, 100, "committed by another owner").await?;
        s.uploads.submit(&s.tp, group(100, 199), &s.owner, FlushReason::Size, false, Vec::new());
        assert_eq!(outcome(&mut s).await?, "fenced");
        assert_eq!(s.uploads.take_committable(&s.tp), None);
        assert_eq!(content(&s, 100).await?, Some(Bytes::from_static(b"committed by another owner")));
        // Nobody committed past 100: the object there is a leftover, replaced by ours.
        let mut s = setup(Some(100)).await?;
        put(&s, 100, "a crashed owner's leftover").await?;
        s.uploads.submit(&s.tp, group(100, 199), &s.owner, FlushReason::Size, false, Vec::new());
        assert_eq!(outcome(&mut s).await?, "durable");
        assert_eq!(s.uploads.take_committable(&s.tp), Some(200));
        assert_eq!(content(&s, 100).await?, Some(Bytes::from_static(b"rows 100..=199")));
        Ok(())
    }

    #[tokio::test]
    async fn a_partition_lost_during_the_upload_is_fenced_and_its_file_removed() -> TestResult {
        let mut s = setup(Some(100)).await?;
        s.group.lost.store(true, Ordering::SeqCst);
        s.uploads.submit(&s.tp, group(100, 199), &s.owner, FlushReason::Time, false, Vec::new());
        assert_eq!(outcome(&mut s).await?, "fenced");
        assert_eq!(s.uploads.take_committable(&s.tp), None);
        assert!(content(&s, 100).await?.is_none(), "the file it created is removed again");
        // A released ownership (revoked) fences the same way.
        let mut s = setup(Some(100)).await?;
        s.owner.release();
        s.uploads.submit(&s.tp, group(100, 199), &s.owner, FlushReason::Time, false, Vec::new());
        assert_eq!(outcome(&mut s).await?, "fenced");
        Ok(())
    }
}
