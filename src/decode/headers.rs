//! The `__kafka_headers` column (`output.headers`): each record's Kafka headers, in order, as a
//! list of {key, value}; values stay bytes (headers have no schema), null for a null header.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, ListBuilder, StringBuilder, StructBuilder};
use arrow::datatypes::{DataType, Field, Fields};

pub const KAFKA_HEADERS: &str = "__kafka_headers";

/// One record's headers: (key, value).
pub type Headers = [(String, Option<Vec<u8>>)];

fn entry_fields() -> Fields {
    Fields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Binary, true)])
}

/// The column's field: `list<struct<key: utf8 not null, value: binary>>`, never null (a record
/// without headers has an empty list).
pub fn field() -> Field {
    Field::new(KAFKA_HEADERS, DataType::List(Arc::new(Field::new_list_field(DataType::Struct(entry_fields()), false))), false)
}

/// Builds the column row by row.
pub struct HeadersColumn {
    builder: ListBuilder<StructBuilder>,
    /// Headers of the record being decoded, taken by the next row (see `BatchDecoder::stage_headers`).
    staged: Vec<(String, Option<Vec<u8>>)>,
}

impl std::fmt::Debug for HeadersColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadersColumn").field("staged", &self.staged.len()).finish_non_exhaustive()
    }
}

impl Default for HeadersColumn {
    fn default() -> Self {
        let entries = StructBuilder::from_fields(entry_fields(), 0);
        let item = Field::new_list_field(DataType::Struct(entry_fields()), false);
        Self { builder: ListBuilder::new(entries).with_field(Arc::new(item)), staged: Vec::new() }
    }
}

impl HeadersColumn {
    pub fn stage(&mut self, headers: &Headers) {
        self.staged.clear();
        self.staged.extend_from_slice(headers);
    }

    /// Appends the staged headers as the next row (an empty list if none were staged).
    pub fn push_row(&mut self) {
        let entries = self.builder.values();
        for (key, value) in self.staged.drain(..) {
            if let Some(b) = entries.field_builder::<StringBuilder>(0) {
                b.append_value(key);
            }
            if let Some(b) = entries.field_builder::<BinaryBuilder>(1) {
                b.append_option(value);
            }
            entries.append(true);
        }
        self.builder.append(true);
    }

    pub fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}
