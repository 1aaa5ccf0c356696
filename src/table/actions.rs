//! What a commit hands the kernel: the table schema from our files' Arrow schema, the columns a
//! new schema version adds, and the add actions of the files.

use std::sync::Arc;

use arrow::array::builder::{MapBuilder, MapFieldNames, StringBuilder};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use delta_kernel::engine::arrow_conversion::TryFromArrow as _;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::schema::{SchemaRef as KernelSchemaRef, StructField, StructType};
use delta_kernel::EngineData;

use super::{DataFile, Staged};

/// The table's partition column: every row's Kafka partition. The data files keep the column
/// too (same values), so a reader of the files alone sees what a reader of the table does.
pub const PARTITION_COLUMN: &str = crate::decode::envelope::KAFKA_PARTITION;

/// The table schema of files with this Arrow schema.
pub fn kernel_schema(schema: &Schema) -> Result<KernelSchemaRef, String> {
    if schema.field_with_name(PARTITION_COLUMN).is_err() {
        return Err(format!("the rows have no {PARTITION_COLUMN} column to partition the table by"));
    }
    StructType::try_from_arrow(schema).map(Arc::new).map_err(|e| e.to_string())
}

/// Top-level columns of `files` the table lacks, nullable (rows written before have none). A
/// column the table has with another type is refused: Delta's type widening is not used, and
/// a reader would misread the older files.
pub fn merged_schema<'a>(table: &StructType, files: impl Iterator<Item = &'a DataFile>) -> Result<Vec<StructField>, String> {
    let mut added: Vec<StructField> = Vec::new();
    for f in files {
        let theirs = kernel_schema(&f.schema)?;
        for field in theirs.fields() {
            match table.field(field.name()) {
                Some(ours) if ours.data_type() == field.data_type() => {}
                Some(ours) => {
                    return Err(format!(
                        "column {} is {} in the table and {} in file {}",
                        field.name(),
                        ours.data_type(),
                        field.data_type(),
                        f.path
                    ))
                }
                None if added.iter().any(|a| a.name() == field.name()) => {}
                None => added.push(StructField::nullable(field.name().clone(), field.data_type().clone())),
            }
        }
    }
    Ok(added)
}

/// The add actions of `files` in the shape `Transaction::add_files_schema` asks for, with
/// `numRecords` as their statistics.
pub fn add_files(files: &[&DataFile], staged: &[Staged]) -> Result<Box<dyn EngineData>, delta_kernel::KernelError> {
    let partition_of = |path: &str| staged.iter().find(|s| s.files.iter().any(|f| f.path == path)).map(|s| s.partition);
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    let mut values = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for f in files {
        values.keys().append_value(PARTITION_COLUMN);
        match partition_of(&f.path) {
            Some(p) => values.values().append_value(p.to_string()),
            None => values.values().append_null(),
        }
        values.append(true)?;
    }
    let stats_fields = Fields::from(vec![Field::new("numRecords", DataType::Int64, true)]);
    let stats = StructArray::try_new(
        stats_fields.clone(),
        vec![Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.rows as i64))) as ArrayRef],
        None,
    )?;
    let entries = DataType::Struct(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)].into());
    let schema = Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("partitionValues", DataType::Map(Arc::new(Field::new("key_value", entries, false)), false), false),
        Field::new("size", DataType::Int64, false),
        Field::new("modificationTime", DataType::Int64, false),
        Field::new("stats", DataType::Struct(stats_fields), true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.path.as_str()))),
            Arc::new(values.finish()),
            Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.size as i64))),
            Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.modification_time))),
            Arc::new(stats),
        ],
    )?;
    Ok(Box::new(ArrowEngineData::new(batch)))
}
