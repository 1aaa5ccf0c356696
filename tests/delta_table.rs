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
fn records_land_once_in_the_table_and_a_new_group_resumes_from_it() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-delta"), unique("it-group"), unique("it/delta"));
    let partitions = 3;
    let mut produced = produce(&stack, &topic, partitions, 900, None, 1901)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).output(DELTA).tables(TABLE).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    // The group's offsets are committed after the table's: once they are there, so is the table.
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
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
