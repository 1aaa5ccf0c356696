//! Output columns added to every decoded batch: the bronze columns of a Debezium envelope
//! (`__op`, `__ts_ms`, `__deleted`) and the Kafka coordinates of each row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::compute::kernels::cmp::eq;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::{debezium, toast, DecodeError};
use crate::config::Layout;

pub const OP: &str = "__op";
pub const TS_MS: &str = "__ts_ms";
pub const DELETED: &str = "__deleted";
pub const KAFKA_KEY: &str = "__kafka_key";
pub const KAFKA_TOPIC: &str = "__kafka_topic";
pub const KAFKA_PARTITION: &str = "__kafka_partition";
pub const KAFKA_OFFSET: &str = "__kafka_offset";
pub const KAFKA_TIMESTAMP: &str = "__kafka_timestamp";

/// Kafka coordinates of the rows of the batch being decoded.
pub struct Coordinates {
    topic: Arc<str>,
    partition: i32,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
}

impl Coordinates {
    pub fn new(topic: &str, partition: i32, capacity: usize) -> Self {
        Self { topic: topic.into(), partition, offsets: Vec::with_capacity(capacity), timestamps: Vec::with_capacity(capacity) }
    }

    pub fn push(&mut self, offset: i64, timestamp_ms: Option<i64>) {
        self.offsets.push(offset);
        self.timestamps.push(timestamp_ms);
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Hands out the collected columns and starts empty ones of the same capacity.
    pub fn take(&mut self) -> (Vec<i64>, Vec<Option<i64>>) {
        let cap = self.offsets.capacity();
        (std::mem::replace(&mut self.offsets, Vec::with_capacity(cap)), std::mem::replace(&mut self.timestamps, Vec::with_capacity(cap)))
    }
}

/// True when the value schema is a Debezium change-event envelope.
pub fn is_envelope(schema: &Schema) -> bool {
    let has = |name: &str| schema.field_with_name(name).is_ok();
    has("op") && has("after") && has("before") && has("source")
}

/// Appends the bronze columns (for envelopes), the decoded key (when the records have Avro keys)
/// and the Kafka coordinates to a decoded batch.
pub fn enrich(
    batch: RecordBatch,
    layout: Layout,
    key: Option<ArrayRef>,
    tombstones: Option<BooleanArray>,
    coords: &Coordinates,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
) -> Result<RecordBatch, DecodeError> {
    let rows = batch.num_rows();
    if offsets.len() != rows {
        return Err(DecodeError::Batch(format!("{} rows decoded but {} offsets recorded", rows, offsets.len())));
    }
    let bad = |e: arrow::error::ArrowError| DecodeError::Batch(e.to_string());
    // Debezium semantic types first, so the bronze columns derive from the typed columns.
    let mut fields: Vec<Arc<Field>> = Vec::with_capacity(batch.num_columns() + 8);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 8);
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let (f, c) = debezium::retype(f, c)?;
        fields.push(f);
        columns.push(c);
    }
    let metadata = batch.schema().metadata().clone();
    let batch = RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields.clone(), metadata)), columns.clone()).map_err(bad)?;
    let schema = batch.schema();

    let mut unavailable = None;
    let batch = if is_envelope(&schema) {
        // Unchanged TOASTed values: null the placeholder, name the column.
        let i = schema.index_of("after").map_err(bad)?;
        let after = batch.column(i).as_struct_opt().ok_or_else(|| DecodeError::Batch("envelope field after is not a record".into()))?;
        let (f, c, names) = toast::mask_image(&fields[i], after)?;
        fields[i] = f;
        columns[i] = c;
        unavailable = Some(names);
        RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields.clone(), schema.metadata().clone())), columns.clone())
            .map_err(bad)?
    } else {
        batch
    };
    if is_envelope(&schema) {
        if layout == Layout::Flatten {
            (fields, columns) = flatten(&batch)?;
        }
        let op = batch.column_by_name("op").cloned().ok_or_else(|| DecodeError::Batch("no op column".into()))?;
        let deleted: BooleanArray = match op.data_type() {
            DataType::Utf8 => {
                let d = StringArray::new_scalar("d");
                let is_d = eq(&op, &d).map_err(bad)?;
                // A null op is not a delete, but a tombstone row is: make the column non-null.
                let tomb = |i: usize| tombstones.as_ref().is_some_and(|t| t.value(i));
                BooleanArray::from_iter(is_d.iter().enumerate().map(|(i, v)| Some(v.unwrap_or(false) || tomb(i))))
            }
            other => return Err(DecodeError::Batch(format!("envelope field op is {other}, expected a string"))),
        };
        fields.push(Arc::new(Field::new(OP, op.data_type().clone(), op.is_nullable())));
        columns.push(op);
        if let Some(ts) = batch.column_by_name("ts_ms").cloned() {
            let ts = arrow::compute::cast(&ts, &DataType::Int64).map_err(bad)?;
            fields.push(Arc::new(Field::new(TS_MS, DataType::Int64, true)));
            columns.push(ts);
        }
        fields.push(Arc::new(Field::new(DELETED, DataType::Boolean, false)));
        columns.push(Arc::new(deleted));
        if let Some(names) = unavailable {
            fields.push(Arc::new(Field::new(toast::UNAVAILABLE, names.data_type().clone(), true)));
            columns.push(names);
        }
    }

    if let Some(key) = key {
        let (f, c) = debezium::retype(&Arc::new(Field::new(KAFKA_KEY, key.data_type().clone(), true)), &key)?;
        fields.push(f);
        columns.push(c);
    }
    let topic: StringArray = std::iter::repeat_n(Some(&*coords.topic), rows).collect();
    fields.push(Arc::new(Field::new(KAFKA_TOPIC, DataType::Utf8, false)));
    columns.push(Arc::new(topic));
    fields.push(Arc::new(Field::new(KAFKA_PARTITION, DataType::Int32, false)));
    columns.push(Arc::new(Int32Array::from(vec![coords.partition; rows])));
    fields.push(Arc::new(Field::new(KAFKA_OFFSET, DataType::Int64, false)));
    columns.push(Arc::new(Int64Array::from(offsets)));
    let ts_type = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    fields.push(Arc::new(Field::new(KAFKA_TIMESTAMP, ts_type, true)));
    columns.push(Arc::new(TimestampMillisecondArray::from(timestamps).with_timezone("UTC")));

    let out = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(out), columns).map_err(bad)
}

pub const SOURCE_TS_MS: &str = "__source_ts_ms";
pub const SOURCE_LSN: &str = "__source_lsn";
pub const SOURCE_TXID: &str = "__source_txid";

/// The row image as top-level columns (`after`, or `before` where `after` is null: deletes),
/// then `__source_ts_ms`, `__source_lsn`, `__source_txid` where the source block has them.
/// Every image column is nullable: an event without any image (a truncate) is a row of nulls.
fn flatten(batch: &RecordBatch) -> Result<(Vec<Arc<Field>>, Vec<ArrayRef>), DecodeError> {
    use arrow::array::{AsArray, StructArray};
    use arrow::compute::kernels::zip::zip;
    let bad = |e: arrow::error::ArrowError| DecodeError::Batch(format!("flatten: {e}"));
    let image = |name: &str| -> Result<&StructArray, DecodeError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_struct_opt())
            .ok_or_else(|| DecodeError::Batch(format!("flatten: {name} is not a record")))
    };
    let (after, before) = (image("after")?, image("before")?);
    let use_after = BooleanArray::from_iter((0..batch.num_rows()).map(|i| Some(after.is_valid(i))));
    let none = BooleanArray::from_iter((0..batch.num_rows()).map(|i| Some(after.is_null(i) && before.is_null(i))));
    let mut fields = Vec::with_capacity(after.num_columns() + 3);
    let mut columns = Vec::with_capacity(after.num_columns() + 3);
    for (field, a) in after.fields().iter().zip(after.columns()) {
        let b = before.column_by_name(field.name()).ok_or_else(|| DecodeError::Batch(format!("flatten: before lacks {}", field.name())))?;
        let picked = zip(&use_after, a, b).map_err(bad)?;
        let column = if none.true_count() > 0 { arrow::compute::nullif(&picked, &none).map_err(bad)? } else { picked };
        fields.push(Arc::new(field.as_ref().clone().with_nullable(true)));
        columns.push(column);
    }
    if let Some(source) = batch.column_by_name("source").and_then(|c| c.as_struct_opt()) {
        for (from, to) in [("ts_ms", SOURCE_TS_MS), ("lsn", SOURCE_LSN), ("txId", SOURCE_TXID)] {
            if let Some(c) = source.column_by_name(from) {
                let c = arrow::compute::cast(c, &DataType::Int64).map_err(bad)?;
                fields.push(Arc::new(Field::new(to, DataType::Int64, true)));
                columns.push(c);
            }
        }
    }
    Ok((fields, columns))
}
