//! Debezium's placeholder for unchanged TOASTed columns. When PostgreSQL does not send a large
//! value that an UPDATE left unchanged (replica identity other than FULL), Debezium writes
//! `__debezium_unavailable_value` in its place. That text is not data: the sink nulls it in the
//! row image and names the column in `__unavailable_columns`, so no reader mistakes it for a value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListBuilder, StringArray, StringBuilder, StructArray};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::nullif;
use arrow::datatypes::{DataType, Field, FieldRef, Fields};

use super::DecodeError;

pub const PLACEHOLDER: &str = "__debezium_unavailable_value";
pub const UNAVAILABLE: &str = "__unavailable_columns";

/// Where a column holds the placeholder (text, JSON, bytea, or an array of text whose only item
/// is the placeholder). `None` for column types Debezium never marks.
fn placeholder_mask(column: &ArrayRef) -> Result<Option<BooleanArray>, DecodeError> {
    let bad = |e: arrow::error::ArrowError| DecodeError::Batch(format!("{UNAVAILABLE}: {e}"));
    // Most batches hold no placeholder: values of its length are rare, and offsets say so
    // without touching a byte.
    let len = PLACEHOLDER.len() as i32;
    let has_len = |offsets: &[i32]| offsets.windows(2).any(|w| w[1] - w[0] == len);
    let maybe = match column.data_type() {
        DataType::Utf8 => has_len(column.as_string::<i32>().value_offsets()),
        DataType::Binary => has_len(column.as_binary::<i32>().value_offsets()),
        DataType::List(item) if item.data_type() == &DataType::Utf8 => {
            has_len(column.as_list::<i32>().values().as_string::<i32>().value_offsets())
        }
        _ => return Ok(None),
    };
    if !maybe {
        return Ok(Some(BooleanArray::new(arrow::buffer::BooleanBuffer::new_unset(column.len()), None)));
    }
    let mask = match column.data_type() {
        DataType::Utf8 => {
            let hits = eq(column, &StringArray::new_scalar(PLACEHOLDER)).map_err(bad)?;
            BooleanArray::from_iter(hits.iter().map(|v| Some(v.unwrap_or(false))))
        }
        DataType::Binary => {
            let b = column.as_binary::<i32>();
            BooleanArray::from_iter((0..b.len()).map(|i| Some(b.is_valid(i) && b.value(i) == PLACEHOLDER.as_bytes())))
        }
        DataType::List(item) if item.data_type() == &DataType::Utf8 => {
            let l = column.as_list::<i32>();
            let items = l.values().as_string::<i32>();
            BooleanArray::from_iter((0..l.len()).map(|i| {
                let (start, end) = (l.value_offsets()[i] as usize, l.value_offsets()[i + 1] as usize);
                Some(l.is_valid(i) && end == start + 1 && items.is_valid(start) && items.value(start) == PLACEHOLDER)
            }))
        }
        _ => return Ok(None),
    };
    Ok(Some(mask))
}

/// The row image with placeholders nulled (its children made nullable, so every file of a
/// schema has the same columns) and, per row, the names of the nulled columns (null: none).
pub fn mask_image(field: &FieldRef, image: &StructArray) -> Result<(FieldRef, ArrayRef, ArrayRef), DecodeError> {
    let bad = |e: arrow::error::ArrowError| DecodeError::Batch(format!("{UNAVAILABLE}: {e}"));
    let mut names: Vec<Vec<&str>> = vec![Vec::new(); image.len()];
    let mut fields = Vec::with_capacity(image.num_columns());
    let mut columns = Vec::with_capacity(image.num_columns());
    for (f, c) in image.fields().iter().zip(image.columns()) {
        match placeholder_mask(c)? {
            Some(mask) => {
                let c = if mask.true_count() > 0 {
                    for (i, hit) in mask.iter().enumerate() {
                        if hit == Some(true) {
                            names[i].push(f.name());
                        }
                    }
                    nullif(c, &mask).map_err(bad)?
                } else {
                    c.clone()
                };
                fields.push(Arc::new(f.as_ref().clone().with_nullable(true)));
                columns.push(c);
            }
            None => {
                fields.push(f.clone());
                columns.push(c.clone());
            }
        }
    }
    let fields = Fields::from(fields);
    let masked = StructArray::try_new(fields.clone(), columns, image.nulls().cloned()).map_err(bad)?;
    let out_field =
        Arc::new(Field::new(field.name(), DataType::Struct(fields), field.is_nullable()).with_metadata(field.metadata().clone()));
    let mut list = ListBuilder::new(StringBuilder::new());
    for row in names {
        if row.is_empty() {
            list.append(false);
        } else {
            for n in row {
                list.values().append_value(n);
            }
            list.append(true);
        }
    }
    Ok((out_field, Arc::new(masked), Arc::new(list.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Int32Array};

    #[test]
    fn placeholders_become_nulls_and_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let fields = Fields::from(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("title", DataType::Utf8, false),
            Field::new("blob", DataType::Binary, true),
        ]);
        let image = StructArray::try_new(
            fields.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["a", PLACEHOLDER, PLACEHOLDER])),
                Arc::new(BinaryArray::from(vec![Some(b"x".as_ref()), None, Some(PLACEHOLDER.as_bytes())])),
            ],
            None,
        )?;
        let field: FieldRef = Arc::new(Field::new("after", DataType::Struct(fields), true));
        let (f, masked, names) = mask_image(&field, &image)?;
        let masked = masked.as_struct();
        let title = masked.column_by_name("title").ok_or("no title")?.as_string::<i32>();
        assert_eq!((title.is_null(0), title.is_null(1), title.is_null(2)), (false, true, true));
        assert_eq!(title.value(0), "a");
        let blob = masked.column_by_name("blob").ok_or("no blob")?.as_binary::<i32>();
        assert_eq!((blob.is_null(0), blob.is_null(2)), (false, true));
        let names = names.as_list::<i32>();
        assert!(names.is_null(0), "row 0 has nothing unavailable");
        let row = |i: usize| -> Vec<String> { names.value(i).as_string::<i32>().iter().flatten().map(String::from).collect() };
        assert_eq!(row(1), vec!["title".to_string()]);
        assert_eq!(row(2), vec!["title".to_string(), "blob".to_string()]);
        let DataType::Struct(out) = f.data_type() else { return Err("not a struct".into()) };
        assert!(out.iter().find(|x| x.name() == "title").is_some_and(|x| x.is_nullable()), "title must become nullable");
        assert!(out.iter().find(|x| x.name() == "id").is_some_and(|x| !x.is_nullable()), "id keeps its nullability");
        Ok(())
    }
}
