//! Encode stage: Arrow batches → one compressed Parquet file, held in memory until it is uploaded.
//! The open file is the partition's buffer: rows are encoded and compressed as they arrive.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::config::{Codec, OutputConfig};

#[derive(Debug, thiserror::Error)]
#[error("parquet encoding failed: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    /// The writer rejects the same batch every time: never retryable.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// Writer settings shared by every file: the configured codec (Snappy unless told otherwise;
/// parquet's own default is none), bounded row groups and pages, page-level statistics.
pub fn writer_properties(c: &OutputConfig) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(compression(c.compression, c.compression_level))
        .set_max_row_group_row_count(Some(c.row_group_rows))
        .set_data_page_size_limit(c.data_page_bytes)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_page_size_limit(c.dictionary_page_bytes)
        .set_created_by(concat!("kafka-parquet-sink ", env!("CARGO_PKG_VERSION")).to_string());
    // Columns unique per record (offsets, event times, log positions) gain nothing from a
    // dictionary and cost the most to intern: delta-encode them instead (they mostly ascend).
    for path in UNIQUE_INT_COLUMNS {
        let path = parquet::schema::types::ColumnPath::new(path.iter().map(|s| s.to_string()).collect());
        b = b.set_column_dictionary_enabled(path.clone(), false).set_column_encoding(path, parquet::basic::Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

/// The parquet codec of `output.compression` at `output.compression_level` (0: the codec's
/// default; the config loader has checked the level against the codec's range).
pub fn compression(codec: Codec, level: i32) -> Compression {
    match codec {
        Codec::Snappy => Compression::SNAPPY,
        Codec::Lz4 => Compression::LZ4_RAW,
        Codec::None => Compression::UNCOMPRESSED,
        Codec::Zstd => Compression::ZSTD(if level == 0 { ZstdLevel::default() } else { ZstdLevel::try_new(level).unwrap_or_default() }),
        Codec::Gzip => Compression::GZIP(if level == 0 { GzipLevel::default() } else { GzipLevel::try_new(level.unsigned_abs()).unwrap_or_default() }),
    }
}

/// Integer columns of the sink's own and Debezium's envelope, distinct in nearly every record.
const UNIQUE_INT_COLUMNS: &[&[&str]] = &[
    &["__kafka_offset"],
    &["__kafka_timestamp"],
    &["__ts_ms"],
    &["ts_ms"],
    &["ts_us"],
    &["ts_ns"],
    &["source", "ts_ms"],
    &["source", "ts_us"],
    &["source", "ts_ns"],
    &["source", "lsn"],
    &["__source_ts_ms"],
    &["__source_lsn"],
    &["transaction", "total_order"],
    &["transaction", "data_collection_order"],
];

/// Per-file column statistics a table format keeps beside a data file (min, max, null count),
/// gathered from the batches the file takes as they are encoded.
pub trait FileStats: Send {
    fn merge(&mut self, batch: &RecordBatch) -> Result<(), String>;
    /// The file's statistics, one row.
    fn finish(self: Box<Self>) -> Result<Option<arrow::array::ArrayRef>, String>;
}

/// A closed file: its rows, its bytes and, in table mode, its column statistics.
pub struct Finished {
    pub rows: u64,
    pub bytes: Bytes,
    pub stats: Option<arrow::array::ArrayRef>,
}

pub struct ParquetFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    /// Gathered beside the writer; dropped (with a warning) if a batch cannot be measured:
    /// statistics are optional in a table, the rows are not.
    stats: Option<Box<dyn FileStats>>,
}

impl ParquetFile {
    pub fn new(first: &RecordBatch, props: WriterProperties) -> Result<Self, EncodeError> {
        let writer = ArrowWriter::try_new(Vec::new(), first.schema(), Some(props)).map_err(|e| EncodeError(e.to_string()))?;
        Ok(Self { writer, rows: 0, stats: None })
    }

    /// Gathers column statistics of every batch written from now on.
    pub fn with_stats(mut self, stats: Option<Box<dyn FileStats>>) -> Self {
        self.stats = stats;
        self
    }

    /// Whether the Parquet writer takes rows of this schema (an empty struct, for one, it
    /// cannot store); the answer holds for every batch of the schema.
    pub fn check_schema(schema: arrow::datatypes::SchemaRef, props: WriterProperties) -> Result<(), EncodeError> {
        ArrowWriter::try_new(Vec::new(), schema, Some(props)).map(|_| ()).map_err(|e| EncodeError(e.to_string()))
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        self.writer.write(batch).map_err(|e| EncodeError(e.to_string()))?;
        self.rows += batch.num_rows() as u64;
        if let Some(Err(e)) = self.stats.as_mut().map(|s| s.merge(batch)) {
            tracing::warn!(error = %e, "column statistics of a data file could not be gathered; the file goes without them");
            self.stats = None;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes the file holds: finished row groups plus the encoded in-progress row group.
    pub fn encoded_bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Memory the file holds: finished row groups plus the in-progress buffers.
    pub fn memory_bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.memory_size()) as u64
    }

    /// Closes the file (footer written) and hands out its bytes without copying them.
    pub fn finish(self) -> Result<Bytes, EncodeError> {
        Ok(self.finish_with_stats()?.bytes)
    }

    /// As [`ParquetFile::finish`], with the statistics gathered (if any).
    pub fn finish_with_stats(self) -> Result<Finished, EncodeError> {
        let rows = self.rows;
        let stats = match self.stats.map(|s| s.finish()) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "column statistics of a data file could not be finished; the file goes without them");
                None
            }
            None => None,
        };
        let buf = self.writer.into_inner().map_err(|e| EncodeError(e.to_string()))?;
        Ok(Finished { rows, bytes: Bytes::from(buf), stats })
    }
}

/// A file whose batches are encoded on a helper thread while the caller decodes the next one
/// (`output.parallel_encode`): decode and encode overlap on two cores. At most one batch is in
/// flight; the next write, the size figures and `finish` wait for it. Without parallelism the
/// same type encodes inline.
/// A change every batch of a file goes through before it is encoded (table mode's types), and
/// the same change of a schema.
#[derive(Clone, Copy)]
pub struct Transform {
    pub batch: fn(RecordBatch) -> Result<RecordBatch, String>,
    pub schema: fn(&arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef,
    /// The statistics a file of this (transformed) schema gathers.
    pub stats: fn(&arrow::datatypes::SchemaRef) -> Option<Box<dyn FileStats>>,
}

pub struct OverlappedFile {
    parallel: bool,
    transform: Option<Transform>,
    state: State,
    /// Figures as of the last completed write.
    encoded: u64,
    memory: u64,
    /// Arrow memory of the batch in flight.
    in_flight: u64,
}

/// Encodes in flight across every file of the process: at most one per core beyond the one
/// that decodes. More would only contend for the cores, and with many partitions each could
/// hold a batch in flight at once.
struct EncodePermit;

static ENCODES: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl EncodePermit {
    fn limit() -> usize {
        static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *LIMIT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)))
    }

    /// Waits until fewer than `limit()` encodes are in flight. A poisoned lock (a panic while
    /// holding it, which only counts) is taken over: the count stays right.
    fn acquire() -> Self {
        let (lock, freed) = &ENCODES;
        let mut n = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n >= Self::limit() {
            n = freed.wait(n).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *n += 1;
        EncodePermit
    }
}

impl Drop for EncodePermit {
    fn drop(&mut self) {
        let (lock, freed) = &ENCODES;
        let mut n = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *n = n.saturating_sub(1);
        freed.notify_one();
    }
}

enum State {
    Idle(Option<Box<ParquetFile>>),
    Busy(std::thread::JoinHandle<Result<ParquetFile, EncodeError>>),
}

impl OverlappedFile {
    pub fn new(parallel: bool) -> Self {
        Self { parallel, transform: None, state: State::Idle(None), encoded: 0, memory: 0, in_flight: 0 }
    }

    /// Every batch (and the schema of a merge) goes through `t` first.
    pub fn with_transform(mut self, t: Option<Transform>) -> Self {
        self.transform = t;
        self
    }

    /// Encodes `batch` into the file (created with the first batch's schema), on the helper
    /// thread when parallel. An error of the previous write surfaces here.
    pub fn write(&mut self, batch: RecordBatch, props: &WriterProperties) -> Result<(), EncodeError> {
        let batch = match self.transform {
            Some(t) => (t.batch)(batch).map_err(EncodeError)?,
            None => batch,
        };
        let file = self.wait()?;
        let mut file = match file {
            Some(f) => f,
            None => self.new_file(&batch, props)?,
        };
        if !self.parallel {
            file.write(&batch)?;
            self.idle(file);
            return Ok(());
        }
        self.in_flight = batch.get_array_memory_size() as u64;
        let permit = EncodePermit::acquire();
        let handle = std::thread::Builder::new()
            .name("kps-encode".into())
            .spawn(move || {
                let _permit = permit; // released when the write is done, panic or not
                file.write(&batch).map(|()| file)
            })
            .map_err(|e| EncodeError(format!("cannot start an encoder thread: {e}")))?;
        self.state = State::Busy(handle);
        Ok(())
    }

    /// A file for rows of `first`'s schema, gathering the transform's statistics.
    fn new_file(&self, first: &RecordBatch, props: &WriterProperties) -> Result<ParquetFile, EncodeError> {
        Ok(ParquetFile::new(first, props.clone())?.with_stats(self.transform.and_then(|t| (t.stats)(&first.schema()))))
    }

    /// The file once no write is in flight (`None` before the first batch).
    fn wait(&mut self) -> Result<Option<ParquetFile>, EncodeError> {
        match std::mem::replace(&mut self.state, State::Idle(None)) {
            State::Idle(f) => Ok(f.map(|f| *f)),
            State::Busy(h) => {
                self.in_flight = 0;
                let file = h.join().map_err(|_| EncodeError("the encoder thread panicked".into()))??;
                self.encoded = file.encoded_bytes();
                self.memory = file.memory_bytes();
                Ok(Some(file))
            }
        }
    }

    fn idle(&mut self, file: ParquetFile) {
        self.encoded = file.encoded_bytes();
        self.memory = file.memory_bytes();
        self.state = State::Idle(Some(Box::new(file)));
    }

    /// Rewrites the rows written so far in the wider schema `target` (see
    /// `decode::evolve::conform`): the in-memory file is read back and encoded again, once per
    /// version that widens the file, never per record.
    pub fn evolve(&mut self, target: &arrow::datatypes::SchemaRef, props: &WriterProperties) -> Result<(), EncodeError> {
        let Some(file) = self.wait()? else { return Ok(()) };
        let target = &self.transform.map_or_else(|| target.clone(), |t| (t.schema)(target));
        let bytes = file.finish()?;
        let bad = |e: String| EncodeError(format!("rewriting the open file in the merged schema: {e}"));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| bad(e.to_string()))?;
        let mut out: Option<ParquetFile> = None;
        for batch in reader {
            let batch = crate::decode::evolve::conform(&batch.map_err(|e| bad(e.to_string()))?, target).map_err(bad)?;
            let file = match out.as_mut() {
                Some(f) => f,
                None => out.insert(self.new_file(&batch, props)?),
            };
            file.write(&batch)?;
        }
        match out {
            Some(f) => self.idle(f),
            None => self.state = State::Idle(None),
        }
        Ok(())
    }

    /// Encoded bytes as of the last completed write (one batch behind while one is in flight).
    pub fn encoded_bytes(&self) -> u64 {
        self.encoded
    }

    /// Memory held: the file as of the last completed write, and the batch in flight.
    pub fn memory_bytes(&self) -> u64 {
        self.memory + self.in_flight
    }

    /// Waits for the write in flight and closes the file: its rows, bytes and statistics,
    /// `None` if no batch was written.
    pub fn finish(mut self) -> Result<Option<Finished>, EncodeError> {
        self.wait()?.map(ParquetFile::finish_with_stats).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    #[test]
    fn writes_snappy_with_all_rows() -> Result<(), Box<dyn std::error::Error>> {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
            ("s", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
        ])?;
        let mut f = ParquetFile::new(&batch, writer_properties(&OutputConfig::default()))?;
        f.write(&batch)?;
        f.write(&batch)?;
        assert_eq!(f.rows(), 6);
        let bytes = f.finish()?;
        let reader = SerializedFileReader::new(bytes)?;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 6);
        for rg in meta.row_groups() {
            for col in rg.columns() {
                assert_eq!(col.compression(), Compression::SNAPPY, "column {} not snappy", col.column_path());
            }
        }
        Ok(())
    }

    /// Every codec of `output.compression` (with a level where it has one) is the codec of every
    /// column chunk, and the rows read back.
    #[test]
    fn every_codec_writes_and_reads_back() -> Result<(), Box<dyn std::error::Error>> {
        let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from_iter_values(0..5000)) as _)])?;
        for (codec, level, expected) in [
            (Codec::Snappy, 0, Compression::SNAPPY),
            (Codec::Zstd, 0, Compression::ZSTD(ZstdLevel::default())),
            (Codec::Zstd, 9, Compression::ZSTD(ZstdLevel::try_new(9)?)),
            (Codec::Lz4, 0, Compression::LZ4_RAW),
            (Codec::Gzip, 9, Compression::GZIP(GzipLevel::try_new(9)?)),
            (Codec::None, 0, Compression::UNCOMPRESSED),
        ] {
            let config = OutputConfig { compression: codec, compression_level: level, ..OutputConfig::default() };
            let mut f = ParquetFile::new(&batch, writer_properties(&config))?;
            f.write(&batch)?;
            let reader = SerializedFileReader::new(f.finish()?)?;
            assert_eq!(reader.metadata().file_metadata().num_rows(), 5000, "{codec:?} rows");
            let written = reader.metadata().row_group(0).column(0).compression();
            // The file records the codec, not the level: compare the codec's kind.
            assert_eq!(std::mem::discriminant(&written), std::mem::discriminant(&expected), "{codec:?} level {level}: wrote {written:?}");
        }
        Ok(())
    }

    /// Offsets are delta-encoded without a dictionary; other columns keep the default.
    #[test]
    fn unique_columns_are_delta_encoded() -> Result<(), Box<dyn std::error::Error>> {
        let batch = RecordBatch::try_from_iter([
            ("__kafka_offset", Arc::new(Int64Array::from_iter_values(1000..6000)) as _),
            ("s", Arc::new(StringArray::from_iter_values((0..5000).map(|i| ["c", "u", "d"][i % 3]))) as _),
        ])?;
        let mut f = ParquetFile::new(&batch, writer_properties(&OutputConfig::default()))?;
        f.write(&batch)?;
        let reader = SerializedFileReader::new(f.finish()?)?;
        let rg = reader.metadata().row_group(0);
        let enc = |i: usize| rg.column(i).encodings().collect::<Vec<_>>();
        assert!(enc(0).contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED), "offsets: {:?}", enc(0));
        assert!(rg.column(0).dictionary_page_offset().is_none(), "offsets got a dictionary");
        assert!(rg.column(1).dictionary_page_offset().is_some(), "a low-cardinality column lost its dictionary: {:?}", enc(1));
        Ok(())
    }

    /// The overlapped file gives the same bytes as the inline one, and its figures catch up
    /// once the write in flight completes.
    #[test]
    fn overlapped_and_inline_files_are_identical() -> Result<(), Box<dyn std::error::Error>> {
        let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from_iter_values(0..10_000)) as _)])?;
        let props = writer_properties(&OutputConfig::default());
        let mut out = Vec::new();
        for parallel in [false, true] {
            let mut f = OverlappedFile::new(parallel);
            f.write(batch.clone(), &props)?;
            f.write(batch.clone(), &props)?;
            let done = f.finish()?.ok_or("no file")?;
            assert_eq!(done.rows, 20_000, "parallel={parallel}");
            out.push(done.bytes);
        }
        assert_eq!(out[0], out[1], "parallel encoding changed the file");
        assert!(OverlappedFile::new(true).finish()?.is_none(), "a file without batches has no bytes");
        Ok(())
    }
}
