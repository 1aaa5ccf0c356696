//! Deletion vectors: a table of current rows marks the rows a commit replaces or deletes, in
//! the version that carries its partitions' txn, and compaction leaves them out.

use arrow::array::{AsArray, Int64Array};
use delta_kernel::engine::arrow_data::ArrowEngineData;

use super::*;

fn with_vectors(store: &Arc<dyn ObjectStore>) -> Result<DeltaTable, url::ParseError> {
    table_with(store, Settings { deletion_vectors: true, ..Settings::default() })
}

fn deletion(file: &DataFile, rows: &[u64]) -> Deletion {
    Deletion { path: file.path.clone(), rows: rows.to_vec() }
}

/// Every (partition, offset) a reader of the latest version sees: the kernel's scan, which
/// applies each file's deletion vector.
async fn visible(store: &Arc<dyn ObjectStore>) -> Result<Vec<(i32, i64)>, Box<dyn std::error::Error>> {
    let mut t = with_vectors(store)?;
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>, Box<dyn std::error::Error + Send + Sync>> {
        let snapshot = t.refresh()?.ok_or("no table")?;
        let engine = t.engine.clone();
        let mut rows = Vec::new();
        for data in snapshot.scan_builder().build()?.execute(engine)? {
            let batch = ArrowEngineData::try_from_engine_data(data?)?;
            let batch = batch.record_batch();
            let ps = batch.column_by_name("__kafka_partition").ok_or("no partition column")?.as_primitive::<arrow::datatypes::Int32Type>().clone();
            let os: Int64Array = batch.column_by_name("__kafka_offset").ok_or("no offset column")?.as_primitive::<arrow::datatypes::Int64Type>().clone();
            rows.extend(ps.values().iter().zip(os.values().iter()).map(|(p, o)| (*p, *o)));
        }
        rows.sort();
        Ok(rows)
    })
    .await?
    .map_err(|e| e.to_string())?;
    Ok(rows)
}

fn offsets(p: i32, range: std::ops::Range<i64>, without: &[i64]) -> Vec<(i32, i64)> {
    range.filter(|o| !without.contains(o)).map(|o| (p, o)).collect()
}

/// A commit marks rows of files earlier commits added, beside its own file and txn; a later
/// commit marks more rows of the same file on top of what is marked (never unmarking one); a
/// range committed already is not marked again.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_marks_rows_of_earlier_files_deleted_on_top_of_what_they_mark() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (first, second, third) = (put_file(&store, 0, 0, 10).await?, put_file(&store, 0, 10, 10).await?, put_file(&store, 0, 20, 10).await?);
    let mut t = with_vectors(&store)?;
    let (f, s, th) = (first.clone(), second.clone(), third.clone());
    let (one, two, replay) = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        let one = t.commit(vec![Staged { partition: 0, start: None, next: 10, files: vec![f.clone()], ..Default::default() }])?;
        let two = t.commit(vec![Staged { partition: 0, start: Some(10), next: 20, files: vec![s], deletes: vec![deletion(&f, &[2, 5])] }])?;
        let three = Staged { partition: 0, start: Some(20), next: 30, files: vec![th], deletes: vec![deletion(&f, &[5, 7])] };
        t.commit(vec![three.clone()])?;
        // The same range again (a retry whose answer was lost): in the table already.
        let replay = t.commit(vec![three])?;
        Ok((one, two, replay))
    })
    .await??;
    assert_eq!((one.committed, two.committed), (vec![(0, 10)], vec![(0, 20)]), "(first, second) commit");
    assert_eq!((replay.committed, replay.version), (vec![(0, 30)], None), "a replayed range: reported committed, no version written");
    assert_eq!(visible(&store).await?, offsets(0, 0..30, &[2, 5, 7]), "rows a reader sees: 2 and 5 marked, then 7 on top (5 twice is once)");
    let log = log(&store).await?;
    use futures::TryStreamExt;
    let listed: Vec<object_store::ObjectMeta> = store.list(Some(&object_store::path::Path::parse("bronze/topics/t")?)).try_collect().await?;
    let vectors: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
    assert_eq!(vectors.iter().filter(|k| k.contains("deletion_vector_")).count(), 2, "one vector file per commit that marks rows: {vectors:?} (log {log:?})");
    let mut t = with_vectors(&store)?;
    let versions = tokio::task::spawn_blocking(move || t.versions(&[0])).await??;
    assert_eq!(versions, BTreeMap::from([(0, Some(30))]), "txn version beside the marks");
    Ok(())
}

/// Rows of a file the table no longer names cannot be marked: the commit says which file, and
/// writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn rows_of_a_file_the_table_does_not_name_are_refused_naming_it() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (first, stray) = (put_file(&store, 0, 0, 10).await?, put_file(&store, 1, 0, 10).await?);
    let mut t = with_vectors(&store)?;
    let result = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![Staged { partition: 0, start: None, next: 10, files: vec![first.clone()], ..Default::default() }])?;
        Ok(t.commit(vec![Staged { partition: 0, start: Some(10), next: 12, files: Vec::new(), deletes: vec![deletion(&stray, &[1])] }]))
    })
    .await??;
    match result {
        Err(TableError::Vanished { path, .. }) => assert_eq!(path, "__kafka_partition=1/00000000000000000000-test.parquet", "the file named"),
        other => return Err(format!("a mark in a file the table does not name: {other:?}").into()),
    }
    assert_eq!(visible(&store).await?, offsets(0, 0..10, &[]), "nothing marked");
    Ok(())
}

/// Compaction of files with deletion vectors carries only the rows they do not mark: a reader
/// sees the same rows before and after, and the compacted file holds no deleted row.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_leaves_the_rows_deletion_vectors_mark_out() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut files = Vec::new();
    for i in 0..4 {
        files.push(put_file(&store, 0, i * 10, 10).await?);
    }
    let mut t = with_vectors(&store)?;
    let given = files.clone();
    let compacted = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        for (i, f) in (0i64..).zip(&given) {
            let deletes = if i == 3 { vec![deletion(&given[0], &[0, 9]), deletion(&given[2], &[4])] } else { Vec::new() };
            t.commit(vec![Staged { partition: 0, start: (i > 0).then_some(i * 10), next: i * 10 + 10, files: vec![f.clone()], deletes }])?;
        }
        let root = t.root_key()?;
        let store = t.store.clone();
        t.compact(&store, &root, &policy(2), &std::sync::atomic::AtomicBool::new(false))
    })
    .await??;
    let expected = offsets(0, 0..40, &[0, 9, 24]);
    assert_eq!(visible(&store).await?, expected, "rows a reader sees after compaction");
    let (files, in_files) = table_rows_of(&store, with_vectors(&store)?).await?;
    assert_eq!((files.len(), compacted.files_in), (1, 4), "(files after, files compacted)");
    assert_eq!(in_files, expected, "rows the compacted file holds: none of the marked ones");
    Ok(())
}
