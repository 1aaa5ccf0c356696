//! End-to-end tests on the real local stack (`scripts/stack.sh up`): Apache Kafka as the broker,
//! SeaweedFS as S3, the project's registry, the sink binary as a child process, and the lake read
//! back by pyarrow. One sink member per group.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use kafka_parquet_sink::testkit::{Op, TaskEvent};

/// Every row of the lake by (partition, offset), failing on any duplicate.
fn rows_by_offset(files: &[LakeFile]) -> TestResult<BTreeMap<(i32, i64), LakeRow>> {
    let mut rows = BTreeMap::new();
    for f in files {
        for r in &f.rows {
            if let Some(prev) = rows.insert((r.partition, r.offset), r.clone()) {
                return Err(format!("offset {}/{} appears twice: {prev:?} and again in {}", r.partition, r.offset, f.key).into());
            }
        }
    }
    Ok(rows)
}

fn start_offset_in_key(key: &str) -> TestResult<i64> {
    let name = key.rsplit('/').next().ok_or("empty key")?;
    let digits = name.strip_suffix(".parquet").ok_or_else(|| format!("{key} is not a .parquet key"))?;
    if digits.len() != 20 {
        return Err(format!("{key}: start offset is not zero-padded to 20 digits").into());
    }
    Ok(digits.parse()?)
}

#[test]
fn every_record_lands_exactly_once_with_its_values() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-e2e"), unique("it-group"), unique("it/e2e"));
    let partitions = 3;
    // Two schema versions (v2 adds a column) and a tombstone after every delete.
    let produced = produce(&stack, &topic, partitions, 900, Some(450), 1)?;
    let tombstones = produced.iter().filter(|(_, e)| e.op == Op::Tombstone).count();
    assert!(tombstones > 10, "the plan should hold tombstones, got {tombstones}");

    let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, "max_records = 100\nrotate_interval_ms = 2000")?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    assert_eq!(ends.len(), partitions as usize, "every partition should receive records: {ends:?}");
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90))?;
    let status = sink.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "sink exited with {status}");

    let files = read_lake(&stack, &prefix)?;
    let rows = rows_by_offset(&files)?;
    let expected: BTreeMap<(i32, i64), &TaskEvent> = produced.iter().map(|(p, e)| ((p.partition, p.offset), e)).collect();

    // Every non-tombstone offset exactly once (duplicates failed above), no tombstone, right values.
    for ((p, o), e) in &expected {
        let row = rows.get(&(*p, *o));
        match (e.op, row) {
            (Op::Tombstone, None) => {}
            (Op::Tombstone, Some(r)) => return Err(format!("tombstone {p}/{o} was written: {r:?}").into()),
            (_, None) => return Err(format!("offset {p}/{o} ({:?} of {}) is missing from the lake", e.op, e.id).into()),
            (op, Some(r)) => {
                let letter = op.letter().map(str::to_string);
                assert_eq!(r.topic, topic, "topic of {p}/{o}");
                assert_eq!((&r.op, &r.bronze_op), (&letter, &letter), "op of {p}/{o}");
                assert_eq!(r.deleted, Some(op == Op::Delete), "__deleted of {p}/{o}");
                assert_eq!(r.bronze_ts_ms, Some(e.ts_ms), "__ts_ms of {p}/{o}");
                assert_eq!(r.id.as_deref(), Some(e.id.as_str()), "row image id of {p}/{o}");
                assert_eq!(r.key_id.as_deref(), Some(e.id.as_str()), "decoded key id of {p}/{o}");
                assert_eq!(r.title.as_deref(), Some(e.title.as_str()), "row image title of {p}/{o}");
                assert_eq!(r.category, e.category, "v2 column category of {p}/{o}");
                assert!(r.timestamp_ms.is_some(), "__kafka_timestamp of {p}/{o} is null");
            }
        }
    }
    assert_eq!(rows.len(), expected.len() - tombstones, "rows in the lake vs non-tombstone records produced");

    // Files: Snappy, named by their first offset, in order.
    let mut last_end: BTreeMap<i32, i64> = BTreeMap::new();
    let mut sorted: Vec<&LakeFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for f in sorted {
        assert_eq!(f.codecs, vec!["SNAPPY".to_string()], "codecs of {}", f.key);
        assert_eq!(f.num_rows as usize, f.rows.len(), "row count of {}", f.key);
        let start = start_offset_in_key(&f.key)?;
        let p = f.rows.first().ok_or_else(|| format!("{} is empty", f.key))?.partition;
        assert!(f.key.contains(&format!("{prefix}/topics/{topic}/partition={p}/")), "key layout: {}", f.key);
        let first = f.rows.iter().map(|r| r.offset).min().unwrap_or(start);
        let last = f.rows.iter().map(|r| r.offset).max().unwrap_or(start);
        assert!(start <= first, "{}: named {start} but holds offset {first}", f.key);
        if let Some(prev) = last_end.insert(p, last) {
            assert!(start > prev, "{}: starts at {start}, but the previous file of partition {p} ends at {prev}", f.key);
        }
        for col in
            ["__op", "__ts_ms", "__deleted", "__kafka_key", "__kafka_topic", "__kafka_partition", "__kafka_offset", "__kafka_timestamp"]
        {
            assert!(f.columns.iter().any(|c| c == col), "{} lacks column {col}: {:?}", f.key, f.columns);
        }
        // A file spanning the switch to v2 holds both versions (`output.schema_change =
        // "merge"`, the default): then it has the v2 column, null in the v1 rows (each row's
        // category was compared with its event above).
        if f.rows.iter().any(|r| r.category.is_some()) {
            assert!(f.rows.iter().all(|r| r.category.is_some() || expected.get(&(r.partition, r.offset)).is_some_and(|e| e.category.is_none())), "{}", f.key);
        }
    }

    // Committed offsets: the last offset of each partition + 1, and the last written row's
    // offset + 1 wherever the partition does not end in a tombstone.
    let committed = committed(&stack.bootstrap, &group, &topic, partitions)?;
    for (p, end) in &ends {
        assert_eq!(committed.get(p).copied().flatten(), Some(*end), "committed offset of partition {p}");
        let last_row = rows.keys().filter(|(pp, _)| pp == p).map(|(_, o)| *o).max().ok_or("partition without rows")?;
        let ends_in_tombstone = expected.get(&(*p, end - 1)).is_some_and(|e| e.op == Op::Tombstone);
        if !ends_in_tombstone {
            assert_eq!(last_row + 1, *end, "last written offset + 1 of partition {p}");
        }
    }
    Ok(())
}

#[test]
fn idle_partition_flushes_by_the_wall_clock() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-idle"), unique("it-group"), unique("it/idle"));
    let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 1500")?;
    // Fewer records than max_records, then nothing more: only the clock can close the file.
    let produced = produce(&stack, &topic, 1, 20, None, 2)?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    assert_eq!(ends.get(&0).copied(), Some(produced.len() as i64), "log end vs produced");
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(60))?;
    let time_flushes = sink.metric_sum("kps_files_uploaded_total", &[("reason", "time")]);
    let files = read_lake(&stack, &prefix)?;
    let rows: usize = files.iter().map(|f| f.rows.len()).sum();
    let expected_rows = produced.iter().filter(|(_, e)| e.op != Op::Tombstone).count();
    assert_eq!(rows, expected_rows, "rows in the lake after the time flush");
    assert!(time_flushes >= 1.0, "expected a flush with reason=time, metrics say {time_flushes}");
    // Every metric the README documents is exported, with its type.
    let text = sink.metrics();
    for (name, kind) in [
        ("kps_records_consumed_total", "counter"),
        ("kps_records_written_total", "counter"),
        ("kps_records_skipped_total", "counter"),
        ("kps_files_uploaded_total", "counter"),
        ("kps_bytes_uploaded_total", "counter"),
        ("kps_file_size_bytes", "histogram"),
        ("kps_flush_duration_seconds", "histogram"),
        ("kps_offsets_committed_total", "counter"),
        ("kps_committed_offset", "gauge"),
        ("kps_buffered_records", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}")), "metric {name} ({kind}) missing from /metrics:\n{text}");
    }
    assert_eq!(metric_sum(&text, "kps_records_written_total", &[]) as usize, expected_rows, "kps_records_written_total");
    assert_eq!(metric_sum(&text, "kps_committed_offset", &[("partition", "0")]) as i64, ends[&0], "kps_committed_offset");
    let status = sink.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "sink exited with {status}");
    Ok(())
}

#[test]
fn sigterm_flushes_and_commits_what_is_buffered() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-term"), unique("it-group"), unique("it/term"));
    let partitions = 2;
    let produced = produce(&stack, &topic, partitions, 60, None, 3)?;
    // Neither size nor time can fire: only the shutdown flush writes these records.
    let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 3600000")?;
    wait_for(Duration::from_secs(60), "the sink to consume every record", || {
        Ok((sink.metric_sum("kps_records_consumed_total", &[]) as usize >= produced.len()).then_some(()))
    })?;
    assert!(read_lake(&stack, &prefix)?.is_empty(), "nothing should be uploaded before SIGTERM");
    let before = committed(&stack.bootstrap, &group, &topic, partitions)?;
    assert!(before.values().all(Option::is_none), "nothing should be committed before SIGTERM: {before:?}");

    let status = sink.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "sink exited with {status}");

    let files = read_lake(&stack, &prefix)?;
    let offsets: BTreeSet<(i32, i64)> = files.iter().flat_map(|f| f.rows.iter().map(|r| (r.partition, r.offset))).collect();
    let expected: BTreeSet<(i32, i64)> =
        produced.iter().filter(|(_, e)| e.op != Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
    assert_eq!(offsets, expected, "offsets in the lake after SIGTERM");
    let used: BTreeSet<i32> = produced.iter().map(|(p, _)| p.partition).collect();
    assert_eq!(files.len(), used.len(), "one file per partition: {:?}", files.iter().map(|f| &f.key).collect::<Vec<_>>());
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    let after = committed(&stack.bootstrap, &group, &topic, partitions)?;
    for p in 0..partitions {
        assert_eq!(after.get(&p).copied().flatten(), ends.get(&p).copied(), "committed offset of partition {p} after SIGTERM");
    }
    Ok(())
}
