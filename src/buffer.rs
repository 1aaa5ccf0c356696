//! Buffer stage: per topic-partition state — how to decode the current schemas, and the open
//! group: a contiguous offset range of the partition whose rows are in one open Parquet file
//! per output path. A group closes as a whole: its files are uploaded, then the offset after
//! its range is committed (DESIGN.md, "Offset protocol").

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parquet::file::properties::WriterProperties;
use prometheus::{IntCounter, IntGauge};

use crate::config::Layout;
use crate::decode::headers::Headers;
use crate::decode::{BatchDecoder, DecodeError, SchemaIds, Schemas};
use crate::encode::OverlappedFile;
use crate::error::SinkError;
use crate::flush::FileStats;

/// How to build a decoder for one writer schema (and key schema): each path of a group gets
/// its own, as each has its own file.
#[derive(Clone)]
pub struct DecoderSpec {
    pub topic: String,
    pub partition: i32,
    pub value: (u32, Arc<str>),
    pub key: Option<(u32, Arc<str>)>,
    pub batch_rows: usize,
    pub layout: Layout,
    pub tombstone_rows: bool,
    /// `output.headers`: a `__kafka_headers` column.
    pub headers: bool,
    /// With `output.schema_change = "merge"`, once the group holds more than one version: the
    /// union of the versions (value, key), which every writer schema of the group resolves to.
    pub value_reader: Option<Arc<str>>,
    pub key_reader: Option<Arc<str>>,
}

impl DecoderSpec {
    pub fn build(&self) -> Result<BatchDecoder, DecodeError> {
        let value = Schemas { id: self.value.0, writer: &self.value.1, reader: self.value_reader.as_deref() };
        let key = self.key.as_ref().map(|(id, s)| Schemas { id: *id, writer: s, reader: self.key_reader.as_deref() });
        let d = BatchDecoder::resolving(&self.topic, self.partition, value, key, self.batch_rows)?.with_layout(self.layout);
        let d = if self.tombstone_rows { d.with_tombstone_rows() } else { d };
        Ok(if self.headers { d.with_headers() } else { d })
    }

    pub fn ids(&self) -> SchemaIds {
        SchemaIds { value: self.value.0, key: self.key.as_ref().map(|k| k.0) }
    }
}

/// The open group: every record of `start_offset..=end_offset` handled so far.
struct Group {
    start_offset: i64,
    end_offset: i64,
    /// Records in the range: rows plus skipped (tombstones, dead-lettered).
    records: u64,
    skipped: u64,
    /// Schema ids of the rows, once the first row arrived.
    schema_ids: Option<SchemaIds>,
    opened: Instant,
    files: Vec<PathFile>,
}

/// The open file of one path in the group.
struct PathFile {
    /// The directory under the topic (`None`: the Kafka partitioner's `partition=<p>/` only).
    path: Option<String>,
    /// The first offset of the file's key: its first row's (the group's start with no path).
    start_offset: i64,
    end_offset: i64,
    /// One decoder per writer version the file holds (one unless versions merge); rows go to
    /// the active one, and a switch hands out the previous one's rows first, so the file keeps
    /// the records' order.
    decoders: Vec<BatchDecoder>,
    active: Option<usize>,
    parquet: OverlappedFile,
    /// `encoded_bytes` and `memory_bytes` of the file as of the last batch handed to it: they
    /// only change then, so the per-record flush check reads these instead of asking the writer.
    encoded: u64,
    memory: u64,
    /// Avro bytes decoded into rows the decoder has not handed out yet.
    pending_avro_bytes: u64,
    /// Per written row: Debezium's `ts_ms` and the Kafka timestamp (Unix ms), for the
    /// time-to-lake histograms observed when the upload completes.
    times: RowTimes,
}

/// Event times of a file's rows (where known), in Unix milliseconds.
#[derive(Default)]
pub struct RowTimes {
    pub source_ms: Vec<i64>,
    pub kafka_ms: Vec<i64>,
}

impl RowTimes {
    fn extend_from(&mut self, batch: &arrow::array::RecordBatch) {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Int64Type, TimestampMillisecondType};
        if let Some(c) = batch.column_by_name(crate::decode::envelope::TS_MS).and_then(|c| c.as_primitive_opt::<Int64Type>()) {
            self.source_ms.extend(c.iter().flatten());
        }
        if let Some(c) =
            batch.column_by_name(crate::decode::envelope::KAFKA_TIMESTAMP).and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        {
            if c.null_count() < c.len() {
                self.kafka_ms.extend(c.iter().flatten());
            }
        }
    }

    fn bytes(&self) -> u64 {
        ((self.source_ms.capacity() + self.kafka_ms.capacity()) * 8) as u64
    }
}

/// A closed file, ready for the store.
pub struct ClosedFile {
    pub start_offset: i64,
    pub end_offset: i64,
    pub rows: u64,
    pub bytes: Bytes,
    /// Its column statistics (table mode).
    pub stats: Option<arrow::array::ArrayRef>,
    pub times: RowTimes,
    pub path: Option<String>,
}

/// A closed group: its files, and the range they cover together.
pub struct ClosedGroup {
    pub start_offset: i64,
    pub end_offset: i64,
    pub skipped: u64,
    pub files: Vec<ClosedFile>,
}

pub struct PartitionBuffer {
    pub topic: String,
    pub partition: i32,
    spec: Option<DecoderSpec>,
    group: Option<Group>,
    /// `output.parallel_encode`: each file encodes on a helper thread while the next batch
    /// decodes.
    parallel_encode: bool,
    /// Table mode: batches are written as the table's data files hold them.
    transform: Option<crate::encode::Transform>,
    /// `kps_buffered_records` of this partition, kept equal to the open group's records.
    gauge: IntGauge,
    /// `kps_records_consumed_total` and `kps_bytes_consumed_total` of the topic, looked up once
    /// rather than per record.
    pub consumed: Option<(IntCounter, IntCounter)>,
    /// Offsets of the open group's range already sent to the dead-letter topic: a replay of the
    /// range (after a corrupt record) skips them instead of sending them again.
    pub dead_lettered: std::collections::BTreeSet<i64>,
    /// After a seek back to replay the open group's range: messages past this offset are stale
    /// (fetched before the seek) and dropped until one at or before it arrives.
    pub replay_through: Option<i64>,
    /// Stopped on a record it cannot write (`errors.tolerance = "none"`).
    pub failed: bool,
    /// `memory_bytes()` as last added to the pipeline's total.
    pub accounted: u64,
    /// An offset whose commit failed after its files were uploaded (broker away, rebalance in
    /// progress): retried on every tick until it succeeds or a later flush commits past it.
    pub pending_commit: Option<i64>,
    /// The last offset this member committed for the partition.
    pub committed: Option<i64>,
    /// A flush found the partition no longer ours (lost while a file uploaded, or its key taken
    /// by a file another owner committed): nothing more is buffered, flushed or committed until
    /// the revocation replaces this buffer. Its consumer position is past records that are in
    /// no committed file, so committing it would skip them.
    pub fenced: bool,
}

/// Where a row comes from and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct RowAt<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// The directory under the topic (`None` with the Kafka partitioner).
    pub path: Option<&'a str>,
    /// The record's Kafka headers, with `output.headers`.
    pub headers: Option<&'a Headers>,
}

/// Decoded rows not yet encoded are counted at this many times their Avro size: Arrow widens
/// varints to 8 bytes and keeps string offsets beside the bytes.
const PENDING_ROW_FACTOR: u64 = 2;

impl PartitionBuffer {
    pub fn new(topic: &str, partition: i32, gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            topic: topic.to_string(),
            partition,
            spec: None,
            group: None,
            parallel_encode: false,
            transform: None,
            gauge,
            consumed: None,
            dead_lettered: Default::default(),
            replay_through: None,
            failed: false,
            accounted: 0,
            pending_commit: None,
            committed: None,
            fenced: false,
        }
    }

    /// Encode on a helper thread, overlapping decoding (`output.parallel_encode`).
    /// Table mode: every file's batches go through `t` (see [`crate::encode::Transform`]).
    pub fn with_transform(mut self, t: Option<crate::encode::Transform>) -> Self {
        self.transform = t;
        self
    }

    pub fn with_parallel_encode(mut self, on: bool) -> Self {
        self.parallel_encode = on;
        self
    }

    /// The schema ids of the rows in the open group, if it has rows.
    pub fn group_schema_ids(&self) -> Option<SchemaIds> {
        self.group.as_ref().and_then(|g| g.schema_ids)
    }

    /// Whether a row of `path` would need a new file in the open group, and how many files the
    /// group has.
    pub fn needs_new_file(&self, path: Option<&str>) -> Option<usize> {
        let g = self.group.as_ref()?;
        (!g.files.iter().any(|f| f.path.as_deref() == path)).then_some(g.files.len())
    }

    pub fn decoder_schema_ids(&self) -> Option<SchemaIds> {
        self.spec.as_ref().map(DecoderSpec::ids)
    }

    /// Replaces the decoder spec. With rows in the open group the new spec must read into the
    /// same output schema (a version merged without change); see [`Self::evolve`] otherwise.
    pub fn set_decoder_spec(&mut self, spec: DecoderSpec) {
        self.spec = Some(spec);
    }

    /// The output schema of the current spec's decoder (what the open files hold).
    pub fn spec_output_schema(&self) -> Result<Option<arrow::datatypes::SchemaRef>, DecodeError> {
        match self.spec.as_ref() {
            Some(s) => Ok(Some(s.build()?.output_schema()?)),
            None => Ok(None),
        }
    }

    /// Whether a file of the open group already decodes records of these schema versions (they
    /// are part of its union: switching back to them changes nothing).
    pub fn group_has_version(&self, ids: SchemaIds) -> bool {
        self.group.as_ref().is_some_and(|g| g.files.iter().any(|f| f.decoders.iter().any(|d| d.ids() == ids)))
    }

    /// The reader schemas (the group's union) of the current spec.
    pub fn readers(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        self.spec.as_ref().map_or((None, None), |s| (s.value_reader.clone(), s.key_reader.clone()))
    }

    /// The writer and reader schemas of the current spec (value, key), for merging a new
    /// version into them.
    pub fn current_schemas(&self) -> Option<(Arc<str>, Option<Arc<str>>)> {
        let s = self.spec.as_ref()?;
        let value = s.value_reader.clone().unwrap_or_else(|| s.value.1.clone());
        let key = s.key_reader.clone().or_else(|| s.key.as_ref().map(|k| k.1.clone()));
        Some((value, key))
    }

    /// The open group's files take the wider schema `target` of `spec` (a merged version that
    /// adds or widens columns): pending rows are written, each file's rows so far are rewritten
    /// in the new shape (missing columns null, types widened), and the decoders are rebuilt
    /// from `spec` as records come.
    pub fn evolve(&mut self, spec: DecoderSpec, target: &arrow::datatypes::SchemaRef, props: &WriterProperties) -> Result<(), SinkError> {
        if let Some(g) = self.group.as_mut() {
            for f in &mut g.files {
                f.hand_out(props)?;
                f.decoders.clear();
                f.active = None;
                f.parquet.evolve(target, props)?;
                f.encoded = f.parquet.encoded_bytes();
                f.memory = f.parquet.memory_bytes() + f.times.bytes();
            }
        }
        self.spec = Some(spec);
        Ok(())
    }

    fn open(&mut self, offset: i64) -> &mut Group {
        self.group.get_or_insert_with(|| Group {
            start_offset: offset,
            end_offset: offset,
            records: 0,
            skipped: 0,
            schema_ids: None,
            opened: Instant::now(),
            files: Vec::new(),
        })
    }

    /// A record that produces no row (a tombstone) still belongs to the group's range.
    pub fn push_skipped(&mut self, offset: i64) {
        let g = self.open(offset);
        g.end_offset = offset;
        g.records += 1;
        g.skipped += 1;
        let records = g.records;
        self.gauge.set(records as i64);
    }

    /// Decodes one Avro body (and key) into the file of its path. The decoder spec must be set
    /// for the record's schemas.
    pub fn push_row(&mut self, body: &[u8], key: Option<&[u8]>, at: RowAt<'_>, props: &WriterProperties) -> Result<(), SinkError> {
        let avro = (body.len() + key.map_or(0, <[u8]>::len)) as u64;
        let RowAt { offset, timestamp_ms, headers, .. } = at;
        self.push_with(at, avro, props, |d| {
            if let Some(h) = headers {
                d.stage_headers(h);
            }
            d.push(body, key, offset, timestamp_ms)
        })
    }

    /// A tombstone as a row (`output.tombstones = "write"`); the decoder gives the file's schema.
    pub fn push_tombstone_row(&mut self, key: Option<&[u8]>, at: RowAt<'_>, props: &WriterProperties) -> Result<(), SinkError> {
        let RowAt { offset, timestamp_ms, headers, .. } = at;
        self.push_with(at, 0, props, |d| {
            if let Some(h) = headers {
                d.stage_headers(h);
            }
            d.push_tombstone(key, offset, timestamp_ms)
        })
    }

    fn push_with(
        &mut self,
        RowAt { offset, path, .. }: RowAt<'_>,
        avro_bytes: u64,
        props: &WriterProperties,
        push: impl FnOnce(&mut BatchDecoder) -> Result<Option<arrow::array::RecordBatch>, DecodeError>,
    ) -> Result<(), SinkError> {
        let Some(spec) = self.spec.as_ref() else {
            return Err(DecodeError::Batch("no decoder for the partition".into()).into());
        };
        let ids = spec.ids();
        // The row's file in the open group and its decoder for the record's version, built
        // when the file has none yet.
        let open = self.group.as_ref().and_then(|g| g.files.iter().position(|f| f.path.as_deref() == path));
        let has_decoder = open.and_then(|i| self.group.as_ref().map(|g| g.files[i].decoders.iter().any(|d| d.ids() == ids)));
        let new_decoder = if has_decoder == Some(true) { None } else { Some(spec.build()?) };
        let (parallel, transform) = (self.parallel_encode, self.transform);
        let g = self.open(offset);
        let i = match open {
            Some(i) => i,
            None => {
                let start_offset = if path.is_none() { g.start_offset } else { offset };
                g.files.push(PathFile {
                    path: path.map(str::to_string),
                    start_offset,
                    end_offset: offset,
                    decoders: Vec::new(),
                    active: None,
                    parquet: OverlappedFile::new(parallel).with_transform(transform),
                    encoded: 0,
                    memory: 0,
                    pending_avro_bytes: 0,
                    times: RowTimes::default(),
                });
                g.files.len() - 1
            }
        };
        let file = &mut g.files[i];
        file.activate(ids, new_decoder, props)?;
        let Some(decoder) = file.active.and_then(|a| file.decoders.get_mut(a)) else {
            return Err(DecodeError::Batch("no active decoder".into()).into());
        };
        let batch = push(decoder)?;
        g.schema_ids = Some(ids);
        g.end_offset = offset;
        g.records += 1;
        file.end_offset = offset;
        file.pending_avro_bytes += avro_bytes;
        let records = g.records;
        if let Some(batch) = batch {
            file.pending_avro_bytes = 0;
            write_batch(file, batch, props)?;
        }
        self.gauge.set(records as i64);
        Ok(())
    }

    /// Memory held by the open group: its files' encoded parts and rows not yet encoded.
    pub fn memory_bytes(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.files.iter().map(|f| f.memory + f.pending_avro_bytes * PENDING_ROW_FACTOR).sum())
    }

    /// The first offset of the open group, if one is open.
    pub fn open_start(&self) -> Option<i64> {
        self.group.as_ref().map(|g| g.start_offset)
    }

    /// Drops the open group and its decoders (which may hold part of a record): nothing of the
    /// range is uploaded or committed.
    pub fn discard(&mut self) {
        self.group = None;
        self.gauge.set(0);
    }

    /// What the flush policy looks at, if a group is open: its records, its largest file, and
    /// its age.
    pub fn stats(&self, now: Instant) -> Option<FileStats> {
        self.group.as_ref().map(|g| FileStats {
            records: g.records,
            encoded_bytes: g.files.iter().map(|f| f.encoded).max().unwrap_or(0),
            age: now.saturating_duration_since(g.opened),
        })
    }

    pub fn buffered_records(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.records)
    }

    /// Closes the open group: each decoder's pending rows are written and each footer finished.
    pub fn close(&mut self, props: &WriterProperties) -> Result<Option<ClosedGroup>, SinkError> {
        let Some(g) = self.group.take() else {
            return Ok(None);
        };
        self.gauge.set(0);
        self.dead_lettered.clear();
        let mut files = Vec::with_capacity(g.files.len());
        // The next group starts from its first record's own schema, not this group's union.
        if self.spec.as_ref().is_some_and(|s| s.value_reader.is_some() || s.key_reader.is_some()) {
            self.spec = None;
        }
        for mut f in g.files {
            f.hand_out(props)?;
            if let Some(done) = f.parquet.finish()? {
                files.push(ClosedFile {
                    start_offset: f.start_offset,
                    end_offset: f.end_offset,
                    rows: done.rows,
                    bytes: done.bytes,
                    stats: done.stats,
                    times: f.times,
                    path: f.path,
                });
            }
        }
        Ok(Some(ClosedGroup { start_offset: g.start_offset, end_offset: g.end_offset, skipped: g.skipped, files }))
    }
}

impl Drop for PartitionBuffer {
    /// A revoked partition's open group is discarded: it no longer counts as buffered here.
    fn drop(&mut self) {
        self.gauge.set(0);
    }
}

impl PathFile {
    /// Makes the decoder of `ids` the active one (`built`, when the file has none for them),
    /// handing out the previous one's rows first.
    fn activate(&mut self, ids: SchemaIds, built: Option<BatchDecoder>, props: &WriterProperties) -> Result<(), SinkError> {
        if self.active.and_then(|a| self.decoders.get(a)).is_some_and(|d| d.ids() == ids) {
            return Ok(());
        }
        self.hand_out(props)?;
        self.active = match self.decoders.iter().position(|d| d.ids() == ids) {
            Some(j) => Some(j),
            None => {
                let d = built.ok_or_else(|| DecodeError::Batch("no decoder built for a new version".into()))?;
                self.decoders.push(d);
                Some(self.decoders.len() - 1)
            }
        };
        Ok(())
    }

    /// Writes the active decoder's pending rows to the file.
    fn hand_out(&mut self, props: &WriterProperties) -> Result<(), SinkError> {
        if let Some(d) = self.active.and_then(|a| self.decoders.get_mut(a)) {
            if let Some(batch) = d.finish()? {
                self.pending_avro_bytes = 0;
                write_batch(self, batch, props)?;
            }
        }
        Ok(())
    }
}

fn write_batch(file: &mut PathFile, batch: arrow::array::RecordBatch, props: &WriterProperties) -> Result<(), SinkError> {
    file.times.extend_from(&batch);
    file.parquet.write(batch, props)?;
    file.encoded = file.parquet.encoded_bytes();
    file.memory = file.parquet.memory_bytes() + file.times.bytes();
    Ok(())
}
