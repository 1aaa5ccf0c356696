//! The loop that drives the stages: poll → decode → buffer → flush (close the group, hand it to
//! the upload stage of `commit::uploads`) → commit the durable prefix when an upload finishes.
//! One task owns every partition's state and applies rebalance events before any message or
//! flush that follows them; uploads run as tasks of their own while it consumes, and ask for
//! ownership through the partition's `Ownership`, which revocation and fencing clear.
//! Records that can never be written are routed in `bad_records`.

mod bad_records;
mod tables;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquet::file::properties::WriterProperties;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};

use crate::buffer::{DecoderSpec, PartitionBuffer, RowAt};
use crate::decode::evolve;
use crate::decode::headers::Headers;
use crate::commit;
use crate::commit::uploads::{Finished, Outcome, Ownership, Uploads};
use crate::commit::{Group, KafkaGroup};
use crate::config::{Config, KeyColumn, Layout, SchemaChange, Tolerance, Tombstones};
use crate::source::deadletter::{DeadLetter, Delivery};
use crate::decode::registry::Registry;
use crate::decode::{frame, DecodeError, SchemaIds};
use crate::encode;
use crate::error::SinkError;
use crate::flush::{FlushPolicy, FlushReason};
use crate::metrics::Metrics;
use crate::partition::PathScheme;
use crate::source::{self, Consumer, RebalanceEvent, TopicPartition};
use crate::store::Store;

/// Rows per decoded Arrow batch (at most; a file's last batch is smaller).
const DECODE_BATCH_ROWS: u64 = 8192;

pub struct Pipeline {
    consumer: Arc<Consumer>,
    registry: Registry,
    /// The upload stage: closed groups upload as tasks of their own while the loop consumes.
    uploads: Uploads,
    /// This member's ownership of each assigned partition, shared with its upload tasks.
    owners: HashMap<TopicPartition, Ownership>,
    /// The consumer group as the upload stage sees it.
    group: Arc<dyn Group>,
    policy: FlushPolicy,
    props: WriterProperties,
    metrics: Metrics,
    decode_batch_rows: usize,
    layout: Layout,
    key_column: KeyColumn,
    tombstones: Tombstones,
    /// Where a record's file goes under its topic.
    paths: PathScheme,
    /// With `errors.tolerance = "all"`; `None`: a bad record fails its partition.
    dead_letter: Option<DeadLetter>,
    /// Per partition: the dead-letter sends of its open group's records, handed to the group's
    /// upload when it closes, which waits for them before the group counts as durable.
    letters: HashMap<TopicPartition, Vec<Delivery>>,
    /// `flush.max_buffered_bytes`, and the memory of all open files (the sum of each buffer's
    /// `accounted`).
    max_buffered: u64,
    buffered: u64,
    /// `flush.max_open_files`: files (paths) one partition's open group may hold.
    max_open_files: usize,
    /// `output.parallel_encode`.
    parallel_encode: bool,
    /// `output.headers`: rows carry their Kafka headers.
    headers: bool,
    /// `output.schema_change`: merge a new version into the open file, or close it.
    schema_change: SchemaChange,
    /// The assignment: one buffer per assigned partition, created on assign, dropped on revoke.
    partitions: HashMap<TopicPartition, PartitionBuffer>,
    /// Table mode (`output.format`): the table stage, which commits what the uploads made
    /// durable and says where each partition resumes.
    tables: Option<crate::table::Tables>,
    /// `kafka.auto_offset_reset`: where a partition known to neither the table nor the group
    /// starts.
    auto_offset_reset: String,
}

impl Pipeline {
    /// Connects every stage; nothing is consumed until [`Pipeline::run`].
    pub fn new(config: &Config, metrics: Metrics, auth: source::Auth) -> Result<Self, SinkError> {
        let store = Store::open(config, metrics.clone())?;
        Self::with_store(config, metrics, store, auth)
    }

    /// As [`Pipeline::new`], writing to `store` instead of the configured S3 bucket (tests use
    /// an in-memory object store).
    pub fn with_store(config: &Config, metrics: Metrics, store: Store, auth: source::Auth) -> Result<Self, SinkError> {
        let registry = Registry::new(&config.schema_registry, Some(metrics.clone()))?;
        let dead_letter = match config.errors.tolerance {
            Tolerance::All => Some(DeadLetter::new(&config.kafka, &config.errors.dead_letter_topic, &auth)?),
            Tolerance::None => None,
        };
        let store = Arc::new(store);
        let paths = PathScheme::from_config(&config.output).map_err(crate::decode::DecodeError::Batch)?;
        let format = crate::table::format(config, &store, &paths).map_err(crate::decode::DecodeError::Batch)?;
        let offsets = format.as_ref().map(|(f, _)| crate::table::offsets_reader(f.clone()));
        let consumer = source::subscribe(&config.kafka, metrics.clone(), auth, offsets)?;
        let group: Arc<dyn Group> = Arc::new(KafkaGroup(consumer.clone()));
        let mut uploads = Uploads::new(store.clone(), group.clone(), metrics.clone(), config.flush.max_uploads_in_flight);
        if format.is_some() {
            uploads = uploads.for_tables();
        }
        let interval = Duration::from_millis(config.table.commit_interval_ms);
        let tables = format.map(|(f, settings)| crate::table::Tables::new(f, interval, &settings).with_compaction(crate::table::compaction(config)));
        Ok(Self {
            tables,
            auto_offset_reset: config.kafka.auto_offset_reset.clone(),
            uploads,
            owners: HashMap::new(),
            group,
            consumer,
            registry,
            policy: FlushPolicy::from_config(&config.flush),
            props: encode::writer_properties(&config.output),
            metrics,
            decode_batch_rows: config.flush.max_records.min(DECODE_BATCH_ROWS) as usize,
            layout: config.output.layout,
            key_column: config.output.key,
            tombstones: config.output.tombstones,
            schema_change: config.output.schema_change,
            dead_letter,
            letters: HashMap::new(),
            paths,
            max_buffered: config.flush.max_buffered_bytes,
            buffered: 0,
            max_open_files: config.flush.max_open_files,
            parallel_encode: config.output.parallel_encode,
            headers: config.output.headers,
            partitions: HashMap::new(),
        })
    }

    /// Consumes until `shutdown` resolves, then flushes, uploads and commits every open file
    /// and leaves the group. A fatal error returns at once, committing nothing further.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SinkError> {
        let consumer = self.consumer.clone();
        let tick_every = (self.policy.rotate_interval / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The ticker (time rotation of idle partitions, commit retries, caught-up commits) runs
        // on schedule by construction: a due tick is served before the next message, whatever
        // the consumer's queue holds. Waiting, the select below prefers messages; a broker that
        // serves faster than we consume would otherwise keep the queue full and starve it.
        let mut next_tick = Instant::now() + tick_every;
        tokio::pin!(shutdown);
        loop {
            self.apply_rebalance_events();
            if Instant::now() >= next_tick {
                self.rotate_expired().await?;
                next_tick = Instant::now() + tick_every;
                tick.reset();
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                msg = consumer.recv() => match msg {
                    Ok(m) => self.handle(&m).await?,
                    Err(e) if source::unreadable_batch(&e) => {
                        // librdkafka reports the batch and fetches past it; the records it held
                        // must never be committed past, so stop before anything more is.
                        self.metrics.errors.with_label_values(&["source", "unreadable_batch"]).inc();
                        tracing::error!(error = %e, "a batch could not be read (corrupt, or compressed with a codec this build lacks); stopping without committing past it");
                        return Err(SinkError::Source(e));
                    }
                    Err(e) => {
                        self.metrics.errors.with_label_values(&["source", "poll"]).inc();
                        tracing::warn!(error = %e, "kafka poll error");
                    }
                },
                _ = tick.tick() => {
                    self.rotate_expired().await?;
                    next_tick = Instant::now() + tick_every;
                }
                Some(done) = self.uploads.next_finished(), if self.uploads.in_flight() > 0 => self.finished(done).await?,
                Some(done) = tables::next_finished(&mut self.tables), if self.tables.as_ref().is_some_and(|t| t.working() > 0) => {
                    self.table_finished(done).await?
                }
            }
        }
        tracing::info!("shutting down: flushing open files");
        self.apply_rebalance_events();
        let open: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for tp in open {
            self.flush(&tp, FlushReason::Shutdown).await?;
        }
        while let Some(done) = self.uploads.next_finished().await {
            self.finished(done).await?;
        }
        self.drain_tables().await?;
        self.commit_caught_up().await;
        consumer.unsubscribe();
        self.apply_rebalance_events();
        drop(self);
        // The last reference: dropping it closes the consumer, which leaves the group.
        drop(consumer);
        tracing::info!("stopped");
        Ok(())
    }

    fn apply_rebalance_events(&mut self) {
        for event in self.consumer.context().take_events() {
            match event {
                RebalanceEvent::Assigned(tps) => {
                    let positions: HashMap<TopicPartition, Option<i64>> = self.consumer.context().take_positions().into_iter().collect();
                    self.metrics.health.joined();
                    for tp in tps {
                        self.metrics.health.assigned(&tp.0, tp.1);
                        if let Some(old) = self.owners.insert(tp.clone(), Ownership::new(tp.clone(), self.group.clone())) {
                            old.release();
                        }
                        self.uploads.forget(&tp);
                        let gauge = self.metrics.buffered_records.with_label_values(&[tp.0.as_str(), &tp.1.to_string()]);
                        let mut buf = PartitionBuffer::new(&tp.0, tp.1, gauge)
                            .with_parallel_encode(self.parallel_encode)
                            .with_transform(self.tables.as_ref().map(|t| t.format().transform()));
                        buf.consumed = Some((
                            self.metrics.records_consumed.with_label_values(&[tp.0.as_str()]),
                            self.metrics.bytes_consumed.with_label_values(&[tp.0.as_str()]),
                        ));
                        self.partitions.insert(tp.clone(), buf);
                        self.assigned_to_table(&tp, positions.get(&tp).copied());
                    }
                }
                RebalanceEvent::Revoked(tps) => {
                    for tp in tps {
                        self.metrics.health.revoked(&tp.0, tp.1);
                        // Another member's to report now; a stale value here would never clear.
                        let _ = self.metrics.consumer_lag.remove_label_values(&[tp.0.as_str(), &tp.1.to_string()]);
                        if let Some(owner) = self.owners.remove(&tp) {
                            owner.release(); // its uploads in flight find it gone and commit nothing
                        }
                        self.uploads.forget(&tp);
                        self.letters.remove(&tp);
                        self.revoked_from_table(&tp);
                        if let Some(buf) = self.partitions.remove(&tp) {
                            self.buffered = self.buffered.saturating_sub(buf.accounted);
                            self.metrics.buffered_bytes.set(self.buffered as i64);
                            let dropped = buf.buffered_records();
                            if dropped > 0 {
                                tracing::info!(topic = %tp.0, partition = tp.1, records = dropped, "revoked: open file discarded, the next owner replays it");
                            }
                        }
                    }
                }
            }
        }
    }

    async fn handle(&mut self, m: &BorrowedMessage<'_>) -> Result<(), SinkError> {
        self.apply_rebalance_events();
        let tp: TopicPartition = (m.topic().to_string(), m.partition());
        let offset = m.offset();
        if self.tables.as_ref().is_some_and(|t| t.positions.skips(&tp, offset)) {
            return Ok(()); // not yet positioned, or below its table version: in the table already
        }
        let Some(buf) = self.partitions.get_mut(&tp) else {
            tracing::debug!(topic = %tp.0, partition = tp.1, offset, "message of a partition not assigned to us, ignored");
            return Ok(());
        };
        if buf.failed || buf.fenced {
            return Ok(()); // fetched before the partition was paused, or no longer ours
        }
        if let Some(through) = buf.replay_through {
            if offset > through {
                return Ok(()); // fetched before the seek back
            }
            buf.replay_through = None;
        }
        let size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
        if let Some((records, bytes)) = &buf.consumed {
            records.inc();
            bytes.inc_by(size as u64);
        }
        if buf.dead_lettered.contains(&offset) {
            buf.push_skipped(offset);
            self.metrics.records_skipped.with_label_values(&[tp.0.as_str(), "dead_letter"]).inc();
        } else {
            let timestamp = m.timestamp().to_millis();
            let headers = self.headers.then(|| kafka_headers(m));
            let row = Row { key: m.key(), offset, timestamp, headers: headers.as_deref() };
            let pushed = match m.payload() {
                None if self.tombstones == Tombstones::Fail => Err(SinkError::from(DecodeError::Tombstone)),
                None if self.tombstones == Tombstones::Write => self.push_tombstone(&tp, row).await,
                None => {
                    self.buffer(&tp)?.push_skipped(offset);
                    self.metrics.records_skipped.with_label_values(&[tp.0.as_str(), "tombstone"]).inc();
                    Ok(())
                }
                Some(value) => self.push_value(&tp, value, row).await,
            };
            if let Err(e) = pushed {
                match e.bad_record_class() {
                    Some(class) => self.bad_record(m, &tp, e, class).await?,
                    None => {
                        self.metrics.errors.with_label_values(&[e.stage(), "record"]).inc();
                        return Err(e.at(&tp.0, tp.1, offset));
                    }
                }
            }
        }
        if !self.partitions.contains_key(&tp) {
            return Ok(());
        }
        self.remeasure(&tp);
        let stats = self.buffer(&tp)?.stats(Instant::now());
        if let Some(reason) = stats.and_then(|s| self.policy.check(s)) {
            self.flush(&tp, reason).await?;
        }
        self.enforce_memory_bound().await
    }

    /// Brings `buffered` up to date with the partition's memory after a change to its buffer.
    fn remeasure(&mut self, tp: &TopicPartition) {
        if let Some(buf) = self.partitions.get_mut(tp) {
            let now = buf.memory_bytes();
            self.buffered = self.buffered.saturating_sub(buf.accounted) + now;
            buf.accounted = now;
            self.metrics.buffered_bytes.set(self.buffered as i64);
        }
    }

    /// While all open files and the uploads in flight together hold more than
    /// `flush.max_buffered_bytes`: waits for an upload when the uploads hold at least as much
    /// as the open files (the back-pressure on consumption), else flushes the largest open file.
    async fn enforce_memory_bound(&mut self) -> Result<(), SinkError> {
        while self.buffered + self.uploads.bytes_in_flight() > self.max_buffered {
            if self.uploads.in_flight() > 0 && self.uploads.bytes_in_flight() >= self.buffered {
                if let Some(done) = self.uploads.next_finished().await {
                    self.finished(done).await?;
                }
                continue;
            }
            let largest =
                self.partitions.iter().filter(|(_, b)| b.accounted > 0).max_by_key(|(_, b)| b.accounted).map(|(tp, _)| tp.clone());
            let Some(tp) = largest else { break };
            let before = self.buffered;
            self.flush(&tp, FlushReason::Memory).await?;
            if self.buffered >= before && self.uploads.in_flight() == 0 {
                break; // nothing freed (the flush was skipped): do not spin
            }
        }
        Ok(())
    }

    /// A record with a value: decoded into the partition's open file.
    async fn push_value(&mut self, tp: &TopicPartition, value: &[u8], row: Row<'_>) -> Result<(), SinkError> {
        let Row { key, offset, timestamp, headers } = row;
        let f = frame::parse(value)?;
        let k = self.parse_key(key)?;
        let path = self.record_path(Some((f.schema_id, f.body)), timestamp).await?;
        self.prepare(tp, f.schema_id, k.map(|k| k.schema_id), path.as_deref()).await?;
        let Self { partitions, props, .. } = self;
        let buf = partitions.get_mut(tp).ok_or_else(|| SinkError::NotAssigned { topic: tp.0.clone(), partition: tp.1 })?;
        buf.push_row(f.body, k.map(|k| k.body), RowAt { offset, timestamp_ms: timestamp, path: path.as_deref(), headers }, props)
    }

    /// A tombstone with `output.tombstones = "write"`: a row with the key and null values, in the
    /// open file's value schema, or the subject's latest one when no value came yet.
    async fn push_tombstone(&mut self, tp: &TopicPartition, row: Row<'_>) -> Result<(), SinkError> {
        let Row { key, offset, timestamp, headers } = row;
        let k = self.parse_key(key)?;
        let value_id = match self.buffer(tp)?.decoder_schema_ids() {
            Some(ids) => ids.value,
            None => self.registry.latest_id(&format!("{}-value", tp.0)).await?,
        };
        let path = self.record_path(None, timestamp).await?;
        self.prepare(tp, value_id, k.map(|k| k.schema_id), path.as_deref()).await?;
        let Self { partitions, props, .. } = self;
        let buf = partitions.get_mut(tp).ok_or_else(|| SinkError::NotAssigned { topic: tp.0.clone(), partition: tp.1 })?;
        buf.push_tombstone_row(k.map(|k| k.body), RowAt { offset, timestamp_ms: timestamp, path: path.as_deref(), headers }, props)
    }

    /// The record's directory under its topic (see [`PathScheme::path`]); the partitioner
    /// learns a writer schema from the registry the first time one of its bodies is read.
    async fn record_path(&mut self, value: Option<(u32, &[u8])>, timestamp: Option<i64>) -> Result<Option<String>, SinkError> {
        if let Some((id, _)) = value.filter(|(id, _)| self.paths.needs_schema(*id)) {
            let schema = self.registry.schema(id).await?;
            self.paths.learn(id, &schema).map_err(|reason| DecodeError::BadSchema { schema_id: id, reason })?;
        }
        let schema_id = value.map_or(0, |(id, _)| id);
        self.paths
            .path(value, timestamp)
            .map_err(|e| match e {
                crate::partition::PathError::Body(reason) => DecodeError::CorruptBody { schema_id, reason },
                other => DecodeError::BadSchema { schema_id, reason: other.to_string() },
            })
            .map_err(SinkError::from)
    }

    fn parse_key<'a>(&self, key: Option<&'a [u8]>) -> Result<Option<frame::Frame<'a>>, SinkError> {
        if self.key_column == KeyColumn::Off {
            return Ok(None);
        }
        Ok(key.map(frame::parse_key).transpose()?)
    }

    /// Makes the open group and the decoder spec fit a record of these schemas and this path:
    /// a group of other schemas (a keyless record fits any key schema), or one that would need
    /// more than `flush.max_open_files` files, is closed first, and a spec is built if needed.
    async fn prepare(&mut self, tp: &TopicPartition, value_id: u32, key_id: Option<u32>, path: Option<&str>) -> Result<(), SinkError> {
        let fits = |ids: SchemaIds| ids.value == value_id && (key_id.is_none() || ids.key == key_id);
        let changed = self.buffer(tp)?.group_schema_ids().is_some_and(|ids| !fits(ids));
        if changed && !(self.schema_change == SchemaChange::Merge && self.merge_version(tp, value_id, key_id).await?) {
            self.flush(tp, FlushReason::Schema).await?;
        }
        if self.buffer(tp)?.needs_new_file(path).is_some_and(|open| open >= self.max_open_files) {
            self.flush(tp, FlushReason::Path).await?;
        }
        if !self.buffer(tp)?.decoder_schema_ids().is_some_and(fits) {
            let spec = self.decoder_spec(tp, value_id, key_id, (None, None)).await?;
            self.check_writable(&spec, value_id)?;
            tracing::info!(topic = %tp.0, partition = tp.1, value_schema_id = value_id, key_schema_id = ?key_id, "decoder ready");
            self.buffer(tp)?.set_decoder_spec(spec);
        }
        Ok(())
    }

    /// The decoder spec of a version, resolving to `readers` (value, key) where given.
    async fn decoder_spec(
        &mut self,
        tp: &TopicPartition,
        value_id: u32,
        key_id: Option<u32>,
        (value_reader, key_reader): (Option<Arc<str>>, Option<Arc<str>>),
    ) -> Result<DecoderSpec, SinkError> {
        let value_schema = self.registry.schema(value_id).await?;
        let key = match key_id {
            Some(id) => Some((id, self.registry.schema(id).await?)),
            None => None,
        };
        Ok(DecoderSpec {
            topic: tp.0.clone(),
            partition: tp.1,
            value: (value_id, value_schema),
            key,
            batch_rows: self.decode_batch_rows,
            layout: self.layout,
            tombstone_rows: self.tombstones == Tombstones::Write,
            headers: self.headers,
            value_reader,
            key_reader,
        })
    }

    /// The spec's output schema, which the Parquet writer must take.
    fn check_writable(&self, spec: &DecoderSpec, value_id: u32) -> Result<arrow::datatypes::SchemaRef, SinkError> {
        let unwritable = |reason: String| DecodeError::Unwritable { schema_id: value_id, reason };
        let schema = spec.build()?.output_schema().map_err(|e| unwritable(e.to_string()))?;
        encode::ParquetFile::check_schema(schema.clone(), self.props.clone()).map_err(|e| unwritable(e.to_string()))?;
        Ok(schema)
    }

    /// A record of another schema version than the open group's (`output.schema_change =
    /// "merge"`): merges the version into the group's schema when they reconcile (see
    /// `decode::evolve`), rewriting the open files if the union adds or widens columns. False
    /// when they do not: the caller closes the group (flush reason `schema`), and the log says
    /// why.
    async fn merge_version(&mut self, tp: &TopicPartition, value_id: u32, key_id: Option<u32>) -> Result<bool, SinkError> {
        let ids = SchemaIds { value: value_id, key: key_id };
        if self.buffer(tp)?.group_has_version(ids) && self.buffer(tp)?.readers().0.is_some() {
            // Back to a version the open files already hold: the union stays as it is.
            let readers = self.buffer(tp)?.readers();
            let spec = self.decoder_spec(tp, value_id, key_id, readers).await?;
            self.buffer(tp)?.set_decoder_spec(spec);
            self.metrics.schema_reconciliations.with_label_values(&[tp.0.as_str()]).inc();
            return Ok(true);
        }
        let Some((current_value, current_key)) = self.buffer(tp)?.current_schemas() else { return Ok(false) };
        let incoming_value = self.registry.schema(value_id).await?;
        let incoming_key = match key_id {
            Some(id) => Some(self.registry.schema(id).await?),
            None => None,
        };
        let value = match evolve::merge(&current_value, &incoming_value) {
            Ok(m) => m,
            Err(why) => {
                tracing::info!(topic = %tp.0, partition = tp.1, value_schema_id = value_id, reason = %why, "new value schema does not reconcile with the open file's: closing it");
                return Ok(false);
            }
        };
        let key = match (current_key, incoming_key) {
            (Some(c), Some(i)) if c != i => match evolve::merge(&c, &i) {
                Ok(m) => Some(Arc::<str>::from(m.schema)),
                Err(why) => {
                    tracing::info!(topic = %tp.0, partition = tp.1, key_schema_id = ?key_id, reason = %why, "new key schema does not reconcile with the open file's: closing it");
                    return Ok(false);
                }
            },
            (Some(c), _) => Some(c),
            (None, i) => i,
        };
        let old_schema = self.buffer(tp)?.spec_output_schema()?;
        let spec = self.decoder_spec(tp, value_id, key_id, (Some(Arc::from(value.schema)), key)).await?;
        let schema = self.check_writable(&spec, value_id)?;
        self.metrics.schema_reconciliations.with_label_values(&[tp.0.as_str()]).inc();
        let Self { partitions, props, .. } = self;
        let buf = partitions.get_mut(tp).ok_or_else(|| SinkError::NotAssigned { topic: tp.0.clone(), partition: tp.1 })?;
        if old_schema.as_ref().is_some_and(|old| evolve::same_columns(old, &schema)) {
            buf.set_decoder_spec(spec);
        } else {
            tracing::info!(topic = %tp.0, partition = tp.1, value_schema_id = value_id, changes = ?value.changes, "new schema version merged into the open file");
            buf.evolve(spec, &schema, props)?;
        }
        Ok(true)
    }

    /// The buffer of an assigned partition. Only rebalance events remove buffers, and they are
    /// applied before a message is handled, so a message's partition keeps its buffer meanwhile.
    fn buffer(&mut self, tp: &TopicPartition) -> Result<&mut PartitionBuffer, SinkError> {
        self.partitions.get_mut(tp).ok_or_else(|| SinkError::NotAssigned { topic: tp.0.clone(), partition: tp.1 })
    }

    /// One observation per row and clock: now (the upload just completed) minus the event time.
    fn observe_time_to_lake(&self, topic: &str, times: &crate::buffer::RowTimes) {
        let now_ms = crate::health::now_ms();
        for (from, values) in [("source", &times.source_ms), ("kafka", &times.kafka_ms)] {
            let h = self.metrics.time_to_lake.with_label_values(&[topic, from]);
            for t in values {
                h.observe((now_ms - t).max(0) as f64 / 1000.0);
            }
        }
    }

    /// Commits `next` for the partition. A failure is not fatal: the file is in the lake, and
    /// the offset is retried on the next tick (or covered by the next flush's commit); were the
    /// partition to move first, its next owner replays from the last commit and overwrites.
    async fn commit(&mut self, tp: &TopicPartition, next: i64) {
        let (topic, partition) = (tp.0.as_str(), tp.1);
        match commit::commit(self.consumer.clone(), topic, partition, next).await {
            Ok(()) => {
                self.metrics.offsets_committed.with_label_values(&[topic]).inc();
                self.metrics.committed_offset.with_label_values(&[topic, &partition.to_string()]).set(next);
                self.metrics.health.flushed(topic, partition, Some(next));
                if let Some(buf) = self.partitions.get_mut(tp) {
                    buf.pending_commit = None;
                    buf.committed = Some(next);
                }
            }
            Err(e) => {
                self.metrics.errors.with_label_values(&["commit", "commit"]).inc();
                self.metrics.health.flushed(topic, partition, None);
                tracing::warn!(error = %e, "offset commit failed; retried on the next tick");
                if let Some(buf) = self.partitions.get_mut(tp) {
                    buf.pending_commit = Some(next);
                }
            }
        }
    }

    /// Closes every file that is older than the rotate interval: idle partitions flush too.
    /// Retries commits that failed.
    async fn rotate_expired(&mut self) -> Result<(), SinkError> {
        self.apply_rebalance_events();
        self.position_awaiting().await?;
        if let Some(dead_letter) = &self.dead_letter {
            self.metrics.dead_letter_queue.set(i64::from(dead_letter.queue_depth()));
        }
        let pending: Vec<(TopicPartition, i64)> =
            self.partitions.iter().filter_map(|(tp, b)| b.pending_commit.map(|o| (tp.clone(), o))).collect();
        for (tp, next) in pending {
            if self.owns(&tp) {
                self.commit(&tp, next).await;
            }
        }
        let now = Instant::now();
        let due: Vec<(TopicPartition, FlushReason)> =
            self.partitions.iter().filter_map(|(tp, b)| b.stats(now).and_then(|s| self.policy.check(s)).map(|r| (tp.clone(), r))).collect();
        for (tp, reason) in due {
            self.flush(&tp, reason).await?;
        }
        self.start_table_commits(false)?;
        self.start_table_maintenance();
        self.commit_hints().await;
        self.commit_caught_up().await;
        Ok(())
    }

    /// Commits the consumer's position for each partition that holds nothing (no open group,
    /// no commit to retry, not failed, not replaying) and whose position is past its last
    /// commit. The offsets in between are not records this member was handed: transaction
    /// markers (a transactional producer's, Debezium's with exactly-once source support),
    /// records of aborted transactions under read_committed, offsets compacted away. Without
    /// this the group's committed offset stops at the last record + 1, short of a trailing
    /// marker, and its lag never reaches 0. The position only counts messages already handed to
    /// this task, each of which is in a committed file or was skipped and committed with one.
    async fn commit_caught_up(&mut self) {
        // Read into owned values first: the list holds librdkafka pointers, which may not live
        // across an await.
        let positions: Vec<(TopicPartition, i64)> = match self.consumer.position() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect(),
            Err(_) => return,
        };
        for (tp, position) in positions {
            let Some(buf) = self.partitions.get(&tp) else { continue };
            if self.tables.as_ref().is_some_and(|t| t.holds(&tp)) {
                continue; // the table has not committed what this member holds of it
            }
            let idle = buf.open_start().is_none()
                && buf.pending_commit.is_none()
                && !buf.failed
                && buf.replay_through.is_none()
                && !self.uploads.busy(&tp);
            // Nothing committed by this member yet: the position is where it started, or past
            // non-records only, and committing it is safe too.
            if idle && buf.committed.is_none_or(|c| c < position) && self.owns(&tp) {
                tracing::debug!(topic = %tp.0, partition = tp.1, position, "caught up: committing the position past non-record offsets");
                self.commit(&tp, position).await;
            }
        }
    }

    /// Whether this member still owns the partition: in the assignment the loop applied, not
    /// fenced, no revocation queued, and the assignment not lost (session timed out, max poll
    /// interval exceeded). The one check before every flush, commit and commit retry.
    fn owns(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(tp).is_some_and(|b| !b.fenced) && self.owners.get(tp).is_some_and(Ownership::owns)
    }

    /// Marks the partition fenced (see [`PartitionBuffer::fenced`]): its pending commit is
    /// dropped too.
    fn fence(&mut self, tp: &TopicPartition) {
        if let Some(owner) = self.owners.get(tp) {
            owner.release();
        }
        self.uploads.forget(tp);
        self.letters.remove(tp);
        if let Some(buf) = self.partitions.get_mut(tp) {
            buf.fenced = true;
            buf.pending_commit = None;
            buf.discard();
        }
        self.remeasure(tp);
    }

    /// Closes the partition's open group and hands it to the upload stage; consumption goes on
    /// while it uploads (waiting first while `flush.max_uploads_in_flight` uploads run). The
    /// stage fences and cleans up (DESIGN.md, "Fencing"); [`Pipeline::finished`] commits.
    async fn flush(&mut self, tp: &TopicPartition, reason: FlushReason) -> Result<(), SinkError> {
        if !self.owns(tp) {
            return Ok(()); // no longer ours: the open group is dropped when the revocation is applied
        }
        let Some(buf) = self.partitions.get_mut(tp) else {
            return Ok(());
        };
        let closed = buf.close(&self.props);
        self.remeasure(tp);
        let Some(group) = closed? else {
            return Ok(());
        };
        while self.uploads.is_full() {
            match self.uploads.next_finished().await {
                Some(done) => self.finished(done).await?,
                None => break,
            }
        }
        if !self.owns(tp) {
            return Ok(()); // revoked, lost or fenced while waiting for room
        }
        let Some(owner) = self.owners.get(tp) else { return Ok(()) };
        if group.skipped > 0 {
            tracing::debug!(topic = %tp.0, partition = tp.1, skipped = group.skipped, "skipped records committed with the group");
        }
        let letters = self.letters.remove(tp).unwrap_or_default();
        self.uploads.submit(tp, group, owner, reason, self.paths.has_paths(), letters);
        Ok(())
    }

    /// An upload finished: its files are counted and logged, then the partition's durable
    /// prefix is committed, in offset order; a fenced group fences its partition; an error is
    /// fatal (the store's retries are exhausted or it refused for good).
    async fn finished(&mut self, done: Finished) -> Result<(), SinkError> {
        let Finished { tp, epoch, reason, outcome, start_offset } = done;
        let outcome = outcome?;
        if self.owners.get(&tp).is_none_or(|o| o.epoch != epoch) {
            return Ok(()); // an earlier assignment's upload
        }
        match outcome {
            Outcome::Fenced => self.fence(&tp),
            Outcome::Durable(files) => {
                if let Some(tables) = self.tables.as_mut() {
                    tables.land(&tp, start_offset, files.iter().filter_map(|f| f.table_file.clone()).collect());
                }
                let topic = tp.0.as_str();
                for f in files {
                    self.metrics.files_uploaded.with_label_values(&[topic, reason.as_str()]).inc();
                    self.metrics.bytes_uploaded.with_label_values(&[topic]).inc_by(f.bytes as u64);
                    self.metrics.file_size.with_label_values(&[topic]).observe(f.bytes as f64);
                    self.metrics.records_written.with_label_values(&[topic]).inc_by(f.rows);
                    self.metrics.flush_duration.observe(f.millis as f64 / 1000.0);
                    self.observe_time_to_lake(topic, &f.times);
                    tracing::info!(
                        topic,
                        partition = tp.1,
                        key = f.key,
                        first_offset = f.start_offset,
                        last_offset = f.end_offset,
                        rows = f.rows,
                        bytes = f.bytes,
                        duration_ms = f.millis,
                        %reason,
                        "file uploaded"
                    );
                }
                if let Some(next) = self.uploads.take_committable(&tp) {
                    if let (true, Some(tables)) = (self.owns(&tp), self.tables.as_mut()) {
                        tables.stage_through(&tp, next);
                    } else if self.owns(&tp) {
                        self.commit(&tp, next).await;
                    } else {
                        self.fence(&tp);
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the decode stage needs of one record besides its value.
#[derive(Clone, Copy)]
struct Row<'a> {
    key: Option<&'a [u8]>,
    offset: i64,
    timestamp: Option<i64>,
    headers: Option<&'a Headers>,
}

/// The record's Kafka headers, in order (`output.headers`).
fn kafka_headers(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, Option<Vec<u8>>)> {
    use rdkafka::message::{Headers as _, Message as _};
    m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect()).unwrap_or_default()
}
