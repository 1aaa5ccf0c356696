//! Schema changes without small files (`output.schema_change`): records of two compatible
//! versions interleaving share one file per flush under `merge`, where `roll` starts a file at
//! every switch; an incompatible change still rolls and loses nothing.
//!
//! Needs the local stack (`scripts/stack.sh up`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kafka_parquet_sink::decode::frame;
use kafka_parquet_sink::testkit::register_schema;

/// Files per partition, and the number uploaded because of a schema change.
fn files_by_partition(files: &[LakeFile]) -> BTreeMap<i32, usize> {
    let mut n = BTreeMap::new();
    for f in files {
        if let Some(r) = f.rows.first() {
            *n.entry(r.partition).or_default() += 1;
        }
    }
    n
}

#[test]
fn interleaved_compatible_versions_share_one_file_per_flush() -> TestResult {
    let stack = Stack::get()?;
    let topic = unique("it-schema-merge");
    // The value schema changes every 100 records (an added column, then back), over 3
    // partitions: every partition sees a switch every ~33 records.
    let produced = produce_alternating(&stack, &topic, 3, 3000, 100, 21)?;
    let events: BTreeMap<(i32, i64), _> = produced.iter().map(|(p, e)| ((p.partition, p.offset), e)).collect();
    let mut counts = Vec::new();
    for mode in ["merge", "roll"] {
        let (group, prefix) = (unique("it-group"), unique(&format!("it/schema-{mode}")));
        let output = format!("schema_change = \"{mode}\"");
        // Everything is in the topic before the sink starts; one time rotation closes the files.
        let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 3000").output(&output).start()?;
        wait_caught_up(&stack, &group, &topic, Duration::from_secs(90))?;
        let schema_rolls = sink.metric_sum("kps_files_uploaded_total", &[("reason", "schema")]) + 0.0; // -0 when absent
        let merges = sink.metric_sum("kps_schema_reconciliations_total", &[]) + 0.0;
        drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
        let files = read_lake(&stack, &prefix)?;
        let per_partition = files_by_partition(&files);
        for f in &files {
            for r in &f.rows {
                let e = events.get(&(r.partition, r.offset)).ok_or_else(|| format!("offset {}/{} was never produced", r.partition, r.offset))?;
                assert_eq!(r.title.as_deref(), Some(e.title.as_str()), "{mode}: title of {}/{}", r.partition, r.offset);
                assert_eq!(r.category, e.category, "{mode}: category of {}/{} (null for v1 rows)", r.partition, r.offset);
            }
        }
        eprintln!("{mode}: files per partition {per_partition:?}, {schema_rolls:.0} closed by a schema change, {merges:.0} versions merged");
        if mode == "merge" {
            assert!(per_partition.values().all(|n| *n == 1), "merge: one flush per partition, one file each: {per_partition:?}");
            assert_eq!(schema_rolls, 0.0, "merge: no file closed for a compatible version");
            assert!(merges >= 3.0, "merge: the switches are counted ({merges})");
            for f in &files {
                assert!(f.rows.iter().any(|r| r.category.is_some()) && f.rows.iter().any(|r| r.category.is_none()), "{}: both versions' rows", f.key);
            }
        } else {
            assert!(per_partition.values().all(|n| *n > 20), "roll: a file per switch: {per_partition:?}");
        }
        counts.push(files.len());
    }
    eprintln!("a schema change every 100 records, 3,000 records, 3 partitions: merge {} files, roll {} files", counts[0], counts[1]);
    Ok(())
}

/// Versions switching every few records (every 5 produced, every one or two per partition):
/// still one file per partition and flush, every row with its own version's values.
#[test]
fn versions_switching_every_few_records_still_share_files() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-schema-few"), unique("it-group"), unique("it/schema-few"));
    let produced = produce_alternating(&stack, &topic, 3, 600, 5, 22)?;
    let events: BTreeMap<(i32, i64), _> = produced.iter().map(|(p, e)| ((p.partition, p.offset), e)).collect();
    // The whole backlog is read in one burst; a rotation well past it (a debug build on a busy
    // machine took over 3 s to merge its 120 switches) keeps time out of what is compared.
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 30000").start()?;
    drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
    let files = read_lake(&stack, &prefix)?;
    assert!(files_by_partition(&files).values().all(|n| *n == 1), "one file per partition: {:?}", files_by_partition(&files));
    for r in files.iter().flat_map(|f| &f.rows) {
        let e = events.get(&(r.partition, r.offset)).ok_or("a row of an offset never produced")?;
        assert_eq!((r.title.as_deref(), &r.category), (Some(e.title.as_str()), &e.category), "{}/{}", r.partition, r.offset);
    }
    Ok(())
}

/// `x` is a string in version 0 of the value schema and a long in version 1: an incompatible
/// change. Produces, per (partition, versions), 10 records of each version in turn into a new
/// topic of `partitions`; returns their (partition, offset).
fn produce_x_versions(stack: &Stack, topic: &str, partitions: i32, runs: &[(i32, &[usize])]) -> TestResult<std::collections::BTreeSet<(i32, i64)>> {
    let v1 = r#"{"type": "record", "name": "R", "namespace": "it", "fields": [{"name": "id", "type": "long"}, {"name": "x", "type": "string"}]}"#;
    let v2 = r#"{"type": "record", "name": "R", "namespace": "it", "fields": [{"name": "id", "type": "long"}, {"name": "x", "type": "long"}]}"#;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(kafka_parquet_sink::testkit::ensure_topic(&stack.bootstrap, topic, partitions))?;
    let ids = [rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), v1))?, rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), v2))?];
    // apache-avro's name validator is set once per process, by the first parse: install the
    // one the Debezium tests beside this one need (names like `supabase-habit.public.tasks`)
    // before parsing anything here.
    kafka_parquet_sink::testkit::allow_debezium_names();
    let schemas = [apache_avro::Schema::parse_str(v1)?, apache_avro::Schema::parse_str(v2)?];
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).create()?;
    let mut offsets = std::collections::BTreeSet::new();
    for (partition, versions) in runs {
        for (round, version) in versions.iter().copied().enumerate() {
            for i in 0..10i64 {
                use apache_avro::types::Value;
                let x = if version == 0 { Value::String(format!("s{i}")) } else { Value::Long(i) };
                let body = apache_avro::to_avro_datum(&schemas[version], Value::Record(vec![("id".into(), Value::Long(round as i64 * 10 + i)), ("x".into(), x)]))?;
                let value = frame::encode(ids[version], &body);
                let record = rdkafka::producer::FutureRecord::<(), _>::to(topic).partition(*partition).payload(&value);
                let d = rt.block_on(producer.send(record, Duration::from_secs(10))).map_err(|(e, _)| e)?;
                offsets.insert((*partition, d.offset));
            }
        }
    }
    Ok(offsets)
}

#[test]
fn an_incompatible_change_still_rolls_and_loses_nothing() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-schema-roll"), unique("it-group"), unique("it/schema-roll"));
    // v1, v2, v1: two incompatible switches.
    let offsets = produce_x_versions(&stack, &topic, 1, &[(0, &[0, 1, 0])])?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 1000\nrotate_interval_ms = 1000").start()?;
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(60))?;
    let log = sink.log();
    sink.terminate(Duration::from_secs(30))?;
    let audit = audit_offsets(&stack, &prefix, &offsets)?;
    audit.exactly_once()?;
    assert_eq!(audit.files, 3, "a file per version run: {audit}");
    assert!(log.contains("does not reconcile") && log.contains("x: type changed from string to long"), "the log says why:\n{log}");
    Ok(())
}

/// Table mode: rows whose column changes kind (string → long) cannot join a Delta table. Their
/// partition stops, FAILED with the reason, nothing of it committed past the table's version;
/// the other partition goes on.
#[test]
fn in_table_mode_a_change_delta_cannot_express_fails_only_its_partition() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-schema-delta"), unique("it-group"), unique("it/schema-delta"));
    // Partition 0: v1 only. Partition 1: v1, then v2.
    produce_x_versions(&stack, &topic, 2, &[(0, &[0]), (1, &[0, 1])])?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 1000\nrotate_interval_ms = 1000")
        .output("format = \"delta\"")
        .tables("[table]\ncommit_interval_ms = 500")
        .start()?;
    let status = wait_for(Duration::from_secs(60), "partition 1 to be FAILED and partition 0 committed", || {
        let status = sink.status()?;
        let parts = status["partitions"].as_array().cloned().unwrap_or_default();
        let state = |p: i64| parts.iter().find(|x| x["partition"].as_i64() == Some(p)).map(|x| (x["state"].clone(), x["table_version"].clone()));
        let done = state(1).is_some_and(|(s, _)| s == "FAILED") && state(0).is_some_and(|(_, v)| v == 10);
        Ok(done.then_some(status))
    })
    .map_err(|e| format!("{e}\n{}", sink.log()))?;
    let failed = status["partitions"].as_array().and_then(|p| p.iter().find(|x| x["partition"].as_i64() == Some(1)).cloned()).ok_or("no partition 1")?;
    let why = failed["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("column x is string in the table and long in the rows"), "partition 1's reason: {failed}");
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = read_delta(&stack, &prefix, &topic, 2)?;
    let p1 = table.txn.get("1").copied().flatten();
    assert!(p1.is_none_or(|v| v <= 10), "partition 1 committed past its v1 rows: txn {p1:?}");
    let mut rows = table.rows.clone();
    rows.sort();
    let want: Vec<(i32, i64)> = (0..10).map(|o| (0, o)).chain((0..p1.unwrap_or(0)).map(|o| (1, o))).collect();
    assert_eq!(rows, want, "the table's rows: partition 0's ten, partition 1's below its txn version {p1:?}");
    let committed = committed(&stack.bootstrap, &group, &topic, 2)?;
    assert!(committed.get(&1).copied().flatten().is_none_or(|c| c <= 10), "the group's offset of the failed partition: {committed:?}");
    Ok(())
}
