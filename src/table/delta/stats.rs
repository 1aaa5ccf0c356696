//! Per-file column statistics, as Spark writes them: `numRecords`, and `nullCount`, `minValues`
//! and `maxValues` of the first `delta.dataSkippingNumIndexedCols` (32) leaf columns (structs
//! descend; a list or a map is one leaf, with its null count only), strings cut to a 32-character
//! prefix (the maximum's with a tie-breaker), `tightBounds` true. Spark, Trino, DuckDB and
//! delta-rs skip files by them. They are gathered from the batches the encoder writes (the
//! default engine's `FileStatsAccumulator`, on the encoder's thread), never by reading a file.
//!
//! The Kafka partition is a partition column of every table: its value is in the add action, so
//! it takes no statistics and does not count against the 32.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use delta_kernel::engine::arrow_conversion::TryFromArrow as _;
use delta_kernel::expressions::ColumnName;
use delta_kernel::schema::StructType;
use delta_kernel_default_engine::stats::FileStatsAccumulator;

use super::types::table_field;
use crate::decode::envelope::KAFKA_PARTITION as PARTITION_COLUMN;

/// Spark's and the kernel's default `delta.dataSkippingNumIndexedCols`.
pub const INDEXED_COLUMNS: usize = 32;

struct Accumulated(FileStatsAccumulator);

impl crate::encode::FileStats for Accumulated {
    fn merge(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.0.merge(batch).map_err(|e| e.to_string())
    }

    fn finish(self: Box<Self>) -> Result<Option<ArrayRef>, String> {
        Ok(self.0.finish().map_err(|e| e.to_string())?.map(|s| Arc::new(s) as ArrayRef))
    }
}

/// The statistics a table's data file of `schema` gathers (`encode::Transform::stats`); `None`
/// when the schema has no Delta form (its rows are refused by the commit anyway).
pub fn file_stats(schema: &SchemaRef) -> Option<Box<dyn crate::encode::FileStats>> {
    let fields: Vec<Field> = schema.fields().iter().map(|f| table_field(f)).collect();
    let physical = StructType::try_from_arrow(&Schema::new(fields)).ok()?;
    let columns = indexed_columns(schema, INDEXED_COLUMNS);
    Some(Box::new(Accumulated(FileStatsAccumulator::new(&columns, &physical))))
}

/// The first `limit` leaf columns of `schema` in order, the Kafka partition left out.
fn indexed_columns(schema: &Schema, limit: usize) -> Vec<ColumnName> {
    fn walk(field: &Field, path: &mut Vec<String>, out: &mut Vec<ColumnName>, limit: usize) {
        if out.len() >= limit {
            return;
        }
        path.push(field.name().clone());
        match field.data_type() {
            DataType::Struct(children) => children.iter().for_each(|c| walk(c, path, out, limit)),
            _ => out.push(ColumnName::new(path.iter())),
        }
        path.pop();
    }
    let mut out = Vec::new();
    for f in schema.fields().iter().filter(|f| f.name() != PARTITION_COLUMN) {
        walk(f, &mut Vec::new(), &mut out, limit);
    }
    out
}

/// `numRecords` alone, for files without gathered statistics (a rewrite of files written before
/// statistics were, a batch the accumulator could not measure).
pub fn records_only(rows: u64) -> ArrayRef {
    let field = Arc::new(Field::new("numRecords", DataType::Int64, true));
    let values = Arc::new(arrow::array::Int64Array::from(vec![rows as i64])) as ArrayRef;
    Arc::new(StructArray::from(vec![(field, values)]))
}

/// A file's statistics, or `numRecords` alone when it has none.
pub fn of(stats: Option<&ArrayRef>, rows: u64) -> ArrayRef {
    stats.filter(|s| s.len() == 1).cloned().unwrap_or_else(|| records_only(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int32Array, Int64Array, StringArray};

    #[test]
    fn the_first_leaves_are_indexed_structs_descending_the_kafka_partition_left_out() {
        let after = Field::new("after", DataType::Struct(vec![Field::new("id", DataType::Utf8, true), Field::new("prio", DataType::Int32, true)].into()), true);
        let schema = Schema::new(vec![Field::new(PARTITION_COLUMN, DataType::Int32, false), Field::new("__kafka_offset", DataType::Int64, false), after]);
        let names: Vec<String> = indexed_columns(&schema, 32).iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["__kafka_offset", "after.id", "after.prio"]);
        let two: Vec<String> = indexed_columns(&schema, 2).iter().map(|c| c.to_string()).collect();
        assert_eq!(two, ["__kafka_offset", "after.id"], "the limit counts leaves");
    }

    #[test]
    fn a_files_statistics_span_every_batch() -> Result<(), Box<dyn std::error::Error>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new(PARTITION_COLUMN, DataType::Int32, false),
            Field::new("__kafka_offset", DataType::Int64, false),
            Field::new("title", DataType::Utf8, true),
        ]));
        let batch = |offsets: Vec<i64>, titles: Vec<Option<&str>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![0; offsets.len()])), Arc::new(Int64Array::from(offsets)), Arc::new(StringArray::from(titles))])
        };
        let mut stats = file_stats(&schema).ok_or("no statistics for a plain schema")?;
        stats.merge(&batch(vec![10, 11], vec![Some("b"), None])?)?;
        stats.merge(&batch(vec![12, 13], vec![Some("a"), Some("c")])?)?;
        let out = stats.finish()?.ok_or("no statistics")?;
        let out = out.as_struct();
        let get = |group: &str, column: &str| -> Option<ArrayRef> { out.column_by_name(group)?.as_struct().column_by_name(column).cloned() };
        assert_eq!(out.column_by_name("numRecords").map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().value(0)), Some(4));
        let offsets = |g: &str| get(g, "__kafka_offset").map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().value(0));
        assert_eq!((offsets("minValues"), offsets("maxValues")), (Some(10), Some(13)), "offsets' bounds");
        let title = |g: &str| get(g, "title").map(|c| c.as_string::<i32>().value(0).to_string());
        assert_eq!((title("minValues"), title("maxValues")), (Some("a".into()), Some("c".into())), "titles' bounds");
        assert_eq!(get("nullCount", "title").map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().value(0)), Some(1), "null titles");
        assert!(get("minValues", PARTITION_COLUMN).is_none(), "the Kafka partition takes no statistics");
        Ok(())
    }
}
