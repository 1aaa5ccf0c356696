//! Buffer stage: per topic-partition state — the decoder for the current schema and the one open
//! Parquet file with the offset range it covers.

use std::time::Instant;

use bytes::Bytes;
use parquet::file::properties::WriterProperties;
use prometheus::IntGauge;

use crate::decode::{BatchDecoder, SchemaIds};
use crate::encode::ParquetFile;
use crate::error::SinkError;
use crate::flush::FileStats;

/// An open file: a contiguous offset range of one partition and the rows decoded from it.
pub struct OpenFile {
    pub start_offset: i64,
    pub end_offset: i64,
    /// Records in the range: rows plus skipped (tombstones).
    pub records: u64,
    pub skipped: u64,
    /// Schema ids of the rows, once the first row arrived.
    pub schema_ids: Option<SchemaIds>,
    /// The directory of the rows under the topic (`output.partitioner = "time"`), once the
    /// first row arrived.
    pub path: Option<String>,
    opened: Instant,
    parquet: Option<ParquetFile>,
    /// `ParquetFile::encoded_bytes` and `memory_bytes` as of the last batch written: they only
    /// change then, so the per-record flush check reads these instead of asking the writer.
    encoded: u64,
    memory: u64,
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
    pub skipped: u64,
    /// `None` when the range held no row (only tombstones): nothing to upload.
    pub bytes: Option<Bytes>,
    pub times: RowTimes,
    pub path: Option<String>,
}

pub struct PartitionBuffer {
    pub topic: String,
    pub partition: i32,
    decoder: Option<BatchDecoder>,
    file: Option<OpenFile>,
    /// `kps_buffered_records` of this partition, kept equal to the open file's records.
    gauge: IntGauge,
    /// Avro bytes decoded into rows the decoder has not handed out yet.
    pending_avro_bytes: u64,
    /// Offsets of the open file's range already sent to the dead-letter topic: a replay of the
    /// range (after a corrupt record) skips them instead of sending them again.
    pub dead_lettered: std::collections::BTreeSet<i64>,
    /// After a seek back to replay the open file's range: messages past this offset are stale
    /// (fetched before the seek) and dropped until one at or before it arrives.
    pub replay_through: Option<i64>,
    /// Stopped on a record it cannot write (`errors.tolerance = "none"`).
    pub failed: bool,
    /// `memory_bytes()` as last added to the pipeline's total.
    pub accounted: u64,
    /// An offset whose commit failed after its file was uploaded (broker away, rebalance in
    /// progress): retried on every tick until it succeeds or a later flush commits past it.
    pub pending_commit: Option<i64>,
}

/// Where a row comes from and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct RowAt<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// The directory under the topic (`output.partitioner = "time"`).
    pub path: Option<&'a str>,
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
            decoder: None,
            file: None,
            gauge,
            pending_avro_bytes: 0,
            dead_lettered: Default::default(),
            replay_through: None,
            failed: false,
            accounted: 0,
            pending_commit: None,
        }
    }

    /// The schema ids of the rows in the open file, if it has rows.
    pub fn file_schema_ids(&self) -> Option<SchemaIds> {
        self.file.as_ref().and_then(|f| f.schema_ids)
    }

    /// The path of the rows in the open file, if it has rows and a path.
    pub fn file_path(&self) -> Option<&str> {
        self.file.as_ref().and_then(|f| f.path.as_deref())
    }

    pub fn decoder_schema_ids(&self) -> Option<SchemaIds> {
        self.decoder.as_ref().map(BatchDecoder::ids)
    }

    /// Replaces the decoder; only call with no pending rows (after the file was closed).
    pub fn set_decoder(&mut self, d: BatchDecoder) {
        self.decoder = Some(d);
    }

    fn open(&mut self, offset: i64) -> &mut OpenFile {
        self.file.get_or_insert_with(|| OpenFile {
            start_offset: offset,
            end_offset: offset,
            records: 0,
            skipped: 0,
            schema_ids: None,
            path: None,
            opened: Instant::now(),
            parquet: None,
            encoded: 0,
            memory: 0,
            times: RowTimes::default(),
        })
    }

    /// A record that produces no row (a tombstone) still belongs to the file's range.
    pub fn push_skipped(&mut self, offset: i64) {
        let f = self.open(offset);
        f.end_offset = offset;
        f.records += 1;
        f.skipped += 1;
        let records = f.records;
        self.gauge.set(records as i64);
    }

    /// Decodes one Avro body (and key) into the open file. The decoder must be set for the
    /// record's schemas.
    pub fn push_row(&mut self, body: &[u8], key: Option<&[u8]>, at: RowAt<'_>, props: &WriterProperties) -> Result<(), SinkError> {
        self.pending_avro_bytes += (body.len() + key.map_or(0, <[u8]>::len)) as u64;
        let RowAt { offset, timestamp_ms, .. } = at;
        self.push_with(at, props, |d| d.push(body, key, offset, timestamp_ms))
    }

    /// A tombstone as a row (`output.tombstones = "write"`); the decoder gives the file's schema.
    pub fn push_tombstone_row(&mut self, key: Option<&[u8]>, at: RowAt<'_>, props: &WriterProperties) -> Result<(), SinkError> {
        let RowAt { offset, timestamp_ms, .. } = at;
        self.push_with(at, props, |d| d.push_tombstone(key, offset, timestamp_ms))
    }

    fn push_with(
        &mut self,
        RowAt { offset, path, .. }: RowAt<'_>,
        props: &WriterProperties,
        push: impl FnOnce(&mut BatchDecoder) -> Result<Option<arrow::array::RecordBatch>, crate::decode::DecodeError>,
    ) -> Result<(), SinkError> {
        self.open(offset);
        let (Some(decoder), Some(file)) = (self.decoder.as_mut(), self.file.as_mut()) else {
            return Err(crate::decode::DecodeError::Batch("no decoder for the partition".into()).into());
        };
        let batch = push(decoder)?;
        file.schema_ids = Some(decoder.ids());
        if file.path.is_none() {
            file.path = path.map(str::to_string);
        }
        file.end_offset = offset;
        file.records += 1;
        self.gauge.set(file.records as i64);
        if let Some(batch) = batch {
            self.pending_avro_bytes = 0;
            write_batch(file, &batch, props)?;
        }
        Ok(())
    }

    /// Memory held by the open file: its encoded part and its rows not yet encoded.
    pub fn memory_bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.memory) + self.pending_avro_bytes * PENDING_ROW_FACTOR
    }

    /// The first offset of the open file, if one is open.
    pub fn open_start(&self) -> Option<i64> {
        self.file.as_ref().map(|f| f.start_offset)
    }

    /// Drops the open file and the decoder (which may hold part of a record): nothing of the
    /// range is uploaded or committed.
    pub fn discard(&mut self) {
        self.file = None;
        self.decoder = None;
        self.pending_avro_bytes = 0;
        self.gauge.set(0);
    }

    /// What the flush policy looks at, if a file is open.
    pub fn stats(&self, now: Instant) -> Option<FileStats> {
        self.file.as_ref().map(|f| FileStats { records: f.records, encoded_bytes: f.encoded, age: now.saturating_duration_since(f.opened) })
    }

    pub fn buffered_records(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.records)
    }

    /// Closes the open file: the decoder's pending rows are written and the footer finished.
    pub fn close(&mut self, props: &WriterProperties) -> Result<Option<ClosedFile>, SinkError> {
        let Some(mut file) = self.file.take() else {
            return Ok(None);
        };
        self.gauge.set(0);
        self.pending_avro_bytes = 0;
        self.dead_lettered.clear();
        if let Some(decoder) = self.decoder.as_mut() {
            if let Some(batch) = decoder.finish()? {
                write_batch(&mut file, &batch, props)?;
            }
        }
        let (rows, bytes) = match file.parquet.take() {
            Some(p) => (p.rows(), Some(p.finish()?)),
            None => (0, None),
        };
        Ok(Some(ClosedFile {
            start_offset: file.start_offset,
            end_offset: file.end_offset,
            rows,
            skipped: file.skipped,
            bytes,
            times: file.times,
            path: file.path,
        }))
    }
}

impl Drop for PartitionBuffer {
    /// A revoked partition's open file is discarded: it no longer counts as buffered here.
    fn drop(&mut self) {
        self.gauge.set(0);
    }
}

fn write_batch(file: &mut OpenFile, batch: &arrow::array::RecordBatch, props: &WriterProperties) -> Result<(), SinkError> {
    let parquet = match file.parquet.as_mut() {
        Some(p) => p,
        None => file.parquet.insert(ParquetFile::new(batch, props.clone())?),
    };
    parquet.write(batch)?;
    file.times.extend_from(batch);
    file.encoded = parquet.encoded_bytes();
    file.memory = parquet.memory_bytes() + file.times.bytes();
    Ok(())
}
