//! The table's protocol: which features a table we write needs, and which ones a table we are
//! given holds that this sink cannot keep.
//!
//! A feature a column needs (`timestampNtz` for a timestamp without zone, `typeWidening` for a
//! widened type) must be in the protocol of every metaData that has the column, not only the
//! first: the kernel derives them when it creates the table, and [`require`] derives them for
//! each schema change we write. A legacy protocol (no feature lists) is raised to table features
//! (reader 3, writer 7) with the features its versions implied, as Spark does when a feature is
//! added to such a table.
//!
//! [`unkept`] names the first feature of a table whose rules our writes (appends, compaction's
//! rewrites) would break: deletion vectors (a rewrite would bring back the rows they delete),
//! column mapping (our files name columns by their logical names), row tracking and the
//! Iceberg compatibility features (rewrites must carry row ids and statistics we do not keep),
//! generated and identity columns, constraints and invariants (values we would have to compute
//! or check), and any feature this sink does not know. Change data feed is kept: our commits
//! only add files and compaction's swap carries `dataChange = false`, which the protocol says
//! needs no change data files.

use delta_kernel::schema::{DataType, PrimitiveType, StructType};
use serde_json::Value;

/// Reader features whose tables we read and write as they ask.
/// The feature a table of current rows keeps (see [`unkept`]).
const DELETION_VECTORS: &str = "deletionVectors";

const KEPT_READER: &[&str] = &["columnMapping", "timestampNtz", "typeWidening", "typeWidening-preview", "v2Checkpoint", "vacuumProtocolCheck"];
/// Writer features whose rules our appends and rewrites keep (some only while unused: see
/// [`unkept`]).
const KEPT_WRITER: &[&str] = &[
    "appendOnly",
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "generatedColumns",
    "identityColumns",
    "columnMapping",
    "timestampNtz",
    "typeWidening",
    "typeWidening-preview",
    "domainMetadata",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "inCommitTimestamp",
];

const TIMESTAMP_NTZ: &str = "timestampNtz";
pub const TYPE_WIDENING: &str = "typeWidening";

/// The features a legacy protocol's versions imply (PROTOCOL.md, "Table Features").
fn implied(version: i64, reader: bool) -> Vec<&'static str> {
    let by_version: &[(i64, &[&'static str])] = if reader {
        &[(2, &["columnMapping"])]
    } else {
        &[(2, &["appendOnly", "invariants"]), (3, &["checkConstraints"]), (4, &["changeDataFeed", "generatedColumns"]), (5, &["columnMapping"]), (6, &["identityColumns"])]
    };
    by_version.iter().filter(|(v, _)| version >= *v).flat_map(|(_, f)| f.iter().copied()).collect()
}

fn listed(protocol: &Value, key: &str) -> Option<Vec<String>> {
    protocol[key].as_array().map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
}

/// The features a protocol holds: its lists, or what its versions imply.
fn held(protocol: &Value, reader: bool) -> Vec<String> {
    let (key, version) = if reader { ("readerFeatures", "minReaderVersion") } else { ("writerFeatures", "minWriterVersion") };
    listed(protocol, key).unwrap_or_else(|| implied(protocol[version].as_i64().unwrap_or(1), reader).into_iter().map(str::to_string).collect())
}

/// Adds to `protocol` (as the log spells it) the features `schema` needs, `typeWidening` too
/// when `widens`; whether it changed.
pub fn require(protocol: &mut Value, schema: &StructType, widens: bool) -> bool {
    let mut needed = Vec::new();
    if uses_ntz(schema) {
        needed.push(TIMESTAMP_NTZ);
    }
    if widens {
        needed.push(TYPE_WIDENING);
    }
    let (mut reader, mut writer) = (held(protocol, true), held(protocol, false));
    let missing = |list: &[String]| needed.iter().any(|n| !list.iter().any(|f| f == n));
    let legacy = listed(protocol, "writerFeatures").is_none();
    if !missing(&reader) && !missing(&writer) {
        return false;
    }
    for list in [&mut reader, &mut writer] {
        for n in &needed {
            if !list.iter().any(|f| f == n) {
                list.push(n.to_string());
            }
        }
    }
    if legacy {
        protocol["minReaderVersion"] = 3.into();
        protocol["minWriterVersion"] = 7.into();
    }
    protocol["readerFeatures"] = reader.into();
    protocol["writerFeatures"] = writer.into();
    true
}

/// The first feature of the table (its protocol and metaData as the log spells them) that
/// this sink cannot keep, with why; `None` when it keeps them all.
pub fn unkept(protocol: &Value, metadata: &Value, deletion_vectors: bool) -> Option<String> {
    let reader = held(protocol, true);
    let writer = held(protocol, false);
    // A table of current rows keeps deletion vectors: its commits write them and its
    // compaction leaves the rows they mark out.
    let kept = |f: &String| deletion_vectors && f == DELETION_VECTORS;
    if let Some(f) = reader.iter().find(|f| !KEPT_READER.contains(&f.as_str()) && !kept(f)) {
        return Some(format!("reader feature {f}"));
    }
    if let Some(f) = writer.iter().find(|f| !KEPT_WRITER.contains(&f.as_str()) && !kept(f)) {
        return Some(format!("writer feature {f}"));
    }
    let config = &metadata["configuration"];
    if let Some(mode) = config["delta.columnMapping.mode"].as_str().filter(|m| *m != "none") {
        return Some(format!("columnMapping (delta.columnMapping.mode = {mode})"));
    }
    if let Some(key) = config.as_object().and_then(|c| c.keys().find(|k| k.starts_with("delta.constraints."))) {
        return Some(format!("checkConstraints ({key})"));
    }
    let schema: Value = metadata["schemaString"].as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null);
    for (key, feature) in [("delta.generationExpression", "generatedColumns"), ("delta.identity.start", "identityColumns"), ("delta.invariants", "invariants")] {
        if let Some(column) = field_with(&schema, key) {
            return Some(format!("{feature} (column {column})"));
        }
    }
    None
}

/// The first field (at any depth) of a schema as the log spells it whose metadata has `key`.
fn field_with(schema: &Value, key: &str) -> Option<String> {
    let fields = schema["fields"].as_array()?;
    for f in fields {
        let name = f["name"].as_str().unwrap_or_default();
        if f["metadata"].get(key).is_some() {
            return Some(name.to_string());
        }
        let mut inner = &f["type"];
        while inner.is_object() && inner.get("fields").is_none() {
            inner = if inner.get("elementType").is_some() { &inner["elementType"] } else { &inner["valueType"] };
        }
        if let Some(nested) = field_with(inner, key) {
            return Some(format!("{name}.{nested}"));
        }
    }
    None
}

fn uses_ntz(schema: &StructType) -> bool {
    schema.fields().any(|f| type_uses_ntz(f.data_type()))
}

fn type_uses_ntz(t: &DataType) -> bool {
    match t {
        DataType::Primitive(PrimitiveType::TimestampNtz) => true,
        DataType::Struct(s) => uses_ntz(s),
        DataType::Array(a) => type_uses_ntz(a.element_type()),
        DataType::Map(m) => type_uses_ntz(m.key_type()) || type_uses_ntz(m.value_type()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_kernel::schema::StructField;
    use serde_json::json;

    fn with_ntz() -> Result<StructType, delta_kernel::KernelError> {
        StructType::try_new([StructField::nullable("id", DataType::LONG), StructField::nullable("at", DataType::TIMESTAMP_NTZ)])
    }

    #[test]
    fn a_timestamp_without_zone_adds_its_feature_to_table_features() -> Result<(), delta_kernel::KernelError> {
        let mut p = json!({ "minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": [], "writerFeatures": ["appendOnly"] });
        assert!(require(&mut p, &with_ntz()?, false), "the protocol should change");
        assert_eq!(p["readerFeatures"], json!(["timestampNtz"]));
        assert_eq!(p["writerFeatures"], json!(["appendOnly", "timestampNtz"]));
        assert!(!require(&mut p, &with_ntz()?, false), "a second time nothing changes");
        Ok(())
    }

    #[test]
    fn a_legacy_protocol_is_raised_to_table_features_with_what_its_versions_implied() -> Result<(), delta_kernel::KernelError> {
        let mut p = json!({ "minReaderVersion": 1, "minWriterVersion": 2 });
        assert!(require(&mut p, &with_ntz()?, true));
        assert_eq!(
            p,
            json!({ "minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["timestampNtz", "typeWidening"],
                    "writerFeatures": ["appendOnly", "invariants", "timestampNtz", "typeWidening"] })
        );
        let plain = StructType::try_new([StructField::nullable("id", DataType::LONG)])?;
        let mut q = json!({ "minReaderVersion": 1, "minWriterVersion": 2 });
        assert!(!require(&mut q, &plain, false), "a schema that needs nothing leaves a legacy protocol as it is: {q}");
        Ok(())
    }

    #[test]
    fn features_the_sink_cannot_keep_are_named() {
        let meta = |config: Value, schema: Value| json!({ "configuration": config, "schemaString": schema.to_string() });
        let plain = json!({ "type": "struct", "fields": [{ "name": "id", "type": "long", "nullable": true, "metadata": {} }] });
        let features = |r: Value, w: Value| json!({ "minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": r, "writerFeatures": w });
        let cases = [
            (features(json!(["deletionVectors"]), json!(["deletionVectors"])), meta(json!({}), plain.clone()), Some("reader feature deletionVectors")),
            (features(json!([]), json!(["rowTracking", "domainMetadata"])), meta(json!({}), plain.clone()), Some("writer feature rowTracking")),
            (features(json!(["columnMapping"]), json!(["columnMapping"])), meta(json!({ "delta.columnMapping.mode": "name" }), plain.clone()), Some("columnMapping (delta.columnMapping.mode = name)")),
            (json!({ "minReaderVersion": 1, "minWriterVersion": 3 }), meta(json!({ "delta.constraints.positive": "id > 0" }), plain.clone()), Some("checkConstraints (delta.constraints.positive)")),
            (
                json!({ "minReaderVersion": 1, "minWriterVersion": 4 }),
                meta(json!({}), json!({ "type": "struct", "fields": [{ "name": "after", "type": { "type": "struct", "fields": [{ "name": "total", "type": "long", "nullable": true, "metadata": { "delta.generationExpression": "1" } }] }, "nullable": true, "metadata": {} }] })),
                Some("generatedColumns (column after.total)"),
            ),
            (features(json!(["timestampNtz"]), json!(["appendOnly", "changeDataFeed", "timestampNtz"])), meta(json!({ "delta.enableChangeDataFeed": "true" }), plain.clone()), None),
            (json!({ "minReaderVersion": 1, "minWriterVersion": 2 }), meta(json!({}), plain), None),
        ];
        for (protocol, metadata, expected) in cases {
            assert_eq!(unkept(&protocol, &metadata, false).as_deref(), expected, "protocol {protocol}, metaData {metadata}");
        }
    }
}
