//! What a run of one Kafka partition's changes leaves per key, before any of it touches the
//! table: the newest row image of each key changed (with where each column the change did not
//! carry comes from), the keys deleted, and whether a truncate emptied the table first.
//!
//! Order is the partition's: Debezium keys records by primary key, so every change of one key
//! is in one partition, in commit order. Snapshot reads (`r`) upsert like creates, so a snapshot
//! that runs after live changes converges to the table's state. An update that carries
//! Debezium's placeholder for an unchanged TOASTed column (the decoder nulls it and names the
//! column in `__unavailable_columns`) keeps the key's current value: from the key's previous
//! image in the same run when there is one (itself perhaps taken from further back), else from
//! the table's row.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};

use super::keys::{key_hashes, KeyHash};
use super::MirrorError;
use crate::decode::envelope::OP;
use crate::decode::toast::UNAVAILABLE;

/// A change of the run, by batch and row.
pub type At = (usize, usize);

/// Where a column of a new image comes from when its change did not carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The value an earlier change of the run carried.
    Change(At),
    /// The key's row in the table (null when the table has none).
    Table,
}

/// A key's state at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// Its newest image is the change at `at`, with `fills` for the columns that change did not
    /// carry (each named once).
    Upsert { at: At, fills: Vec<(String, Fill)> },
    Delete,
}

/// What the run leaves.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reduced {
    /// Each key the run changed after its last truncate, in the order of first change.
    pub keys: Vec<(KeyHash, Final)>,
    /// A truncate came: every row the table held before the run is gone.
    pub truncated: bool,
    /// Changes that named no key (counted; nothing to apply them to).
    pub keyless: usize,
}

/// Folds `batches` (one partition's decoded changes, in offset order) into what they leave.
/// `key` names the primary key's columns ([`super::keys::key_names`]).
pub fn reduce(batches: &[RecordBatch], key: &[String], topic: &str) -> Result<Reduced, MirrorError> {
    let bad = |reason: String| MirrorError::Rows { topic: topic.to_string(), reason };
    let mut out = Reduced::default();
    let mut slot: HashMap<KeyHash, usize> = HashMap::new();
    for (b, batch) in batches.iter().enumerate() {
        let ops: &StringArray = batch.column_by_name(OP).and_then(|c| c.as_string_opt()).ok_or_else(|| bad(format!("no {OP} column: the records are not Debezium change events")))?;
        let unavailable = batch.column_by_name(UNAVAILABLE).and_then(|c| c.as_list_opt::<i32>());
        let keys = key_hashes(batch, key, topic)?;
        for (i, key) in keys.into_iter().enumerate() {
            let op = if ops.is_valid(i) { ops.value(i) } else { continue }; // a tombstone
            if op == "t" {
                out.keys.clear();
                slot.clear();
                out.truncated = true;
                continue;
            }
            let Some(key) = key else {
                out.keyless += 1;
                continue;
            };
            let state = match op {
                "d" => Final::Delete,
                "c" | "r" | "u" => {
                    let missing: Vec<String> = match unavailable.filter(|u| u.is_valid(i)) {
                        Some(u) => u.value(i).as_string::<i32>().iter().flatten().map(str::to_string).collect(),
                        None => Vec::new(),
                    };
                    let before = slot.get(&key).and_then(|s| out.keys.get(*s)).map(|(_, f)| f);
                    let fills = missing.into_iter().map(|column| {
                        let from = match before {
                            Some(Final::Upsert { at, fills }) => fills.iter().find(|(c, _)| *c == column).map_or(Fill::Change(*at), |(_, f)| *f),
                            // Created again after a delete of this run: nothing to keep.
                            Some(Final::Delete) | None => Fill::Table,
                        };
                        (column, from)
                    });
                    Final::Upsert { at: (b, i), fills: fills.collect() }
                }
                other => return Err(bad(format!("op {other:?} at offset row {i}: not a Debezium change (c, r, u, d, t)"))),
            };
            match slot.get(&key).and_then(|s| out.keys.get_mut(*s)) {
                Some(entry) => entry.1 = state,
                None => {
                    slot.insert(key, out.keys.len());
                    out.keys.push((key, state));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, ListBuilder, StringBuilder, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Schema};

    use super::*;
    use crate::decode::envelope::KAFKA_KEY;

    /// Changes as (op, key id, unavailable columns); `None` op: a tombstone.
    fn run(changes: &[(Option<&str>, i32, &[&str])]) -> Result<RecordBatch, arrow::error::ArrowError> {
        let key_fields = Fields::from(vec![Field::new("id", DataType::Int32, false)]);
        let ids = Int32Array::from_iter_values(changes.iter().map(|c| c.1));
        let key = StructArray::try_new(key_fields.clone(), vec![Arc::new(ids)], None)?;
        let ops = StringArray::from_iter(changes.iter().map(|c| c.0));
        let mut names = ListBuilder::new(StringBuilder::new());
        for (_, _, missing) in changes {
            if missing.is_empty() {
                names.append_null();
            } else {
                names.append_value(missing.iter().map(|m| Some(*m)));
            }
        }
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new(OP, DataType::Utf8, true),
            Field::new(UNAVAILABLE, DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true),
            Field::new(KAFKA_KEY, DataType::Struct(key_fields), true),
        ]);
        let image = Int32Array::from_iter_values(changes.iter().map(|c| c.1));
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(image), Arc::new(ops), Arc::new(names.finish()), Arc::new(key)])
    }

    fn id() -> Vec<String> {
        vec!["id".to_string()]
    }

    fn hash(id: i32) -> Result<KeyHash, Box<dyn std::error::Error>> {
        Ok(key_hashes(&run(&[(Some("c"), id, &[])])?, &self::id(), "t")?.first().copied().flatten().ok_or("no hash")?)
    }

    #[test]
    fn the_newest_image_per_key_wins_and_a_delete_ends_it() -> Result<(), Box<dyn std::error::Error>> {
        let one = run(&[(Some("r"), 1, &[]), (Some("c"), 2, &[]), (Some("u"), 1, &[]), (None, 9, &[])])?;
        let two = run(&[(Some("d"), 2, &[]), (None, 2, &[]), (Some("c"), 3, &[]), (Some("u"), 1, &[])])?;
        let reduced = reduce(&[one, two], &id(), "t")?;
        let want = vec![
            (hash(1)?, Final::Upsert { at: (1, 3), fills: vec![] }),
            (hash(2)?, Final::Delete),
            (hash(3)?, Final::Upsert { at: (1, 2), fills: vec![] }),
        ];
        assert_eq!(reduced.keys, want, "keys in order of first change: 1 updated last in the second batch, 2 deleted, 3 created");
        assert!(!reduced.truncated, "no truncate");
        Ok(())
    }

    #[test]
    fn an_unchanged_toasted_column_comes_from_the_keys_last_image_or_else_the_table() -> Result<(), Box<dyn std::error::Error>> {
        let batch = run(&[
            (Some("u"), 1, &["body"]),         // 0: nothing earlier in the run: the table's
            (Some("u"), 1, &["body", "tags"]), // 1: body still the table's; tags from row 0
            (Some("c"), 2, &[]),               // 2
            (Some("u"), 2, &["body"]),         // 3: from the create at row 2
            (Some("d"), 3, &[]),               // 4
            (Some("c"), 3, &["body"]),         // 5: created again after its delete: nothing to keep
        ])?;
        let reduced = reduce(&[batch], &id(), "t")?;
        let want = vec![
            (hash(1)?, Final::Upsert { at: (0, 1), fills: vec![("body".into(), Fill::Table), ("tags".into(), Fill::Change((0, 0)))] }),
            (hash(2)?, Final::Upsert { at: (0, 3), fills: vec![("body".into(), Fill::Change((0, 2)))] }),
            (hash(3)?, Final::Upsert { at: (0, 5), fills: vec![("body".into(), Fill::Table)] }),
        ];
        assert_eq!(reduced.keys, want, "where each unchanged column comes from");
        Ok(())
    }

    #[test]
    fn a_truncate_drops_what_came_before_it() -> Result<(), Box<dyn std::error::Error>> {
        let batch = run(&[(Some("c"), 1, &[]), (Some("d"), 2, &[]), (Some("t"), 0, &[]), (Some("c"), 3, &[])])?;
        let reduced = reduce(&[batch], &id(), "t")?;
        assert!(reduced.truncated, "the truncate is reported");
        assert_eq!(reduced.keys, vec![(hash(3)?, Final::Upsert { at: (0, 3), fills: vec![] })], "only what came after it");
        Ok(())
    }

    #[test]
    fn an_op_that_is_no_debezium_change_is_refused_naming_it() -> Result<(), Box<dyn std::error::Error>> {
        let err = reduce(&[run(&[(Some("x"), 1, &[])])?], &id(), "shop.public.tasks").err().ok_or("op x was taken")?;
        assert!(err.to_string().contains("\"x\"") && err.to_string().contains("shop.public.tasks"), "{err}");
        Ok(())
    }
}
