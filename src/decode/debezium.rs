//! Debezium / Kafka Connect semantic types → natural Arrow types.
//!
//! Debezium carries its semantic types only as `connect.name` on the Avro schema (an
//! `io.debezium.time.Date` is a plain `int`). arrow-avro keeps that attribute as Arrow field
//! metadata, so the decoded arrays are re-typed here, recursively through structs and lists.
//! Every conversion is lossless; docs/debezium-types.md's table lists them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, ListArray, StringBuilder, StructArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use arrow_schema::extension::Json;

use super::text::{decimal_text_into, zoned_micros_column};
use super::DecodeError;

pub const CONNECT_NAME: &str = "connect.name";

/// The `connect.name` of a field (arrow-avro stores attribute values as JSON text).
pub fn connect_name(field: &Field) -> Option<&str> {
    field.metadata().get(CONNECT_NAME).map(|v| v.trim_matches('"'))
}

/// Re-types one column and its children; fields without Debezium types come back unchanged.
pub fn retype(field: &FieldRef, array: &ArrayRef) -> Result<(FieldRef, ArrayRef), DecodeError> {
    let bad = |e: arrow::error::ArrowError| DecodeError::Batch(format!("column {}: {e}", field.name()));
    let to = |dt: DataType, array: ArrayRef| -> (FieldRef, ArrayRef) {
        (Arc::new(Field::new(field.name(), dt, field.is_nullable()).with_metadata(field.metadata().clone())), array)
    };
    let target = match connect_name(field) {
        Some("io.debezium.time.Date") => Some(DataType::Date32),
        Some("io.debezium.time.Time") => Some(DataType::Time32(TimeUnit::Millisecond)),
        Some("io.debezium.time.MicroTime") => Some(DataType::Time64(TimeUnit::Microsecond)),
        Some("io.debezium.time.NanoTime") => Some(DataType::Time64(TimeUnit::Nanosecond)),
        Some("io.debezium.time.Timestamp") => Some(DataType::Timestamp(TimeUnit::Millisecond, None)),
        Some("io.debezium.time.MicroTimestamp") => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        Some("io.debezium.time.NanoTimestamp") => Some(DataType::Timestamp(TimeUnit::Nanosecond, None)),
        Some("io.debezium.time.ZonedTimestamp") => Some(DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))),
        Some("io.debezium.time.MicroDuration") => Some(DataType::Duration(TimeUnit::Microsecond)),
        // Connect's int8/int16 travel as Avro int; their values always fit.
        _ => match field.metadata().get("connect.type").map(|v| v.trim_matches('"')) {
            Some("int16") => Some(DataType::Int16),
            Some("int8") => Some(DataType::Int8),
            _ => None,
        },
    };
    if let Some(dt) = target {
        if array.data_type() == &dt {
            return Ok((field.clone(), array.clone()));
        }
        // Debezium's own ISO form parsed directly; anything else through arrow's parser.
        if let (Some(strings), DataType::Timestamp(TimeUnit::Microsecond, Some(tz))) = (array.as_string_opt::<i32>(), &dt) {
            if let Some(micros) = zoned_micros_column(strings) {
                return Ok(to(dt.clone(), Arc::new(micros.with_timezone(tz.clone()))));
            }
        }
        return Ok(to(dt.clone(), cast(array, &dt).map_err(bad)?));
    }
    match (connect_name(field), array.data_type()) {
        (Some("io.debezium.data.Json"), DataType::Utf8) => {
            let f = Field::new(field.name(), DataType::Utf8, field.is_nullable())
                .with_metadata(field.metadata().clone())
                .with_extension_type(Json::default());
            Ok((Arc::new(f), array.clone()))
        }
        (Some("io.debezium.data.VariableScaleDecimal"), DataType::Struct(_)) => {
            Ok(to(DataType::Utf8, Arc::new(variable_scale_decimals(array.as_struct())?)))
        }
        (_, DataType::Struct(_)) => {
            let s = array.as_struct();
            let mut fields = Vec::with_capacity(s.num_columns());
            let mut columns = Vec::with_capacity(s.num_columns());
            for (f, c) in s.fields().iter().zip(s.columns()) {
                let (f, c) = retype(f, c)?;
                fields.push(f);
                columns.push(c);
            }
            let fields = Fields::from(fields);
            let out = StructArray::try_new(fields.clone(), columns, s.nulls().cloned()).map_err(bad)?;
            Ok(to(DataType::Struct(fields), Arc::new(out)))
        }
        (_, DataType::List(item)) => {
            let l = array.as_list::<i32>();
            let (item, values) = retype(item, l.values())?;
            let out = ListArray::try_new(item.clone(), l.offsets().clone(), values, l.nulls().cloned()).map_err(bad)?;
            Ok(to(DataType::List(item), Arc::new(out)))
        }
        _ => Ok((field.clone(), array.clone())),
    }
}

/// `VariableScaleDecimal {scale, value}` (PostgreSQL `numeric` without precision) as the exact
/// decimal text, e.g. `{5, 314159}` → `"3.14159"`: no float, no lost digits at any size.
fn variable_scale_decimals(s: &StructArray) -> Result<arrow::array::StringArray, DecodeError> {
    let bad = |what: &str| DecodeError::Batch(format!("VariableScaleDecimal: {what}"));
    let scale = s.column_by_name("scale").ok_or_else(|| bad("no scale field"))?;
    let scale = scale.as_primitive_opt::<arrow::datatypes::Int32Type>().ok_or_else(|| bad("scale is not an int"))?;
    let value = s.column_by_name("value").ok_or_else(|| bad("no value field"))?;
    let value: &BinaryArray = value.as_binary_opt::<i32>().ok_or_else(|| bad("value is not bytes"))?;
    let mut out = StringBuilder::with_capacity(s.len(), s.len() * 8);
    let mut text = String::with_capacity(48);
    for i in 0..s.len() {
        if s.is_null(i) || scale.is_null(i) || value.is_null(i) {
            out.append_null();
        } else {
            text.clear();
            decimal_text_into(&mut text, value.value(i), scale.value(i));
            out.append_value(&text);
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use std::collections::HashMap;

    fn with_name(name: &str, dt: DataType) -> FieldRef {
        Arc::new(Field::new("c", dt, true).with_metadata(HashMap::from([(CONNECT_NAME.to_string(), format!("\"{name}\""))])))
    }

    #[test]
    fn temporal_types_become_arrow_temporal_types() -> Result<(), Box<dyn std::error::Error>> {
        let date = retype(&with_name("io.debezium.time.Date", DataType::Int32), &(Arc::new(Int32Array::from(vec![20468])) as ArrayRef))?;
        assert_eq!(date.0.data_type(), &DataType::Date32);
        assert_eq!(date.1.as_primitive::<arrow::datatypes::Date32Type>().value(0), 20468);
        let ts = retype(
            &with_name("io.debezium.time.MicroTimestamp", DataType::Int64),
            &(Arc::new(Int64Array::from(vec![1_795_476_182_766_172])) as ArrayRef),
        )?;
        assert_eq!(ts.0.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, None));
        let zoned = retype(
            &with_name("io.debezium.time.ZonedTimestamp", DataType::Utf8),
            &(Arc::new(StringArray::from(vec![Some("2026-11-23T23:23:02.766172Z"), None])) as ArrayRef),
        )?;
        assert_eq!(zoned.0.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())));
        let z = zoned.1.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!((z.value(0), z.is_null(1)), (1_795_476_182_766_172, true));
        let t = retype(
            &with_name("io.debezium.time.MicroTime", DataType::Int64),
            &(Arc::new(Int64Array::from(vec![34_200_123_456])) as ArrayRef),
        )?;
        assert_eq!(t.0.data_type(), &DataType::Time64(TimeUnit::Microsecond));
        Ok(())
    }

    #[test]
    fn json_gets_the_json_extension_and_plain_fields_stay() -> Result<(), Box<dyn std::error::Error>> {
        let json = retype(&with_name("io.debezium.data.Json", DataType::Utf8), &(Arc::new(StringArray::from(vec!["{}"])) as ArrayRef))?;
        assert!(json.0.has_valid_extension_type::<Json>(), "no JSON extension on {:?}", json.0);
        let plain: FieldRef = Arc::new(Field::new("p", DataType::Int32, true));
        let arr: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        let same = retype(&plain, &arr)?;
        assert_eq!(same.0, plain);
        Ok(())
    }
}
