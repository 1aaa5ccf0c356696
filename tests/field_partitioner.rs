//! `output.partitioner = "field"`: each file lands under `prio=<p>/completed=<c>/` of its rows
//! (a delete under its row's last state), read from the Avro body before the row is decoded;
//! values interleave, yet a flush writes one file per path rather than one per change; every
//! offset is in the lake exactly once, across a crash too.
//!
//! Broker, registry and S3: the local stack (Apache Kafka, whose coordinator expires the killed
//! member before the restart).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn files_land_under_their_rows_field_values_exactly_once() -> TestResult {
    let (topic, group, prefix) = (unique("it-field"), unique("it-group"), unique("it/field"));
    let stack = Stack::get()?;
    let produced = produce(&stack, &topic, 2, 400, None, 7)?;
    let spec = |flush: &'static str| {
        SinkSpec::new(&stack, &topic, &group, &prefix, flush)
            .output("partitioner = \"field\"\npartition_fields = [\"after.prio\", \"after.completed\", \"op\"]")
            .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("KPS__KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
    };
    // Killed the moment its first file is logged: a flush uploads a file per path (up to 24
    // here), so the crash lands between the files of one flush, before its commit.
    let mut first = spec("max_records = 100\nrotate_interval_ms = 1000").start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.log().contains("file uploaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
    first.kill9()?;
    let committed = committed(&stack.bootstrap, &group, &topic, 2)?;
    let left = read_lake(&stack, &prefix)?;
    let uncommitted = left
        .iter()
        .filter(|f| f.rows.first().is_some_and(|r| committed.get(&r.partition).copied().flatten().is_none_or(|c| r.offset >= c)))
        .count();
    // The second run replays from the commit and writes each path's first file under the same
    // key: the crashed flush's files are overwritten, not duplicated.
    let mut second = spec("max_records = 100\nrotate_interval_ms = 1000").start()?;
    let audit = drain_and_audit(&stack, &mut second, (&group, &topic, &prefix), &produced)?;

    let mut dirs = BTreeSet::new();
    let mut deletes = 0;
    let files = read_lake(&stack, &prefix)?;
    let rows: usize = files.iter().map(|f| f.rows.len()).sum();
    // A flush writes one file per path of the partition: at most 2 partitions × 24 paths × (2
    // flushes of 100 records + a rotation + the crashed one), not a file per change of value.
    assert!(files.len() <= 2 * 24 * 4, "{} files for {rows} rows: values interleave, files should not", files.len());
    for f in &files {
        for r in &f.rows {
            let (prio, completed) = (r.prio.as_deref(), r.completed);
            let (Some(prio), Some(completed)) = (prio, completed) else {
                return Err(format!("row {}/{} in {} has no prio/completed in its image", r.partition, r.offset, f.key).into());
            };
            let op = r.op.as_deref().unwrap_or_default();
            assert_row_under(f, r, &topic, &format!("prio={prio}/completed={completed}/op={op}"), "its field values");
            deletes += usize::from(r.op.as_deref() == Some("d"));
            dirs.insert((prio.to_string(), completed, op.to_string()));
        }
    }
    assert!(dirs.len() >= 4, "only {} directories: {dirs:?}", dirs.len());
    assert!(deletes > 0, "no delete reached the lake: the before-image fallback went untested");
    assert!(uncommitted > 0, "the crash left no uploaded file uncommitted: the overwrite went untested");
    eprintln!("field partitioner: {audit}, {} directories, {deletes} deletes under their last state, {rows} rows in {} files; the crash left {uncommitted} of {} files uncommitted", dirs.len(), files.len(), left.len());
    Ok(())
}

/// Table mode (`output.format = "delta"`): the table is partitioned by the fields' columns and
/// the Kafka partition, `op` being the envelope's own column too; every row's partition values,
/// as `deltalake` reads them, are the values its data file holds, and every offset is there once.
#[test]
fn a_delta_table_is_partitioned_by_the_fields() -> TestResult {
    let (topic, group, prefix) = (unique("it-field-delta"), unique("it-group"), unique("it/field-delta"));
    let stack = Stack::get()?;
    let produced = produce(&stack, &topic, 2, 300, None, 8)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100\nrotate_interval_ms = 1000")
        .output("format = \"delta\"\npartitioner = \"field\"\npartition_fields = [\"after.prio\", \"after.completed\", \"op\"]")
        .tables("[table]\ncommit_interval_ms = 500\ncheckpoint_interval = 0\ncompaction_min_files = 0")
        .start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = assert_every_reader_reads(&stack, (&prefix, &topic, 2), Matrix { columns: &["prio", "completed", "op"], stream: false }, &produced)?;
    assert_eq!(table.partition_columns, ["prio", "completed", "op", "__kafka_partition"], "partition columns");
    // The data files' own values (pyarrow on each file; no checkpoint is among them).
    let mut in_files = std::collections::BTreeMap::new();
    for f in read_lake(&stack, &format!("{prefix}/topics/{topic}"))? {
        for r in &f.rows {
            in_files.insert((r.partition, r.offset), (r.prio.clone(), r.completed.map(|c| c.to_string()), r.op.clone()));
        }
    }
    let column = |c: &str| table.values.get(c).cloned().ok_or(format!("no {c} values"));
    let (prios, completes, ops) = (column("prio")?, column("completed")?, column("op")?);
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    for (i, row) in table.rows.iter().enumerate() {
        let read = (text(prios.get(i)), text(completes.get(i)), text(ops.get(i)));
        assert_eq!(Some(&read), in_files.get(row), "row {row:?}: (prio, completed, op) read from the table (left) vs its data file (right)");
    }
    Ok(())
}

/// Partition values as users' titles are: `/`, `%`, `?`, spaces and non-ASCII text. Every
/// reader users run (deltalake, DuckDB's delta_scan, Spark batch and a stream from version 0)
/// reads every row once, after compaction has rewritten the small files of each value; each
/// row's partition value is its title.
#[test]
fn a_delta_table_over_titles_with_slashes_percents_spaces_and_non_ascii_reads_alike_everywhere() -> TestResult {
    const TITLES: &[&str] = &["a/b c%d", "100% done?", "M\u{fc}nchen caf\u{e9}", "batch 123"];
    let (topic, group, prefix) = (unique("it-field-titles"), unique("it-group"), unique("it/field-titles"));
    let stack = Stack::get()?;
    let produced = produce_titled(&stack, &topic, 2, 300, 9, TITLES)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 50\nrotate_interval_ms = 500")
        .output("format = \"delta\"\nlayout = \"flatten\"\npartitioner = \"field\"\npartition_fields = [\"after.title\"]")
        .tables("[table]\ncommit_interval_ms = 500\ncheckpoint_interval = 4\ncompaction_min_files = 2\ncompaction_idle_ms = 1000")
        .start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    // The idle round compacts every value with two small files or more.
    wait_for(Duration::from_secs(60), "compaction of the idle table", || Ok(sink.log().contains("compacted").then_some(())))
        .map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = assert_every_reader_reads(&stack, (&prefix, &topic, 2), Matrix { columns: &["title"], stream: true }, &produced)?;
    assert_eq!(table.partition_columns, ["title", "__kafka_partition"], "partition columns");
    let by_offset: std::collections::BTreeMap<(i32, i64), String> = produced.iter().map(|(p, e)| ((p.partition, p.offset), e.title.clone())).collect();
    let values = table.values.get("title").ok_or("no title values")?;
    for (i, row) in table.rows.iter().enumerate() {
        assert_eq!(values.get(i).and_then(|v| v.as_str()), by_offset.get(row).map(String::as_str), "row {row:?}: its partition value (left) vs its title (right)");
    }
    assert!(table.files.iter().any(|f| f.contains("-compacted-")), "no compacted file among {:?}", table.files);
    Ok(())
}
