//! Encode stage: Arrow batches → one Snappy Parquet file, held in memory until it is uploaded.
//! The open file is the partition's buffer: rows are encoded and compressed as they arrive.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::config::OutputConfig;

#[derive(Debug, thiserror::Error)]
#[error("parquet encoding failed: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    /// The writer rejects the same batch every time: never retryable.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// Writer settings shared by every file: Snappy (parquet's default is no compression), bounded
/// row groups and pages, page-level statistics.
pub fn writer_properties(c: &OutputConfig) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(c.row_group_rows))
        .set_data_page_size_limit(c.data_page_bytes)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(concat!("kafka-parquet-sink ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}

pub struct ParquetFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

impl ParquetFile {
    pub fn new(first: &RecordBatch, props: WriterProperties) -> Result<Self, EncodeError> {
        let writer = ArrowWriter::try_new(Vec::new(), first.schema(), Some(props)).map_err(|e| EncodeError(e.to_string()))?;
        Ok(Self { writer, rows: 0 })
    }

    /// Whether the Parquet writer takes rows of this schema (an empty struct, for one, it
    /// cannot store); the answer holds for every batch of the schema.
    pub fn check_schema(schema: arrow::datatypes::SchemaRef, props: WriterProperties) -> Result<(), EncodeError> {
        ArrowWriter::try_new(Vec::new(), schema, Some(props)).map(|_| ()).map_err(|e| EncodeError(e.to_string()))
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        self.writer.write(batch).map_err(|e| EncodeError(e.to_string()))?;
        self.rows += batch.num_rows() as u64;
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
        let buf = self.writer.into_inner().map_err(|e| EncodeError(e.to_string()))?;
        Ok(Bytes::from(buf))
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
}
