//! The rows a commit adds to the mirror: for each key the run upserts, its newest image with
//! the mirror's columns, each column the change did not carry (TOAST) taken from where
//! [`Final::Upsert`] says. The mirror's columns are the row image as the flatten layout types
//! it, then `__op`, `__source_ts_ms`, `__source_lsn` and the Kafka partition and offset of the
//! change; the rest of the decoded columns (the envelope's bookkeeping, the key struct, the
//! topic, the record time, headers) are bronze's alone.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, FieldRef, Schema};

use super::changes::{At, Fill, Final, Reduced};
use super::keys::KeyHash;
use super::MirrorError;
use crate::decode::envelope::{DELETED, KAFKA_KEY, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TIMESTAMP, KAFKA_TOPIC, SOURCE_TXID, TS_MS};
use crate::decode::headers::KAFKA_HEADERS;
use crate::decode::toast::UNAVAILABLE;

/// Decoded columns the mirror does not keep.
const BRONZE_ONLY: &[&str] = &[TS_MS, DELETED, UNAVAILABLE, KAFKA_KEY, KAFKA_TOPIC, KAFKA_TIMESTAMP, KAFKA_HEADERS, SOURCE_TXID];

/// The mirror's columns of a flattened decoded batch.
pub fn mirror_fields(schema: &Schema) -> Vec<FieldRef> {
    schema.fields().iter().filter(|f| !BRONZE_ONLY.contains(&f.name().as_str())).cloned().collect()
}

/// The table's current rows of the keys a run fills columns from (read file by file, so of
/// each file's schema), and where each key's row is among them (batch, row).
#[derive(Debug, Clone, Default)]
pub struct TableRows {
    pub batches: Vec<RecordBatch>,
    pub row_of: HashMap<KeyHash, (usize, usize)>,
}

/// An upserted key: its newest change and its fills.
type Upsert<'a> = (&'a KeyHash, &'a At, &'a [(String, Fill)]);

/// The upserted keys' new rows, in the order of `reduced` (`None`: the run upserts nothing).
/// Their schema is the newest batch's columns, then those only older batches of the run have
/// (a column dropped mid-run stays); a column a row's source lacks is null there.
pub fn images(reduced: &Reduced, batches: &[RecordBatch], table: Option<&TableRows>, topic: &str) -> Result<Option<RecordBatch>, MirrorError> {
    let bad = |reason: String| MirrorError::Rows { topic: topic.to_string(), reason };
    let upserts: Vec<Upsert<'_>> = reduced
        .keys
        .iter()
        .filter_map(|(k, f)| match f {
            Final::Upsert { at, fills } => Some((k, at, fills.as_slice())),
            Final::Delete => None,
        })
        .collect();
    if upserts.is_empty() {
        return Ok(None);
    }
    let mut fields: Vec<FieldRef> = Vec::new();
    for batch in batches.iter().rev() {
        for f in mirror_fields(batch.schema().as_ref()) {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f);
            }
        }
    }
    let fields: Vec<FieldRef> = fields
        .into_iter()
        .map(|f| if [KAFKA_PARTITION, KAFKA_OFFSET].contains(&f.name().as_str()) { f } else { Arc::new(f.as_ref().clone().with_nullable(true)) })
        .collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for field in &fields {
        let name = field.name();
        let of = |batch: &RecordBatch| -> Result<ArrayRef, MirrorError> {
            match batch.column_by_name(name) {
                Some(c) if c.data_type() == field.data_type() => Ok(c.clone()),
                Some(c) => arrow::compute::cast(c, field.data_type()).map_err(|e| bad(format!("column {name} is {} in one change and {} in a later one: {e}", c.data_type(), field.data_type()))),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            }
        };
        // The run's batches, then the table's rows, then one null.
        let mut sources: Vec<ArrayRef> = batches.iter().map(of).collect::<Result<_, _>>()?;
        let table_at = sources.len();
        for t in table.map(|t| t.batches.as_slice()).unwrap_or_default() {
            sources.push(of(t)?);
        }
        let null_at = sources.len();
        sources.push(new_null_array(field.data_type(), 1));
        let picks: Vec<(usize, usize)> = upserts
            .iter()
            .map(|(key, at, fills)| match fills.iter().find(|(c, _)| c == name).map(|(_, f)| *f) {
                None => **at,
                Some(Fill::Change(from)) => from,
                Some(Fill::Table) => table.and_then(|t| t.row_of.get(*key)).map_or((null_at, 0), |(b, row)| (table_at + b, *row)),
            })
            .collect();
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        columns.push(arrow::compute::interleave(&refs, &picks).map_err(|e| bad(format!("column {name}: {e}")))?);
    }
    let schema = Arc::new(Schema::new(fields.iter().map(|f| f.as_ref().clone()).collect::<Vec<Field>>()));
    RecordBatch::try_new(schema, columns).map(Some).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::decode::envelope::OP;
    use crate::mirror::changes::reduce;
    use crate::mirror::keys::key_hashes;
    use crate::mirror::tests::{id, run};

    /// A flattened run: (op, id, title, body, unavailable columns, offset); `with_body` false: the
    /// column is not in the batch at all (dropped).
    fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, Box<dyn std::error::Error>> {
        let c = batch.column_by_name(name).ok_or(format!("no {name}"))?;
        Ok(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect())
    }

    #[test]
    fn each_upserted_key_gets_its_newest_image_its_toast_kept_and_bronze_columns_left_out() -> Result<(), Box<dyn std::error::Error>> {
        let one = run(&[("c", 1, "a", Some("long 1"), &[], 10), ("c", 2, "b", Some("long 2"), &[], 11), ("c", 4, "d", Some("long 4"), &[], 12)], true)?;
        let two = run(&[("u", 1, "a2", None, &["body"], 13), ("u", 3, "c2", None, &["body"], 14), ("u", 5, "e2", None, &["body"], 15), ("d", 4, "d", None, &[], 16)], true)?;
        let batches = [one, two];
        let reduced = reduce(&batches, &id(), "t")?;
        // The table holds key 3's row (body "long 3"); key 5 has none there.
        let table_batch = run(&[("c", 3, "c", Some("long 3"), &[], 1)], true)?;
        let k3 = key_hashes(&table_batch, &id(), "t")?.first().copied().flatten().ok_or("no hash")?;
        let table = TableRows { batches: vec![table_batch], row_of: HashMap::from([(k3, (0, 0))]) };
        let out = images(&reduced, &batches, Some(&table), "t")?.ok_or("no rows")?;
        let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "title", "body", OP, KAFKA_PARTITION, KAFKA_OFFSET], "the mirror's columns");
        assert_eq!(strings(&out, "title")?, [Some("a2"), Some("b"), Some("c2"), Some("e2")].map(|s| s.map(String::from)), "newest titles, keys 1, 2, 3, 5 (4 deleted)");
        assert_eq!(
            strings(&out, "body")?,
            [Some("long 1"), Some("long 2"), Some("long 3"), None].map(|s| s.map(String::from)),
            "bodies: 1 from its create in the run, 2 as created, 3 from the table, 5 found nowhere"
        );
        let offsets: Vec<i64> = out.column_by_name(KAFKA_OFFSET).ok_or("no offset")?.as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(offsets, [13, 11, 14, 15], "each row's change");
        Ok(())
    }

    #[test]
    fn a_column_dropped_mid_run_stays_null_for_rows_changed_after() -> Result<(), Box<dyn std::error::Error>> {
        let before = run(&[("c", 1, "a", Some("x"), &[], 0), ("c", 2, "b", Some("y"), &[], 1)], true)?;
        let after = run(&[("u", 2, "b2", None, &[], 2)], false)?;
        let batches = [before, after];
        let out = images(&reduce(&batches, &id(), "t")?, &batches, None, "t")?.ok_or("no rows")?;
        let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "title", OP, KAFKA_PARTITION, KAFKA_OFFSET, "body"], "the dropped column after the newest batch's");
        assert_eq!(strings(&out, "body")?, [Some("x".to_string()), None], "key 1 keeps its body, key 2 changed after the drop");
        Ok(())
    }
}
