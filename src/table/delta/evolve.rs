//! Schema changes of a table: the table's schema is evolved to hold the rows of the files a
//! commit names. Columns they add (at any depth inside structs) join it nullable; a column the
//! table declares NOT NULL that they lack or leave null becomes nullable; an integer, float or
//! decimal column they widen (Debezium's `int` → `bigint`) is widened the way Delta's type
//! widening says (the `typeWidening` table feature, the change recorded in the field's
//! `delta.typeChanges`), so readers read older files' values as the wider type. Anything else
//! (a column that changes kind, a narrowing) cannot be expressed and is refused, naming the
//! column.
//!
//! The kernel cannot widen a type (0.30 has no such schema operation), so a change is written
//! as a log version of its own: the kernel's protocol and metadata actions of the latest
//! snapshot, with the new schema (and the feature when a type widens), put if absent like any
//! commit. It carries no txn, so the exactly-once argument is untouched: the data commit that
//! needed it follows in the next version.

use delta_kernel::schema::{ArrayType, DataType, MapType, MetadataValue, PrimitiveType, StructField, StructType};
use delta_kernel::snapshot::SnapshotRef;
use object_store::{PutMode, PutOptions};

use super::{actions, features, DataFile, DeltaTable, TableError, ENGINE_INFO};

/// The field metadata key of Delta's type widening.
const TYPE_CHANGES: &str = "delta.typeChanges";

/// What the table's schema becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Evolution {
    pub schema: StructType,
    /// One line per change, for the log (`added after.category`, `widened after.streak: integer
    /// → long`, `nullable before.small`).
    pub changes: Vec<String>,
    /// Whether a type widens (the protocol then needs the `typeWidening` feature).
    pub widens: bool,
}

impl Evolution {
    /// This change, then `next` (made on top of this one's schema).
    pub fn then(mut self, next: Evolution) -> Evolution {
        self.changes.extend(next.changes);
        Evolution { schema: next.schema, changes: self.changes, widens: self.widens || next.widens }
    }
}

/// The table's schema evolved to hold rows of `files`, or `None` when it holds them as it is.
/// A type widens only with `widening` (`table.type_widening`); else the change is refused.
pub fn evolve<'a>(table: &StructType, files: impl Iterator<Item = &'a DataFile>, widening: bool) -> Result<Option<Evolution>, String> {
    let mut schema = table.clone();
    let mut changes = Vec::new();
    let mut widens = false;
    for f in files {
        let theirs = actions::kernel_schema(&f.schema)?;
        let mut change = Change { lines: &mut changes, widens: &mut widens, allowed: widening };
        schema = merge_struct(&schema, &theirs, "", &mut change).map_err(|e| format!("{e} (file {})", f.path))?;
    }
    Ok((schema != *table).then_some(Evolution { schema, changes, widens }))
}

struct Change<'a> {
    lines: &'a mut Vec<String>,
    widens: &'a mut bool,
    /// `table.type_widening`.
    allowed: bool,
}

impl Change<'_> {
    /// A widening of `column` from `from` to `to`, when the config allows one.
    fn widen(&mut self, column: &str, from: &PrimitiveType, to: &PrimitiveType, older: bool) -> Result<(), String> {
        let (from, to) = (type_name(from)?, type_name(to)?);
        if !self.allowed {
            let whose = if older { "rows of an older version hold" } else { "the rows widen it to" };
            return Err(format!(
                "column {column} is {} in the table and {whose} {}: set table.type_widening = true to widen it by Delta's type widening (its readers must support the typeWidening feature; deltalake/delta-rs 1.6 does not), or write this topic to a new table",
                if older { &to } else { &from },
                if older { &from } else { &to }
            ));
        }
        self.lines.push(format!("widened {column}: {from} → {to}{}", if older { " (older rows)" } else { "" }));
        *self.widens = true;
        Ok(())
    }
}

fn merge_struct(ours: &StructType, theirs: &StructType, path: &str, change: &mut Change<'_>) -> Result<StructType, String> {
    let name = |n: &str| if path.is_empty() { n.to_string() } else { format!("{path}.{n}") };
    let mut fields = Vec::new();
    for o in ours.fields() {
        let column = name(o.name());
        match theirs.field(o.name()) {
            Some(t) => fields.push(merge_field(o, t, &column, change)?),
            // Rows of these files have no value there: a NOT NULL column must allow null.
            None if !o.is_nullable() => {
                change.lines.push(format!("nullable {column}"));
                fields.push(StructField::new(o.name().clone(), o.data_type().clone(), true).with_metadata(o.metadata().clone()));
            }
            None => fields.push(o.clone()),
        }
    }
    for t in theirs.fields().filter(|t| ours.field(t.name()).is_none()) {
        change.lines.push(format!("added {}", name(t.name())));
        fields.push(StructField::nullable(t.name().clone(), t.data_type().clone()));
    }
    StructType::try_new(fields).map_err(|e| e.to_string())
}

fn merge_field(o: &StructField, t: &StructField, column: &str, change: &mut Change<'_>) -> Result<StructField, String> {
    let nullable = o.is_nullable() || t.is_nullable();
    if nullable != o.is_nullable() {
        change.lines.push(format!("nullable {column}"));
    }
    let mut metadata = o.metadata().clone();
    let data_type = match (o.data_type(), t.data_type()) {
        (DataType::Struct(a), DataType::Struct(b)) => DataType::from(merge_struct(a, b, column, change)?),
        (DataType::Array(a), DataType::Array(b)) => {
            let element = merge_nested(a.element_type(), b.element_type(), &format!("{column}.element"), change)?;
            DataType::from(ArrayType::new(element, a.contains_null() || b.contains_null()))
        }
        (DataType::Map(a), DataType::Map(b)) if a.key_type() == b.key_type() => {
            let value = merge_nested(a.value_type(), b.value_type(), &format!("{column}.value"), change)?;
            DataType::from(MapType::new(a.key_type().clone(), value, a.value_contains_null() || b.value_contains_null()))
        }
        (a, b) if a == b => a.clone(),
        (DataType::Primitive(a), DataType::Primitive(b)) if widens(a, b) => {
            change.widen(column, a, b, false)?;
            record(&mut metadata, a, b)?;
            t.data_type().clone()
        }
        // Files of an older version in a column widened since: readers widen their values, as
        // long as the change is recorded (a table that had the wider type from the start gets
        // it recorded now).
        (DataType::Primitive(a), DataType::Primitive(b)) if widens(b, a) => {
            if !recorded(&metadata, b, a)? {
                change.widen(column, b, a, true)?;
                record(&mut metadata, b, a)?;
            }
            o.data_type().clone()
        }
        (a, b) => return Err(format!("column {column} is {a} in the table and {b} in the rows: Delta cannot change a column's type that way")),
    };
    Ok(StructField::new(o.name().clone(), data_type, nullable).with_metadata(metadata))
}

/// The element of a list or the value of a map: structs inside merge as above; a type there
/// is not widened (the change would need a field path), so it must stay the same.
fn merge_nested(a: &DataType, b: &DataType, column: &str, change: &mut Change<'_>) -> Result<DataType, String> {
    match (a, b) {
        (DataType::Struct(x), DataType::Struct(y)) => Ok(DataType::from(merge_struct(x, y, column, change)?)),
        (x, y) if x == y => Ok(x.clone()),
        (x, y) => Err(format!("{column} is {x} in the table and {y} in the rows: a type inside a list or map cannot change")),
    }
}

/// Whether Delta's type widening takes `from` to `to`: a wider integer, float to double,
/// a decimal with at least as many digits on each side of the point.
fn widens(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    use PrimitiveType::*;
    let rank = |t: &PrimitiveType| match t {
        Byte => Some(1),
        Short => Some(2),
        Integer => Some(3),
        Long => Some(4),
        _ => None,
    };
    match (from, to) {
        (Decimal(a), Decimal(b)) => {
            b.scale() >= a.scale() && b.precision() >= a.precision() && b.precision() - b.scale() >= a.precision() - a.scale() && a != b
        }
        (Float, Double) => true,
        (a, b) => matches!((rank(a), rank(b)), (Some(x), Some(y)) if x < y),
    }
}

fn type_name(t: &PrimitiveType) -> Result<String, String> {
    match serde_json::to_value(t).map_err(|e| e.to_string())? {
        serde_json::Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

fn changes_of(metadata: &std::collections::HashMap<String, MetadataValue>) -> Vec<serde_json::Value> {
    match metadata.get(TYPE_CHANGES) {
        Some(MetadataValue::Other(serde_json::Value::Array(a))) => a.clone(),
        _ => Vec::new(),
    }
}

fn recorded(metadata: &std::collections::HashMap<String, MetadataValue>, from: &PrimitiveType, to: &PrimitiveType) -> Result<bool, String> {
    let (from, to) = (type_name(from)?, type_name(to)?);
    Ok(changes_of(metadata).iter().any(|c| c["fromType"] == from.as_str() && c["toType"] == to.as_str()))
}

fn record(metadata: &mut std::collections::HashMap<String, MetadataValue>, from: &PrimitiveType, to: &PrimitiveType) -> Result<(), String> {
    let mut all = changes_of(metadata);
    all.push(serde_json::json!({ "fromType": type_name(from)?, "toType": type_name(to)? }));
    metadata.insert(TYPE_CHANGES.to_string(), MetadataValue::Other(serde_json::Value::Array(all)));
    Ok(())
}

impl DeltaTable {
    /// Writes `evolution` as the version after `snapshot`: `Ok(true)` when it is written,
    /// `Ok(false)` when another writer took the version (read the log and look again).
    pub(super) fn change_schema(&mut self, snapshot: &SnapshotRef, evolution: &Evolution) -> Result<bool, TableError> {
        let schema_err = |reason: String| TableError::Schema { table: self.root.to_string(), reason };
        let config = snapshot.table_configuration();
        let mut protocol = serde_json::to_value(config.protocol()).map_err(|e| schema_err(e.to_string()))?;
        let mut metadata = serde_json::to_value(config.metadata()).map_err(|e| schema_err(e.to_string()))?;
        if protocol["writerFeatures"].as_array().is_some_and(|w| w.iter().any(|f| f == "inCommitTimestamp")) {
            return Err(schema_err("the table uses in-commit timestamps, which this sink does not write; its schema cannot change here".into()));
        }
        // The features the new schema needs join the protocol: this version's metaData must be
        // one its protocol allows, or every reader (and the kernel) refuses the table from here on.
        features::require(&mut protocol, &evolution.schema, evolution.widens);
        if evolution.widens {
            metadata["configuration"]["delta.enableTypeWidening"] = "true".into();
        }
        metadata["schemaString"] = serde_json::to_string(&evolution.schema).map_err(|e| schema_err(e.to_string()))?.into();
        let commit_info = serde_json::json!({
            "timestamp": crate::health::now_ms(),
            "operation": "CHANGE COLUMN",
            "operationParameters": { "changes": evolution.changes.join("; ") },
            "engineInfo": ENGINE_INFO,
            "txnId": uuid::Uuid::new_v4().to_string(),
        });
        let body = [serde_json::json!({ "commitInfo": commit_info }), serde_json::json!({ "protocol": protocol }), serde_json::json!({ "metaData": metadata })]
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let version = snapshot.version() + 1;
        let key = object_store::path::Path::from(format!("{}/_delta_log/{version:020}.json", self.root_key()?));
        let put = self.store.put_opts(&key, bytes::Bytes::from(body).into(), PutOptions::from(PutMode::Create));
        match tokio::runtime::Handle::current().block_on(put) {
            Ok(_) => {
                tracing::info!(table = %self.root, version, changes = %evolution.changes.join("; "), "the table's schema changed");
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err(e.into())),
        }
    }
}
