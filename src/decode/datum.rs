//! A writer schema compiled once into a small tree, and a walk over an Avro body by it.
//!
//! Two users: the field and time partitioners read one field of a body before it is decoded
//! (`field`), and every body is checked by [`DatumCheck`] before the decoder sees it, so a
//! corrupt record is refused whole, before it can leave half a row in the decoder's builders
//! (issue 20: no replay of the open file for one bad record). The check refuses what arrow-avro
//! would refuse while decoding or when building the batch: a body that ends inside a field or
//! has bytes after the record, a varint too long, a negative length, a union branch or enum
//! index out of range, a string or map key that is not UTF-8 (the batch's string arrays would
//! refuse it), a `uuid` string that does not parse, a decimal too wide for its Arrow type.
//! It allocates nothing per record.

use serde_json::Value as Json;

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
pub(super) enum Node {
    Null,
    Boolean,
    Int,
    Long(TimeUnit),
    Float,
    Double,
    Bytes,
    Str,
    /// A string of logical type `uuid`: arrow-avro parses it into 16 bytes.
    Uuid,
    /// A decimal (logical type on bytes, or on a fixed of `fixed` bytes) held in `width` bytes
    /// by Arrow (16: Decimal128, 32: Decimal256).
    Decimal { width: usize, fixed: Option<usize> },
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
pub(super) struct Tree {
    pub(super) nodes: Vec<Node>,
    /// Per node: whether its encoding can take no bytes at all (null, an empty record), which
    /// bounds how many items an array block may claim.
    empty: Vec<bool>,
}

/// Nesting deeper than this is refused rather than walked (a recursive schema and a hostile
/// body could otherwise exhaust the stack).
const MAX_DEPTH: usize = 512;
/// Items of a block whose items take no bytes: more than this is refused.
const MAX_EMPTY_ITEMS: u64 = 1 << 20;

impl Tree {
    pub(super) fn parse(schema: &str) -> Result<Self, String> {
        let json: Json = serde_json::from_str(schema).map_err(|e| format!("writer schema is not JSON: {e}"))?;
        let mut t = Tree { nodes: Vec::new(), empty: Vec::new() };
        let mut names = std::collections::HashMap::new();
        t.node(&json, "", &mut names)?;
        t.empty = t.may_be_empty();
        Ok(t)
    }

    /// The least fixed point: a node is empty when its encoding needs no byte.
    fn may_be_empty(&self) -> Vec<bool> {
        let mut empty = vec![false; self.nodes.len()];
        loop {
            let mut changed = false;
            for (i, n) in self.nodes.iter().enumerate() {
                let e = match n {
                    Node::Null => true,
                    Node::Fixed(0) | Node::Decimal { fixed: Some(0), .. } => true,
                    Node::Record(fields) => fields.iter().all(|(_, f)| empty[*f]),
                    _ => false,
                };
                if e && !empty[i] {
                    empty[i] = true;
                    changed = true;
                }
            }
            if !changed {
                return empty;
            }
        }
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
                        let size = o.get("size").and_then(Json::as_u64).ok_or("a fixed without \"size\"")? as usize;
                        let node = match decimal_width(o) {
                            Some(width) => Node::Decimal { width, fixed: Some(size) },
                            None => Node::Fixed(size),
                        };
                        let at = self.push(node);
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
            "bytes" => match attrs.and_then(decimal_width) {
                Some(width) => Node::Decimal { width, fixed: None },
                None => Node::Bytes,
            },
            "string" if attr("logicalType") == "uuid" => Node::Uuid,
            "string" => Node::Str,
            name => {
                let full = if name.contains('.') || ns.is_empty() { name.to_string() } else { format!("{ns}.{name}") };
                return names.get(&full).or_else(|| names.get(name)).copied().ok_or_else(|| format!("unknown type {name:?}"));
            }
        };
        Ok(self.push(node))
    }
}

/// The bytes Arrow holds a decimal in, as arrow-avro picks its type from the precision.
fn decimal_width(o: &serde_json::Map<String, Json>) -> Option<usize> {
    if o.get("logicalType").and_then(Json::as_str) != Some("decimal") {
        return None;
    }
    let precision = o.get("precision").and_then(Json::as_u64)?;
    Some(if precision <= u64::from(arrow::datatypes::DECIMAL128_MAX_PRECISION) { 16 } else { 32 })
}

/// Checks that a body is one whole datum of a writer schema (see the module's documentation).
/// Cheap to clone: the tree is shared.
#[derive(Debug, Clone)]
pub struct DatumCheck {
    tree: std::sync::Arc<Tree>,
}

impl DatumCheck {
    pub fn compile(writer_schema: &str) -> Result<Self, String> {
        Ok(Self { tree: std::sync::Arc::new(Tree::parse(writer_schema)?) })
    }

    /// `Err` says why the body is not a datum of the schema.
    pub fn check(&self, body: &[u8]) -> Result<(), String> {
        let mut c = Cursor::new(body);
        c.skip(&self.tree, 0, 0)?;
        match body.len() - c.pos {
            0 => Ok(()),
            n => Err(format!("{n} trailing bytes after the record")),
        }
    }
}

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("the body ends inside a field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A varint as arrow-avro reads one: at most 10 bytes, the tenth 0 or 1.
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.take(1)?[0];
            if i == 9 && b > 1 {
                return Err("a varint past 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    pub(super) fn long(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// An int: its varint must fit 32 bits.
    fn int(&mut self) -> Result<i32, String> {
        let v = u32::try_from(self.varint()?).map_err(|_| "an int varint past 32 bits".to_string())?;
        Ok((v >> 1) as i32 ^ -((v & 1) as i32))
    }

    pub(super) fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.long()?).map_err(|_| "a negative length".to_string())
    }

    pub(super) fn str(&mut self) -> Result<&'a str, String> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| format!("a string that is not UTF-8: {e}"))
    }

    /// Through a union to its branch in the body; other nodes are returned as they are.
    pub(super) fn branch(&mut self, nodes: &[Node], node: usize) -> Result<usize, String> {
        match &nodes[node] {
            Node::Union(b) => {
                let i = self.long()?;
                usize::try_from(i).ok().and_then(|i| b.get(i)).copied().ok_or_else(|| format!("union branch {i} out of range"))
            }
            _ => Ok(node),
        }
    }

    /// An enum's index, in range.
    pub(super) fn symbol<'s>(&mut self, symbols: &'s [String]) -> Result<&'s str, String> {
        let i = self.int()?;
        usize::try_from(i).ok().and_then(|i| symbols.get(i)).map(String::as_str).ok_or_else(|| format!("enum index {i} out of range"))
    }

    /// Walks one datum of `node`, checking it.
    pub(super) fn skip(&mut self, tree: &Tree, node: usize, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("a datum nested deeper than {MAX_DEPTH} levels"));
        }
        match &tree.nodes[node] {
            Node::Null | Node::Pending => {}
            Node::Boolean => drop(self.take(1)?),
            Node::Int => drop(self.int()?),
            Node::Long(_) => drop(self.long()?),
            Node::Enum(symbols) => drop(self.symbol(symbols)?),
            Node::Float => drop(self.take(4)?),
            Node::Double => drop(self.take(8)?),
            Node::Bytes => {
                let n = self.len()?;
                self.take(n)?;
            }
            Node::Str => drop(self.str()?),
            Node::Uuid => {
                let s = self.str()?;
                uuid::Uuid::try_parse(s).map_err(|e| format!("a uuid that does not parse: {e}"))?;
            }
            Node::Decimal { width, fixed } => {
                let raw = match fixed {
                    Some(n) => self.take(*n)?,
                    None => {
                        let n = self.len()?;
                        self.take(n)?
                    }
                };
                if !fits(raw, *width) {
                    return Err(format!("a decimal of {} bytes does not fit {width}", raw.len()));
                }
            }
            Node::Fixed(n) => drop(self.take(*n)?),
            Node::Union(_) => {
                let b = self.branch(&tree.nodes, node)?;
                self.skip(tree, b, depth + 1)?;
            }
            Node::Record(fields) => {
                for (_, f) in fields {
                    self.skip(tree, *f, depth + 1)?;
                }
            }
            Node::Array(items) | Node::Map(items) => {
                let map = matches!(tree.nodes[node], Node::Map(_));
                loop {
                    let count = self.long()?;
                    if count == 0 {
                        break;
                    }
                    if count < 0 {
                        self.len()?; // the block's size in bytes; its items are walked all the same
                    }
                    let n = count.unsigned_abs();
                    let bounded = if map || !tree.empty[*items] { n <= self.remaining() as u64 } else { n <= MAX_EMPTY_ITEMS };
                    if !bounded {
                        return Err(format!("a block of {n} items in {} bytes", self.remaining()));
                    }
                    for _ in 0..n {
                        if map {
                            self.str()?;
                        }
                        self.skip(tree, *items, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a big-endian two's-complement integer fits `width` bytes: any bytes past the width
/// are sign extension (arrow-avro's rule).
fn fits(raw: &[u8], width: usize) -> bool {
    if raw.len() <= width {
        return true;
    }
    let extra = raw.len() - width;
    let sign = if raw[0] & 0x80 == 0 { 0x00 } else { 0xff };
    raw[..extra].iter().all(|&b| b == sign) && (raw[extra] ^ sign) & 0x80 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    type R = Result<(), Box<dyn std::error::Error>>;

    const SCHEMA: &str = r#"{"type":"record","name":"Row","namespace":"t","fields":[
        {"name":"id","type":"long"},
        {"name":"n","type":"int"},
        {"name":"name","type":["null","string"]},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"double"}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
        {"name":"ref","type":{"type":"string","logicalType":"uuid"}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
        {"name":"digest","type":{"type":"fixed","name":"Digest","size":2}},
        {"name":"next","type":["null","Row"]}]}"#;

    fn row(id: i64, next: Option<Value>) -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            ("n".into(), Value::Int(-7)),
            ("name".into(), Value::Union(1, Box::new(Value::String("ünï".into())))),
            ("tags".into(), Value::Array(vec![Value::String("x".into()), Value::String("yz".into())])),
            ("attrs".into(), Value::Map([("a".to_string(), Value::Double(1.5))].into())),
            ("kind".into(), Value::Enum(1, "B".into())),
            ("ref".into(), Value::String("67e55044-10b1-426f-9247-bb680e5fe0c8".into())),
            ("price".into(), Value::Bytes(vec![0x01, 0x00])),
            ("digest".into(), Value::Fixed(2, vec![1, 2])),
            ("next".into(), Value::Union(u32::from(next.is_some()), Box::new(next.unwrap_or(Value::Null)))),
        ])
    }

    fn encode(v: Value) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        // apache-avro writes logical uuid and decimal only from their own values: a plain
        // schema of the same encoding writes the bytes.
        let plain = SCHEMA
            .replace(r#"{"type":"string","logicalType":"uuid"}"#, r#""string""#)
            .replace(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#, r#""bytes""#);
        crate::testkit::events::allow_debezium_names();
        let schema = apache_avro::Schema::parse_str(&plain)?;
        Ok(apache_avro::to_avro_datum(&schema, v)?)
    }

    #[test]
    fn a_whole_datum_passes_and_every_cut_of_it_is_refused() -> R {
        let check = DatumCheck::compile(SCHEMA)?;
        let body = encode(row(1, Some(row(2, None))))?;
        check.check(&body).map_err(|e| format!("a valid body was refused: {e}"))?;
        for cut in 0..body.len() {
            assert!(check.check(&body[..cut]).is_err(), "the first {cut} of {} bytes passed", body.len());
        }
        let mut long = body.clone();
        long.extend_from_slice(&[0, 0, 0]);
        assert_eq!(check.check(&long), Err("3 trailing bytes after the record".to_string()));
        Ok(())
    }

    #[test]
    fn what_the_decoder_or_the_batch_would_refuse_is_refused() -> R {
        let check = DatumCheck::compile(SCHEMA)?;
        let good = encode(row(1, None))?;
        // id: a 10-byte varint whose last byte is past 64 bits
        let mut bad_varint = vec![0xff; 9];
        bad_varint.push(0x02);
        bad_varint.extend_from_slice(&good[1..]);
        // name: union branch 2 of [null, string]
        let name_at = 2; // id (1 byte) and n (1 byte)
        let mut bad_branch = good.clone();
        bad_branch[name_at] = 0x04;
        // name: a string that is not UTF-8 ("ünï" starts with 0xc3)
        let mut bad_utf8 = good.clone();
        let at = good.iter().position(|&b| b == 0xc3).ok_or("no ü in the body")?;
        bad_utf8[at] = 0xff;
        // kind: index 2 of 2 symbols
        // (the enum's 0x02, then the uuid's length: 36 chars, zigzag 0x48)
        let kind_at = good.windows(2).position(|w| w == [0x02, 0x48]).ok_or("no uuid length")?;
        let mut bad_enum = good.clone();
        bad_enum[kind_at] = 0x04;
        // ref: a uuid that does not parse
        let mut bad_uuid = good.clone();
        bad_uuid[kind_at + 2] = b'z';
        for (what, body, says) in [
            ("varint", bad_varint, "64 bits"),
            ("branch", bad_branch, "union branch 2"),
            ("utf8", bad_utf8, "UTF-8"),
            ("enum", bad_enum, "enum index 2"),
            ("uuid", bad_uuid, "uuid"),
        ] {
            match check.check(&body) {
                Err(e) => assert!(e.contains(says), "{what}: {e:?} should say {says:?}"),
                Ok(()) => return Err(format!("{what}: a bad body passed").into()),
            }
        }
        Ok(())
    }

    #[test]
    fn decimals_past_their_width_and_absurd_blocks_are_refused() -> R {
        assert!(fits(&[0x7f; 16], 16) && fits(&[0x00, 0x00, 0x7f], 2) && fits(&[0xff, 0x80], 1));
        assert!(!fits(&[0x01, 0x00, 0x00], 2) && !fits(&[0x00, 0x80], 1), "bytes past the width must be sign extension");
        let wide = r#"{"type":"record","name":"D","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":38,"scale":0}}]}"#;
        let check = DatumCheck::compile(wide)?;
        let mut body = vec![34]; // 17 bytes
        body.extend_from_slice(&[0x01; 17]);
        assert!(check.check(&body).is_err_and(|e| e.contains("does not fit 16")));
        let nulls = r#"{"type":"record","name":"N","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#;
        let check = DatumCheck::compile(nulls)?;
        check.check(&[0x06, 0x00]).map_err(|e| format!("3 nulls: {e}"))?;
        // 2^40 nulls in two bytes of varint... refused, not walked
        assert!(check.check(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x00]).is_err_and(|e| e.contains("items")));
        let strings = r#"{"type":"record","name":"S","fields":[{"name":"a","type":{"type":"array","items":"string"}}]}"#;
        assert!(DatumCheck::compile(strings)?.check(&[0xfe, 0x01, 0x00]).is_err_and(|e| e.contains("items in")));
        Ok(())
    }
}
