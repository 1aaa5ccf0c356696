//! What a commit hands the kernel: the table schema from our files' Arrow schema, and the add
//! actions of the files.

use std::sync::Arc;

use arrow::array::builder::{MapBuilder, MapFieldNames, StringBuilder};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use delta_kernel::engine::arrow_conversion::TryFromArrow as _;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::schema::{SchemaRef as KernelSchemaRef, StructType};
use delta_kernel::EngineData;

use super::types::table_field;
use super::{DataFile, Staged};

/// The table's partition column: every row's Kafka partition. The data files keep the column
/// too (same values), so a reader of the files alone sees what a reader of the table does.
pub const PARTITION_COLUMN: &str = crate::decode::envelope::KAFKA_PARTITION;

/// A batch as a table's data file holds it: columns of types Delta has no name for become
/// their integer values (Debezium's `Time`/`MicroTime`/`NanoTime` the time of day in their unit,
/// `MicroDuration` microseconds), decimals wider than Delta's 38 digits (PostgreSQL's
/// `numeric(64, 2)`, Arrow's Decimal256) their exact decimal text, and timestamps of any unit
/// microseconds, Delta's one unit (Debezium's `Timestamp` is milliseconds, `NanoTimestamp`
/// nanoseconds: SQL Server's `datetime2`, Oracle's `TIMESTAMP(9)`; below a microsecond is
/// dropped), so every reader of the table reads them alike. Types are changed inside structs
/// and lists too; everything else is untouched.
pub fn file_batch(batch: RecordBatch) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| needs_change(f.data_type())) {
        return Ok(batch);
    }
    let target = file_schema(&schema);
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { arrow::compute::cast(c, f.data_type()) })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("writing time-of-day, duration, timestamp and wide decimal columns as the table holds them: {e}"))?;
    RecordBatch::try_new(target, columns).map_err(|e| e.to_string())
}

/// The schema [`file_batch`] gives batches of `schema`.
pub fn file_schema(schema: &arrow_schema::SchemaRef) -> arrow_schema::SchemaRef {
    if !schema.fields().iter().any(|f| needs_change(f.data_type())) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema.fields().iter().map(|f| delta_field(f)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn needs_change(t: &DataType) -> bool {
    match t {
        DataType::Time32(_) | DataType::Time64(_) | DataType::Duration(_) | DataType::Decimal256(_, _) => true,
        DataType::Timestamp(unit, _) => *unit != TimeUnit::Microsecond,
        DataType::Struct(fields) => fields.iter().any(|f| needs_change(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => needs_change(f.data_type()),
        _ => false,
    }
}

fn delta_field(f: &Field) -> Field {
    let t = match f.data_type() {
        DataType::Time32(_) => DataType::Int32,
        DataType::Time64(_) | DataType::Duration(_) => DataType::Int64,
        DataType::Decimal256(_, _) => DataType::Utf8,
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| delta_field(f)).collect()),
        DataType::List(inner) => DataType::List(Arc::new(delta_field(inner))),
        DataType::LargeList(inner) => DataType::LargeList(Arc::new(delta_field(inner))),
        DataType::Map(inner, sorted) => DataType::Map(Arc::new(delta_field(inner)), *sorted),
        other => other.clone(),
    };
    Field::new(f.name(), t, f.is_nullable()).with_metadata(f.metadata().clone())
}

/// The table schema of files with this Arrow schema.
pub fn kernel_schema(schema: &Schema) -> Result<KernelSchemaRef, String> {
    if schema.field_with_name(PARTITION_COLUMN).is_err() {
        return Err(format!("the rows have no {PARTITION_COLUMN} column to partition the table by"));
    }
    let fields: Vec<Field> = schema.fields().iter().map(|f| table_field(f)).collect();
    StructType::try_from_arrow(&Schema::new(fields)).map(Arc::new).map_err(|e| kernel_message(&e.to_string()))
}

/// The table schema with the partitioner's columns (strings: a directory's text) added where
/// the rows have no column of that name (the `flatten` layout has `after.prio` as `prio`). A
/// column of the rows with that name keeps its type if a directory's text is a Delta partition
/// value of it (a string, an integer, a boolean: the field partitioner writes their values as
/// Delta does); any other type is refused.
pub fn with_path_columns(schema: &KernelSchemaRef, columns: &[String]) -> Result<KernelSchemaRef, String> {
    use delta_kernel::schema::DataType as T;
    let mut fields: Vec<delta_kernel::schema::StructField> = schema.fields().cloned().collect();
    for c in columns {
        match schema.field(c) {
            None => fields.push(delta_kernel::schema::StructField::nullable(c.clone(), T::STRING)),
            Some(f) if [T::STRING, T::BYTE, T::SHORT, T::INTEGER, T::LONG, T::BOOLEAN].contains(f.data_type()) => {}
            Some(f) => {
                return Err(format!(
                    "the partition column {c} is also a column of the rows, of type {}: name the directory otherwise in output.path_format or output.partition_fields",
                    f.data_type()
                ))
            }
        }
    }
    StructType::try_new(fields).map(Arc::new).map_err(|e| kernel_message(&e.to_string()))
}

/// The kernel's message without the backtrace it may carry.
fn kernel_message(text: &str) -> String {
    let mut m = text.lines().next().unwrap_or(text);
    while let Some(rest) = m.strip_prefix("External error: ") {
        m = rest;
    }
    m.to_string()
}

/// The add actions of `files` in the shape `Transaction::add_files_schema` asks for (paths as
/// the log spells them), with their statistics (`numRecords` alone for a file without): one
/// batch per shape of statistics, since files of one commit can differ in schema.
pub fn add_files(files: &[&DataFile], staged: &[Staged]) -> Result<Vec<Box<dyn EngineData>>, delta_kernel::KernelError> {
    let stats: Vec<ArrayRef> = files.iter().map(|f| super::stats::of(f.stats.as_ref(), f.rows)).collect();
    let mut shapes: Vec<(DataType, Vec<usize>)> = Vec::new();
    for (i, s) in stats.iter().enumerate() {
        match shapes.iter_mut().find(|(t, _)| t == s.data_type()) {
            Some((_, members)) => members.push(i),
            None => shapes.push((s.data_type().clone(), vec![i])),
        }
    }
    shapes
        .into_iter()
        .map(|(_, members)| {
            let group: Vec<&DataFile> = members.iter().map(|i| files[*i]).collect();
            let parts: Vec<&dyn arrow::array::Array> = members.iter().map(|i| stats[*i].as_ref()).collect();
            add_batch(&group, staged, arrow::compute::concat(&parts)?)
        })
        .collect()
}

/// One batch of add actions whose statistics (one row per file) share a shape.
fn add_batch(files: &[&DataFile], staged: &[Staged], stats: ArrayRef) -> Result<Box<dyn EngineData>, delta_kernel::KernelError> {
    let partition_of = |path: &str| staged.iter().find(|s| s.files.iter().any(|f| f.path == path)).map(|s| s.partition);
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    let mut values = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for f in files {
        for (column, value) in &f.partition_values {
            values.keys().append_value(column);
            values.values().append_option(value.as_deref());
        }
        values.keys().append_value(PARTITION_COLUMN);
        match partition_of(&f.path) {
            Some(p) => values.values().append_value(p.to_string()),
            None => values.values().append_null(),
        }
        values.append(true)?;
    }
    let entries = DataType::Struct(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)].into());
    let schema = Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("partitionValues", DataType::Map(Arc::new(Field::new("key_value", entries, false)), false), false),
        Field::new("size", DataType::Int64, false),
        Field::new("modificationTime", DataType::Int64, false),
        Field::new("stats", stats.data_type().clone(), true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(files.iter().map(|f| super::paths::to_log(&f.path)))),
            Arc::new(values.finish()),
            Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.size as i64))),
            Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.modification_time))),
            stats,
        ],
    )?;
    Ok(Box::new(ArrowEngineData::new(batch)))
}
