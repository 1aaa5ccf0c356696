//! Decode stage: Confluent-framed Avro → Arrow rows, with the Kafka coordinates of each row.
//!
//! The frame is parsed here (`frame`), the writer schema comes from the registry (`registry`),
//! and the body is decoded by arrow-avro straight into Arrow builders: no per-record `Value`
//! tree, no JSON. One [`BatchDecoder`] serves one partition and one writer schema.

pub mod envelope;
pub mod frame;
pub mod registry;

use arrow::array::RecordBatch;
use arrow_avro::reader::{Decoder, DecoderMode, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

pub use envelope::Coordinates;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("value is not in the Confluent wire format: {0}")]
    NotFramed(String),
    #[error("schema id {schema_id}: the writer schema cannot be used: {reason}")]
    BadSchema { schema_id: u32, reason: String },
    #[error("corrupt Avro body for schema id {schema_id}: {reason}")]
    CorruptBody { schema_id: u32, reason: String },
    #[error("cannot build the output batch: {0}")]
    Batch(String),
}

impl DecodeError {
    /// Decoding the same bytes again gives the same answer: never retryable.
    pub fn retryable(&self) -> bool {
        false
    }

    /// Short class name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotFramed(_) => "not_framed",
            DecodeError::BadSchema { .. } => "bad_schema",
            DecodeError::CorruptBody { .. } => "corrupt_body",
            DecodeError::Batch(_) => "batch",
        }
    }
}

/// Decodes the Avro bodies of one partition written with one schema, collecting the Kafka
/// coordinates of each row alongside, and hands out enriched batches of up to `batch_size` rows.
pub struct BatchDecoder {
    schema_id: u32,
    decoder: Decoder,
    coords: Coordinates,
}

impl BatchDecoder {
    pub fn new(topic: &str, partition: i32, schema_id: u32, writer_schema: &str, batch_size: usize) -> Result<Self, DecodeError> {
        let bad = |reason: String| DecodeError::BadSchema { schema_id, reason };
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let fp = Fingerprint::Id(schema_id);
        store.set(fp, AvroSchema::new(writer_schema.to_string())).map_err(|e| bad(e.to_string()))?;
        let decoder = ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_active_fingerprint(fp)
            .with_decoder_mode(DecoderMode::UnframedDatum)
            .with_batch_size(batch_size.max(1))
            .build_decoder()
            .map_err(|e| bad(e.to_string()))?;
        if decoder.schema().fields().is_empty() {
            return Err(bad("the writer schema is not an Avro record".into()));
        }
        Ok(Self { schema_id, decoder, coords: Coordinates::new(topic, partition, batch_size) })
    }

    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Decodes one Avro body. Returns a full batch when `batch_size` rows have accumulated.
    pub fn push(&mut self, body: &[u8], offset: i64, timestamp_ms: Option<i64>) -> Result<Option<RecordBatch>, DecodeError> {
        let corrupt = |reason: String| DecodeError::CorruptBody { schema_id: self.schema_id, reason };
        let consumed = self.decoder.decode(body).map_err(|e| corrupt(e.to_string()))?;
        self.coords.push(offset, timestamp_ms);
        if consumed != body.len() {
            return Err(corrupt(format!("{} trailing bytes after the record", body.len() - consumed)));
        }
        if self.decoder.batch_is_full() {
            return self.finish();
        }
        Ok(None)
    }

    /// The rows decoded since the last batch, if any, as an enriched batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        let Some(batch) = self.decoder.flush().map_err(|e| DecodeError::CorruptBody { schema_id: self.schema_id, reason: e.to_string() })? else {
            return Ok(None);
        };
        let (offsets, timestamps) = self.coords.take();
        envelope::enrich(batch, &self.coords, offsets, timestamps).map(Some)
    }

    /// Rows decoded and not yet handed out.
    pub fn pending_rows(&self) -> usize {
        self.coords.len()
    }
}
