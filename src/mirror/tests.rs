//! The mirror end to end on object_store's in-memory store: changes of one partition through
//! [`Partition`] into a Delta table with deletion vectors, read back by the kernel's scan, and
//! the index rebuilt from the table as a restart does.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use object_store::memory::InMemory;
use object_store::ObjectStore;

use super::keys::key_hashes;
use super::partition::{rebuild, Io, Partition};
use crate::decode::envelope::{KAFKA_KEY, KAFKA_OFFSET, KAFKA_PARTITION, OP};
use crate::decode::toast::UNAVAILABLE;
use crate::table::delta::DeltaTable;
use crate::table::{Format as _, Settings, Staged};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// (op, id, title, body, unavailable columns, offset)
pub type Change<'a> = (&'a str, i32, &'a str, Option<&'a str>, &'a [&'a str], i64);

/// One partition's changes as the decoder flattens them; `with_body` false: the column is not
/// in the batch at all (dropped).
pub fn run(rows: &[Change<'_>], with_body: bool) -> Result<RecordBatch, arrow::error::ArrowError> {
    let key_fields = Fields::from(vec![Field::new("id", DataType::Int32, false)]);
    let key = StructArray::try_new(key_fields.clone(), vec![Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1)))], None)?;
    let mut names = ListBuilder::new(StringBuilder::new());
    for r in rows {
        if r.4.is_empty() {
            names.append_null();
        } else {
            names.append_value(r.4.iter().map(|m| Some(*m)));
        }
    }
    let mut fields = vec![Field::new("id", DataType::Int32, true), Field::new("title", DataType::Utf8, true)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))), Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2)))];
    if with_body {
        fields.push(Field::new("body", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3))));
    }
    fields.extend([
        Field::new(OP, DataType::Utf8, true),
        Field::new(UNAVAILABLE, DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true),
        Field::new(KAFKA_KEY, DataType::Struct(key_fields), true),
        Field::new(KAFKA_PARTITION, DataType::Int32, false),
        Field::new(KAFKA_OFFSET, DataType::Int64, false),
    ]);
    columns.extend([
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        Arc::new(names.finish()),
        Arc::new(key),
        Arc::new(Int32Array::from(vec![0; rows.len()])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.5))),
    ]);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

pub fn id() -> Vec<String> {
    vec!["id".to_string()]
}

const ROOT: &str = "memory:///silver/topics/t/";

fn io(store: &Arc<dyn ObjectStore>) -> Result<Io, Box<dyn std::error::Error>> {
    let roots: crate::table::delta::Roots = Box::new(|_: &str| url::Url::parse(ROOT).map_err(|e| e.to_string()));
    let transform = crate::table::delta::Delta::on(store.clone(), roots, Settings::default()).transform();
    Ok(Io { store: store.clone(), root: "silver/topics/t".into(), props: parquet::file::properties::WriterProperties::builder().build(), transform })
}

fn table(store: &Arc<dyn ObjectStore>) -> Result<DeltaTable, url::ParseError> {
    Ok(DeltaTable::new(store.clone(), url::Url::parse(ROOT)?, "t", Settings { deletion_vectors: true, ..Settings::default() }))
}

/// Every row a reader of the latest version sees, as id → (title, body), deletion vectors applied.
async fn mirror_rows(store: &Arc<dyn ObjectStore>) -> Result<BTreeMap<i32, (String, Option<String>)>, Box<dyn std::error::Error>> {
    let mut t = table(store)?;
    let engine = Arc::new(delta_kernel_default_engine::DefaultEngine::builder(store.clone()).build());
    let rows = tokio::task::spawn_blocking(move || -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        let snapshot = t.refresh()?.ok_or("no table")?;
        let mut rows = BTreeMap::new();
        for data in snapshot.scan_builder().build()?.execute(engine)? {
            let data = ArrowEngineData::try_from_engine_data(data?)?;
            let batch = data.record_batch();
            let ids = batch.column_by_name("id").ok_or("no id")?.as_primitive::<Int32Type>().clone();
            let titles = batch.column_by_name("title").ok_or("no title")?.as_string::<i32>().clone();
            let bodies = batch.column_by_name("body").map(|c| c.as_string::<i32>().clone());
            for i in 0..batch.num_rows() {
                let body = bodies.as_ref().and_then(|b| b.is_valid(i).then(|| b.value(i).to_string()));
                if rows.insert(ids.value(i), (titles.value(i).to_string(), body)).is_some() {
                    return Err(format!("id {} twice in the mirror", ids.value(i)).into());
                }
            }
        }
        Ok(rows)
    })
    .await?
    .map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Prepares the partition's commit after `start`, commits it, and lets the index follow.
async fn commit(store: &Arc<dyn ObjectStore>, part: Partition, start: Option<i64>) -> Result<(Partition, Staged), Box<dyn std::error::Error>> {
    let (io, mut t) = (io(store)?, table(store)?);
    let mut part = part;
    let (part, staged) = tokio::task::spawn_blocking(move || -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        let prepared = part.prepare(start, &io)?.ok_or("nothing to commit")?;
        let staged = prepared.staged.clone();
        let outcome = t.commit(vec![staged.clone()])?;
        if outcome.committed != [(0, staged.next)] {
            return Err(format!("commit of {start:?}..{}: {outcome:?}", staged.next).into());
        }
        part.landed(prepared)?;
        Ok((part, staged))
    })
    .await?
    .map_err(|e| e.to_string())?;
    Ok((part, staged))
}

fn row(title: &str, body: Option<&str>) -> (String, Option<String>) {
    (title.to_string(), body.map(str::to_string))
}

/// Inserts, updates (one leaving its TOASTed body unchanged), a delete and a truncate, one
/// commit each run: the table holds each key's newest row once, the TOASTed body kept from
/// the table, the deleted key gone, nothing before the truncate; replaced rows are marked in
/// deletion vectors, not rewritten; and the index rebuilt from the table finds every key where
/// the running one has it.
#[tokio::test(flavor = "multi_thread")]
async fn changes_become_the_current_rows_and_the_rebuilt_index_finds_them() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut part = Partition::new("t", 0, None, Default::default());
    part.push(run(&[("r", 1, "one", Some("long 1"), &[], 0), ("c", 2, "two", Some("long 2"), &[], 1), ("c", 3, "three", Some("long 3"), &[], 2)], true)?, 3)?;
    let (mut part, first) = commit(&store, part, None).await?;
    assert_eq!((first.files.len(), first.deletes.len()), (1, 0), "the first run: one file, nothing marked");
    part.push(run(&[("u", 1, "one'", None, &["body"], 3), ("d", 2, "two", None, &[], 4), ("u", 3, "three'", Some("longer 3"), &[], 5), ("c", 4, "four", Some("long 4"), &[], 6)], true)?, 7)?;
    let (part, second) = commit(&store, part, Some(3)).await?;
    let marked: Vec<(String, Vec<u64>)> = second.deletes.iter().map(|d| (d.path.clone(), { let mut r = d.rows.clone(); r.sort(); r })).collect();
    assert_eq!(marked, [(first.files[0].path.clone(), vec![0, 1, 2])], "rows 0, 1, 2 of the first file replaced or deleted");
    let want = BTreeMap::from([(1, row("one'", Some("long 1"))), (3, row("three'", Some("longer 3"))), (4, row("four", Some("long 4")))]);
    assert_eq!(mirror_rows(&store).await?, want, "the mirror after two runs: key 1's body kept from the table");

    // A restart: the index rebuilt from the table's live rows.
    let (io, mut t) = (io(&store)?, table(&store)?);
    let rebuilt = tokio::task::spawn_blocking(move || -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        let files = t.live_files(0)?;
        Ok(rebuild(&files, &id(), "t", &io)?)
    })
    .await?
    .map_err(|e| e.to_string())?;
    let hashes = key_hashes(&run(&[("c", 1, "", None, &[], 0), ("c", 3, "", None, &[], 0), ("c", 4, "", None, &[], 0), ("c", 2, "", None, &[], 0)], false)?, &id(), "t")?;
    let located: Vec<Option<(String, u64)>> = hashes.iter().map(|h| h.and_then(|h| rebuilt.get(h)).map(|(f, r)| (f.to_string(), r))).collect();
    let newer = second.files[0].path.clone();
    assert_eq!(located, [Some((newer.clone(), 0)), Some((newer.clone(), 1)), Some((newer, 2)), None], "keys 1, 3, 4 in the second file, key 2 nowhere");
    assert_eq!(rebuilt.len(), part.rows(), "keys the rebuilt and the running index hold");

    // A truncate, then a create: only the create is left.
    let mut part = Partition::new("t", 0, Some(id()), rebuilt);
    part.push(run(&[("u", 4, "four'", None, &["body"], 7), ("t", 0, "", None, &[], 8), ("c", 5, "five", Some("long 5"), &[], 9)], true)?, 10)?;
    let (part, _) = commit(&store, part, Some(7)).await?;
    assert_eq!(mirror_rows(&store).await?, BTreeMap::from([(5, row("five", Some("long 5")))]), "the mirror after a truncate");
    assert_eq!(part.rows(), 1, "keys the index holds after the truncate");
    Ok(())
}
