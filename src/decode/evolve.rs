//! Schema reconciliation (`output.schema_change = "merge"`): the union of two Avro writer
//! schemas of one subject, as the reader schema of a file that holds records of both.
//!
//! Every record of either version reads into the union by Avro's own schema resolution (which
//! arrow-avro's decoder implements), so the union is only ever a schema that both resolve to:
//!
//! * a field in both keeps its place, its type the wider of the two (`int` → `long`, `int`/`long`
//!   → `float`/`double`, `float` → `double`, a decimal of larger precision with the same scale);
//!   the narrower version's values are promoted, never cut;
//! * a field only in the newer version (added) needs a default or a nullable type: older records
//!   read its default, or null;
//! * a field only in the older version (dropped) stays, made nullable with default null if it was
//!   not: newer records read null, older ones keep their values;
//! * a type that becomes nullable makes the column nullable; enum symbols are united.
//!
//! Anything else (a type changed outright or narrowed below what was written, a field added as
//! required without a default, a decimal scale or a logical type changed) is incompatible, with
//! the field's path and the reason: the file is closed and a new one starts (flush reason
//! `schema`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// The union schema, and what changed against the current one (empty: nothing).
#[derive(Debug, Clone)]
pub struct Merged {
    pub schema: String,
    pub changes: Vec<String>,
}

/// Why two versions cannot share a file: the field's path and the change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Incompatible {
    pub path: String,
    pub reason: String,
}

const PRIMITIVES: &[&str] = &["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The union of `current` (the file's reader schema, or its first writer schema) and
/// `incoming` (a new writer schema).
pub fn merge(current: &str, incoming: &str) -> Result<Merged, Incompatible> {
    let parse = |s: &str, which: &str| {
        serde_json::from_str::<Value>(s).map_err(|e| Incompatible { path: String::new(), reason: format!("the {which} schema is not JSON: {e}") })
    };
    let (c, i) = (parse(current, "current")?, parse(incoming, "incoming")?);
    let mut m = Merger::default();
    collect(&c, "", &mut m.current_defs);
    collect(&i, "", &mut m.incoming_defs);
    let merged = m.merge(&c, &i, "", "")?;
    Ok(Merged { schema: merged.to_string(), changes: m.changes })
}

#[derive(Default)]
struct Merger {
    current_defs: BTreeMap<String, Value>,
    incoming_defs: BTreeMap<String, Value>,
    /// Named types already written out in the union: later uses are references.
    emitted: BTreeSet<String>,
    changes: Vec<String>,
}

/// The full name of a named type: `name` if it has a dot, else `namespace.name`.
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

/// The namespace a named definition gives its children.
fn child_namespace(def: &Map<String, Value>, namespace: &str) -> String {
    let name = def.get("name").and_then(Value::as_str).unwrap_or_default();
    match (def.get("namespace").and_then(Value::as_str), name.rsplit_once('.')) {
        (_, Some((ns, _))) => ns.to_string(),
        (Some(ns), None) => ns.to_string(),
        (None, None) => namespace.to_string(),
    }
}

/// Every named definition (record, enum, fixed) of a schema, by full name.
fn collect(v: &Value, namespace: &str, defs: &mut BTreeMap<String, Value>) {
    match v {
        Value::Array(branches) => branches.iter().for_each(|b| collect(b, namespace, defs)),
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or_default();
            let mut ns = namespace.to_string();
            if matches!(ty, "record" | "error" | "enum" | "fixed") {
                if let Some(name) = o.get("name").and_then(Value::as_str) {
                    defs.insert(full_name(name, o.get("namespace").and_then(Value::as_str).unwrap_or(namespace)), v.clone());
                }
                ns = child_namespace(o, namespace);
            }
            match ty {
                "record" | "error" => {
                    for f in o.get("fields").and_then(Value::as_array).into_iter().flatten() {
                        if let Some(t) = f.get("type") {
                            collect(t, &ns, defs);
                        }
                    }
                }
                "array" => o.get("items").into_iter().for_each(|t| collect(t, &ns, defs)),
                "map" => o.get("values").into_iter().for_each(|t| collect(t, &ns, defs)),
                _ => {
                    if let Some(t) = o.get("type").filter(|t| !t.is_string()) {
                        collect(t, &ns, defs);
                    }
                }
            }
        }
        _ => {}
    }
}

/// What a type is, for pairing union branches and telling changes apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Primitive(String),
    Named(String),
    Array,
    Map,
    Union,
}

fn kind(v: &Value, namespace: &str) -> Kind {
    match v {
        Value::String(s) if PRIMITIVES.contains(&s.as_str()) => Kind::Primitive(s.clone()),
        Value::String(s) => Kind::Named(full_name(s, namespace)),
        Value::Array(_) => Kind::Union,
        Value::Object(o) => match o.get("type") {
            Some(Value::String(t)) if PRIMITIVES.contains(&t.as_str()) => Kind::Primitive(t.clone()),
            Some(Value::String(t)) if t == "array" => Kind::Array,
            Some(Value::String(t)) if t == "map" => Kind::Map,
            Some(Value::String(_)) => {
                let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
                Kind::Named(full_name(name, o.get("namespace").and_then(Value::as_str).unwrap_or(namespace)))
            }
            Some(inner) => kind(inner, namespace),
            None => Kind::Primitive(String::new()),
        },
        _ => Kind::Primitive(String::new()),
    }
}

/// `int` → `long` → `float` → `double`, as Avro promotes.
fn promotes(from: &str, to: &str) -> bool {
    matches!((from, to), ("int", "long" | "float" | "double") | ("long", "float" | "double") | ("float", "double"))
}

fn incompatible(path: &str, reason: String) -> Incompatible {
    Incompatible { path: if path.is_empty() { "(top level)".into() } else { path.to_string() }, reason }
}

/// The props of a primitive type other than `type` (logical type, Connect's semantic names,
/// decimal precision and scale).
fn primitive_props(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o.iter().filter(|(k, _)| k.as_str() != "type").map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Map::new(),
    }
}

/// Whether `t` accepts null (a union with a null branch).
fn nullable(t: &Value) -> bool {
    t.as_array().is_some_and(|b| b.iter().any(|x| x == "null"))
}

/// `t` as a union whose first branch is null, so that a default of null is valid.
fn null_first(t: &Value) -> Value {
    match t {
        Value::Array(b) => {
            let mut out = vec![json!("null")];
            out.extend(b.iter().filter(|x| *x != "null").cloned());
            Value::Array(out)
        }
        other => json!(["null", other]),
    }
}

impl Merger {
    fn def<'v>(&'v self, v: &'v Value, namespace: &str, incoming: bool) -> &'v Value {
        match v {
            Value::String(s) if !PRIMITIVES.contains(&s.as_str()) => {
                let defs = if incoming { &self.incoming_defs } else { &self.current_defs };
                defs.get(&full_name(s, namespace)).unwrap_or(v)
            }
            other => other,
        }
    }

    fn merge(&mut self, c: &Value, i: &Value, ns: &str, path: &str) -> Result<Value, Incompatible> {
        if c == i && !matches!(kind(c, ns), Kind::Named(_) | Kind::Union | Kind::Array | Kind::Map) {
            return Ok(c.clone());
        }
        let (ck, ik) = (kind(c, ns), kind(i, ns));
        match (&ck, &ik) {
            (Kind::Union, Kind::Union) => self.merge_unions(c, i, ns, path),
            (Kind::Union, _) => {
                let branches = c.as_array().cloned().unwrap_or_default();
                self.merge_into_union(&branches, i, ns, path, false)
            }
            (_, Kind::Union) => {
                let branches = i.as_array().cloned().unwrap_or_default();
                let merged = self.merge_into_union(&branches, c, ns, path, true)?;
                self.changes.push(format!("{path}: became nullable"));
                Ok(merged)
            }
            (Kind::Named(cn), Kind::Named(inn)) if cn == inn => {
                if self.emitted.contains(cn) {
                    // Written out once already (merged there): refer to it.
                    return Ok(Value::String(cn.clone()));
                }
                let (cd, id) = (self.def(c, ns, false).clone(), self.def(i, ns, true).clone());
                self.merge_named(&cd, &id, cn, ns, path)
            }
            (Kind::Named(cn), Kind::Named(inn)) => Err(incompatible(path, format!("type changed from {cn} to {inn}"))),
            (Kind::Primitive(cp), Kind::Primitive(ip)) => self.merge_primitives(c, i, cp, ip, path),
            (Kind::Array, Kind::Array) => {
                let items = self.merge(&c["items"], &i["items"], ns, &format!("{path}[]"))?;
                let mut out = c.clone();
                out["items"] = items;
                Ok(out)
            }
            (Kind::Map, Kind::Map) => {
                let values = self.merge(&c["values"], &i["values"], ns, &format!("{path}{{}}"))?;
                let mut out = c.clone();
                out["values"] = values;
                Ok(out)
            }
            _ => Err(incompatible(path, format!("type changed from {} to {}", describe(c), describe(i)))),
        }
    }

    fn merge_primitives(&mut self, c: &Value, i: &Value, cp: &str, ip: &str, path: &str) -> Result<Value, Incompatible> {
        let (cprops, iprops) = (primitive_props(c), primitive_props(i));
        let semantic = |p: &Map<String, Value>| (p.get("logicalType").cloned(), p.get("connect.name").cloned());
        if semantic(&cprops) != semantic(&iprops) {
            return Err(incompatible(path, format!("logical type changed from {} to {}", describe(c), describe(i))));
        }
        if cp == ip {
            if cprops.get("logicalType").and_then(Value::as_str) == Some("decimal") {
                let (cs, is) = (cprops.get("scale").and_then(Value::as_u64).unwrap_or(0), iprops.get("scale").and_then(Value::as_u64).unwrap_or(0));
                if cs != is {
                    return Err(incompatible(path, format!("decimal scale changed from {cs} to {is}")));
                }
                let (cprec, iprec) = (cprops.get("precision").and_then(Value::as_u64).unwrap_or(0), iprops.get("precision").and_then(Value::as_u64).unwrap_or(0));
                if iprec > cprec {
                    self.changes.push(format!("{path}: decimal widened from precision {cprec} to {iprec}"));
                    let mut out = c.clone();
                    out["precision"] = json!(iprec);
                    if let Some(p) = out.pointer_mut("/connect.parameters/connect.decimal.precision") {
                        *p = json!(iprec.to_string());
                    }
                    return Ok(out);
                }
            }
            return Ok(c.clone());
        }
        if cprops.contains_key("logicalType") || cprops.contains_key("connect.name") {
            return Err(incompatible(path, format!("type changed from {} to {}", describe(c), describe(i))));
        }
        if promotes(cp, ip) {
            self.changes.push(format!("{path}: widened from {cp} to {ip}"));
            return Ok(i.clone());
        }
        if promotes(ip, cp) {
            // The incoming version is narrower: its values read into the wider type.
            return Ok(c.clone());
        }
        Err(incompatible(path, format!("type changed from {cp} to {ip}")))
    }

    /// Two unions: each branch of one pairs with the branch of the same kind (or a promotable
    /// primitive) of the other; branches only the incoming has are appended.
    fn merge_unions(&mut self, c: &Value, i: &Value, ns: &str, path: &str) -> Result<Value, Incompatible> {
        let mut out: Vec<Value> = c.as_array().cloned().unwrap_or_default();
        for ib in i.as_array().into_iter().flatten() {
            let pos = out.iter().position(|cb| same_kind(cb, ib, ns));
            match pos {
                Some(p) => {
                    let merged = self.merge(&out[p], ib, ns, path)?;
                    out[p] = merged;
                }
                None if out.len() <= 2 && (ib == "null" || out.iter().all(|b| b == "null")) => out.push(ib.clone()),
                None => return Err(incompatible(path, format!("union branch {} is new", describe(ib)))),
            }
        }
        Ok(Value::Array(out))
    }

    /// A non-union `t` into the union `branches`: merged with its branch of the same kind.
    fn merge_into_union(&mut self, branches: &[Value], t: &Value, ns: &str, path: &str, t_is_current: bool) -> Result<Value, Incompatible> {
        let Some(p) = branches.iter().position(|b| same_kind(b, t, ns)) else {
            return Err(incompatible(path, format!("{} is not a branch of {}", describe(t), describe(&Value::Array(branches.to_vec())))));
        };
        let merged = if t_is_current { self.merge(t, &branches[p], ns, path)? } else { self.merge(&branches[p], t, ns, path)? };
        let mut out = branches.to_vec();
        out[p] = merged;
        Ok(Value::Array(out))
    }

    fn merge_named(&mut self, c: &Value, i: &Value, name: &str, ns: &str, path: &str) -> Result<Value, Incompatible> {
        let (Some(co), Some(io)) = (c.as_object(), i.as_object()) else {
            return Err(incompatible(path, format!("{name}: a named type without a definition")));
        };
        let ty = co.get("type").and_then(Value::as_str).unwrap_or_default();
        if io.get("type").and_then(Value::as_str) != Some(ty) {
            return Err(incompatible(path, format!("{name} changed from a {ty} to another kind")));
        }
        self.emitted.insert(name.to_string());
        let inner_ns = child_namespace(co, ns);
        match ty {
            "record" | "error" => {
                let cf: Vec<Value> = co.get("fields").and_then(Value::as_array).cloned().unwrap_or_default();
                let inf: Vec<Value> = io.get("fields").and_then(Value::as_array).cloned().unwrap_or_default();
                let fname = |f: &Value| f.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let mut fields = Vec::with_capacity(cf.len().max(inf.len()));
                for f in &cf {
                    let n = fname(f);
                    let at = if path.is_empty() { n.clone() } else { format!("{path}.{n}") };
                    match inf.iter().find(|x| fname(x) == n) {
                        Some(g) => {
                            let mut out = f.clone();
                            out["type"] = self.merge(&f["type"], &g["type"], &inner_ns, &at)?;
                            if nullable(&out["type"]) && out.get("default").is_none() && g.get("default") == Some(&Value::Null) {
                                out["type"] = null_first(&out["type"]);
                                out["default"] = Value::Null;
                            }
                            fields.push(out);
                        }
                        None => {
                            // Dropped: kept, null for the records of the newer version.
                            let mut out = f.clone();
                            if f.get("default").is_none() || !nullable(&f["type"]) {
                                out["type"] = null_first(&self.merge(&f["type"], &f["type"], &inner_ns, &at)?);
                                out["default"] = Value::Null;
                            } else {
                                out["type"] = self.merge(&f["type"], &f["type"], &inner_ns, &at)?;
                            }
                            self.changes.push(format!("{at}: not in the new version, kept (null for its records)"));
                            fields.push(out);
                        }
                    }
                }
                for g in inf.iter().filter(|g| !cf.iter().any(|f| fname(f) == fname(g))) {
                    let n = fname(g);
                    let at = if path.is_empty() { n.clone() } else { format!("{path}.{n}") };
                    let mut out = g.clone();
                    if g.get("default").is_none() {
                        if !nullable(&g["type"]) {
                            return Err(incompatible(&at, "added as required without a default: records of the older version have no value for it".into()));
                        }
                        out["type"] = null_first(&g["type"]);
                        out["default"] = Value::Null;
                    }
                    // Named types the added field defines or references come from the incoming schema.
                    out["type"] = self.merge(&out["type"], &out["type"], &inner_ns, &at).or_else(|_| Ok::<Value, Incompatible>(out["type"].clone()))?;
                    self.changes.push(format!("{at}: added"));
                    fields.push(out);
                }
                let mut out = c.clone();
                out["fields"] = Value::Array(fields);
                Ok(out)
            }
            "enum" => {
                let symbols = |o: &Map<String, Value>| -> Vec<String> {
                    o.get("symbols").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
                };
                let mut all = symbols(co);
                let new: Vec<String> = symbols(io).into_iter().filter(|s| !all.contains(s)).collect();
                if !new.is_empty() {
                    self.changes.push(format!("{path}: enum {name} gained {}", new.join(", ")));
                    all.extend(new);
                }
                let mut out = c.clone();
                out["symbols"] = json!(all);
                Ok(out)
            }
            _ if c == i => Ok(c.clone()),
            _ => Err(incompatible(path, format!("{name} ({ty}) changed"))),
        }
    }
}

/// Whether two types are the same kind, or primitives one promotes to the other.
fn same_kind(a: &Value, b: &Value, ns: &str) -> bool {
    match (kind(a, ns), kind(b, ns)) {
        (Kind::Primitive(x), Kind::Primitive(y)) => x == y || promotes(&x, &y) || promotes(&y, &x),
        (x, y) => x == y,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let ty = o.get("type").map(describe).unwrap_or_default();
            match (o.get("logicalType").and_then(Value::as_str), o.get("connect.name").and_then(Value::as_str)) {
                (Some(l), _) => format!("{ty} ({l})"),
                (None, Some(c)) => format!("{ty} ({c})"),
                _ => o.get("name").and_then(Value::as_str).map_or(ty, str::to_string),
            }
        }
        Value::Array(b) => format!("[{}]", b.iter().map(describe).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// Whether files of schema `a` hold rows of schema `b` as they are: the same columns and struct
/// fields by name, type and nullability, field metadata aside. arrow-avro marks a field its
/// reader schema fills from a default (`avro.field.default`), so the union read from one version
/// and from another differ only there; rewriting the open files for that would cost a re-encode
/// per switch of version.
pub fn same_columns(a: &arrow::datatypes::Schema, b: &arrow::datatypes::Schema) -> bool {
    same_fields(a.fields(), b.fields())
}

fn same_fields(a: &arrow::datatypes::Fields, b: &arrow::datatypes::Fields) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| same_field(x, y))
}

fn same_field(a: &arrow::datatypes::Field, b: &arrow::datatypes::Field) -> bool {
    a.name() == b.name() && a.is_nullable() == b.is_nullable() && same_type(a.data_type(), b.data_type())
}

fn same_type(a: &arrow::datatypes::DataType, b: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    match (a, b) {
        (DataType::Struct(x), DataType::Struct(y)) => same_fields(x, y),
        (DataType::List(x), DataType::List(y)) | (DataType::LargeList(x), DataType::LargeList(y)) => same_field(x, y),
        (DataType::FixedSizeList(x, n), DataType::FixedSizeList(y, m)) => n == m && same_field(x, y),
        (DataType::Map(x, s), DataType::Map(y, t)) => s == t && same_field(x, y),
        (DataType::Dictionary(k, v), DataType::Dictionary(l, w)) => k == l && same_type(v, w),
        _ => a == b,
    }
}

/// `batch` in the shape of `target`, a union schema it reads into: columns and struct fields by
/// name, missing ones null, types widened by cast (int to long, float to double, decimal
/// precision). For the rows a file already holds when its schema grows.
pub fn conform(batch: &arrow::array::RecordBatch, target: &arrow::datatypes::SchemaRef) -> Result<arrow::array::RecordBatch, String> {
    use arrow::array::new_null_array;
    if batch.schema().fields() == target.fields() {
        return arrow::array::RecordBatch::try_new(target.clone(), batch.columns().to_vec()).map_err(|e| e.to_string());
    }
    let rows = batch.num_rows();
    let mut columns = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        columns.push(match batch.column_by_name(f.name()) {
            Some(c) => conform_array(c, f.data_type()).map_err(|e| format!("{}: {e}", f.name()))?,
            None => new_null_array(f.data_type(), rows),
        });
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    arrow::array::RecordBatch::try_new_with_options(target.clone(), columns, &options).map_err(|e| e.to_string())
}

fn conform_array(a: &arrow::array::ArrayRef, to: &arrow::datatypes::DataType) -> Result<arrow::array::ArrayRef, String> {
    use std::sync::Arc;

    use arrow::array::{new_null_array, Array, AsArray, ListArray, StructArray};
    use arrow::datatypes::DataType;
    if a.data_type() == to {
        return Ok(a.clone());
    }
    match (a.data_type(), to) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = a.as_struct();
            let children = fields
                .iter()
                .map(|f| match s.column_by_name(f.name()) {
                    Some(c) => conform_array(c, f.data_type()).map_err(|e| format!("{}.{e}", f.name())),
                    None => Ok(new_null_array(f.data_type(), s.len())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Arc::new(StructArray::try_new(fields.clone(), children, s.nulls().cloned()).map_err(|e| e.to_string())?))
        }
        (DataType::List(_), DataType::List(item)) => {
            let l = a.as_list::<i32>();
            let values = conform_array(l.values(), item.data_type())?;
            Ok(Arc::new(ListArray::try_new(item.clone(), l.offsets().clone(), values, l.nulls().cloned()).map_err(|e| e.to_string())?))
        }
        _ => arrow::compute::cast(a, to).map_err(|e| format!("cannot widen {} to {to}: {e}", a.data_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{TasksGenerator, VALUE_SCHEMA_V1};

    fn record(fields: Value) -> String {
        json!({"type": "record", "name": "Value", "namespace": "db.public.t", "fields": fields}).to_string()
    }

    fn field<'a>(merged: &'a Value, name: &str) -> Option<&'a Value> {
        merged["fields"].as_array()?.iter().find(|f| f["name"] == name)
    }

    #[test]
    fn compatible_changes_give_the_union() -> Result<(), Box<dyn std::error::Error>> {
        let v1 = record(json!([
            {"name": "id", "type": "string"},
            {"name": "n", "type": "int"},
            {"name": "gone", "type": "string"},
            {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}], "default": null},
            {"name": "f", "type": "float"},
        ]));
        let v2 = record(json!([
            {"name": "id", "type": "string"},
            {"name": "n", "type": "long"},
            {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}], "default": null},
            {"name": "f", "type": "double"},
            {"name": "added", "type": ["null", "string"], "default": null},
            {"name": "with_default", "type": "string", "default": "x"},
        ]));
        let m = merge(&v1, &v2)?;
        let u: Value = serde_json::from_str(&m.schema)?;
        assert_eq!(field(&u, "n").map(|f| &f["type"]), Some(&json!("long")), "int widened to long: {u}");
        assert_eq!(field(&u, "f").map(|f| &f["type"]), Some(&json!("double")));
        assert_eq!(field(&u, "gone").map(|f| (&f["type"], &f["default"])), Some((&json!(["null", "string"]), &Value::Null)), "dropped: nullable");
        assert_eq!(u.pointer("/fields/3/type/1/precision"), Some(&json!(12)), "decimal widened: {u}");
        assert!(field(&u, "added").is_some() && field(&u, "with_default").is_some(), "added fields: {u}");
        let names: Vec<&str> = u["fields"].as_array().ok_or("fields")?.iter().filter_map(|f| f["name"].as_str()).collect();
        assert_eq!(names, ["id", "n", "gone", "amount", "f", "added", "with_default"], "current order, then the added ones");
        assert_eq!(m.changes.len(), 6, "{:?}", m.changes);
        // The other way round (an older record after a newer one): the wider types stay.
        let back = merge(&m.schema, &v1)?;
        let b: Value = serde_json::from_str(&back.schema)?;
        assert_eq!(field(&b, "n").map(|f| &f["type"]), Some(&json!("long")));
        assert!(back.changes.iter().all(|c| c.contains("not in the new version")), "only the added fields are absent from v1: {:?}", back.changes);
        // Unchanged: no change.
        assert!(merge(&v2, &v2)?.changes.is_empty());
        Ok(())
    }

    #[test]
    fn rows_written_before_a_change_take_the_union_shape() -> Result<(), Box<dyn std::error::Error>> {
        use arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray, StructArray};
        use arrow::datatypes::{DataType, Field, Fields, Int64Type, Schema};
        use std::sync::Arc;
        let inner_v1 = Fields::from(vec![Field::new("n", DataType::Int32, true)]);
        let after = StructArray::try_new(inner_v1, vec![Arc::new(Int32Array::from(vec![Some(1), None]))], None)?;
        let batch = RecordBatch::try_from_iter([("after", Arc::new(after) as _), ("op", Arc::new(StringArray::from(vec!["c", "u"])) as _)])?;
        let inner_u = Fields::from(vec![Field::new("n", DataType::Int64, true), Field::new("category", DataType::Utf8, true)]);
        let target = Arc::new(Schema::new(vec![
            Field::new("after", DataType::Struct(inner_u), true),
            Field::new("op", DataType::Utf8, true),
            Field::new("extra", DataType::Boolean, true),
        ]));
        let out = conform(&batch, &target)?;
        assert_eq!(out.schema(), target);
        let after = out.column(0).as_struct();
        let n = after.column(0).as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.is_null(1)), (1, true), "int widened to long, nulls kept");
        assert_eq!(after.column(1).null_count(), 2, "the added field is null for older rows");
        assert_eq!(out.column(2).null_count(), 2, "an added column is null");
        Ok(())
    }

    #[test]
    fn incompatible_changes_name_the_field() {
        let v1 = record(json!([{"name": "id", "type": "string"}, {"name": "n", "type": "long"}, {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}}]));
        let cases = [
            (json!([{"name": "id", "type": "int"}]), "id", "type changed from string to int"),
            (json!([{"name": "id", "type": "string"}, {"name": "req", "type": "string"}]), "req", "added as required without a default"),
            (json!([{"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 3}}]), "d", "decimal scale changed from 2 to 3"),
            (json!([{"name": "n", "type": {"type": "long", "logicalType": "timestamp-millis"}}]), "n", "logical type changed"),
        ];
        for (fields, path, reason) in cases {
            let result = merge(&v1, &record(fields));
            assert!(matches!(&result, Err(e) if e.path == path && e.reason.contains(reason)), "{path}: expected {reason:?}, got {result:?}");
        }
    }

    /// Debezium's envelope defines `Value` in `before` and refers to it in `after`: the union
    /// defines it once, merged, and refers to it after.
    #[test]
    fn debezium_add_and_drop_column_merge() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let v2 = TasksGenerator::value_schema_v2()?;
        let m = merge(VALUE_SCHEMA_V1, &v2)?;
        assert_eq!(m.changes, vec!["before.category: added".to_string()], "{:?}", m.changes);
        let u: Value = serde_json::from_str(&m.schema)?;
        assert_eq!(u.pointer("/fields/1/type/1"), Some(&json!("supabase-habit.public.tasks.Value")), "after refers to the merged Value");
        let back = merge(&m.schema, VALUE_SCHEMA_V1)?;
        assert_eq!(back.schema, m.schema, "v1 after v2 changes nothing in the union");
        let mut d = super::super::BatchDecoder::new("t", 0, (1, &m.schema), None, 10)?;
        assert!(d.output_schema()?.to_string().contains("category"), "arrow-avro reads the union");
        Ok(())
    }

    /// The union read from v1 (category filled from its default) and from v2 (category written)
    /// differ in field metadata only: the open files need no rewrite when versions switch.
    #[test]
    fn the_union_read_from_either_version_has_the_same_columns() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use super::super::{BatchDecoder, Schemas};
        let v2 = TasksGenerator::value_schema_v2()?;
        let union = merge(VALUE_SCHEMA_V1, &v2)?.schema;
        let read = |id: u32, writer: &str| -> Result<arrow::datatypes::SchemaRef, Box<dyn std::error::Error + Send + Sync>> {
            Ok(BatchDecoder::resolving("t", 0, Schemas { id, writer, reader: Some(&union) }, None, 10)?.output_schema()?)
        };
        let (from_v1, from_v2) = (read(1, VALUE_SCHEMA_V1)?, read(2, &v2)?);
        assert!(same_columns(&from_v1, &from_v2), "same columns:\n{from_v1:?}\n{from_v2:?}");
        let v1_alone = BatchDecoder::new("t", 0, (1, VALUE_SCHEMA_V1), None, 10)?.output_schema()?;
        assert!(!same_columns(&v1_alone, &from_v2), "v1 alone has no category column");
        Ok(())
    }
}
