//! A second member joins while the first holds open files: the revoked partitions' open files
//! are dropped, not uploaded, and the new owner replays them, so every record lands once.
//!
//! Broker: Apache Kafka (the local stack). Its coordinator splits the partitions when a member
//! joins, which is what is tested (leaving and crashing members: `scale_out.rs`); both members
//! stop together here, each flushing what it owns.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kafka_parquet_sink::testkit::Op;

#[test]
fn a_joining_member_takes_partitions_without_duplicates() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-join"), unique("it-group"), unique("it/join"));
    let partitions = 4;
    let produced = produce(&stack, &topic, partitions, 400, None, 21)?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    assert_eq!(ends.len(), partitions as usize, "every partition should receive records: {ends:?}");
    // Only SIGTERM can close files: member A buffers everything before B joins.
    let flush = "max_records = 100000\nrotate_interval_ms = 3600000";
    let mut a = SinkProcess::start(&stack, &topic, &group, &prefix, flush)?;
    wait_for(Duration::from_secs(60), "member A to consume every record", || {
        Ok((a.metric_sum("kps_records_consumed_total", &[]) as usize >= produced.len()).then_some(()))
    })?;
    let mut b = SinkProcess::start(&stack, &topic, &group, &prefix, flush)?;
    wait_for(Duration::from_secs(60), "member B to get partitions and consume them", || {
        Ok((b.metric_sum("kps_records_consumed_total", &[]) > 0.0).then_some(()))
    })?;
    // Let both settle on their share: A re-reads what it kept from the committed offsets.
    std::thread::sleep(Duration::from_secs(3));
    let buffered_a = a.metric_sum("kps_buffered_records", &[]);
    let buffered_b = b.metric_sum("kps_buffered_records", &[]);
    assert!(buffered_b > 0.0, "B should hold open files, buffered {buffered_b}");
    assert!(
        buffered_a + buffered_b > 0.0 && buffered_a + buffered_b <= produced.len() as f64,
        "buffered A {buffered_a} + B {buffered_b} vs produced {}",
        produced.len()
    );

    for m in [&mut a, &mut b] {
        let status = m.terminate(Duration::from_secs(30))?;
        assert!(status.success(), "member exited with {status}");
    }
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(10))?;

    let mut seen: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for f in read_lake(&stack, &prefix)? {
        for r in f.rows {
            if let Some(first) = seen.insert((r.partition, r.offset), f.key.clone()) {
                return Err(format!("offset {}/{} in {first} and in {}", r.partition, r.offset, f.key).into());
            }
        }
    }
    let expected: Vec<(i32, i64)> = produced.iter().filter(|(_, e)| e.op != Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        {
            let mut e = expected;
            e.sort();
            e
        },
        "offsets in the lake"
    );
    Ok(())
}
