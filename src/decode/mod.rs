//! Decode stage: Confluent-framed Avro → Arrow rows, with the Kafka coordinates of each row.
//!
//! The frame is parsed here (`frame`), the writer schema comes from the registry (`registry`),
//! and the body is decoded by arrow-avro straight into Arrow builders: no per-record `Value`
//! tree, no JSON. One [`BatchDecoder`] serves one partition and one writer schema.

pub mod datum;
pub mod debezium;
pub mod evolve;
pub mod envelope;
pub mod field;
pub mod frame;
pub mod headers;
pub mod registry;
pub mod text;
pub mod tls_probe;
pub mod toast;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_avro::reader::{Decoder, DecoderMode, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

pub use crate::config::Layout;
pub use envelope::Coordinates;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("value is not in the Confluent wire format: {0}")]
    NotFramed(String),
    #[error("schema id {schema_id}: the writer schema cannot be used: {reason}")]
    BadSchema { schema_id: u32, reason: String },
    /// Refused before the decoder saw it (`datum::DatumCheck`): nothing of it is held.
    #[error("corrupt Avro body for schema id {schema_id}: {reason}")]
    CorruptBody { schema_id: u32, reason: String },
    /// The decoder, or the batch it was building, refused what the check let through: the
    /// decoder may hold part of the record, so its rows cannot be trusted.
    #[error("corrupt Avro body for schema id {schema_id} (refused by the decoder): {reason}")]
    Undecodable { schema_id: u32, reason: String },
    #[error("cannot build the output batch: {0}")]
    Batch(String),
    #[error("tombstone (null value) and output.tombstones = \"fail\"")]
    Tombstone,
    #[error("schema id {schema_id}: Parquet cannot store these rows: {reason}")]
    Unwritable { schema_id: u32, reason: String },
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
            DecodeError::CorruptBody { .. } | DecodeError::Undecodable { .. } => "corrupt_body",
            DecodeError::Batch(_) => "batch",
            DecodeError::Tombstone => "tombstone",
            DecodeError::Unwritable { .. } => "unwritable",
        }
    }
}

/// The writer schema ids of a file: the value's, and the key's once a keyed record was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaIds {
    pub value: u32,
    pub key: Option<u32>,
}

/// Decodes the Avro bodies (and Avro keys) of one partition written with one value schema and
/// at most one key schema, collecting the Kafka coordinates of each row alongside, and hands
/// out enriched batches of up to `batch_size` rows.
pub struct BatchDecoder {
    ids: SchemaIds,
    value: Decoder,
    key: Option<KeyDecoder>,
    /// Each body is checked against its writer schema before the decoder sees it, so a corrupt
    /// one leaves nothing behind (`None`: a schema the check cannot compile; the decoder then
    /// judges alone, and its refusal is [`DecodeError::Undecodable`]).
    checks: (Option<datum::DatumCheck>, Option<datum::DatumCheck>),
    coords: Coordinates,
    layout: Layout,
    batch_size: usize,
    /// With `output.tombstones = "write"`: per row, the index of its decoded value (`None`: a
    /// tombstone). Empty otherwise.
    value_rows: Vec<Option<u32>>,
    decoded_values: u32,
    write_tombstones: bool,
    /// With `output.headers`: the `__kafka_headers` column.
    headers: Option<headers::HeadersColumn>,
}

/// Keys of the rows of the current batch: decoded keys, and for each row the index of its key
/// (`None`: the record had no key).
struct KeyDecoder {
    decoder: Decoder,
    rows: Vec<Option<u32>>,
    decoded: u32,
}

/// A writer schema (by registry id), and the reader schema to resolve it to (the union of the
/// versions in the file, `output.schema_change = "merge"`), if not the writer's own.
#[derive(Debug, Clone, Copy)]
pub struct Schemas<'a> {
    pub id: u32,
    pub writer: &'a str,
    pub reader: Option<&'a str>,
}

fn datum_decoder(s: Schemas<'_>, batch_size: usize) -> Result<Decoder, DecodeError> {
    let schema_id = s.id;
    let bad = |reason: String| DecodeError::BadSchema { schema_id, reason };
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    let fp = Fingerprint::Id(schema_id);
    store.set(fp, AvroSchema::new(s.writer.to_string())).map_err(|e| bad(e.to_string()))?;
    let mut builder = ReaderBuilder::new();
    if let Some(reader) = s.reader {
        builder = builder.with_reader_schema(AvroSchema::new(reader.to_string()));
    }
    let decoder = builder
        .with_writer_schema_store(store)
        .with_active_fingerprint(fp)
        .with_decoder_mode(DecoderMode::UnframedDatum)
        .with_batch_size(batch_size.max(1))
        .build_decoder()
        .map_err(|e| bad(e.to_string()))?;
    if decoder.schema().fields().is_empty() {
        return Err(bad("the writer schema is not an Avro record".into()));
    }
    Ok(decoder)
}

/// Decodes exactly one datum that must span all of `body` (checked before).
fn decode_one(decoder: &mut Decoder, schema_id: u32, body: &[u8]) -> Result<(), DecodeError> {
    let corrupt = |reason: String| DecodeError::Undecodable { schema_id, reason };
    let consumed = decoder.decode(body).map_err(|e| corrupt(e.to_string()))?;
    if consumed != body.len() {
        return Err(corrupt(format!("{} trailing bytes after the record", body.len() - consumed)));
    }
    Ok(())
}

impl BatchDecoder {
    /// `key` is the key's schema id and writer schema, when the file's records carry Avro keys.
    pub fn new(topic: &str, partition: i32, value: (u32, &str), key: Option<(u32, &str)>, batch_size: usize) -> Result<Self, DecodeError> {
        let key = key.map(|(id, writer)| Schemas { id, writer, reader: None });
        Self::resolving(topic, partition, Schemas { id: value.0, writer: value.1, reader: None }, key, batch_size)
    }

    /// As [`Self::new`], each writer schema resolved to its reader schema where one is given.
    pub fn resolving(topic: &str, partition: i32, value: Schemas<'_>, key: Option<Schemas<'_>>, batch_size: usize) -> Result<Self, DecodeError> {
        let key_decoder = match key {
            Some(k) => Some(KeyDecoder { decoder: datum_decoder(k, batch_size)?, rows: Vec::new(), decoded: 0 }),
            None => None,
        };
        let check = |s: Schemas<'_>| match datum::DatumCheck::compile(s.writer) {
            Ok(c) => Some(c),
            Err(reason) => {
                tracing::warn!(topic, partition, schema_id = s.id, %reason, "the writer schema cannot be compiled for the body check; the decoder alone judges its bodies");
                None
            }
        };
        Ok(Self {
            ids: SchemaIds { value: value.id, key: key.map(|k| k.id) },
            checks: (check(value), key.and_then(check)),
            value: datum_decoder(value, batch_size)?,
            key: key_decoder,
            coords: Coordinates::new(topic, partition, batch_size),
            layout: Layout::Envelope,
            batch_size: batch_size.max(1),
            value_rows: Vec::new(),
            decoded_values: 0,
            write_tombstones: false,
            headers: None,
        })
    }

    /// Tombstones become rows (value columns null, key kept, `__deleted` true); every value
    /// column is then nullable, in every file, so files of one schema share one shape.
    pub fn with_tombstone_rows(mut self) -> Self {
        self.write_tombstones = true;
        self
    }

    /// Adds the `__kafka_headers` column; give each record's headers with
    /// [`Self::stage_headers`] before pushing it.
    pub fn with_headers(mut self) -> Self {
        self.headers = Some(headers::HeadersColumn::default());
        self
    }

    /// The headers of the record pushed next (with [`Self::with_headers`]; ignored otherwise).
    pub fn stage_headers(&mut self, h: &headers::Headers) {
        if let Some(column) = self.headers.as_mut() {
            column.stage(h);
        }
    }

    /// The column layout of Debezium envelopes (default: as written).
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    pub fn ids(&self) -> SchemaIds {
        self.ids
    }

    /// Decodes one record: its value body and, if it has one, its key body (which must be of
    /// this decoder's key schema). Returns a full batch when `batch_size` rows have accumulated.
    pub fn push(
        &mut self,
        body: &[u8],
        key: Option<&[u8]>,
        offset: i64,
        timestamp_ms: Option<i64>,
    ) -> Result<Option<RecordBatch>, DecodeError> {
        if let Some(c) = &self.checks.0 {
            c.check(body).map_err(|reason| DecodeError::CorruptBody { schema_id: self.ids.value, reason })?;
        }
        self.check_key(key)?;
        decode_one(&mut self.value, self.ids.value, body)?;
        if self.write_tombstones {
            self.value_rows.push(Some(self.decoded_values));
            self.decoded_values += 1;
        }
        self.push_row(key, offset, timestamp_ms)
    }

    /// A tombstone as a row: its key, nulls for the value (only with [`Self::with_tombstone_rows`]).
    pub fn push_tombstone(
        &mut self,
        key: Option<&[u8]>,
        offset: i64,
        timestamp_ms: Option<i64>,
    ) -> Result<Option<RecordBatch>, DecodeError> {
        if !self.write_tombstones {
            return Err(DecodeError::Batch("tombstone rows are not enabled".into()));
        }
        self.check_key(key)?;
        self.value_rows.push(None);
        self.push_row(key, offset, timestamp_ms)
    }

    /// The key body against the key's writer schema, before anything of the record is kept.
    fn check_key(&self, key: Option<&[u8]>) -> Result<(), DecodeError> {
        match (key, &self.checks.1, self.ids.key) {
            (Some(k), Some(c), Some(schema_id)) => c.check(k).map_err(|reason| DecodeError::CorruptBody { schema_id, reason: format!("key: {reason}") }),
            _ => Ok(()),
        }
    }

    fn push_row(&mut self, key: Option<&[u8]>, offset: i64, timestamp_ms: Option<i64>) -> Result<Option<RecordBatch>, DecodeError> {
        self.coords.push(offset, timestamp_ms);
        if let Some(column) = self.headers.as_mut() {
            column.push_row();
        }
        match (key, self.key.as_mut(), self.ids.key) {
            (Some(k), Some(kd), Some(key_id)) => {
                decode_one(&mut kd.decoder, key_id, k)?;
                kd.rows.push(Some(kd.decoded));
                kd.decoded += 1;
            }
            (None, Some(kd), _) => kd.rows.push(None),
            (None, None, _) => {}
            (Some(_), _, _) => return Err(DecodeError::Batch("a keyed record reached a decoder without a key schema".into())),
        }
        if self.coords.len() >= self.batch_size || self.value.batch_is_full() {
            return self.finish();
        }
        Ok(None)
    }

    /// The rows decoded since the last batch, if any, as an enriched batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        if self.coords.is_empty() {
            return Ok(None);
        }
        let value_id = self.ids.value;
        let values = self.value.flush().map_err(|e| DecodeError::Undecodable { schema_id: value_id, reason: e.to_string() })?;
        let values = values.unwrap_or_else(|| RecordBatch::new_empty(self.value.schema()));
        let rows = self.coords.len();
        let (batch, tombstones) = if self.write_tombstones {
            let slots = std::mem::take(&mut self.value_rows);
            self.decoded_values = 0;
            (with_null_rows(&values, &slots)?, Some(arrow::array::BooleanArray::from_iter(slots.iter().map(|s| Some(s.is_none())))))
        } else {
            (values, None)
        };
        let key = match (self.key.as_mut(), self.ids.key) {
            (Some(kd), Some(key_id)) => Some(kd.take(key_id, rows)?),
            _ => None,
        };
        let (offsets, timestamps) = self.coords.take();
        let batch = envelope::enrich(batch, self.layout, key, tombstones, &self.coords, offsets, timestamps)?;
        self.with_headers_column(batch).map(Some)
    }

    /// Appends `__kafka_headers` (with [`Self::with_headers`]).
    fn with_headers_column(&mut self, batch: RecordBatch) -> Result<RecordBatch, DecodeError> {
        let Some(column) = self.headers.as_mut() else { return Ok(batch) };
        let mut fields: Vec<arrow::datatypes::FieldRef> = batch.schema().fields().iter().cloned().collect();
        let mut columns = batch.columns().to_vec();
        fields.push(Arc::new(headers::field()));
        columns.push(column.finish());
        RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).map_err(|e| DecodeError::Batch(format!("{}: {e}", headers::KAFKA_HEADERS)))
    }

    /// The schema of the batches this decoder hands out (call before the first row).
    pub fn output_schema(&mut self) -> Result<arrow::datatypes::SchemaRef, DecodeError> {
        if !self.coords.is_empty() {
            return Err(DecodeError::Batch("output_schema needs a decoder without pending rows".into()));
        }
        let values = RecordBatch::new_empty(self.value.schema());
        let values = if self.write_tombstones { with_null_rows(&values, &[])? } else { values };
        let tombstones = self.write_tombstones.then(|| arrow::array::BooleanArray::from(Vec::<bool>::new()));
        let key = match (self.key.as_mut(), self.ids.key) {
            (Some(kd), Some(key_id)) => Some(kd.take(key_id, 0)?),
            _ => None,
        };
        let (offsets, timestamps) = self.coords.take();
        let batch = envelope::enrich(values, self.layout, key, tombstones, &self.coords, offsets, timestamps)?;
        Ok(self.with_headers_column(batch)?.schema())
    }

    /// Rows decoded and not yet handed out.
    pub fn pending_rows(&self) -> usize {
        self.coords.len()
    }
}

/// `values` spread over `slots` rows: slot `Some(j)` is value row `j`, `None` a row of nulls.
/// Every field becomes nullable.
fn with_null_rows(values: &RecordBatch, slots: &[Option<u32>]) -> Result<RecordBatch, DecodeError> {
    use arrow::array::new_null_array;
    let bad = |e: arrow::error::ArrowError| DecodeError::Batch(format!("tombstone rows: {e}"));
    let indices: Vec<(usize, usize)> = slots.iter().map(|s| s.map_or((1, 0), |j| (0, j as usize))).collect();
    let mut columns = Vec::with_capacity(values.num_columns());
    for c in values.columns() {
        let null = new_null_array(c.data_type(), 1);
        columns.push(arrow::compute::interleave(&[c.as_ref(), null.as_ref()], &indices).map_err(bad)?);
    }
    let fields: Vec<arrow::datatypes::FieldRef> =
        values.schema().fields().iter().map(|f| std::sync::Arc::new(f.as_ref().clone().with_nullable(true))).collect();
    let schema = arrow::datatypes::Schema::new_with_metadata(fields, values.schema().metadata().clone());
    RecordBatch::try_new(std::sync::Arc::new(schema), columns).map_err(bad)
}

impl KeyDecoder {
    /// The key column of the batch: one struct per row, null where the record had no key.
    fn take(&mut self, key_id: u32, rows: usize) -> Result<arrow::array::ArrayRef, DecodeError> {
        use arrow::array::{Array, StructArray, UInt32Array};
        let bad = |e: arrow::error::ArrowError| DecodeError::Batch(e.to_string());
        let index = std::mem::take(&mut self.rows);
        self.decoded = 0;
        if index.len() != rows {
            return Err(DecodeError::Batch(format!("{rows} rows but {} key slots", index.len())));
        }
        let keys = match self.decoder.flush().map_err(|e| DecodeError::Undecodable { schema_id: key_id, reason: e.to_string() })? {
            Some(b) => StructArray::from(b),
            None => {
                let schema = self.decoder.schema();
                StructArray::new_null(schema.fields().clone(), 0)
            }
        };
        let keys: arrow::array::ArrayRef = std::sync::Arc::new(keys);
        if index.iter().all(Option::is_some) && keys.len() == rows {
            return Ok(keys);
        }
        arrow::compute::take(keys.as_ref(), &UInt32Array::from(index), None).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Op, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
    use arrow::array::{Array, AsArray, BooleanArray, Int64Array, StringArray, StructArray};
    use arrow::datatypes::DataType;

    type R = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| format!("column {name} missing or of another type"))
    }

    /// Bytes encoded by apache-avro (independent of arrow-avro) with the real Debezium schema
    /// decode to the same values, with the bronze and Kafka columns added.
    #[test]
    fn decodes_real_debezium_envelopes() -> R {
        let mut g = TasksGenerator::new(5, 2)?;
        let mut events = Vec::new();
        while events.len() < 40 {
            events.extend(g.next_events()?.into_iter().filter(|e| e.op != Op::Tombstone));
        }
        let mut d = BatchDecoder::new("t", 4, (77, VALUE_SCHEMA_V1), Some((5, KEY_SCHEMA)), 1000)?;
        for (i, e) in events.iter().enumerate() {
            let framed = frame::encode(77, e.value.as_deref().ok_or("no value")?);
            let f = frame::parse(&framed)?;
            assert_eq!(f.schema_id, 77);
            // Every third record has no key: its key column is null.
            let key = (i % 3 != 0).then_some(e.key.as_slice());
            assert!(d.push(f.body, key, 100 + i as i64, Some(1_700_000_000_000 + i as i64))?.is_none(), "batch handed out early");
        }
        assert_eq!(d.pending_rows(), events.len());
        let b = d.finish()?.ok_or("no batch")?;
        assert_eq!(b.num_rows(), events.len());
        let op = column::<StringArray>(&b, "__op")?;
        let deleted = column::<BooleanArray>(&b, "__deleted")?;
        let ts = column::<Int64Array>(&b, "__ts_ms")?;
        let offsets = column::<Int64Array>(&b, envelope::KAFKA_OFFSET)?;
        let after = column::<StructArray>(&b, "after")?;
        let before = column::<StructArray>(&b, "before")?;
        for (i, e) in events.iter().enumerate() {
            let letter = e.op.letter().ok_or("tombstone")?;
            assert_eq!(op.value(i), letter, "__op of row {i}");
            assert_eq!(deleted.value(i), e.op == Op::Delete, "__deleted of row {i}");
            assert_eq!(ts.value(i), e.ts_ms, "__ts_ms of row {i}");
            assert_eq!(offsets.value(i), 100 + i as i64, "__kafka_offset of row {i}");
            let image = if e.op == Op::Delete { before } else { after };
            assert!(image.is_valid(i), "row image of row {i} is null");
            let title = image.column_by_name("title").ok_or("no title")?.as_string::<i32>();
            assert_eq!(title.value(i), e.title, "title of row {i}");
            assert_eq!(after.is_null(i), e.op == Op::Delete, "after nullness of row {i}");
        }
        let key = column::<StructArray>(&b, envelope::KAFKA_KEY)?;
        let key_id = key.column_by_name("id").ok_or("no key id")?.as_string::<i32>();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(key.is_null(i), i % 3 == 0, "key nullness of row {i}");
            if i % 3 != 0 {
                assert_eq!(key_id.value(i), e.id, "key id of row {i}");
            }
        }
        let estimate = after.column_by_name("estimate").ok_or("no estimate")?;
        assert_eq!(estimate.data_type(), &DataType::Decimal128(10, 2), "numeric(10,2) must be a decimal");
        let p = column::<arrow::array::Int32Array>(&b, "__kafka_partition")?;
        assert!(p.iter().all(|v| v == Some(4)), "__kafka_partition");
        Ok(())
    }

    /// Each row carries its own record's headers, in order, also after a record that failed to
    /// decode; the schema announced up front is the batches'.
    #[test]
    fn headers_column_follows_its_rows() -> R {
        let mut g = TasksGenerator::new(3, 0)?;
        let mut events = Vec::new();
        while events.len() < 5 {
            events.extend(g.next_events()?.into_iter().filter(|e| e.op != Op::Tombstone));
        }
        let mut d = BatchDecoder::new("t", 0, (77, VALUE_SCHEMA_V1), None, 1000)?.with_headers();
        let announced = d.output_schema()?;
        let header = |i: usize| vec![("trace".to_string(), Some(vec![i as u8, 0xff])), ("empty".to_string(), None)];
        for (i, e) in events.iter().take(5).enumerate() {
            let body = e.value.as_deref().ok_or("no value")?;
            if i == 2 {
                d.stage_headers(&[("bad".to_string(), Some(b"x".to_vec()))]);
                assert!(d.push(&body[..1], None, 99, None).is_err(), "a truncated body must fail");
            }
            if i != 4 {
                d.stage_headers(&header(i));
            }
            d.push(body, None, i as i64, None)?;
        }
        let b = d.finish()?.ok_or("no batch")?;
        assert_eq!(b.schema(), announced, "output_schema against the batch");
        let col = b.column_by_name(headers::KAFKA_HEADERS).ok_or("no __kafka_headers")?.as_list::<i32>();
        for i in 0..4 {
            let entries = col.value(i);
            let entries = entries.as_struct();
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_binary::<i32>();
            assert_eq!((entries.len(), keys.value(0), keys.value(1)), (2, "trace", "empty"), "row {i}");
            assert_eq!((values.value(0), values.is_null(1)), (&[i as u8, 0xff][..], true), "row {i}");
        }
        assert_eq!(col.value(4).len(), 0, "a record without headers has an empty list");
        Ok(())
    }

    #[test]
    fn flatten_puts_the_row_image_on_top() -> R {
        let mut g = TasksGenerator::new(9, 0)?;
        let mut events = Vec::new();
        while events.len() < 60 {
            events.extend(g.next_events()?.into_iter().filter(|e| e.op != Op::Tombstone));
        }
        assert!(events.iter().any(|e| e.op == Op::Delete), "the sample needs a delete");
        let mut d = BatchDecoder::new("t", 0, (1, VALUE_SCHEMA_V1), None, 1000)?.with_layout(Layout::Flatten);
        for (i, e) in events.iter().enumerate() {
            d.push(e.value.as_deref().ok_or("no value")?, None, i as i64, None)?;
        }
        let b = d.finish()?.ok_or("no batch")?;
        for gone in ["before", "after", "source", "op", "transaction"] {
            assert!(b.column_by_name(gone).is_none(), "flatten keeps {gone}");
        }
        let title = column::<StringArray>(&b, "title")?;
        let deleted = column::<BooleanArray>(&b, "__deleted")?;
        let lsn = column::<Int64Array>(&b, "__source_lsn")?;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(title.value(i), e.title, "title of row {i} ({:?})", e.op);
            assert_eq!(deleted.value(i), e.op == Op::Delete, "__deleted of row {i}");
            assert!(lsn.is_valid(i), "__source_lsn of row {i}");
        }
        let due = b.schema().field_with_name("due_date")?.data_type().clone();
        assert_eq!(due, DataType::Date32, "Debezium Date re-typed in flatten too");
        Ok(())
    }

    #[test]
    fn tombstone_rows_carry_the_key_and_are_deleted() -> R {
        let mut g = TasksGenerator::new(4, 0)?;
        let mut events = Vec::new();
        while events.len() < 50 {
            events.extend(g.next_events()?);
        }
        assert!(events.iter().any(|e| e.op == Op::Tombstone), "the sample needs a tombstone");
        let mut d = BatchDecoder::new("t", 0, (77, VALUE_SCHEMA_V1), Some((5, KEY_SCHEMA)), 1000)?.with_tombstone_rows();
        for (i, e) in events.iter().enumerate() {
            match &e.value {
                Some(v) => d.push(v, Some(&e.key), i as i64, None)?,
                None => d.push_tombstone(Some(&e.key), i as i64, None)?,
            };
        }
        let b = d.finish()?.ok_or("no batch")?;
        assert_eq!(b.num_rows(), events.len(), "one row per record, tombstones included");
        let deleted = column::<BooleanArray>(&b, "__deleted")?;
        let op = column::<StringArray>(&b, "__op")?;
        let key = column::<StructArray>(&b, envelope::KAFKA_KEY)?;
        let key_id = key.column_by_name("id").ok_or("no key id")?.as_string::<i32>();
        for (i, e) in events.iter().enumerate() {
            let tomb = e.op == Op::Tombstone;
            assert_eq!(deleted.value(i), tomb || e.op == Op::Delete, "__deleted of row {i} ({:?})", e.op);
            assert_eq!(op.is_null(i), tomb, "__op of row {i}");
            assert_eq!(key_id.value(i), e.id, "key of row {i}");
        }
        assert!(b.schema().fields().iter().all(|f| f.is_nullable() || f.name().starts_with("__")), "value columns must be nullable");
        // A batch of tombstones only still has the value schema.
        let mut d = BatchDecoder::new("t", 0, (77, VALUE_SCHEMA_V1), Some((5, KEY_SCHEMA)), 10)?.with_tombstone_rows();
        d.push_tombstone(Some(&events[0].key), 0, None)?;
        let only = d.finish()?.ok_or("no batch")?;
        assert_eq!((only.num_rows(), only.schema().field_with_name("after").is_ok()), (1, true));
        Ok(())
    }

    #[test]
    fn corrupt_bodies_are_errors_not_panics() -> R {
        let mut d = BatchDecoder::new("t", 0, (1, VALUE_SCHEMA_V1), None, 10)?;
        match d.push(&[0xFF, 0xFF, 0xFF], None, 0, None) {
            Err(DecodeError::CorruptBody { schema_id: 1, .. }) => {}
            other => return Err(format!("expected CorruptBody, got {other:?}").into()),
        }
        let mut g = TasksGenerator::new(1, 1)?;
        let mut body = g.next_events()?.remove(0).value.ok_or("no value")?;
        body.extend_from_slice(&[1, 2, 3]);
        let mut d = BatchDecoder::new("t", 0, (1, VALUE_SCHEMA_V1), None, 10)?;
        match d.push(&body, None, 0, None) {
            Err(DecodeError::CorruptBody { reason, .. }) => assert!(reason.contains("3 trailing bytes"), "{reason}"),
            other => return Err(format!("expected trailing-bytes error, got {other:?}").into()),
        }
        Ok(())
    }

    /// The point of the body check: corrupt records between good ones (cut, with bytes after
    /// the record, with a union branch out of range, with a corrupt key) are refused whole,
    /// and the batch holds exactly the good rows, in order, with their offsets.
    #[test]
    fn corrupt_records_between_good_ones_leave_the_batch_exact() -> R {
        let mut g = TasksGenerator::new(9, 40)?;
        let events: Vec<_> = std::iter::repeat_with(|| g.next_events()).take(40).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
        let good: Vec<_> = events.iter().filter(|e| e.value.is_some()).collect();
        let mut d = BatchDecoder::new("t", 0, (1, VALUE_SCHEMA_V1), Some((5, KEY_SCHEMA)), 10_000)?;
        let (mut offset, mut kept, mut refused) = (0_i64, Vec::new(), 0);
        for (i, e) in good.iter().enumerate() {
            let body = e.value.as_deref().ok_or("no value")?;
            let mut trailing = body.to_vec();
            trailing.push(0);
            let mut branch = body.to_vec();
            branch[0] = 0x06; // `before` is [null, Value]: branch 3
            let corrupt: [(&[u8], &[u8]); 4] =
                [(&body[..body.len() * 2 / 3], &e.key), (&trailing, &e.key), (&branch, &e.key), (body, &e.key[..e.key.len() - 1])];
            let (bad_body, bad_key) = corrupt[i % 4];
            match d.push(bad_body, Some(bad_key), offset, None) {
                Err(DecodeError::CorruptBody { .. }) => refused += 1,
                other => return Err(format!("corrupt record {i} (kind {}): expected CorruptBody, got {other:?}", i % 4).into()),
            }
            offset += 1;
            d.push(body, Some(&e.key), offset, None)?;
            kept.push(offset);
            offset += 1;
        }
        let b = d.finish()?.ok_or("no batch")?;
        let offsets: Vec<i64> = column::<Int64Array>(&b, envelope::KAFKA_OFFSET)?.values().to_vec();
        assert_eq!((refused, offsets), (good.len(), kept), "refused records, and the offsets of the batch against those of the good records");
        let key = column::<StructArray>(&b, envelope::KAFKA_KEY)?;
        let ids = key.column_by_name("id").ok_or("no key id")?.as_string::<i32>();
        let want: Vec<&str> = good.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.iter().flatten().collect::<Vec<_>>(), want, "keys of the batch against those of the good records");
        Ok(())
    }

    /// A record with an empty record field decodes, but neither the output batch nor Parquet can
    /// hold an empty struct: asking for the output schema says so before any row is taken.
    #[test]
    fn parquet_refuses_an_empty_struct_before_any_row() -> R {
        let schema = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"nothing","type":{"type":"record","name":"Empty","fields":[]}}]}"#;
        let mut d = BatchDecoder::new("t", 0, (3, schema), None, 10)?;
        let props = crate::encode::writer_properties(&crate::config::OutputConfig::default());
        match d.output_schema() {
            Ok(out) => assert!(crate::encode::ParquetFile::check_schema(out, props.clone()).is_err(), "an empty struct must be refused"),
            Err(e) => assert!(e.to_string().contains("no fields"), "unexpected error: {e}"),
        }
        let mut ok = BatchDecoder::new("t", 0, (1, VALUE_SCHEMA_V1), Some((5, KEY_SCHEMA)), 10)?.with_tombstone_rows();
        crate::encode::ParquetFile::check_schema(ok.output_schema()?, props)?;
        Ok(())
    }

    #[test]
    fn a_non_record_schema_is_refused() {
        assert!(matches!(BatchDecoder::new("t", 0, (9, "\"string\""), None, 10), Err(DecodeError::BadSchema { schema_id: 9, .. })));
        assert!(matches!(BatchDecoder::new("t", 0, (9, "{not json"), None, 10), Err(DecodeError::BadSchema { .. })));
        assert!(matches!(
            BatchDecoder::new("t", 0, (9, VALUE_SCHEMA_V1), Some((3, "\"long\"")), 10),
            Err(DecodeError::BadSchema { schema_id: 3, .. })
        ));
    }
}
