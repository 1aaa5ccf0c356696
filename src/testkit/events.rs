//! Change events of the seed's `public.tasks` table in the exact Avro schemas the real Debezium
//! connector registered (`testdata/debezium-tasks-*.avsc`), with ops r/c/u/d and a tombstone
//! after each delete.

use apache_avro::types::Value;
use apache_avro::{Decimal, Schema};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::BoxError;

pub const KEY_SCHEMA: &str = include_str!("../../testdata/debezium-tasks-key.avsc");
pub const VALUE_SCHEMA_V1: &str = include_str!("../../testdata/debezium-tasks-value.avsc");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
    /// The null-value record Debezium sends after a delete.
    Tombstone,
}

impl Op {
    /// Debezium's `op` letter; `None` for a tombstone.
    pub fn letter(self) -> Option<&'static str> {
        match self {
            Op::Read => Some("r"),
            Op::Create => Some("c"),
            Op::Update => Some("u"),
            Op::Delete => Some("d"),
            Op::Tombstone => None,
        }
    }
}

/// One generated event: what the tests expect to read back, and its Avro bodies (unframed).
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub id: String,
    pub op: Op,
    /// `after.title` (or `before.title` for deletes).
    pub title: String,
    pub ts_ms: i64,
    /// `Some` when the row image carries the v2 column `category`.
    pub category: Option<String>,
    pub key: Vec<u8>,
    /// The generated value body (unframed Avro); `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    /// Sent spoiled instead of `value` (a plan's [`super::BadMix`]): it is no change event.
    pub spoiled: Option<super::Spoiled>,
}

#[derive(Clone)]
struct Task {
    id: String,
    title: String,
    completed: bool,
    version: u32,
}

/// A seeded generator: the same seed gives the same events.
pub struct TasksGenerator {
    rng: StdRng,
    key_schema: Schema,
    value_schema: Schema,
    v2: bool,
    live: Vec<Task>,
    ts_ms: i64,
    lsn: i64,
    snapshot_left: usize,
    /// Titles of new tasks (empty: `Task <n>`).
    titles: &'static [&'static str],
}

impl TasksGenerator {
    /// `snapshot_rows` read (`r`) events come first, as Debezium's initial snapshot does.
    pub fn new(seed: u64, snapshot_rows: usize) -> Result<Self, BoxError> {
        allow_debezium_names();
        Ok(Self {
            rng: StdRng::seed_from_u64(seed),
            key_schema: Schema::parse_str(KEY_SCHEMA)?,
            value_schema: Schema::parse_str(VALUE_SCHEMA_V1)?,
            v2: false,
            live: Vec::new(),
            ts_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            lsn: 26_000_000,
            snapshot_left: snapshot_rows,
            titles: &[],
        })
    }

    /// New tasks take their titles from `titles` (the same seed, the same choices).
    pub fn with_titles(mut self, titles: &'static [&'static str]) -> Self {
        self.titles = titles;
        self
    }

    /// The value schema after `ALTER TABLE tasks ADD COLUMN category text`.
    pub fn value_schema_v2() -> Result<String, BoxError> {
        let mut s: serde_json::Value = serde_json::from_str(VALUE_SCHEMA_V1)?;
        let fields = s
            .pointer_mut("/fields/0/type/1/fields")
            .and_then(|f| f.as_array_mut())
            .ok_or("fixture schema: before.Value.fields not found")?;
        fields.push(serde_json::json!({"name": "category", "type": ["null", "string"], "default": null}));
        Ok(serde_json::to_string(&s)?)
    }

    /// From now on, events are of the v1 schema again (a connector still on the old schema,
    /// or the column dropped again).
    pub fn switch_to_v1(&mut self) -> Result<(), BoxError> {
        allow_debezium_names();
        self.value_schema = Schema::parse_str(VALUE_SCHEMA_V1)?;
        self.v2 = false;
        Ok(())
    }

    /// From now on, events carry the v2 column.
    pub fn switch_to_v2(&mut self) -> Result<(), BoxError> {
        allow_debezium_names();
        self.value_schema = Schema::parse_str(&Self::value_schema_v2()?)?;
        self.v2 = true;
        Ok(())
    }

    /// The next event(s): a delete is followed by its tombstone, so one call may give two.
    pub fn next_events(&mut self) -> Result<Vec<TaskEvent>, BoxError> {
        self.ts_ms += self.rng.random_range(1..50);
        self.lsn += self.rng.random_range(40..400);
        let roll: u32 = self.rng.random_range(0..100);
        if self.snapshot_left > 0 || self.live.is_empty() || roll < 40 {
            let op = if self.snapshot_left > 0 {
                self.snapshot_left -= 1;
                Op::Read
            } else {
                Op::Create
            };
            let n: u64 = self.rng.random();
            let task = Task { id: uuid_from(n, self.rng.random()), title: match self.titles.len() {
                    0 => format!("Task {}", n % 100_000),
                    k => self.titles[(n % k as u64) as usize].to_string(),
                }, completed: false, version: 0 };
            self.live.push(task.clone());
            return Ok(vec![self.event(op, None, Some(&task))?]);
        }
        let i = self.rng.random_range(0..self.live.len());
        if roll < 85 {
            let before = self.live[i].clone();
            let t = &mut self.live[i];
            t.version += 1;
            t.completed = !t.completed;
            t.title = format!("{} (edit {})", before.title.split(" (edit").next().unwrap_or(&before.title), t.version);
            let after = t.clone();
            return Ok(vec![self.event(Op::Update, Some(&before), Some(&after))?]);
        }
        let gone = self.live.swap_remove(i);
        let delete = self.event(Op::Delete, Some(&gone), None)?;
        let tombstone = TaskEvent { op: Op::Tombstone, value: None, category: None, ..delete.clone() };
        Ok(vec![delete, tombstone])
    }

    fn event(&mut self, op: Op, before: Option<&Task>, after: Option<&Task>) -> Result<TaskEvent, BoxError> {
        let image = after.or(before).ok_or("an event needs a row image")?;
        let category = self.v2.then(|| format!("cat-{}", image.version % 3));
        let before_v = match before {
            Some(t) => Value::Union(1, Box::new(self.row(t))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let after_v = match after {
            Some(t) => Value::Union(1, Box::new(self.row(t))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let letter = op.letter().ok_or("tombstones have no value")?;
        let envelope = Value::Record(vec![
            ("before".into(), before_v),
            ("after".into(), after_v),
            ("source".into(), self.source(op)),
            ("transaction".into(), Value::Union(0, Box::new(Value::Null))),
            ("op".into(), Value::String(letter.into())),
            ("ts_ms".into(), Value::Union(1, Box::new(Value::Long(self.ts_ms + 3)))),
            ("ts_us".into(), Value::Union(1, Box::new(Value::Long((self.ts_ms + 3) * 1000)))),
            ("ts_ns".into(), Value::Union(1, Box::new(Value::Long((self.ts_ms + 3) * 1_000_000)))),
        ]);
        let value = apache_avro::to_avro_datum(&self.value_schema, envelope)?;
        let key = apache_avro::to_avro_datum(&self.key_schema, Value::Record(vec![("id".into(), Value::String(image.id.clone()))]))?;
        Ok(TaskEvent { id: image.id.clone(), op, title: image.title.clone(), ts_ms: self.ts_ms + 3, category, key, value: Some(value), spoiled: None })
    }

    fn row(&self, t: &Task) -> Value {
        let some = |v: Value| Value::Union(1, Box::new(v));
        let cents: i64 = 100 + (t.version as i64) * 25;
        let mut fields = vec![
            ("id".into(), Value::String(t.id.clone())),
            ("title".into(), Value::String(t.title.clone())),
            ("completed".into(), Value::Boolean(t.completed)),
            ("due_date".into(), some(Value::Int(20_468 + (t.version as i32 % 30)))),
            ("created_at".into(), Value::String("2026-01-15T10:04:42.123456Z".into())),
            ("updated_at".into(), Value::Long(self.ts_ms * 1000)),
            ("estimate".into(), some(Value::Decimal(Decimal::from(be_bytes(cents))))),
            ("points".into(), some(Value::Record(vec![("scale".into(), Value::Int(1)), ("value".into(), Value::Bytes(be_bytes(425)))]))),
            ("prio".into(), Value::Union(0, Box::new(Value::String(["low", "medium", "high"][t.version as usize % 3].into())))),
            ("tags".into(), some(Value::Array(vec![some(Value::String("home".into())), Value::Union(0, Box::new(Value::Null))]))),
            ("meta".into(), some(Value::String(format!("{{\"v\": {}}}", t.version)))),
            ("remind_at".into(), some(Value::Long(9 * 3_600_000_000))),
            ("attachment".into(), Value::Union(0, Box::new(Value::Null))),
            ("streak".into(), some(Value::Int(t.version as i32))),
            ("score".into(), some(Value::Double(0.5 * t.version as f64))),
        ];
        if self.v2 {
            fields.push(("category".into(), some(Value::String(format!("cat-{}", t.version % 3)))));
        }
        Value::Record(fields)
    }

    fn source(&self, op: Op) -> Value {
        let some = |v: Value| Value::Union(1, Box::new(v));
        let null = || Value::Union(0, Box::new(Value::Null));
        let snapshot = if op == Op::Read { "true" } else { "false" };
        Value::Record(vec![
            ("version".into(), Value::String("3.6.3.Final".into())),
            ("connector".into(), Value::String("postgresql".into())),
            ("name".into(), Value::String("supabase-habit".into())),
            ("ts_ms".into(), Value::Long(self.ts_ms)),
            ("snapshot".into(), Value::Union(0, Box::new(Value::String(snapshot.into())))),
            ("db".into(), Value::String("postgres".into())),
            ("sequence".into(), some(Value::String(format!("[\"{}\",\"{}\"]", self.lsn - 40, self.lsn)))),
            ("ts_us".into(), some(Value::Long(self.ts_ms * 1000))),
            ("ts_ns".into(), some(Value::Long(self.ts_ms * 1_000_000))),
            ("schema".into(), Value::String("public".into())),
            ("table".into(), Value::String("tasks".into())),
            ("txId".into(), some(Value::Long(self.lsn / 1000))),
            ("lsn".into(), some(Value::Long(self.lsn))),
            ("xmin".into(), null()),
            ("origin".into(), null()),
            ("origin_lsn".into(), null()),
        ])
    }
}

/// Debezium names namespaces after the topic prefix (`supabase-habit.public.tasks`); the Java
/// Avro library accepts the hyphen, apache-avro's default validator does not. Relax it (once per
/// process, before any schema is parsed).
pub fn allow_debezium_names() {
    use apache_avro::validator::{
        set_schema_name_validator, set_schema_namespace_validator, SchemaNameValidator, SchemaNamespaceValidator,
    };
    use apache_avro::AvroResult;

    struct Lenient;
    impl SchemaNameValidator for Lenient {
        fn validate(&self, full: &str) -> AvroResult<(String, Option<String>)> {
            Ok(match full.rsplit_once('.') {
                Some((ns, name)) => (name.to_string(), Some(ns.to_string())),
                None => (full.to_string(), None),
            })
        }
    }
    impl SchemaNamespaceValidator for Lenient {
        fn validate(&self, _: &str) -> AvroResult<()> {
            Ok(())
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a validator was already installed: parsing may still reject hyphens then.
        let _ = set_schema_name_validator(Box::new(Lenient));
        let _ = set_schema_namespace_validator(Box::new(Lenient));
    });
}

/// Minimal big-endian two's complement bytes of `v` (Avro decimal encoding).
fn be_bytes(v: i64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut start = 0;
    while start < 7 && ((b[start] == 0 && b[start + 1] & 0x80 == 0) || (b[start] == 0xff && b[start + 1] & 0x80 != 0)) {
        start += 1;
    }
    b[start..].to_vec()
}

fn uuid_from(a: u64, b: u64) -> String {
    uuid::Uuid::from_u64_pair(a, b).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bytes_are_minimal_twos_complement() {
        assert_eq!(be_bytes(1250), vec![0x04, 0xE2]);
        assert_eq!(be_bytes(127), vec![0x7F]);
        assert_eq!(be_bytes(128), vec![0x00, 0x80]);
        assert_eq!(be_bytes(-1), vec![0xFF]);
    }

    #[test]
    fn generates_every_op_and_a_tombstone_after_each_delete() -> Result<(), BoxError> {
        let mut g = TasksGenerator::new(7, 5)?;
        let mut events = Vec::new();
        while events.len() < 500 {
            events.extend(g.next_events()?);
        }
        for op in [Op::Read, Op::Create, Op::Update, Op::Delete, Op::Tombstone] {
            assert!(events.iter().any(|e| e.op == op), "no {op:?} in 500 events");
        }
        for (i, e) in events.iter().enumerate() {
            if e.op == Op::Delete {
                let next = events.get(i + 1).ok_or("delete at the end without its tombstone")?;
                assert_eq!((next.op, &next.id), (Op::Tombstone, &e.id));
            }
        }
        let sizes: Vec<usize> = events.iter().filter_map(|e| e.value.as_ref().map(Vec::len)).collect();
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        assert!((200..500).contains(&avg), "average value size {avg} B is not Debezium-like (258-450 B)");
        Ok(())
    }
}
