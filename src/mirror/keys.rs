//! Keys: a row of the mirror is known by its primary key: the fields of the Debezium key (the
//! `__kafka_key` struct the decoder gives names them), whose values every row image carries
//! (a delete's before image too). Hashes are taken from the image's columns, as the mirror
//! stores them, so the index rebuilt from the table's files at start-up and the one kept from
//! the records agree. The index keeps a 128-bit hash of the key's row-format bytes (arrow's
//! `RowConverter`: equal keys, equal bytes, whatever the types), never the key itself: at 5
//! million keys a collision has a chance of about 10^-26, and an entry's slot is 33 bytes (the
//! hash, the location, the map's control byte) whatever the key's size.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::row::{RowConverter, SortField};

use super::MirrorError;
use crate::decode::envelope::KAFKA_KEY;

/// A key's hash.
pub type KeyHash = u128;

/// The primary key's columns: the fields of the records' key.
pub fn key_names(batch: &RecordBatch, topic: &str) -> Result<Vec<String>, MirrorError> {
    let bad = |reason: String| MirrorError::Rows { topic: topic.to_string(), reason };
    let key = batch.column_by_name(KAFKA_KEY).ok_or_else(|| bad(format!("the records have no key ({KAFKA_KEY}): a table without a primary key has no mirror")))?;
    match key.data_type() {
        arrow::datatypes::DataType::Struct(fields) if !fields.is_empty() => Ok(fields.iter().map(|f| f.name().clone()).collect()),
        other => Err(bad(format!("the records' key is {other}, not a record of primary key columns: a table without a primary key has no mirror"))),
    }
}

/// Each row's key hash, from its columns `names` (`None`: a row whose key columns are all
/// null, which no mirror row can stand for: a truncate, a tombstone).
pub fn key_hashes(batch: &RecordBatch, names: &[String], topic: &str) -> Result<Vec<Option<KeyHash>>, MirrorError> {
    let bad = |reason: String| MirrorError::Rows { topic: topic.to_string(), reason };
    let columns: Vec<ArrayRef> = names
        .iter()
        .map(|n| batch.column_by_name(n).cloned().ok_or_else(|| bad(format!("the row image has no column {n} of the primary key"))))
        .collect::<Result<_, _>>()?;
    let fields = columns.iter().map(|c| SortField::new(c.data_type().clone())).collect();
    let converter = RowConverter::new(fields).map_err(|e| bad(format!("its key cannot be compared: {e}")))?;
    let rows = converter.convert_columns(&columns).map_err(|e| bad(format!("its key cannot be compared: {e}")))?;
    Ok((0..batch.num_rows()).map(|i| columns.iter().any(|c| c.is_valid(i)).then(|| twox_hash::XxHash3_128::oneshot(rows.row(i).as_ref()))).collect())
}

/// Where a key's current row is: a data file of the table (by its path relative to the root)
/// and the row's position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    file: u32,
    row: u32,
}

/// The index of one Kafka partition's rows: key → file and row. Files are numbered once, so an
/// entry's slot is 33 bytes whatever the path's length.
#[derive(Debug, Default)]
pub struct KeyIndex {
    files: Vec<String>,
    numbers: HashMap<String, u32>,
    keys: HashMap<KeyHash, Location>,
}

impl KeyIndex {
    /// The key's current row: its file and position.
    pub fn get(&self, key: KeyHash) -> Option<(&str, u64)> {
        let at = self.keys.get(&key)?;
        Some((self.files.get(at.file as usize)?.as_str(), u64::from(at.row)))
    }

    /// The key's row is now at `row` of `file`; returns where it was.
    pub fn insert(&mut self, key: KeyHash, file: &str, row: u64) -> Result<Option<(String, u64)>, MirrorError> {
        let row = u32::try_from(row).map_err(|_| MirrorError::Rows { topic: file.to_string(), reason: format!("row {row} is past the 2^32 rows a file of the index holds") })?;
        let file = match self.numbers.get(file) {
            Some(n) => *n,
            None => {
                let n = u32::try_from(self.files.len()).map_err(|_| MirrorError::Rows { topic: file.to_string(), reason: "more than 2^32 files".into() })?;
                self.files.push(file.to_string());
                self.numbers.insert(file.to_string(), n);
                n
            }
        };
        Ok(self.keys.insert(key, Location { file, row }).and_then(|old| self.located(old)))
    }

    /// The key is deleted; returns where its row was.
    pub fn remove(&mut self, key: KeyHash) -> Option<(String, u64)> {
        self.keys.remove(&key).and_then(|old| self.located(old))
    }

    /// Every row the index holds, by file.
    pub fn all(&self) -> HashMap<String, Vec<u64>> {
        let mut out: HashMap<String, Vec<u64>> = HashMap::new();
        for at in self.keys.values() {
            if let Some(f) = self.files.get(at.file as usize) {
                out.entry(f.clone()).or_default().push(u64::from(at.row));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The memory its maps hold, about: each slot of the key map (hash, location and the map's
    /// control byte), and each file's path twice.
    pub fn bytes(&self) -> usize {
        let slots = self.keys.capacity() * (std::mem::size_of::<(KeyHash, Location)>() + 1);
        let paths: usize = self.files.iter().map(|f| 2 * (f.len() + std::mem::size_of::<String>()) + 4).sum();
        slots + paths
    }

    fn located(&self, at: Location) -> Option<(String, u64)> {
        Some((self.files.get(at.file as usize)?.clone(), u64::from(at.row)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Schema};

    use super::*;

    /// Rows with a key struct of (id, tenant) and the same values as image columns.
    fn keyed(ids: &[Option<(i32, &str)>]) -> Result<RecordBatch, arrow::error::ArrowError> {
        let fields = Fields::from(vec![Field::new("id", DataType::Int32, false), Field::new("tenant", DataType::Utf8, false)]);
        let id = Int32Array::from_iter(ids.iter().map(|k| k.map(|k| k.0)));
        let tenant = StringArray::from_iter(ids.iter().map(|k| k.map(|k| k.1)));
        let nulls = arrow::buffer::NullBuffer::from_iter(ids.iter().map(Option::is_some));
        let key = StructArray::try_new(fields.clone(), vec![Arc::new(id.clone()), Arc::new(tenant.clone())], Some(nulls))?;
        let schema = Schema::new(vec![Field::new("id", DataType::Int32, true), Field::new("tenant", DataType::Utf8, true), Field::new(KAFKA_KEY, DataType::Struct(fields), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(id), Arc::new(tenant), Arc::new(key)])
    }

    #[test]
    fn equal_keys_hash_alike_and_every_field_counts() -> Result<(), Box<dyn std::error::Error>> {
        let batch = keyed(&[Some((1, "a")), Some((1, "b")), Some((2, "a")), Some((1, "a")), None])?;
        let names = key_names(&batch, "t")?;
        assert_eq!(names, ["id", "tenant"], "the key's fields");
        let h = key_hashes(&batch, &names, "t")?;
        assert_eq!(h[0], h[3], "the same key in two rows");
        let distinct: std::collections::HashSet<_> = h[..3].iter().collect();
        assert_eq!(distinct.len(), 3, "keys differing in one field: {h:?}");
        assert_eq!(h[4], None, "a row without a key");
        Ok(())
    }

    #[test]
    fn rows_without_a_key_column_have_no_mirror_and_say_so() -> Result<(), Box<dyn std::error::Error>> {
        let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)])), vec![Arc::new(Int32Array::from(vec![1]))])?;
        let err = key_names(&batch, "shop.public.events").err().ok_or("rows without a key were named")?;
        assert!(err.to_string().contains("shop.public.events") && err.to_string().contains("without a primary key has no mirror"), "{err}");
        let err = key_hashes(&batch, &["tenant".to_string()], "t").err().ok_or("a missing key column was hashed")?;
        assert!(err.to_string().contains("no column tenant"), "{err}");
        Ok(())
    }

    #[test]
    fn the_index_says_where_each_key_was_when_it_moves_or_goes() -> Result<(), Box<dyn std::error::Error>> {
        let mut index = KeyIndex::default();
        assert_eq!(index.insert(7, "p=0/a.parquet", 3)?, None, "a new key");
        assert_eq!(index.insert(8, "p=0/a.parquet", 4)?, None, "another");
        assert_eq!(index.insert(7, "p=0/b.parquet", 0)?, Some(("p=0/a.parquet".to_string(), 3)), "a replaced row's old place");
        assert_eq!(index.get(7), Some(("p=0/b.parquet", 0)), "where it is now");
        assert_eq!(index.remove(8), Some(("p=0/a.parquet".to_string(), 4)), "a deleted row's place");
        assert_eq!((index.len(), index.get(8)), (1, None), "(keys left, the deleted key)");
        index.insert(9, "p=0/b.parquet", 1)?;
        let mut all: Vec<(String, Vec<u64>)> = index.all().into_iter().collect();
        all.iter_mut().for_each(|(_, rows)| rows.sort());
        assert_eq!(all, [("p=0/b.parquet".to_string(), vec![0, 1])], "every row the index holds, by file");
        Ok(())
    }
}
