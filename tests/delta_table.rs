//! `output.format = "delta"`: the lake is a Delta table per topic, read back by the `deltalake`
//! package (delta-rs), never by the sink's code. The table, not the consumer group, says where
//! each partition resumes: its txn versions.
//!
//! Broker, registry and S3: the local stack (Apache Kafka, SeaweedFS).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const FLUSH: &str = "max_records = 100\nrotate_interval_ms = 1000";
const DELTA: &str = "format = \"delta\"";
const TABLE: &str = "[table]\ncommit_interval_ms = 1000\ncheckpoint_interval = 5";

fn txn_of(ends: &BTreeMap<i32, i64>) -> BTreeMap<String, Option<i64>> {
    ends.iter().map(|(p, e)| (p.to_string(), Some(*e))).collect()
}

#[test]
fn records_land_once_in_the_table_and_a_new_or_deleted_group_resumes_from_it() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-delta"), unique("it-group"), unique("it/delta"));
    let partitions = 3;
    let mut produced = produce(&stack, &topic, partitions, 900, None, 1901)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).output(DELTA).tables(TABLE).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    // The group's offsets are committed after the table's: once they are there, so is the table.
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    // /status shows each partition's table version beside the group's offset, and the table's.
    let status = sink.status()?;
    let shown: BTreeMap<i32, Option<i64>> = status["partitions"]
        .as_array()
        .ok_or("no partitions in /status")?
        .iter()
        .map(|p| (p["partition"].as_i64().unwrap_or(-1) as i32, p["table_version"].as_i64()))
        .collect();
    assert_eq!(shown, ends.iter().map(|(p, e)| (*p, Some(*e))).collect::<BTreeMap<_, _>>(), "table versions in /status:\n{status}");
    assert!(status["tables"][0]["version"].as_u64().is_some_and(|v| v >= 1), "the table's version in /status:\n{status}");
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = read_delta(&stack, &prefix, &topic, partitions)?;
    table.exactly_once(&produced)?;
    assert_eq!(table.partition_columns, ["__kafka_partition"], "partition columns");
    assert_eq!(table.txn, txn_of(&ends), "txn versions: each partition's next offset");
    assert!(table.files.iter().all(|f| f.contains("/__kafka_partition=")), "data files under their partition value: {:?}", table.files);
    for c in ["__kafka_offset", "op", "after", "source"] {
        assert!(table.columns.iter().any(|x| x == c), "column {c} in {:?}", table.columns);
    }

    // A new group id, nothing committed in it: it starts where the table says, not at the
    // earliest offset, so no row is written twice.
    produced.extend(produce(&stack, &topic, partitions, 300, None, 1902)?);
    let group2 = unique("it-group");
    let mut sink = SinkSpec::new(&stack, &topic, &group2, &prefix, FLUSH).output(DELTA).tables(TABLE).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group2, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let log = sink.log();
    assert_eq!(log.matches("positioned from the table").count(), partitions as usize, "one positioning per partition:\n{log}");
    let table = read_delta(&stack, &prefix, &topic, partitions)?;
    table.exactly_once(&produced)?;
    assert_eq!(table.txn, txn_of(&ends), "txn versions after the second group");

    // The second group deleted (its committed offsets gone with it): started again under the
    // same id, it resumes from the table too.
    delete_group(&stack.bootstrap, &group2)?;
    assert!(committed(&stack.bootstrap, &group2, &topic, partitions)?.values().all(Option::is_none), "group {group2} still has offsets after its deletion");
    produced.extend(produce(&stack, &topic, partitions, 150, None, 1904)?);
    let mut sink = SinkSpec::new(&stack, &topic, &group2, &prefix, FLUSH).output(DELTA).tables(TABLE).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group2, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = read_delta(&stack, &prefix, &topic, partitions)?;
    table.exactly_once(&produced).map_err(|e| format!("after the group's deletion: {e}"))?;
    assert_eq!(table.txn, txn_of(&ends), "txn versions after the deleted group came back");
    // DuckDB's delta_scan, a reader built on another code base, sees the same rows.
    let mut by_deltalake = table.rows.clone();
    by_deltalake.sort();
    let by_duckdb = read_delta_duckdb(&stack, &prefix, &topic)?;
    assert_eq!(by_duckdb.len(), by_deltalake.len(), "rows DuckDB's delta_scan reads against deltalake's");
    assert!(by_duckdb == by_deltalake, "DuckDB's delta_scan and deltalake read different (partition, offset) rows");
    Ok(())
}

/// Two members that each believe they own every partition (two groups on one table): each
/// commit of a partition is won by one of them; the other is fenced, drops what it holds and
/// reads again from the table's version. The table never holds a row twice.
#[test]
fn two_members_racing_for_one_table_never_commit_a_row_twice() -> TestResult {
    let stack = Stack::get()?;
    let (topic, prefix) = (unique("it-delta-race"), unique("it/delta-race"));
    let partitions = 2;
    let producer = BackgroundProducer::start(&stack, &topic, partitions, 50, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(1));
    let (g1, g2) = (unique("it-group"), unique("it-group"));
    // Files of different sizes, so their ranges differ and one member's commit cannot be the
    // other's range exactly (which the table would take as already committed, rightly).
    let table = "[table]\ncommit_interval_ms = 300";
    let mut a = SinkSpec::new(&stack, &topic, &g1, &prefix, "max_records = 50\nrotate_interval_ms = 500").output(DELTA).tables(table).start()?;
    let mut b = SinkSpec::new(&stack, &topic, &g2, &prefix, "max_records = 70\nrotate_interval_ms = 700").output(DELTA).tables(table).start()?;
    std::thread::sleep(Duration::from_secs(15));
    let produced = producer.stop()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    for (sink, group) in [(&a, &g1), (&b, &g2)] {
        wait_committed(&stack, group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    }
    assert!(a.terminate(Duration::from_secs(30))?.success(), "A's exit status\n{}", a.log());
    assert!(b.terminate(Duration::from_secs(30))?.success(), "B's exit status\n{}", b.log());
    let fenced = a.log().matches("fenced by the table").count() + b.log().matches("fenced by the table").count();
    let dump = read_delta(&stack, &prefix, &topic, partitions)?;
    dump.exactly_once(&produced).map_err(|e| format!("{e}\n(fenced {fenced} times)"))?;
    assert_eq!(dump.txn, txn_of(&ends), "txn versions");
    assert!(fenced > 0, "the members never met in the table: the race was not run (A and B each committed alone)");
    Ok(())
}

/// The kill -9 loop in table mode, with a reader (`deltalake`) polling the table after every
/// kill: at each poll no (partition, offset) appears twice and every row below each partition's
/// txn version is there; at the end every offset exactly once.
#[test]
fn random_kill9_under_load_never_shows_a_reader_a_duplicate_or_a_hole() -> TestResult {
    let cycles: usize = std::env::var("KPS_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).map_or(10, |c: usize| (c / 2).max(4));
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-delta-kill"), unique("it-group"), unique("it/delta-kill"));
    let partitions = 4;
    let spec = || {
        SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 150\nrotate_interval_ms = 700")
            .output(DELTA)
            .tables("[table]\ncommit_interval_ms = 500\ncheckpoint_interval = 4")
            .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("KPS__KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
    };
    let producer = BackgroundProducer::start(&stack, &topic, partitions, 120, Duration::from_millis(50));
    let mut polls = Vec::new();
    let mut commits = 0;
    for cycle in 0..cycles {
        let mut sink = spec().start()?;
        // On odd cycles right after a table commit is logged, before the group's offsets follow.
        kill_somewhere(&mut sink, cycle, "table commit")?;
        commits += sink.log().matches("table commit").count();
        if commits > 0 {
            polls.push(read_delta(&stack, &prefix, &topic, partitions)?);
        }
    }
    let produced = producer.stop()?;
    let mut sink = spec().start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(120)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());

    let rows: std::collections::BTreeSet<(i32, i64)> =
        produced.iter().filter(|(_, e)| e.op != kafka_parquet_sink::testkit::Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
    for (i, poll) in polls.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for r in &poll.rows {
            assert!(seen.insert(*r), "poll {i} (table version {}): row {r:?} twice", poll.version);
        }
        for (p, v) in &poll.txn {
            let p: i32 = p.parse()?;
            let below = v.unwrap_or(0);
            let missing: Vec<_> = rows.iter().filter(|(q, o)| *q == p && *o < below && !seen.contains(&(*q, *o))).take(5).collect();
            assert!(missing.is_empty(), "poll {i} (table version {}): partition {p} txn version {below}, rows below it missing: {missing:?}", poll.version);
        }
    }
    let last = assert_every_reader_reads(&stack, (&prefix, &topic, partitions), Matrix { columns: &[], stream: true }, &produced)?;
    assert_eq!(last.txn, txn_of(&ends), "txn versions at the end");
    assert!(commits > 0 && !polls.is_empty(), "no table commit happened between kills: the loop tested nothing");
    eprintln!("delta kill loop: {cycles} kills, {commits} table commits before kills, {} polls, final version {}", polls.len(), last.version);
    Ok(())
}

/// Offsets of the rows an outside writer appends start here (round 1), far above the topic's.
const OUTSIDE_BASE: i64 = 1_000_000_000;

/// Appends `rows` of the table's rows again through `deltalake` (another writer, in a commit
/// of its own), their offsets moved up by `base`; returns how many it appended.
fn append_outside(stack: &Stack, prefix: &str, topic: &str, rows: usize, base: i64) -> TestResult<usize> {
    let table = format!("{prefix}/topics/{topic}");
    let out = std::process::Command::new("python3")
        .arg(root().join("scripts/delta.py"))
        .args(["--endpoint", &stack.s3, "append", "--table", &table, "--rows", &rows.to_string(), "--offset-base", &base.to_string(), "--below", &OUTSIDE_BASE.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!("delta.py append to {table} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["rows"].as_u64().ok_or(format!("no row count in {v}"))? as usize)
}

/// Compaction while records keep coming: many small files (a file per flush every 300 ms) are
/// swapped for few, readers see every row once before and after, the txn versions hold, an
/// outside writer's appends meanwhile are kept, and once the stream stops the idle round leaves
/// one file of the sink's per partition value.
#[test]
fn small_files_are_compacted_while_consuming_and_an_outside_append_is_kept() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-delta-compact"), unique("it-group"), unique("it/delta-compact"));
    let partitions = 2;
    let producer = BackgroundProducer::start(&stack, &topic, partitions, 40, Duration::from_millis(100));
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 300")
        .output(DELTA)
        .tables("[table]\ncommit_interval_ms = 300\ncompaction_min_files = 4\ncompaction_idle_ms = 1500")
        .start()?;
    // Another writer (`deltalake`) appends to the same table all along: some of its commits take
    // the log version a commit or a compaction of the sink wanted, which must read the log again
    // and keep the outside rows.
    std::thread::sleep(Duration::from_secs(4));
    let mut outside = 0;
    for round in 1..=5i64 {
        outside += append_outside(&stack, &prefix, &topic, 3, round * OUTSIDE_BASE)?;
        std::thread::sleep(Duration::from_secs(3));
    }
    let produced = producer.stop()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    // Idle from here on: the idle round merges what the rounds by count left, down to one file
    // of the sink's per partition value.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut table = read_delta(&stack, &prefix, &topic, partitions)?;
    while own_files_per_partition(&table.files).values().any(|n| *n > 1) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        table = read_delta(&stack, &prefix, &topic, partitions)?;
    }
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let log = sink.log();
    let uploads = log.matches("file uploaded").count();
    let compactions = log.matches("compacted").count();
    let appended: std::collections::BTreeSet<(i32, i64)> = table.rows.iter().filter(|(_, o)| *o >= OUTSIDE_BASE).copied().collect();
    let appended_rows = table.rows.iter().filter(|(_, o)| *o >= OUTSIDE_BASE).count();
    assert_eq!((appended.len(), appended_rows), (outside, outside), "rows the outside writer appended: (distinct, all) against appended");
    table.rows.retain(|(_, o)| *o < OUTSIDE_BASE);
    table.exactly_once(&produced)?;
    assert_eq!(table.txn, txn_of(&ends), "txn versions after compaction");
    let per_partition = own_files_per_partition(&table.files);
    assert!(compactions > 0, "{uploads} files uploaded and no compaction ran:\n{log}");
    assert_eq!(
        per_partition,
        (0..partitions).map(|p| (p.to_string(), 1)).collect::<BTreeMap<_, _>>(),
        "files of the sink per partition value once idle ({uploads} uploaded, {compactions} compactions)"
    );
    let lost = log.matches("another writer took the log version").count() + log.matches("compaction lost its version").count();
    eprintln!(
        "compaction: {uploads} files uploaded, {compactions} compactions, files per partition value at the end {per_partition:?}; {outside} rows appended by another writer, {lost} log versions lost to it"
    );
    Ok(())
}

/// The sink's files of each partition value of the table. The outside writer's own files
/// (`part-…`) are not counted: they hold another schema's encoding, and compaction merges files
/// of one schema only.
fn own_files_per_partition(files: &[String]) -> BTreeMap<String, usize> {
    let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
    for f in files.iter().filter(|f| !f.rsplit('/').next().unwrap_or("").starts_with("part-")) {
        let p = f.split("__kafka_partition=").nth(1).and_then(|r| r.split('/').next()).unwrap_or("?").to_string();
        *per_partition.entry(p).or_default() += 1;
    }
    per_partition
}

/// The same table on a local directory (`output.url = "file:///..."`): the kernel reads and
/// writes the log through the machine's filesystem.
#[test]
fn a_local_directory_holds_the_table_too() -> TestResult {
    let stack = Stack::get()?;
    let dir = tempfile::tempdir()?;
    let (topic, group) = (unique("it-delta-local"), unique("it-group"));
    let prefix = format!("file://{}/lake", dir.path().display());
    let partitions = 2;
    let produced = produce(&stack, &topic, partitions, 400, None, 1903)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).output(DELTA).tables(TABLE).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = read_delta(&stack, &prefix, &topic, partitions)?;
    table.exactly_once(&produced)?;
    assert_eq!(table.txn, txn_of(&ends), "txn versions");
    assert!(dir.path().join(format!("lake/topics/{topic}/_delta_log/00000000000000000000.json")).exists(), "the log under the directory");
    Ok(())
}

/// Log cleanup with a short `delta.logRetentionDuration` (`table.properties`): after enough
/// versions and a checkpoint, the entries before the newest checkpoint older than it are gone,
/// and every reader (deltalake, DuckDB, Spark) still opens the table, every offset once, each
/// partition resuming from its txn version.
#[test]
fn log_entries_past_a_short_log_retention_go_and_every_reader_still_opens_the_table() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-delta-logclean"), unique("it-group"), unique("it/delta-logclean"));
    let partitions = 2;
    let table = "[table]\ncommit_interval_ms = 500\ncheckpoint_interval = 2\ncompaction_min_files = 0\nproperties = { \"delta.logRetentionDuration\" = \"interval 2 seconds\" }";
    let mut produced = produce(&stack, &topic, partitions, 300, None, 1931)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).output(DELTA).tables(table).start()?;
    wait_committed(&stack, &group, &topic, &log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset))), Duration::from_secs(90))
        .map_err(|e| format!("{e}\n{}", sink.log()))?;
    std::thread::sleep(Duration::from_secs(3)); // the first versions are now past the retention
    // A few more commits, so that a checkpoint comes after the expired ones.
    for seed in 1932..1936 {
        produced.extend(produce(&stack, &topic, partitions, 100, None, seed)?);
        std::thread::sleep(Duration::from_millis(800));
    }
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    wait_for(Duration::from_secs(60), "a log cleanup behind a checkpoint", || Ok(sink.log().contains("log entries past the table's log retention removed").then_some(())))
        .map_err(|e| format!("{e}\n{}", sink.log()))?;
    let counted = sink.metric_sum("kps_table_log_entries_removed_total", &[("topic", topic.as_str())]);
    assert!(counted > 0.0, "kps_table_log_entries_removed_total is {counted}");
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let log: Vec<String> = lake_digest(&stack, &format!("{prefix}/topics/{topic}/_delta_log"))?.into_iter().map(|d| d.key).collect();
    assert!(!log.iter().any(|k| k.ends_with("00000000000000000000.json")), "version 0 is past the retention and behind a checkpoint, yet still there: {log:?}");
    assert!(log.iter().any(|k| k.contains(".checkpoint.")), "the checkpoint the log starts from: {log:?}");
    let dump = assert_every_reader_reads(&stack, (&prefix, &topic, partitions), Matrix { columns: &[], stream: false }, &produced)?;
    assert_eq!(dump.txn, txn_of(&ends), "txn versions read through the checkpoint");
    Ok(())
}

/// The tasks value schema without `updated_at` (Debezium's `MicroTimestamp`, a timestamp
/// without zone): a source table that has no such column until `ALTER TABLE ... ADD COLUMN`.
fn value_schema_without(column: &str) -> TestResult<String> {
    use kafka_parquet_sink::testkit::VALUE_SCHEMA_V1;
    let mut s: serde_json::Value = serde_json::from_str(VALUE_SCHEMA_V1)?;
    let fields = s.pointer_mut("/fields/0/type/1/fields").and_then(|f| f.as_array_mut()).ok_or("fixture schema: before.Value.fields not found")?;
    fields.retain(|f| f["name"] != column);
    Ok(serde_json::to_string(&s)?)
}

/// An event of the full schema written again in `narrow`, `column` left out of both row images.
fn without_column(body: &[u8], full: &apache_avro::Schema, narrow: &apache_avro::Schema, column: &str) -> TestResult<Vec<u8>> {
    use apache_avro::types::Value;
    let Value::Record(mut envelope) = apache_avro::from_avro_datum(full, &mut &body[..], None)? else {
        return Err("an envelope that is not a record".into());
    };
    for (name, image) in &mut envelope {
        if let ("before" | "after", Value::Union(_, row)) = (name.as_str(), image) {
            if let Value::Record(fields) = row.as_mut() {
                fields.retain(|(f, _)| f != column);
            }
        }
    }
    Ok(apache_avro::to_avro_datum(narrow, Value::Record(envelope))?)
}

/// The protocol of the log entry `version` of the table: its reader and writer features.
fn protocol_at(rt: &tokio::runtime::Runtime, bucket: &object_store::aws::AmazonS3, table: &str, version: i64) -> TestResult<Option<serde_json::Value>> {
    use object_store::ObjectStoreExt;
    let path = object_store::path::Path::parse(format!("{table}/_delta_log/{version:020}.json"))?;
    let body = rt.block_on(async { bucket.get(&path).await?.bytes().await })?;
    for line in std::str::from_utf8(&body)?.lines() {
        let action: serde_json::Value = serde_json::from_str(line)?;
        if let Some(p) = action.get("protocol") {
            return Ok(Some(p.clone()));
        }
    }
    Ok(None)
}

/// A table whose source had no timestamp without zone gains one (`updated_at`, a Delta
/// `timestamp_ntz`) mid-stream: the version that adds it raises the protocol with the
/// `timestampNtz` feature. Compaction merges the small files and the sweep removes a file no
/// version named, yet keeps every file compaction removed (the table's 7-day deleted-file
/// retention). Then every reader reads each offset once, the new column set on exactly the rows
/// that carried it, and a Spark stream from version 0 reads the same rows through the removed
/// files and the schema change.
#[test]
fn a_timestamp_added_later_compaction_and_the_sweep_leave_a_table_every_reader_reads_from_version_0() -> TestResult {
    use kafka_parquet_sink::testkit::{ensure_topic, register_schema, CdcProducer, Produced, TaskEvent, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
    use object_store::{ObjectStoreExt, PutPayload};
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-delta-ntz"), unique("it-group"), unique("it/delta-ntz"));
    let partitions = 2;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(ensure_topic(&stack.bootstrap, &topic, partitions))?;
    let mut generator = TasksGenerator::new(2024, 40)?;
    let full = apache_avro::Schema::parse_str(VALUE_SCHEMA_V1)?;
    let narrow_json = value_schema_without("updated_at")?;
    let narrow = apache_avro::Schema::parse_str(&narrow_json)?;
    let key_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-key"), KEY_SCHEMA))?;
    let narrow_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), &narrow_json))?;
    let mut producer = CdcProducer::new(&stack.bootstrap, &topic, key_id, narrow_id)?;
    let mut events = |n: usize| -> TestResult<Vec<TaskEvent>> {
        let mut out = Vec::new();
        while out.len() < n {
            out.extend(generator.next_events()?);
        }
        Ok(out)
    };
    let send = |producer: &CdcProducer, batch: Vec<TaskEvent>, narrowed: bool| -> TestResult<Vec<(Produced, TaskEvent)>> {
        let mut bodies = Vec::with_capacity(batch.len());
        for e in &batch {
            let value = match (&e.value, narrowed) {
                (Some(v), true) => Some(without_column(v, &full, &narrow, "updated_at")?),
                (v, _) => v.clone(),
            };
            bodies.push((e.key.clone(), value));
        }
        Ok(rt.block_on(producer.send_all(&bodies))?.into_iter().zip(batch).collect())
    };

    // Before: no timestamp without zone in the table.
    let mut produced = send(&producer, events(300)?, true)?;
    let table = "[table]\ncommit_interval_ms = 500\ncheckpoint_interval = 5\ncompaction_min_files = 4\ncompaction_idle_ms = 1500\norphan_retention_ms = 60000";
    // Flattened, so that `updated_at` is a top-level column of the table.
    let output = format!("{DELTA}\nlayout = \"flatten\"");
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).output(&output).tables(table).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    let root = format!("{prefix}/topics/{topic}");
    let bucket = lake_bucket(&stack)?;
    let first = protocol_at(&rt, &bucket, &root, 0)?.ok_or("no protocol in version 0")?;
    assert!(!first.to_string().contains("timestampNtz"), "version 0 has no timestamp without zone, yet its protocol is {first}");
    // A file no version names, as a writer that died before its commit leaves it.
    let orphan = object_store::path::Path::parse(format!("{root}/part-00000-{}-c000.snappy.parquet", uuid::Uuid::new_v4()))?;
    rt.block_on(bucket.put(&orphan, PutPayload::from_static(b"not a committed file")))?;

    // After: `updated_at` joins, a Delta timestamp_ntz.
    let v1_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), VALUE_SCHEMA_V1))?;
    producer.set_value_schema_id(v1_id);
    let added = send(&producer, events(300)?, false)?;
    let with_column: std::collections::BTreeSet<(i32, i64)> = added.iter().filter(|(_, e)| e.value.is_some()).map(|(p, _)| (p.partition, p.offset)).collect();
    produced.extend(added);
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    // The orphan is past the retention a minute after it was put; the sweep runs every 15 s.
    wait_for(Duration::from_secs(150), "the sweep to remove the orphan", || {
        Ok(rt.block_on(bucket.head(&orphan)).is_err_and(|e| matches!(e, object_store::Error::NotFound { .. })).then_some(()))
    })
    .map_err(|e| format!("{e}\n{}", sink.log()))?;
    wait_for(Duration::from_secs(30), "an idle compaction", || Ok(sink.log().contains("compacted").then_some(())))
        .map_err(|e| format!("{e}\n{}", sink.log()))?;
    let swept = sink.metric_sum("kps_table_orphans_removed_total", &[("topic", topic.as_str())]);
    let expired = sink.metric_sum("kps_table_files_expired_total", &[("topic", topic.as_str())]);
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    assert_eq!((swept, expired), (1.0, 0.0), "(orphans, removed files past the deleted-file retention) the sweep took");

    let dump = assert_every_reader_reads(&stack, (&prefix, &topic, partitions), Matrix { columns: &["updated_at"], stream: true }, &produced)?;
    assert_eq!(dump.txn, txn_of(&ends), "txn versions");
    // The newest protocol action in the log (a checkpoint may hold older versions' only).
    let mut newest = None;
    for v in (1..=dump.version).rev() {
        if let Ok(Some(p)) = protocol_at(&rt, &bucket, &root, v) {
            newest = Some((v, p));
            break;
        }
    }
    let (v, raised) = newest.ok_or("no version after 0 raised the protocol")?;
    assert!(raised.to_string().contains("timestampNtz"), "the protocol of version {v}, the newest, lacks timestampNtz: {raised}");
    let stamped: std::collections::BTreeSet<(i32, i64)> =
        dump.rows.iter().zip(&dump.values["updated_at"]).filter(|(_, v)| !v.is_null()).map(|(r, _)| *r).collect();
    assert_eq!(stamped, with_column, "rows with updated_at set (left) and rows produced with the column (right)");
    // Compaction removed files; the sweep kept them for readers of older versions.
    let objects = lake_digest(&stack, &root)?.into_iter().filter(|d| d.key.ends_with(".parquet") && !d.key.contains("_delta_log")).count();
    assert!(objects > dump.files.len(), "{objects} data files in the store, {} in the latest version: compaction removed none, or the sweep took them", dump.files.len());
    Ok(())
}
