//! The commit protocol against object_store's in-memory store: two `Table`s on one store are
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
    }
}

fn staged(partition: i32, start: Option<i64>, next: i64) -> Staged {
    let from = start.unwrap_or(0);
    Staged { partition, start, next, files: vec![file(partition, from, (next - from) as u64, false)] }
}

fn table(store: &Arc<dyn ObjectStore>, interval: u64) -> Result<Table, url::ParseError> {
    Ok(Table::new(store.clone(), Url::parse("memory:///bronze/topics/t/")?, "t", interval))
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
    assert_eq!(log.len(), 4, "versions 0 (create), 1 (a), 2 (zombie's partition 1), 3 (a): {log:?}");
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
    assert_eq!(again, Outcome { version: None, committed: vec![(0, 10)], fenced: vec![], conflicts: 0, deferred: vec![] }, "the second attempt of one range");
    assert_eq!(log(&store).await?.len(), 2, "no second version for the same range");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_column_joins_the_table_schema_and_a_changed_type_is_refused() -> TestResult {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut t = table(&store, 0)?;
    let run = tokio::task::spawn_blocking(move || -> Result<_, TableError> {
        t.commit(vec![staged(0, None, 10)])?;
        let wider = Staged { partition: 0, start: Some(10), next: 20, files: vec![file(0, 10, 10, true)] };
        t.commit(vec![wider])?;
        let fields: Vec<String> = t.refresh()?.map(|s| s.schema().fields().map(|f| f.name().clone()).collect()).unwrap_or_default();
        let mut changed = file(0, 20, 5, false);
        changed.schema = Arc::new(Schema::new(vec![
            Field::new("__kafka_partition", DataType::Int32, false),
            Field::new("__kafka_offset", DataType::Utf8, false),
        ]));
        let refused = t.commit(vec![Staged { partition: 0, start: Some(20), next: 25, files: vec![changed] }]);
        Ok((fields, refused))
    });
    let (fields, refused) = run.await??;
    assert_eq!(fields, ["__kafka_partition", "__kafka_offset", "__kafka_timestamp", "id", "priority"], "table columns after the wider file");
    match refused {
        Err(e @ TableError::Schema { .. }) => {
            assert!(!e.retryable());
            assert!(e.to_string().contains("column __kafka_offset is long in the table and string"), "{e}");
        }
        other => return Err(format!("a changed column type: expected a schema error, got {other:?}").into()),
    }
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
        reader.versions(&[0, 2])
    });
    let versions = run.await??;
    let log = log(&store).await?;
    assert!(log.iter().any(|f| f.ends_with(".checkpoint.parquet")), "no checkpoint in {log:?}");
    assert_eq!(versions, BTreeMap::from([(0, Some(50)), (2, Some(7))]), "versions read through the checkpoint");
    Ok(())
}
