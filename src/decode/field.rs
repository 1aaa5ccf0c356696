//! Reads one field of an Avro body without decoding the rest: for the field and time
//! partitioners, which need a value (`after.status`, `source.ts_ms`) before the row is decoded
//! into its file. The writer schema is compiled once per schema id into a small tree; reading
//! skips the fields before the wanted one by their encoding.

use serde_json::Value as Json;

/// A scalar read from a body. Times carry their unit so the caller can make milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Null,
    Bool(bool),
    Long(i64, TimeUnit),
    Double(f64),
    Str(&'a str),
}

/// The unit of a long, from its logical type or Debezium's `connect.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Not a timestamp type; Debezium's `ts_ms` fields are plain longs in milliseconds.
    Plain,
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long(TimeUnit),
    Float,
    Double,
    Bytes,
    Str,
    Fixed(usize),
    Enum(Vec<String>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Vec<(String, usize)>),
    /// A named type being parsed (recursive reference).
    Pending,
}

/// A compiled writer schema: the nodes, the root at 0.
#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn parse(schema: &str) -> Result<Self, String> {
        let json: Json = serde_json::from_str(schema).map_err(|e| format!("writer schema is not JSON: {e}"))?;
        let mut t = Tree { nodes: Vec::new() };
        let mut names = std::collections::HashMap::new();
        t.node(&json, "", &mut names)?;
        Ok(t)
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn node(&mut self, j: &Json, ns: &str, names: &mut std::collections::HashMap<String, usize>) -> Result<usize, String> {
        match j {
            Json::String(s) => self.named_or_primitive(s, None, ns, names),
            Json::Array(branches) => {
                let at = self.push(Node::Pending);
                let b = branches.iter().map(|b| self.node(b, ns, names)).collect::<Result<Vec<_>, _>>()?;
                self.nodes[at] = Node::Union(b);
                Ok(at)
            }
            Json::Object(o) => {
                let ty = o.get("type").ok_or("a schema object without \"type\"")?;
                let ty = match ty {
                    Json::String(s) => s.as_str(),
                    nested => return self.node(nested, ns, names),
                };
                let full_name = |o: &serde_json::Map<String, Json>| -> (String, String) {
                    let name = o.get("name").and_then(Json::as_str).unwrap_or_default();
                    let space = o.get("namespace").and_then(Json::as_str).unwrap_or(ns);
                    match name.rsplit_once('.') {
                        Some((space, _)) => (name.to_string(), space.to_string()),
                        None if space.is_empty() => (name.to_string(), String::new()),
                        None => (format!("{space}.{name}"), space.to_string()),
                    }
                };
                match ty {
                    "record" | "error" => {
                        let (name, space) = full_name(o);
                        let at = self.push(Node::Pending);
                        names.insert(name, at);
                        let fields = o.get("fields").and_then(Json::as_array).ok_or("a record without \"fields\"")?;
                        let mut out = Vec::with_capacity(fields.len());
                        for f in fields {
                            let fname = f.get("name").and_then(Json::as_str).ok_or("a field without \"name\"")?;
                            let fty = f.get("type").ok_or("a field without \"type\"")?;
                            out.push((fname.to_string(), self.node(fty, &space, names)?));
                        }
                        self.nodes[at] = Node::Record(out);
                        Ok(at)
                    }
                    "enum" => {
                        let (name, _) = full_name(o);
                        let symbols = o.get("symbols").and_then(Json::as_array).ok_or("an enum without \"symbols\"")?;
                        let at = self.push(Node::Enum(symbols.iter().filter_map(Json::as_str).map(str::to_string).collect()));
                        names.insert(name, at);
                        Ok(at)
                    }
                    "fixed" => {
                        let (name, _) = full_name(o);
                        let size = o.get("size").and_then(Json::as_u64).ok_or("a fixed without \"size\"")?;
                        let at = self.push(Node::Fixed(size as usize));
                        names.insert(name, at);
                        Ok(at)
                    }
                    "array" => {
                        let at = self.push(Node::Pending);
                        let items = self.node(o.get("items").ok_or("an array without \"items\"")?, ns, names)?;
                        self.nodes[at] = Node::Array(items);
                        Ok(at)
                    }
                    "map" => {
                        let at = self.push(Node::Pending);
                        let values = self.node(o.get("values").ok_or("a map without \"values\"")?, ns, names)?;
                        self.nodes[at] = Node::Map(values);
                        Ok(at)
                    }
                    other => self.named_or_primitive(other, Some(o), ns, names),
                }
            }
            other => Err(format!("not a schema: {other}")),
        }
    }

    fn named_or_primitive(
        &mut self,
        ty: &str,
        attrs: Option<&serde_json::Map<String, Json>>,
        ns: &str,
        names: &std::collections::HashMap<String, usize>,
    ) -> Result<usize, String> {
        let attr = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Json::as_str).unwrap_or_default();
        let node = match ty {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long(match (attr("logicalType"), attr("connect.name")) {
                ("timestamp-millis" | "local-timestamp-millis", _) | (_, "io.debezium.time.Timestamp") => TimeUnit::Millis,
                ("timestamp-micros" | "local-timestamp-micros", _) | (_, "io.debezium.time.MicroTimestamp") => TimeUnit::Micros,
                ("timestamp-nanos" | "local-timestamp-nanos", _) | (_, "io.debezium.time.NanoTimestamp") => TimeUnit::Nanos,
                _ => TimeUnit::Plain,
            }),
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::Str,
            name => {
                let full = if name.contains('.') || ns.is_empty() { name.to_string() } else { format!("{ns}.{name}") };
                return names.get(&full).or_else(|| names.get(name)).copied().ok_or_else(|| format!("unknown type {name:?}"));
            }
        };
        Ok(self.push(node))
    }
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
            Node::Boolean | Node::Int | Node::Long(_) | Node::Float | Node::Double | Node::Str | Node::Enum(_) | Node::Null => {}
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
        let mut r = Cursor { buf: body, pos: 0 };
        let nodes = &self.tree.nodes;
        let mut node = 0;
        for (depth, &i) in self.steps.iter().enumerate() {
            node = r.branch(nodes, node)?;
            let Node::Record(fields) = &nodes[node] else {
                return Ok((FieldValue::Null, depth)); // the null branch of a union
            };
            for (_, before) in &fields[..i] {
                r.skip(nodes, *before)?;
            }
            node = fields[i].1;
        }
        node = r.branch(nodes, node)?;
        Ok((r.scalar(&nodes[node])?, self.steps.len()))
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
        Node::Bytes | Node::Fixed(_) => "bytes field",
        Node::Array(_) => "array",
        Node::Map(_) => "map",
        Node::Union(_) => "union of several types",
        Node::Record(_) => "record",
        _ => "field of this type",
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("the body ends inside a field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.long()?).map_err(|_| "a negative length".to_string())
    }

    /// Through a union to its branch in the body; other nodes are returned as they are.
    fn branch(&mut self, nodes: &[Node], node: usize) -> Result<usize, String> {
        match &nodes[node] {
            Node::Union(b) => {
                let i = self.len()?;
                b.get(i).copied().ok_or_else(|| format!("union branch {i} out of range"))
            }
            _ => Ok(node),
        }
    }

    fn scalar(&mut self, n: &'a Node) -> Result<FieldValue<'a>, String> {
        Ok(match n {
            Node::Null => FieldValue::Null,
            Node::Boolean => FieldValue::Bool(self.take(1)?[0] != 0),
            Node::Int => FieldValue::Long(self.long()?, TimeUnit::Plain),
            Node::Long(unit) => FieldValue::Long(self.long()?, *unit),
            Node::Float => FieldValue::Double(f64::from(f32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "float")?))),
            Node::Double => FieldValue::Double(f64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "double")?)),
            Node::Str => {
                let n = self.len()?;
                FieldValue::Str(std::str::from_utf8(self.take(n)?).map_err(|e| format!("a string that is not UTF-8: {e}"))?)
            }
            Node::Enum(symbols) => {
                let i = self.len()?;
                FieldValue::Str(symbols.get(i).map(String::as_str).ok_or_else(|| format!("enum index {i} out of range"))?)
            }
            other => return Err(format!("a {} where a scalar was compiled", kind(other))),
        })
    }

    fn skip(&mut self, nodes: &[Node], node: usize) -> Result<(), String> {
        match &nodes[node] {
            Node::Null | Node::Pending => {}
            Node::Boolean => drop(self.take(1)?),
            Node::Int | Node::Long(_) | Node::Enum(_) => drop(self.long()?),
            Node::Float => drop(self.take(4)?),
            Node::Double => drop(self.take(8)?),
            Node::Bytes | Node::Str => {
                let n = self.len()?;
                self.take(n)?;
            }
            Node::Fixed(n) => drop(self.take(*n)?),
            Node::Union(_) => {
                let b = self.branch(nodes, node)?;
                self.skip(nodes, b)?;
            }
            Node::Record(fields) => {
                for (_, f) in fields {
                    self.skip(nodes, *f)?;
                }
            }
            Node::Array(items) | Node::Map(items) => loop {
                let count = self.long()?;
                if count == 0 {
                    break;
                }
                if count < 0 {
                    let bytes = self.len()?; // a block with its byte size: skip it whole
                    self.take(bytes)?;
                    continue;
                }
                for _ in 0..count {
                    if matches!(nodes[node], Node::Map(_)) {
                        let n = self.len()?;
                        self.take(n)?;
                    }
                    self.skip(nodes, *items)?;
                }
            },
        }
        Ok(())
    }
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
