//! What a restart finds and must put right, on the real local stack: files a crashed owner
//! uploaded but never committed; and tombstones in `fail` mode (the other bad records are in
//! `bad_records.rs`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_parquet_sink::config::{Config, OutputConfig, S3Config};
use kafka_parquet_sink::metrics::Metrics;
use kafka_parquet_sink::store::{object_key, Store};
use kafka_parquet_sink::testkit::{Op, Produced, TaskEvent};

fn s3_store(stack: &Stack, prefix: &str) -> TestResult<Store> {
    let cfg = S3Config {
        endpoint: stack.s3.clone(),
        access_key_id: "minioadmin".into(),
        secret_access_key: "minioadmin".into(),
        allow_http: true,
        ..S3Config::default()
    };
    open(cfg, prefix)
}

fn open(s3: S3Config, prefix: &str) -> TestResult<Store> {
    let config = Config { s3, output: OutputConfig { prefix: prefix.to_string(), ..OutputConfig::default() }, ..Config::default() };
    Ok(Store::open(&config, Metrics::new()?)?)
}

fn non_tombstone_offsets(produced: &[(Produced, TaskEvent)]) -> BTreeSet<i64> {
    produced.iter().filter(|(_, e)| e.op != Op::Tombstone).map(|(p, _)| p.offset).collect()
}

/// A crash between upload and commit leaves files past the committed offset. The next owner
/// must remove them before writing, and must keep every committed file.
#[test]
fn uncommitted_files_of_a_crashed_owner_are_replaced_not_duplicated() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-crash"), unique("it-group"), unique("it/crash"));
    let flush = "max_records = 1000\nrotate_interval_ms = 1500";
    let rt = tokio::runtime::Runtime::new()?;
    let store = s3_store(&stack, &prefix)?;

    // Run 1 writes and commits the first records.
    let first = produce(&stack, &topic, 1, 30, None, 10)?;
    let end1 = log_ends(first.iter().map(|(p, _)| (p.partition, p.offset)));
    let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, flush)?;
    wait_committed(&stack, &group, &topic, &end1, Duration::from_secs(60))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "run 1 exit status");
    let committed_at = end1[&0];

    // A crashed owner's leftovers past the commit: one at the committed offset, one further on.
    let stale_at = [committed_at, committed_at + 7];
    for start in stale_at {
        rt.block_on(store.upload(&object_key(&prefix, &topic, 0, start), Bytes::from_static(b"not parquet: uploaded, never committed")))?;
    }
    let second = produce(&stack, &topic, 1, 25, None, 11)?;
    let end2 = log_ends(first.iter().chain(&second).map(|(p, _)| (p.partition, p.offset)));

    // Run 2 replays from the commit: the leftovers go, every record is there once.
    let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, flush)?;
    wait_committed(&stack, &group, &topic, &end2, Duration::from_secs(60))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "run 2 exit status");

    let files = read_lake(&stack, &prefix)?; // fails if a leftover (not Parquet) were still there
    let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![object_key(&prefix, &topic, 0, 0).as_str(), object_key(&prefix, &topic, 0, committed_at).as_str()],
        "files after the restart"
    );
    let mut seen = BTreeSet::new();
    for f in &files {
        for r in &f.rows {
            assert!(seen.insert(r.offset), "offset {} twice", r.offset);
        }
    }
    let mut all = first;
    all.extend(second);
    assert_eq!(seen, non_tombstone_offsets(&all), "offsets in the lake");
    Ok(())
}

/// Partition 0 must stop FAILED at the record at `stop_offset` without committing past it (the
/// process keeps running), and every non-tombstone record below the committed offset must be in
/// the lake.
fn assert_stopped_at(
    stack: &Stack,
    sink: &mut SinkProcess,
    (topic, group, prefix): (&str, &str, &str),
    stop_offset: i64,
    produced: &[(Produced, TaskEvent)],
    what: &str,
) -> TestResult {
    wait_for(Duration::from_secs(60), &format!("partition 0 to stop FAILED on {what}"), || {
        Ok((sink.metric_sum("kps_partition_state", &[("partition", "0"), ("state", "FAILED")]) == 1.0).then_some(()))
    })?;
    assert!(sink.child.try_wait()?.is_none(), "the process must keep running with a FAILED partition");
    let c = committed(&stack.bootstrap, group, topic, 1)?.get(&0).copied().flatten();
    assert!(c.is_none_or(|c| c <= stop_offset), "committed {c:?} is past {what} at {stop_offset}");
    // Records before the stop that filled a file are in the lake and committed.
    let rows: BTreeSet<i64> = read_lake(stack, prefix)?.iter().flat_map(|f| f.rows.iter().map(|r| r.offset)).collect();
    let upto = c.unwrap_or(0);
    let expected: BTreeSet<i64> = non_tombstone_offsets(produced).into_iter().filter(|o| *o < upto).collect();
    assert_eq!(rows, expected, "rows in the lake below the committed offset {upto}");
    Ok(())
}

/// Files at or above `s3.multipart_part_bytes` go up in parts; SeaweedFS (a real S3 server with
/// SigV4) assembles them into the same bytes.
#[test]
fn large_files_upload_in_parts_to_real_s3() -> TestResult {
    use object_store::ObjectStoreExt;
    let stack = Stack::get()?;
    let prefix = unique("it/multipart");
    let cfg = S3Config {
        endpoint: stack.s3.clone(),
        access_key_id: "minioadmin".into(),
        secret_access_key: "minioadmin".into(),
        allow_http: true,
        multipart_part_bytes: 5 * 1024 * 1024,
        ..S3Config::default()
    };
    let store = open(cfg, &prefix)?;
    let data = pseudo_random_bytes(12 * 1024 * 1024 + 123);
    let key = object_key(&prefix, "t", 0, 0);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(store.upload(&key, Bytes::from(data.clone())))?;
    let reader = lake_bucket(&stack)?;
    let path = object_store::path::Path::parse(&key)?;
    let back = rt.block_on(async { reader.get(&path).await?.bytes().await })?;
    assert_eq!(back.len(), data.len(), "size of {key}");
    assert!(back == data, "content of {key} differs");
    // A multipart object's ETag is "<md5 of part md5s>-<parts>": 3 parts of 5, 5 and 2 MiB.
    let head = rt.block_on(reader.head(&path))?;
    let etag = head.e_tag.ok_or("no ETag")?;
    assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag} is not that of a 3-part upload");
    Ok(())
}

/// `output.tombstones = "fail"` stops the partition at the first tombstone (FAILED), nothing
/// committed past it.
#[test]
fn tombstones_fail_mode_stops_at_the_first_tombstone() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-tomb"), unique("it-group"), unique("it/tomb"));
    let produced = produce(&stack, &topic, 1, 200, None, 13)?;
    let first_tombstone = produced.iter().find(|(_, e)| e.op == Op::Tombstone).map(|(p, _)| p.offset).ok_or("no tombstone produced")?;
    let flush = "max_records = 10\nrotate_interval_ms = 600000";
    let mut sink = SinkProcess::start_with(&stack, &topic, &group, &prefix, flush, "tombstones = \"fail\"")?;
    assert_stopped_at(&stack, &mut sink, (&topic, &group, &prefix), first_tombstone, &produced, "the first tombstone")
}

/// `output.tombstones = "write"`: every record is a row; a tombstone's row carries its key,
/// null values and `__deleted` true.
#[test]
fn tombstones_write_mode_keeps_a_flagged_row_with_the_key() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-tombw"), unique("it-group"), unique("it/tombw"));
    let produced = produce(&stack, &topic, 2, 150, None, 14)?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    let mut sink =
        SinkProcess::start_with(&stack, &topic, &group, &prefix, "max_records = 40\nrotate_interval_ms = 1000", "tombstones = \"write\"")?;
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(60))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    let mut rows = std::collections::BTreeMap::new();
    for f in read_lake(&stack, &prefix)? {
        for r in f.rows {
            if let Some(prev) = rows.insert((r.partition, r.offset), r) {
                return Err(format!("offset {}/{} twice", prev.partition, prev.offset).into());
            }
        }
    }
    assert_eq!(rows.len(), produced.len(), "one row per record, tombstones included");
    for (p, e) in &produced {
        let r = rows.get(&(p.partition, p.offset)).ok_or_else(|| format!("offset {}/{} missing", p.partition, p.offset))?;
        assert_eq!(r.key_id.as_deref(), Some(e.id.as_str()), "key of {}/{}", p.partition, p.offset);
        if e.op == Op::Tombstone {
            assert_eq!(
                (r.deleted, r.op.as_deref(), r.id.as_deref()),
                (Some(true), None, None),
                "tombstone row {}/{}",
                p.partition,
                p.offset
            );
        } else {
            assert_eq!(r.op.as_deref(), e.op.letter(), "op of {}/{}", p.partition, p.offset);
        }
    }
    Ok(())
}
