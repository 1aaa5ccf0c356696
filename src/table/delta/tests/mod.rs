//! The commit protocol against object_store's in-memory store: two `DeltaTable`s on one store are
//! two members (or a member and its zombie) racing for the same log.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn schema(extra: bool) -> arrow_schema::SchemaRef {
    let mut fields = vec![
        Field::new("__kafka_partition", DataType::Int32, false),
        Field::new("__kafka_offset", DataType::Int64, false),
        Field::new("__kafka_timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new("id", DataType::Utf8, true),
    ];
    if extra {
        fields.push(Field::new("priority", DataType::Int32, true));
    }
    Arc::new(Schema::new(fields))
}

fn file(partition: i32, start: i64, rows: u64, extra: bool) -> DataFile {
    DataFile {
        path: format!("__kafka_partition={partition}/{start:020}-test.parquet"),
        size: 100 + rows,
        rows,
        modification_time: 1_700_000_000_000,
        schema: schema(extra),
        partition_values: Vec::new(),
        stats: None,
    }
}

/// The table stage over Delta tables in `store`, each topic's at `memory:///bronze/topics/<topic>/`,
/// committing whenever asked.
fn stage(store: &Arc<dyn ObjectStore>, settings: Settings) -> crate::table::Tables {
    let roots: Roots = Box::new(|topic: &str| Url::parse(&format!("memory:///bronze/topics/{topic}/")).map_err(|e| e.to_string()));
    let format = Arc::new(Delta::on(store.clone(), roots, settings.clone()));
    crate::table::Tables::new(format, std::time::Duration::ZERO, &settings)
}

fn staged(partition: i32, start: Option<i64>, next: i64) -> Staged {
    let from = start.unwrap_or(0);
    Staged { partition, start, next, files: vec![file(partition, from, (next - from) as u64, false)], deletes: Vec::new() }
}

fn table(store: &Arc<dyn ObjectStore>, interval: u64) -> Result<DeltaTable, url::ParseError> {
    table_with(store, Settings { checkpoint_interval: interval, ..Settings::default() })
}

fn table_with(store: &Arc<dyn ObjectStore>, settings: Settings) -> Result<DeltaTable, url::ParseError> {
    Ok(DeltaTable::new(store.clone(), Url::parse("memory:///bronze/topics/t/")?, "t", settings))
}

/// The log's version files, in order.
async fn log(store: &Arc<dyn ObjectStore>) -> Result<Vec<String>, object_store::Error> {
    use futures::TryStreamExt;
    let mut names: Vec<String> = store
        .list(Some(&object_store::path::Path::from("bronze/topics/t/_delta_log")))
        .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await?;
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_holds_each_partitions_next_offset_beside_its_files() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let fresh = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let before = t.versions(&[0, 1])?;
        let outcome = t.commit(vec![staged(0, None, 10), staged(1, None, 5)])?;
        let after = t.versions(&[0, 1, 2])?;
        Ok((before, outcome, after))
    });
    let (before, outcome, after) = fresh.await??;
    assert_eq!(before, BTreeMap::from([(0, None), (1, None)]), "versions of a table that does not exist yet");
    assert_eq!(outcome.committed, vec![(0, 10), (1, 5)], "committed partitions");
    assert!(outcome.fenced.is_empty(), "fenced: {:?}", outcome.fenced);
    assert_eq!(outcome.version, Some(1), "version 0 creates the table, version 1 holds the files");
    assert_eq!(after, BTreeMap::from([(0, Some(10)), (1, Some(5)), (2, None)]), "txn versions after the commit");
    let commit = String::from_utf8(store.get(&"bronze/topics/t/_delta_log/00000000000000000001.json".into()).await?.bytes().await?.to_vec())?;
    for want in [
        r#""appId":"kafka-parquet-sink:t:0","version":10"#,
        r#""appId":"kafka-parquet-sink:t:1","version":5"#,
        r#""path":"__kafka_partition=0/00000000000000000000-test.parquet""#,
        r#""partitionValues":{"__kafka_partition":"1"}"#,
        r#"\"numRecords\":10"#,
    ] {
        assert!(commit.contains(want), "version 1 lacks {want}:\n{commit}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_behind_the_table_is_fenced_and_the_other_partitions_commit() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (mut a, mut zombie) = (table(&store, 0)?, table(&store, 0)?);
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        a.commit(vec![staged(0, None, 10)])?;
        // The zombie read nothing since it started: it still thinks partition 0 starts at none.
        let z = zombie.commit(vec![staged(0, None, 7), staged(1, None, 3)])?;
        // The owner goes on from its own version, unaffected.
        let a2 = a.commit(vec![staged(0, Some(10), 20)])?;
        Ok((z, a2, a.versions(&[0, 1])?))
    });
    let (z, a2, versions) = run.await??;
    assert_eq!(z.fenced, vec![(0, Some(10))], "the zombie's partition 0 is fenced with the table's version");
    assert_eq!(z.committed, vec![(1, 3)], "its partition 1 nobody else wrote");
    assert_eq!(a2.committed, vec![(0, 20)], "the owner's next commit");
    assert_eq!(versions, BTreeMap::from([(0, Some(20)), (1, Some(3))]));
    let log = log(&store).await?;
    assert_eq!(log.iter().filter(|n| n.ends_with(".json")).count(), 4, "versions 0 (create), 1 (a), 2 (zombie's partition 1), 3 (a): {log:?}");
    let zombie_commit = String::from_utf8(store.get(&"bronze/topics/t/_delta_log/00000000000000000002.json".into()).await?.bytes().await?.to_vec())?;
    assert!(!zombie_commit.contains("__kafka_partition=0/"), "the fenced partition's file is referenced:\n{zombie_commit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_answer_was_lost_is_found_in_the_log_not_made_twice() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let first = t.commit(vec![staged(0, None, 10)])?;
        // The same ranges again, as after a timeout whose commit did land.
        let again = t.commit(vec![staged(0, None, 10)])?;
        Ok((first, again))
    });
    let (first, again) = run.await??;
    assert_eq!(first.version, Some(1));
    assert_eq!(again, Outcome { version: None, committed: vec![(0, 10)], fenced: vec![], refused: vec![], conflicts: 0, deferred: vec![] }, "the second attempt of one range");
    assert_eq!(log(&store).await?.iter().filter(|n| n.ends_with(".json")).count(), 2, "no second version for the same range");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_column_joins_the_table_schema_and_a_partition_changing_a_type_is_refused_alone() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![staged(0, None, 10)])?;
        let wider = Staged { partition: 0, start: Some(10), next: 20, files: vec![file(0, 10, 10, true)], deletes: Vec::new() };
        t.commit(vec![wider])?;
        let fields: Vec<String> = t.refresh()?.map(|s| s.schema().fields().map(|f| f.name().clone()).collect()).unwrap_or_default();
        let mut changed = file(0, 20, 5, false);
        changed.schema = Arc::new(Schema::new(vec![
            Field::new("__kafka_partition", DataType::Int32, false),
            Field::new("__kafka_offset", DataType::Utf8, false),
        ]));
        // Partition 0's rows change a column's kind; partition 1's commit beside it goes on.
        let refused = t.commit(vec![Staged { partition: 0, start: Some(20), next: 25, files: vec![changed], deletes: Vec::new() }, staged(1, None, 10)])?;
        let versions = t.versions(&[0, 1])?;
        Ok((fields, refused, versions))
    });
    let (fields, refused, versions) = run.await??;
    assert_eq!(fields, ["__kafka_partition", "__kafka_offset", "__kafka_timestamp", "id", "priority"], "table columns after the wider file");
    assert_eq!(refused.committed, [(1, 10)], "the other partition commits");
    let [(0, reason)] = refused.refused.as_slice() else { return Err(format!("partition 0 refused alone: {refused:?}").into()) };
    assert!(reason.contains("column __kafka_offset is long in the table and string in the rows"), "{reason}");
    assert_eq!(versions, [(0, Some(20)), (1, Some(10))].into_iter().collect(), "txn versions: the refused partition stays where it was");
    Ok(())
}

/// A column added later whose type needs a feature (a timestamp without zone: `timestampNtz`)
/// brings the feature into the protocol with the new metaData, so the kernel (and every reader)
/// still opens the table; nanosecond timestamps reach the table as microseconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_later_timestamp_without_zone_brings_its_feature_with_it() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (mut t, mut fresh) = (table(&store, 0)?, table(&store, 0)?);
    let local = Field::new("due", DataType::Timestamp(TimeUnit::Nanosecond, None), true);
    let with_due = actions::file_schema(&Arc::new(Schema::new(schema(false).fields().iter().cloned().chain([Arc::new(local)]).collect::<Vec<_>>())));
    assert_eq!(with_due.field_with_name("due")?.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, None), "a file's nanoseconds become microseconds");
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![staged(0, None, 10)])?;
        let mut later = file(0, 10, 10, false);
        later.schema = with_due;
        let outcome = t.commit(vec![Staged { partition: 0, start: Some(10), next: 20, files: vec![later], deletes: Vec::new() }])?;
        let snapshot = fresh.refresh()?.ok_or(TableError::Task { table: "t".into(), reason: "no table".into() })?;
        let protocol = serde_json::to_value(snapshot.table_configuration().protocol()).map_err(|e| TableError::Task { table: "t".into(), reason: e.to_string() })?;
        Ok((outcome, protocol, fresh.versions(&[0])?))
    });
    let (outcome, protocol, versions) = run.await??;
    assert_eq!(outcome.committed, [(0, 20)], "the file with the new column commits: {outcome:?}");
    for list in ["readerFeatures", "writerFeatures"] {
        assert!(protocol[list].as_array().is_some_and(|l| l.iter().any(|f| f == "timestampNtz")), "{list} of {protocol}");
    }
    assert_eq!(versions, [(0, Some(20))].into_iter().collect(), "a new reader opens the table and its txn");
    Ok(())
}

/// `after` as Debezium's envelope has it: `streak` of the given width, `category` when added.
fn image_schema(streak: DataType, category: bool) -> arrow_schema::SchemaRef {
    let mut image = vec![Field::new("id", DataType::Utf8, false), Field::new("streak", streak, true)];
    if category {
        image.push(Field::new("category", DataType::Utf8, true));
    }
    Arc::new(Schema::new(vec![
        Field::new("__kafka_partition", DataType::Int32, false),
        Field::new("__kafka_offset", DataType::Int64, false),
        Field::new("after", DataType::Struct(image.into()), true),
    ]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_widened_column_and_a_nested_new_field_evolve_the_table_in_a_version_of_their_own() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table_with(&store, Settings { type_widening: true, ..Settings::default() })?;
    let with = |p: i32, start: i64, schema: arrow_schema::SchemaRef| {
        let mut f = file(p, start, 10, false);
        f.schema = schema;
        Staged { partition: p, start: if start == 0 { None } else { Some(start) }, next: start + 10, files: vec![f], deletes: Vec::new() }
    };
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![with(0, 0, image_schema(DataType::Int32, false)), with(1, 0, image_schema(DataType::Int32, false))])?;
        // Partition 0 sees the ALTER TABLE first; partition 1 still has rows of the old version.
        let widened = t.commit(vec![with(0, 10, image_schema(DataType::Int64, true))])?;
        let older = t.commit(vec![with(1, 10, image_schema(DataType::Int32, false))])?;
        let schema = t.refresh()?.map(|s| s.schema());
        Ok((widened, older, schema))
    });
    let (widened, older, schema) = run.await??;
    // Version 0 creates, 1 holds the first files, 2 changes the schema, 3 and 4 the later files.
    assert_eq!((widened.version, widened.committed), (Some(3), vec![(0, 20)]), "the commit after the schema change");
    assert_eq!((older.version, older.committed), (Some(4), vec![(1, 20)]), "older rows need no change of their own");
    let schema = schema.ok_or("no table")?;
    let after = schema.field("after").ok_or("no after column")?;
    let delta_kernel::schema::DataType::Struct(image) = after.data_type() else { return Err(format!("after is {}", after.data_type()).into()) };
    let streak = image.field("streak").ok_or("no after.streak")?;
    assert_eq!(streak.data_type().to_string(), "long", "after.streak widened");
    let changes = serde_json::to_value(streak.metadata())?;
    assert_eq!(changes["delta.typeChanges"], serde_json::json!([{"fromType": "integer", "toType": "long"}]), "the recorded change");
    assert!(image.field("category").is_some_and(|c| c.is_nullable()), "after.category added, nullable: {image:?}");
    let entry = store.get(&object_store::path::Path::from("bronze/topics/t/_delta_log/00000000000000000002.json")).await?.bytes().await?;
    let text = String::from_utf8_lossy(&entry);
    let protocol: serde_json::Value = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|a| a.get("protocol").cloned()).ok_or("no protocol in version 2")?;
    for side in ["readerFeatures", "writerFeatures"] {
        assert!(protocol[side].as_array().is_some_and(|f| f.iter().any(|x| x == "typeWidening")), "{side} of {protocol}");
    }
    assert!(!text.contains("\"txn\""), "the schema change carries no txn: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_type_widening_a_widening_partition_is_refused_naming_the_key() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let mut first = file(0, 0, 10, false);
    first.schema = image_schema(DataType::Int32, false);
    let mut wider = file(0, 10, 10, false);
    wider.schema = image_schema(DataType::Int64, false);
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![Staged { partition: 0, start: None, next: 10, files: vec![first], deletes: Vec::new() }])?;
        let refused = t.commit(vec![Staged { partition: 0, start: Some(10), next: 20, files: vec![wider], deletes: Vec::new() }])?;
        Ok((refused, t.version()))
    });
    let (refused, version) = run.await??;
    let [(0, reason)] = refused.refused.as_slice() else { return Err(format!("partition 0 refused: {refused:?}").into()) };
    assert!(reason.contains("column after.streak is integer in the table and the rows widen it to long: set table.type_widening = true"), "{reason}");
    assert_eq!((refused.version, version), (None, Some(1)), "no version written for the refused partition");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn txn_versions_survive_checkpoints() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 2)?;
    let mut reader = table(&store, 0)?;
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        // Partition 2 is committed once, in version 1: after the checkpoints its txn is only in
        // a checkpoint file.
        t.commit(vec![staged(0, None, 10), staged(2, None, 7)])?;
        let mut start = 10;
        for next in [20, 30, 40, 50] {
            t.commit(vec![staged(0, Some(start), next)])?;
            start = next;
        }
        let checkpointed = t.checkpoint()?;
        t.commit(vec![staged(0, Some(50), 60)])?;
        Ok((checkpointed, reader.versions(&[0, 2])?))
    });
    let (checkpointed, versions) = run.await??;
    let log = log(&store).await?;
    assert_eq!(checkpointed, Some(5), "the checkpoint's version");
    assert!(log.iter().any(|f| f.ends_with("00000000000000000005.checkpoint.parquet")), "no checkpoint of version 5 in {log:?}");
    assert_eq!(versions, BTreeMap::from([(0, Some(60)), (2, Some(7))]), "versions read through the checkpoint and the version after it");
    Ok(())
}

/// A real Parquet file of `rows` rows of partition `p` from offset `start`, put in the store.
async fn put_file(store: &Arc<dyn ObjectStore>, p: i32, start: i64, rows: i64) -> Result<DataFile, Box<dyn std::error::Error>> {
    put_file_under(store, None, p, start, rows).await
}

/// As [`put_file`], under the directory of a `dt` partition value when given.
async fn put_file_under(store: &Arc<dyn ObjectStore>, dt: Option<&str>, p: i32, start: i64, rows: i64) -> Result<DataFile, Box<dyn std::error::Error>> {
    put_file_in(store, dt.map(|d| ("dt", d)), p, start, rows).await
}

/// As [`put_file`], under the Hive directory of a (column, value) when given, the value escaped
/// as the field partitioner escapes it.
async fn put_file_in(store: &Arc<dyn ObjectStore>, value: Option<(&str, &str)>, p: i32, start: i64, rows: i64) -> Result<DataFile, Box<dyn std::error::Error>> {
    use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    let schema = schema(false);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![p; rows as usize])),
            Arc::new(Int64Array::from_iter_values(start..start + rows)),
            Arc::new(TimestampMillisecondArray::from_iter_values((start..start + rows).map(|o| 1_700_000_000_000 + o)).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values((start..start + rows).map(|o| format!("id-{o}")))),
        ],
    )?;
    let mut w = crate::encode::ParquetFile::new(&batch, parquet::file::properties::WriterProperties::builder().build())?.with_stats(stats::file_stats(&schema));
    w.write(&batch)?;
    let crate::encode::Finished { bytes, stats, .. } = w.finish_with_stats()?;
    let escape = |v: &str| v.replace('%', "%25").replace('/', "%2F").replace('?', "%3F");
    let dir = value.map(|(c, v)| format!("{c}={}/", escape(v))).unwrap_or_default();
    let path = format!("{dir}__kafka_partition={p}/{start:020}-test.parquet");
    store.put(&object_store::path::Path::parse(format!("bronze/topics/t/{path}"))?, bytes.clone().into()).await?;
    let partition_values = value.map(|(c, v)| vec![(c.to_string(), Some(v.to_string()))]).unwrap_or_default();
    Ok(DataFile { path, size: bytes.len() as u64, rows: rows as u64, modification_time: 1, schema: DataFile::schema_of(&bytes, "t")?, partition_values, stats })
}

/// Every (partition, offset) the table's current files hold, read from the files themselves.
async fn table_rows(store: &Arc<dyn ObjectStore>) -> Result<(Vec<String>, Vec<(i32, i64)>), Box<dyn std::error::Error>> {
    table_rows_of(store, table(store, 0)?).await
}

/// As [`table_rows`], the table opened as `t`.
async fn table_rows_of(store: &Arc<dyn ObjectStore>, mut t: DeltaTable) -> Result<(Vec<String>, Vec<(i32, i64)>), Box<dyn std::error::Error>> {
    use arrow::array::{AsArray, Int32Array, Int64Array};
    let files = tokio::task::spawn_blocking(move || t.file_paths()).await??;
    let mut rows = Vec::new();
    for f in &files {
        let bytes = store.get(&object_store::path::Path::parse(format!("bronze/topics/t/{f}"))?).await?.bytes().await?;
        for batch in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
            let batch = batch?;
            let ps = batch.column_by_name("__kafka_partition").and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned()).ok_or("no partition column")?;
            let os = batch.column_by_name("__kafka_offset").map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().clone()).ok_or("no offset column")?;
            let os: &Int64Array = &os;
            rows.extend(ps.values().iter().zip(os.values().iter()).map(|(p, o)| (*p, *o)));
        }
    }
    rows.sort();
    Ok((files, rows))
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_swaps_small_files_for_one_and_keeps_every_row_and_txn_version() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let mut start = None;
    let mut commits = Vec::new();
    for i in 0..6 {
        let from = i * 10;
        let f = put_file(&store, 0, from, 10).await?;
        let other = put_file(&store, 1, from, 10).await?;
        commits.push(vec![
            Staged { partition: 0, start, next: from + 10, files: vec![f], deletes: Vec::new() },
            Staged { partition: 1, start, next: from + 10, files: vec![other], deletes: Vec::new() },
        ]);
        start = Some(from + 10);
    }
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        for c in commits {
            t.commit(c)?;
        }
        Ok(t)
    });
    let mut t = run.await??;
    let (files_before, rows_before) = table_rows(&store).await?;
    assert_eq!(files_before.len(), 12, "files before: {files_before:?}");
    let policy = Policy { min_files: 4, target_file_bytes: 1 << 20, idle_ms: None, props: parquet::file::properties::WriterProperties::builder().build() };
    let kv = store.clone();
    let (done, versions) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let first = t.compact(&kv, "bronze/topics/t", &policy, &Default::default())?;
        let second = t.compact(&kv, "bronze/topics/t", &policy, &Default::default())?;
        Ok(((first, second), t.versions(&[0, 1])?))
    })
    .await??;
    assert_eq!((done.0.files_in, done.0.files_out), (12, 2), "one round: each partition value's six files into one");
    assert_eq!(done.0.version, Some(8), "versions 7 and 8, one per partition value");
    assert_eq!(done.1, Compacted::default(), "the next round: nothing left to do");
    let (files_after, rows_after) = table_rows(&store).await?;
    assert_eq!(files_after.len(), 2, "files after: {files_after:?}");
    assert!(files_after.iter().all(|f| f.contains("-compacted-")), "{files_after:?}");
    assert_eq!(rows_after, rows_before, "the rows of the table's files before and after");
    assert_eq!(versions, BTreeMap::from([(0, Some(60)), (1, Some(60))]), "txn versions after compaction");
    Ok(())
}

/// A table of partition 0 with `n` committed files of 10 rows each (txn version `10 * n`).
async fn committed_files(store: &Arc<dyn ObjectStore>, n: i64) -> Result<DeltaTable, Box<dyn std::error::Error>> {
    let mut t = table(store, 0)?;
    let mut commits = Vec::new();
    for i in 0..n {
        let f = put_file(store, 0, i * 10, 10).await?;
        commits.push(vec![Staged { partition: 0, start: (i > 0).then_some(i * 10), next: i * 10 + 10, files: vec![f], deletes: Vec::new() }]);
    }
    let t = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        for c in commits {
            t.commit(c)?;
        }
        Ok(t)
    })
    .await??;
    Ok(t)
}

/// The objects in the store whose key holds `-compacted-`: every rewrite ever put.
async fn rewrites_put(store: &Arc<dyn ObjectStore>) -> Result<Vec<String>, object_store::Error> {
    use futures::TryStreamExt;
    let keys: Vec<String> = store.list(Some(&"bronze/topics/t".into())).map_ok(|m| m.location.to_string()).try_collect().await?;
    Ok(keys.into_iter().filter(|k| k.contains("-compacted-")).collect())
}

fn policy(min_files: usize) -> Policy {
    Policy { min_files, target_file_bytes: 1 << 20, idle_ms: None, props: parquet::file::properties::WriterProperties::builder().build() }
}

/// The race a 1 s commit interval makes all the time: the sink's next commit takes the version
/// the compaction was about to write. It only added a file, so the compaction lands on top of
/// it with the file it already wrote (nothing read or encoded again), and both are kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_that_loses_its_version_to_an_append_lands_on_top_of_it_with_the_same_file() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut compactor = committed_files(&store, 5).await?;
    let appended = put_file(&store, 0, 50, 10).await?;
    let mut member = table(&store, 0)?;
    let kv = store.clone();
    let (landed, rewrite, append) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let (rewrite, listing) = compactor.rewrite_bin(&kv, "bronze/topics/t", &policy(4), &Default::default())?.ok_or_else(|| TableError::Schema { table: "t".into(), reason: "no bin".into() })?;
        // Between the rewrite and its commit, the member commits its next file at version 6
        // (0 created the table, 1-5 the five files).
        let append = member.commit(vec![Staged { partition: 0, start: Some(50), next: 60, files: vec![appended], deletes: Vec::new() }])?;
        Ok((compactor.land(&rewrite, Some(listing))?, rewrite, append))
    })
    .await??;
    assert_eq!(append.version, Some(6), "the member's commit took version 6");
    assert_eq!(landed, compact::Landed::Committed(7), "the compaction lands at the next version");
    let (files, rows) = table_rows(&store).await?;
    assert_eq!(files, vec![rewrite.file.path.clone(), "__kafka_partition=0/00000000000000000050-test.parquet".to_string()], "the rewrite beside the appended file");
    assert_eq!(rows, (0..60).map(|o| (0, o)).collect::<Vec<_>>(), "every offset once");
    assert_eq!(rewrites_put(&store).await?.len(), 1, "one rewrite put: the retry used it");
    let versions = tokio::task::spawn_blocking(move || table(&store, 0).map_err(|e| TableError::Root { topic: "t".into(), reason: e.to_string() })?.versions(&[0])).await??;
    assert_eq!(versions, BTreeMap::from([(0, Some(60))]), "the member's txn version survives the compaction");
    Ok(())
}

/// Two compactions of one bin: the second finds an input removed by the first, gives its
/// rewrite up and names nothing (its file is an orphan, for orphan removal).
#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_whose_input_another_writer_removed_is_given_up_and_never_named() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut slow = committed_files(&store, 4).await?;
    let mut fast = table(&store, 0)?;
    let kv = store.clone();
    let (landed, slow_file, fast_done) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let (rewrite, listing) = slow.rewrite_bin(&kv, "bronze/topics/t", &policy(4), &Default::default())?.ok_or_else(|| TableError::Schema { table: "t".into(), reason: "no bin".into() })?;
        let fast_done = fast.compact(&kv, "bronze/topics/t", &policy(4), &Default::default())?;
        Ok((slow.land(&rewrite, Some(listing))?, rewrite.file.path, fast_done))
    })
    .await??;
    assert_eq!((fast_done.files_in, fast_done.version), (4, Some(5)), "the other compaction took the four files at version 5");
    assert_eq!(landed, compact::Landed::InputGone, "the slow compaction's inputs are gone");
    let (files, rows) = table_rows(&store).await?;
    assert_eq!(files.len(), 1, "one file: {files:?}");
    assert!(!files.contains(&slow_file), "the given-up rewrite is never named: {files:?}");
    assert_eq!(rows, (0..40).map(|o| (0, o)).collect::<Vec<_>>(), "every offset once");
    assert_eq!(log(&store).await?.iter().filter(|n| n.ends_with(".json")).count(), 6, "versions 0-5, none from the slow compaction");
    Ok(())
}

/// A swap whose commit answer was lost is found in the log and not made a second time.
#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_found_in_the_log_is_not_committed_twice() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = committed_files(&store, 4).await?;
    let kv = store.clone();
    let (first, again) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let (rewrite, listing) = t.rewrite_bin(&kv, "bronze/topics/t", &policy(4), &Default::default())?.ok_or_else(|| TableError::Schema { table: "t".into(), reason: "no bin".into() })?;
        let first = t.land(&rewrite, Some(listing))?;
        Ok((first, t.land(&rewrite, None)?))
    })
    .await??;
    assert_eq!(first, compact::Landed::Committed(5), "the swap");
    assert_eq!(again, compact::Landed::Committed(5), "the same swap, found in the log");
    assert_eq!(log(&store).await?.iter().filter(|n| n.ends_with(".json")).count(), 6, "versions 0-5: no second commit");
    let (_, rows) = table_rows(&store).await?;
    assert_eq!(rows, (0..40).map(|o| (0, o)).collect::<Vec<_>>(), "every offset once");
    Ok(())
}

/// A table partitioned by the time partitioner's `dt` too: files are only merged with files of
/// the same `dt`, and the compacted file keeps its directory and partition values.
/// A data file's add carries its column statistics as the encoder gathered them (bounds and
/// null counts of its columns, not of the Kafka partition); a file without gathered ones
/// carries `numRecords`; compaction's rewrite gathers its own over all its rows.
#[tokio::test(flavor = "multi_thread")]
async fn adds_carry_column_statistics_and_a_rewrite_gathers_its_own() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let (first, second) = (put_file(&store, 0, 0, 10).await?, put_file(&store, 0, 10, 10).await?);
    let bare = DataFile { stats: None, ..put_file(&store, 1, 0, 5).await? };
    let kv = store.clone();
    tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![Staged { partition: 0, start: None, next: 10, files: vec![first], deletes: Vec::new() }, Staged { partition: 1, start: None, next: 5, files: vec![bare], deletes: Vec::new() }])?;
        t.commit(vec![Staged { partition: 0, start: Some(10), next: 20, files: vec![second], deletes: Vec::new() }])?;
        t.compact(&kv, "bronze/topics/t", &policy(2), &Default::default())
    })
    .await??;
    let stats_of = |entry: &str| -> Vec<serde_json::Value> {
        entry
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|a| a["add"]["stats"].as_str().and_then(|s| serde_json::from_str(s).ok()))
            .collect()
    };
    let version = |v: u64| {
        let store = store.clone();
        async move { store.get(&format!("bronze/topics/t/_delta_log/{v:020}.json").as_str().into()).await?.bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned()) }
    };
    let first = stats_of(&version(1).await?);
    let with = first.iter().find(|s| s["minValues"].is_object()).ok_or(format!("no add with bounds in version 1: {first:?}"))?;
    assert_eq!((&with["numRecords"], &with["minValues"]["__kafka_offset"], &with["maxValues"]["__kafka_offset"]), (&10.into(), &0.into(), &9.into()), "{with}");
    assert_eq!((&with["minValues"]["id"], &with["maxValues"]["id"], &with["nullCount"]["id"]), (&"id-0".into(), &"id-9".into(), &0.into()), "{with}");
    assert!(with["minValues"].get("__kafka_partition").is_none(), "the Kafka partition takes no statistics: {with}");
    assert!(first.iter().any(|s| s["numRecords"] == 5 && s.get("minValues").is_none()), "the file without gathered statistics: {first:?}");
    let rewrite = stats_of(&version(3).await?);
    let [compacted] = rewrite.as_slice() else { return Err(format!("one add in the compaction's version: {rewrite:?}").into()) };
    assert_eq!((&compacted["numRecords"], &compacted["minValues"]["__kafka_offset"], &compacted["maxValues"]["__kafka_offset"]), (&20.into(), &0.into(), &19.into()), "{compacted}");
    Ok(())
}

/// Partition values with `/`, `%`, `?`, spaces and non-ASCII text: the directories are Hive's
/// escapes, the log spells each path as a URI (as Spark writes it, so readers decode it to the
/// key), and compaction reads the files back through those paths.
#[tokio::test(flavor = "multi_thread")]
async fn escaped_partition_directories_are_uris_in_the_log_and_compaction_reads_them() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table_with(&store, Settings { path_columns: vec!["title".into()], ..Settings::default() })?;
    let values = ["a/b c%d", "100% done?", "M\u{fc}nchen caf\u{e9}"];
    let mut commits = Vec::new();
    for i in 0..6 {
        let f = put_file_in(&store, Some(("title", values[i as usize % 3])), 0, i * 10, 10).await?;
        commits.push(vec![Staged { partition: 0, start: (i > 0).then_some(i * 10), next: i * 10 + 10, files: vec![f], deletes: Vec::new() }]);
    }
    let kv = store.clone();
    let (before, done, after) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        for c in commits {
            t.commit(c)?;
        }
        let before = t.file_paths()?;
        let done = t.compact(&kv, "bronze/topics/t", &policy(2), &Default::default())?;
        Ok((before, done, t.file_paths()?))
    })
    .await??;
    assert!(before.contains(&"title=a%2Fb c%25d/__kafka_partition=0/00000000000000000000-test.parquet".to_string()), "keys of the table: {before:?}");
    let first = log(&store).await?.into_iter().find(|n| n.ends_with("01.json")).ok_or("no version 1")?;
    let entry = String::from_utf8(store.get(&format!("bronze/topics/t/_delta_log/{first}").as_str().into()).await?.bytes().await?.to_vec())?;
    for want in [r#""path":"title=a%252Fb%20c%2525d/__kafka_partition=0/00000000000000000000-test.parquet""#, r#""title":"a/b c%d""#] {
        assert!(entry.contains(want), "version 1 lacks {want}:\n{entry}");
    }
    assert_eq!((done.files_in, done.files_out), (6, 3), "two files of each value into one: {after:?}");
    for dir in ["title=a%2Fb c%25d", "title=100%25 done%3F", "title=M\u{fc}nchen caf\u{e9}"] {
        assert!(after.iter().any(|f| f.starts_with(&format!("{dir}/__kafka_partition=0/")) && f.contains("-compacted-")), "{dir}: {after:?}");
    }
    let (_, rows) = table_rows(&store).await?;
    assert_eq!(rows, (0..60).map(|o| (0, o)).collect::<Vec<_>>(), "every row once after compaction");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_each_path_partition_apart() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table_with(&store, Settings { path_columns: vec!["dt".into()], ..Settings::default() })?;
    let mut commits = Vec::new();
    for i in 0..6 {
        let day = if i % 2 == 0 { "2026-12-01" } else { "2026-12-02" };
        let f = put_file_under(&store, Some(day), 0, i * 10, 10).await?;
        commits.push(vec![Staged { partition: 0, start: (i > 0).then_some(i * 10), next: i * 10 + 10, files: vec![f], deletes: Vec::new() }]);
    }
    let policy = Policy { min_files: 2, target_file_bytes: 1 << 20, idle_ms: None, props: parquet::file::properties::WriterProperties::builder().build() };
    let kv = store.clone();
    let (done, files, schema) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        for c in commits {
            t.commit(c)?;
        }
        let done = t.compact(&kv, "bronze/topics/t", &policy, &Default::default())?;
        let schema = t.refresh()?.map(|s| (s.schema().fields().map(|f| f.name().clone()).collect::<Vec<_>>(), s.table_configuration().metadata().partition_columns().to_vec()));
        Ok((done, t.file_paths()?, schema))
    })
    .await??;
    assert_eq!((done.files_in, done.files_out), (6, 2), "one file per day out of three each");
    assert_eq!(files.len(), 2, "{files:?}");
    for day in ["2026-12-01", "2026-12-02"] {
        assert!(files.iter().any(|f| f.starts_with(&format!("dt={day}/__kafka_partition=0/")) && f.contains("-compacted-")), "{day}: {files:?}");
    }
    let (columns, partitioned) = schema.ok_or("no table")?;
    assert_eq!(partitioned, ["dt", "__kafka_partition"], "partition columns");
    assert!(columns.iter().any(|c| c == "dt"), "dt in the schema: {columns:?}");
    let last = log(&store).await?.into_iter().rfind(|n| n.ends_with(".json")).ok_or("no log")?;
    let entry = store.get(&format!("bronze/topics/t/_delta_log/{last}").as_str().into()).await?.bytes().await?;
    assert!(String::from_utf8_lossy(&entry).contains("\"dt\":\"2026-12-02\""), "the compacted add keeps its dt: {}", String::from_utf8_lossy(&entry));
    Ok(())
}

/// The sweep: a file the latest version names stays; a file no version named goes after the
/// orphan retention; a file compaction swapped out stays for the table's deleted-file retention
/// (7 days), whatever the orphan retention, then goes.
#[tokio::test(flavor = "multi_thread")]
async fn files_no_version_names_go_after_the_orphan_retention_and_swapped_out_ones_after_the_deleted_file_retention() -> TestResult {
    const HOUR: i64 = 3_600_000;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let inputs = [put_file(&store, 0, 0, 10).await?, put_file(&store, 0, 10, 10).await?];
    let orphan = put_file(&store, 1, 0, 10).await?; // uploaded, never committed: a crash's leftover
    let mut t = table(&store, 0)?;
    let kv = store.clone();
    let commits = vec![
        vec![Staged { partition: 0, start: None, next: 10, files: vec![inputs[0].clone()], deletes: Vec::new() }],
        vec![Staged { partition: 0, start: Some(10), next: 20, files: vec![inputs[1].clone()], deletes: Vec::new() }],
    ];
    let (sweeps, files) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        for c in commits {
            t.commit(c)?;
        }
        t.compact(&kv, "bronze/topics/t", &policy(2), &Default::default())?;
        let now = crate::health::now_ms();
        let mut sweeps = Vec::new();
        for at in [now, now + 2 * HOUR, now + 8 * 24 * HOUR] {
            sweeps.push(t.remove_orphans(&kv, "bronze/topics/t", HOUR, at)?);
        }
        Ok((sweeps, t.file_paths()?))
    })
    .await??;
    let swept = |orphans, expired| Swept { orphans, expired };
    assert_eq!(sweeps, [swept(0, 0), swept(1, 0), swept(0, 2)], "sweeps now, past the orphan retention, past the deleted-file retention");
    let [compacted] = files.as_slice() else { return Err(format!("one compacted file: {files:?}").into()) };
    let exists = |p: &str| {
        let store = store.clone();
        let key = format!("bronze/topics/t/{p}");
        async move { store.head(&key.as_str().into()).await.is_ok() }
    };
    assert!(exists(compacted).await, "the named file is still there");
    for gone in [&orphan.path, &inputs[0].path, &inputs[1].path] {
        assert!(!exists(gone).await, "{gone} is gone");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staged_file_removed_before_its_commit_is_never_named() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut gone = put_file(&store, 0, 0, 10).await?;
    store.delete(&format!("bronze/topics/t/{}", gone.path).as_str().into()).await?;
    gone.modification_time = 1; // staged long ago, past half the retention
    let kept = put_file(&store, 1, 0, 10).await?;
    let mut t = table_with(&store, Settings { orphan_retention_ms: Some(60_000), ..Settings::default() })?;
    let outcome = tokio::task::spawn_blocking(move || {
        t.commit(vec![Staged { partition: 0, start: None, next: 10, files: vec![gone], deletes: Vec::new() }, Staged { partition: 1, start: None, next: 10, files: vec![kept], deletes: Vec::new() }])
    })
    .await??;
    assert_eq!(outcome.fenced, vec![(0, None)], "the partition whose file is gone reads its range again");
    assert_eq!(outcome.committed, vec![(1, 10)], "the other partition commits");
    Ok(())
}

/// The stage as the pipeline drives it: compaction runs as a task of its own while commits go
/// on (the two meet only at the log), and a table idle after its last commit has every value
/// with two small files or more merged, however few.
#[tokio::test(flavor = "multi_thread")]
async fn maintenance_runs_beside_the_commits_and_an_idle_table_ends_in_one_file() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let policy = Policy { min_files: 3, target_file_bytes: 1 << 20, idle_ms: Some(1500), props: parquet::file::properties::WriterProperties::builder().build() };
    let mut tables = stage(&store, Settings::default()).with_compaction(Some(policy));
    let tp = ("t".to_string(), 0);
    tables.positioned(&tp, None, None);
    let (mut committed, mut compactions) = (Vec::new(), Vec::new());
    let mut record = |done: crate::table::Finished| -> Result<(), Box<dyn std::error::Error>> {
        match done {
            crate::table::Finished::Committed(c) => committed.extend(c.result?.committed),
            crate::table::Finished::Maintained(m) => compactions.extend(m.done.compacted.transpose()?),
        }
        Ok(())
    };
    for i in 0..8 {
        let f = put_file(&store, 0, i * 10, 10).await?;
        tables.land(&tp, i * 10, vec![f]);
        tables.stage_through(&tp, i * 10 + 10);
        tables.start_due(true)?;
        tables.start_maintenance()?;
        // The commit's answer; a compaction under way may finish first or go on past it.
        while tables.in_flight() > 0 {
            let done = tables.next_finished().await.ok_or("a commit under way gave no answer")?;
            record(done)?;
        }
    }
    while let Some(done) = tables.next_finished().await {
        record(done)?;
    }
    let by_count: usize = compactions.iter().map(|c| c.files_in).sum();
    assert!(by_count >= 3, "compactions by count while committing: {compactions:?}");
    // One more commit, with no round after it: its file stays beside what compaction left
    // (a compaction that lost its version to a commit lands on top of it).
    let f = put_file(&store, 0, 80, 10).await?;
    tables.land(&tp, 80, vec![f]);
    tables.stage_through(&tp, 90);
    tables.start_due(true)?;
    committed.extend(tables.next_committed().await.ok_or("no answer to the last commit")?.result?.committed);
    let (files, _) = table_rows(&store).await?;
    assert!(files.len() > 1, "before the idle round the newest file is still on its own: {files:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    tables.start_maintenance()?;
    let idle = match tables.next_finished().await {
        Some(crate::table::Finished::Maintained(m)) => m.done.compacted.ok_or("the idle round did not compact")??,
        _ => return Err("no maintenance round once idle".into()),
    };
    assert_eq!(idle.files_out, 1, "the idle round: {idle:?}");
    let (files, rows) = table_rows(&store).await?;
    assert_eq!(files.len(), 1, "one file after the idle round: {files:?}");
    assert_eq!(rows, (0..90).map(|o| (0, o)).collect::<Vec<_>>(), "every offset once");
    let want: Vec<(i32, i64)> = (1..=9).map(|i| (0, i * 10)).collect();
    assert_eq!(committed, want, "each commit's answer, in order, despite compactions taking versions meanwhile");
    let mut t = table(&store, 0)?;
    let versions = tokio::task::spawn_blocking(move || t.versions(&[0])).await??;
    assert_eq!(versions, BTreeMap::from([(0, Some(90))]), "txn version after compactions");
    Ok(())
}

/// The last commit before a pause can start a round by count; it must not take the idle
/// round's place: the files the round by count left (a bin is bounded by the target size) are
/// merged once the table has been idle.
#[tokio::test(flavor = "multi_thread")]
async fn a_round_by_count_after_the_last_commit_is_followed_by_the_idle_round() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tp = ("t".to_string(), 0);
    let mut files = Vec::new();
    for i in 0..4 {
        files.push(put_file(&store, 0, i * 10, 10).await?);
    }
    // A bin of three files fills the target; the fourth is left for the next round.
    let target = files.iter().map(|f| f.size).max().unwrap_or(0) * 7 / 2;
    let policy = Policy { min_files: 3, target_file_bytes: target, idle_ms: Some(500), props: parquet::file::properties::WriterProperties::builder().build() };
    let mut tables = stage(&store, Settings::default()).with_compaction(Some(policy));
    tables.positioned(&tp, None, None);
    for (i, f) in (0i64..).zip(files) {
        tables.land(&tp, i * 10, vec![f]);
        tables.stage_through(&tp, i * 10 + 10);
        tables.start_due(true)?;
        tables.next_committed().await.ok_or("no answer to a commit")?.result?;
    }
    tables.start_maintenance()?;
    let by_count = match tables.next_finished().await {
        Some(crate::table::Finished::Maintained(m)) => m.done.compacted.ok_or("the round by count did not compact")??,
        _ => return Err("no round by count after four commits".into()),
    };
    assert_eq!((by_count.files_in, by_count.files_out), (3, 1), "the round by count: three files in a bin of the target's size");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    tables.start_maintenance()?;
    let idle = match tables.next_finished().await {
        Some(crate::table::Finished::Maintained(m)) => m.done.compacted.ok_or("the idle round did not compact")??,
        _ => return Err("no idle round after the round by count".into()),
    };
    assert_eq!((idle.files_in, idle.files_out), (2, 1), "the idle round merges what the round by count left");
    let (files, rows) = table_rows(&store).await?;
    assert_eq!(files.len(), 1, "one file after the idle round: {files:?}");
    assert_eq!(rows, (0..40).map(|o| (0, o)).collect::<Vec<_>>(), "every offset once");
    Ok(())
}

/// Checkpoints are maintenance: a commit returns once its version is in the log, and the
/// round after every `checkpoint_interval` versions writes the checkpoint, on its own thread.
#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_is_written_by_the_maintenance_round_every_interval_versions() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let settings = Settings { checkpoint_interval: 3, ..Settings::default() };
    let mut tables = stage(&store, settings);
    let tp = ("t".to_string(), 0);
    tables.positioned(&tp, None, None);
    let mut checkpoints = Vec::new();
    for i in 0..7 {
        let f = put_file(&store, 0, i * 10, 10).await?;
        tables.land(&tp, i * 10, vec![f]);
        tables.stage_through(&tp, i * 10 + 10);
        tables.start_due(true)?;
        tables.next_committed().await.ok_or("no answer to a commit")?.result?;
        let log = log(&store).await?;
        let written = log.iter().filter(|f| f.ends_with(".checkpoint.parquet")).count();
        assert_eq!(written, checkpoints.len(), "checkpoint files after commit {i}, against those the maintenance rounds wrote (a commit wrote none): {log:?}");
        tables.start_maintenance()?;
        while let Some(done) = tables.next_finished().await {
            if let crate::table::Finished::Maintained(m) = done {
                checkpoints.extend(m.done.checkpointed.transpose()?);
            }
        }
    }
    assert_eq!(checkpoints, vec![3, 6], "checkpoints by the maintenance round, every three versions (the table's first version, 0, holds only its metadata)");
    let log = log(&store).await?;
    for v in [3, 6] {
        assert!(log.iter().any(|f| f.ends_with(&format!("{v:020}.checkpoint.parquet"))), "checkpoint of version {v} in {log:?}");
    }
    let mut t = table(&store, 0)?;
    let versions = tokio::task::spawn_blocking(move || t.versions(&[0])).await??;
    assert_eq!(versions, BTreeMap::from([(0, Some(70))]), "txn version through the checkpoints");
    Ok(())
}

/// A store that records each request it answers (`"GET path"`, `"LIST prefix"`...), to count
/// the round trips a commit makes.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    seen: std::sync::Mutex<Vec<String>>,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self { inner, seen: std::sync::Mutex::new(Vec::new()) })
    }
    fn note(&self, op: &str, path: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(format!("{op} {path}"));
        }
    }
    /// The requests since the last call.
    fn take(&self) -> Vec<String> {
        self.seen.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default()
    }
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(&self, location: &object_store::path::Path, payload: object_store::PutPayload, opts: object_store::PutOptions) -> object_store::Result<object_store::PutResult> {
        self.note("PUT", location.as_ref());
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(&self, location: &object_store::path::Path, opts: object_store::PutMultipartOptions) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.note("MULTIPART", location.as_ref());
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &object_store::path::Path, options: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
        self.note(if options.head { "HEAD" } else { "GET" }, location.as_ref());
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &object_store::path::Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        self.note("GET-RANGES", location.as_ref());
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(&self, locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.note("DELETE", "");
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&object_store::path::Path>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.note("LIST", prefix.map(|p| p.as_ref()).unwrap_or_default());
        self.inner.list(prefix)
    }
    fn list_with_offset(&self, prefix: Option<&object_store::path::Path>, offset: &object_store::path::Path) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.note("LIST", prefix.map(|p| p.as_ref()).unwrap_or_default());
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&object_store::path::Path>) -> object_store::Result<object_store::ListResult> {
        self.note("LIST/", prefix.map(|p| p.as_ref()).unwrap_or_default());
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &object_store::path::Path, to: &object_store::path::Path, options: object_store::CopyOptions) -> object_store::Result<()> {
        self.note("COPY", to.as_ref());
        self.inner.copy_opts(from, to, options).await
    }
}

/// The requests that touch the log (not the data files a test puts itself).
fn log_requests(seen: Vec<String>) -> Vec<String> {
    seen.into_iter().filter(|r| r.contains("_delta_log")).map(|r| r.replace("bronze/topics/t/_delta_log", "log")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steady_commit_lists_the_log_and_puts_one_version_and_reads_nothing() -> TestResult {
    let counting = Counting::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let (mut t, mut other, mut fresh) = (table(&store, 0)?, table(&store, 0)?, table(&store, 0)?);
    let c = counting.clone();
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let parts = [0, 1, 2, 3];
        t.commit(parts.iter().map(|p| staged(*p, None, 10)).collect())?;
        let mut steady = Vec::new();
        for start in [10, 20, 30] {
            c.take();
            t.commit(parts.iter().map(|p| staged(*p, Some(start), start + 10)).collect())?;
            steady.push(log_requests(c.take()));
        }
        // Another writer (the maintenance round, or an outside one) checkpoints the table and
        // commits a partition of its own.
        other.checkpoint()?;
        other.commit(vec![staged(9, None, 3)])?;
        c.take();
        let after_other = t.commit(parts.iter().map(|p| staged(*p, Some(40), 50)).collect())?;
        let after_other_requests = log_requests(c.take());
        let seen_by_t = t.versions(&[9])?;
        let versions_requests = log_requests(c.take());
        let fresh_versions = fresh.versions(&[0, 1, 2, 3, 9])?;
        let fresh_requests = log_requests(c.take());
        Ok((steady, after_other, after_other_requests, seen_by_t, versions_requests, fresh_versions, fresh_requests))
    });
    let (steady, after_other, after_other_requests, seen_by_t, versions_requests, fresh_versions, fresh_requests) = run.await??;
    for (i, requests) in steady.iter().enumerate() {
        let want = vec!["LIST log".to_string(), format!("PUT log/{:020}.json", i + 2)];
        assert_eq!(requests, &want, "requests of steady commit {i} (four partitions): one list for new versions, one put; txn versions come from the table's state in memory");
    }
    assert_eq!(after_other.committed, vec![(0, 50), (1, 50), (2, 50), (3, 50)], "the commit after the other writer's");
    assert!(!after_other_requests.iter().any(|r| r.contains("checkpoint.parquet")), "a commit after another writer's checkpoint read it rather than the checksum beside it: {after_other_requests:?}");
    assert_eq!(after_other_requests.iter().filter(|r| r.starts_with("GET")).count(), 1, "one get (the other writer's version) in {after_other_requests:?}");
    assert_eq!(seen_by_t, BTreeMap::from([(9, Some(3))]), "the other writer's txn version, as the committing member sees it");
    assert_eq!(versions_requests, vec!["LIST log".to_string()], "reading a txn version at the latest version");
    assert_eq!(fresh_versions, BTreeMap::from([(0, Some(50)), (1, Some(50)), (2, Some(50)), (3, Some(50)), (9, Some(3))]), "txn versions a new member reads");
    assert!(!fresh_requests.iter().any(|r| r.contains("checkpoint.parquet")), "a new member replayed the checkpoint rather than read the checksum beside it: {fresh_requests:?}");
    assert!(fresh_requests.contains(&"GET log/00000000000000000004.crc".to_string()), "the checksum of the checkpoint's version in {fresh_requests:?}");
    Ok(())
}

/// Log cleanup: behind the newest checkpoint older than `delta.logRetentionDuration`, the
/// commits, checksums and checkpoints before it go; a new reader still opens the table and its
/// txn versions. `delta.enableExpiredLogCleanup = false` keeps the whole log.
#[tokio::test(flavor = "multi_thread")]
async fn log_entries_past_the_log_retention_go_behind_a_checkpoint() -> TestResult {
    for cleanup in [true, false] {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut properties = BTreeMap::from([("delta.logRetentionDuration".to_string(), "interval 1 minute".to_string())]);
        if !cleanup {
            properties.insert("delta.enableExpiredLogCleanup".into(), "false".into());
        }
        let settings = Settings { properties, ..Settings::default() };
        let (mut t, mut fresh) = (table_with(&store, settings.clone())?, table_with(&store, settings)?);
        let kv = store.clone();
        let (removed, versions, property) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
            for i in 0..12 {
                t.commit(vec![staged(0, (i > 0).then_some(i * 10), i * 10 + 10)])?;
                if i == 4 || i == 9 {
                    t.checkpoint()?; // at versions 5 and 10
                }
            }
            let removed = t.clean_log(&kv, "bronze/topics/t", crate::health::now_ms() + 3_600_000)?;
            let snapshot = fresh.refresh()?.ok_or(TableError::Task { table: "t".into(), reason: "no table".into() })?;
            let property = snapshot.table_properties().deleted_file_retention_duration;
            Ok((removed, fresh.versions(&[0])?, property))
        })
        .await??;
        let left = log(&store).await?;
        assert_eq!(versions, [(0, Some(120))].into_iter().collect(), "a new reader's txn version (cleanup {cleanup}), log {left:?}");
        assert_eq!(property, Some(std::time::Duration::from_secs(7 * 24 * 3600)), "the deleted-file retention every new table carries");
        let below_ten = left.iter().filter(|n| n.starts_with("000000000000000000") && n[..20].parse::<u64>().is_ok_and(|v| v < 10)).count();
        if cleanup {
            assert!(removed > 0 && below_ten == 0, "removed {removed}; entries below the checkpoint at 10 left: {left:?}");
            assert!(left.iter().any(|n| n == "00000000000000000010.checkpoint.parquet"), "the checkpoint kept: {left:?}");
        } else {
            assert_eq!(removed, 0, "with delta.enableExpiredLogCleanup = false: {left:?}");
            assert!(left.iter().any(|n| n == "00000000000000000000.json"), "version 0 kept: {left:?}");
        }
    }
    Ok(())
}

mod dv;
