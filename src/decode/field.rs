//! Reads one field of an Avro body without decoding the rest: for the field and time
//! partitioners, which need a value (`after.status`, `source.ts_ms`) before the row is decoded
//! into its file. The writer schema is compiled once per schema id into a small tree
//! (`datum`); reading walks the fields before the wanted one by their encoding.

use super::datum::{Cursor, Node, Tree};
pub use super::datum::TimeUnit;

/// A scalar read from a body. Times carry their unit so the caller can make milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Null,
    Bool(bool),
    Long(i64, TimeUnit),
    Double(f64),
    Str(&'a str),
}

/// One compiled field path, e.g. `after.status`, in one writer schema.
#[derive(Debug)]
pub struct FieldReader {
    tree: std::sync::Arc<Tree>,
    /// Per path segment: the position of the field in its record.
    steps: Vec<usize>,
    /// For a path starting at `after`: the same path through `before`, read when `after` is
    /// null (a delete), so a deleted row goes where its last state went.
    before: Option<Box<FieldReader>>,
}

impl FieldReader {
    /// Compiles `path` (dot-separated field names from the value record) against the writer
    /// schema. The leaf must be a scalar: boolean, int, long, float, double, string or enum,
    /// optionally in a union with null.
    pub fn compile(schema: &str, path: &str) -> Result<Self, String> {
        let tree = std::sync::Arc::new(Tree::parse(schema)?);
        Self::compile_in(tree, path)
    }

    fn compile_in(tree: std::sync::Arc<Tree>, path: &str) -> Result<Self, String> {
        let mut steps = Vec::new();
        let mut node = 0;
        for segment in path.split('.') {
            let Node::Record(fields) = &tree.nodes[non_null(&tree, node)] else {
                return Err(format!("{path:?}: {segment:?} is not inside a record"));
            };
            let i = fields
                .iter()
                .position(|(n, _)| n == segment)
                .ok_or_else(|| format!("{path:?}: no field {segment:?} in the writer schema"))?;
            steps.push(i);
            node = fields[i].1;
        }
        match &tree.nodes[non_null(&tree, node)] {
            Node::Boolean | Node::Int | Node::Long(_) | Node::Float | Node::Double | Node::Str | Node::Uuid | Node::Enum(_) | Node::Null => {}
            other => return Err(format!("{path:?}: a {} cannot name a directory", kind(other))),
        }
        let before = match path.strip_prefix("after.") {
            Some(rest) if root_has(&tree, "before") => Some(Box::new(Self::compile_in(tree.clone(), &format!("before.{rest}"))?)),
            _ => None,
        };
        Ok(Self { tree, steps, before })
    }

    /// The field's value in `body`; `Null` when it or a record on the way is null.
    pub fn read<'a>(&'a self, body: &'a [u8]) -> Result<FieldValue<'a>, String> {
        match self.read_path(body)? {
            // `after` itself was null: the walk stopped entering it, at step 1
            (FieldValue::Null, 1) if self.before.is_some() => self.before.as_ref().map_or(Ok(FieldValue::Null), |b| b.read(body)),
            (v, _) => Ok(v),
        }
    }

    /// The value, and at which step a null ended the walk (`steps.len()` when it did not).
    fn read_path<'a>(&'a self, body: &'a [u8]) -> Result<(FieldValue<'a>, usize), String> {
        let mut r = Cursor::new(body);
        let nodes = &self.tree.nodes;
        let mut node = 0;
        for (depth, &i) in self.steps.iter().enumerate() {
            node = r.branch(nodes, node)?;
            let Node::Record(fields) = &nodes[node] else {
                return Ok((FieldValue::Null, depth)); // the null branch of a union
            };
            for (_, before) in &fields[..i] {
                r.skip(&self.tree, *before, 0)?;
            }
            node = fields[i].1;
        }
        node = r.branch(nodes, node)?;
        Ok((scalar(&mut r, &nodes[node])?, self.steps.len()))
    }
}

fn root_has(tree: &Tree, field: &str) -> bool {
    matches!(&tree.nodes[0], Node::Record(f) if f.iter().any(|(n, _)| n == field))
}

/// The non-null branch of a `[null, T]` union, else the node itself.
fn non_null(tree: &Tree, node: usize) -> usize {
    match &tree.nodes[node] {
        Node::Union(b) => b.iter().copied().find(|&i| !matches!(tree.nodes[i], Node::Null)).unwrap_or(node),
        _ => node,
    }
}

fn kind(n: &Node) -> &'static str {
    match n {
        Node::Bytes | Node::Fixed(_) | Node::Decimal { .. } => "bytes field",
        Node::Array(_) => "array",
        Node::Map(_) => "map",
        Node::Union(_) => "union of several types",
        Node::Record(_) => "record",
        _ => "field of this type",
    }
}

/// The scalar at the cursor, of a node the path was compiled to.
fn scalar<'a>(r: &mut Cursor<'a>, n: &'a Node) -> Result<FieldValue<'a>, String> {
    Ok(match n {
        Node::Null => FieldValue::Null,
        Node::Boolean => FieldValue::Bool(r.take(1)?[0] != 0),
        Node::Int => FieldValue::Long(r.long()?, TimeUnit::Plain),
        Node::Long(unit) => FieldValue::Long(r.long()?, *unit),
        Node::Float => FieldValue::Double(f64::from(f32::from_le_bytes(r.take(4)?.try_into().map_err(|_| "float")?))),
        Node::Double => FieldValue::Double(f64::from_le_bytes(r.take(8)?.try_into().map_err(|_| "double")?)),
        Node::Str | Node::Uuid => FieldValue::Str(r.str()?),
        Node::Enum(symbols) => FieldValue::Str(r.symbol(symbols)?),
        other => return Err(format!("a {} where a scalar was compiled", kind(other))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::{Record, Value};

    const SCHEMA: &str = r#"{"type":"record","name":"Envelope","namespace":"t","fields":[
        {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
            {"name":"id","type":"long"},
            {"name":"tags","type":{"type":"array","items":"string"}},
            {"name":"attrs","type":{"type":"map","values":"double"}},
            {"name":"status","type":["null","string"]},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
            {"name":"digest","type":{"type":"fixed","name":"Digest","size":2}}]}]},
        {"name":"after","type":["null","Value"]},
        {"name":"source","type":{"type":"record","name":"Source","fields":[
            {"name":"ts_ms","type":"long"},
            {"name":"ts_us","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}]}]}},
        {"name":"op","type":"string"},
        {"name":"ts_ms","type":["null","long"]}]}"#;

    fn row(id: i64, status: Option<&str>) -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            ("tags".into(), Value::Array(vec![Value::String("x".into()), Value::String("yz".into())])),
            ("attrs".into(), Value::Map([("a".to_string(), Value::Double(1.5))].into())),
            ("status".into(), Value::Union(u32::from(status.is_some()), Box::new(status.map_or(Value::Null, |s| Value::String(s.into()))))),
            ("kind".into(), Value::Enum(1, "B".into())),
            ("digest".into(), Value::Fixed(2, vec![1, 2])),
        ])
    }

    fn body(before: Option<Value>, after: Option<Value>) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        crate::testkit::events::allow_debezium_names();
        let schema = apache_avro::Schema::parse_str(SCHEMA)?;
        let mut r = Record::new(&schema).ok_or("not a record schema")?;
        let opt = |v: Option<Value>| Value::Union(u32::from(v.is_some()), Box::new(v.unwrap_or(Value::Null)));
        r.put("before", opt(before));
        r.put("after", opt(after));
        r.put(
            "source",
            Value::Record(vec![
                ("ts_ms".into(), Value::Long(1_700_000_000_123)),
                ("ts_us".into(), Value::Union(1, Box::new(Value::Long(7)))),
            ]),
        );
        r.put("op", Value::String("u".into()));
        r.put("ts_ms", Value::Union(1, Box::new(Value::Long(42))));
        Ok(apache_avro::to_avro_datum(&schema, r)?)
    }

    #[test]
    fn reads_fields_past_arrays_maps_unions_and_nested_records() -> Result<(), Box<dyn std::error::Error>> {
        let update = body(Some(row(1, Some("todo"))), Some(row(1, Some("done"))))?;
        let read = |path: &str, b: &[u8]| -> Result<String, String> { Ok(format!("{:?}", FieldReader::compile(SCHEMA, path)?.read(b)?)) };
        assert_eq!(read("after.status", &update)?, r#"Str("done")"#);
        assert_eq!(read("before.status", &update)?, r#"Str("todo")"#);
        assert_eq!(read("after.kind", &update)?, r#"Str("B")"#);
        assert_eq!(read("source.ts_ms", &update)?, "Long(1700000000123, Plain)");
        assert_eq!(read("source.ts_us", &update)?, "Long(7, Micros)");
        assert_eq!(read("ts_ms", &update)?, "Long(42, Plain)");
        assert_eq!(read("op", &update)?, r#"Str("u")"#);
        let delete = body(Some(row(2, Some("todo"))), None)?;
        assert_eq!(read("after.status", &delete)?, r#"Str("todo")"#, "a delete reads the row's last state");
        let null_status = body(None, Some(row(3, None)))?;
        assert_eq!(read("after.status", &null_status)?, "Null");
        assert!(read("after.status", &update[..update.len() / 2]).is_err_and(|e| e.contains("ends")), "a cut body is an error");
        Ok(())
    }

    #[test]
    fn paths_that_cannot_name_a_directory_are_refused() {
        for (path, says) in [
            ("after.nope", "no field"),
            ("after.tags", "array"),
            ("after.digest", "bytes"),
            ("op.x", "not inside a record"),
            ("after", "record"),
        ] {
            let e = FieldReader::compile(SCHEMA, path).err().unwrap_or_default();
            assert!(e.contains(says), "{path}: {e:?} should say {says:?}");
        }
    }
}
