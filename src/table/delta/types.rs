//! The types a Delta table declares for the columns of our files.

use std::sync::Arc;

use arrow_schema::{DataType, Field};

/// A column of our files as the table declares it: the same type, with timestamps in UTC
/// spelled as Delta knows them (the files hold UTC instants whatever the Arrow zone name says)
/// and without Arrow's field metadata (extension names are Arrow's, not Delta's).
pub(super) fn table_field(f: &Field) -> Field {
    Field::new(f.name(), table_type(f.data_type()), f.is_nullable())
}

fn table_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("UTC".into())),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| table_field(f)).collect()),
        DataType::List(f) => DataType::List(Arc::new(table_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(table_field(f))),
        DataType::Map(f, sorted) => DataType::Map(Arc::new(table_field(f)), *sorted),
        other => other.clone(),
    }
}
