//! `kafka.topics` entries starting with `^` are patterns: every matching topic is consumed and
//! lands under its own `topics/<topic>/` path; a topic that does not match is left alone. A topic
//! created after the sink started (as Debezium creates its topic with the first change) is
//! consumed within seconds, not at librdkafka's default metadata refresh of 5 minutes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use kafka_parquet_sink::testkit::Op;

#[test]
fn a_topic_pattern_consumes_every_matching_topic_under_its_own_path() -> TestResult {
    let stack = Stack::get()?;
    let base = unique("it-pattern");
    let (tasks, habits, other) = (format!("{base}.public.tasks"), format!("{base}.public.habits"), format!("{base}.private.notes"));
    let (group, prefix) = (unique("it-group"), unique("it/pattern"));
    let mut produced = BTreeMap::new();
    for (i, t) in [&tasks, &habits, &other].into_iter().enumerate() {
        produced.insert(t.clone(), produce(&stack, t, 2, 80, None, 100 + i as u64)?);
    }
    let pattern = format!("^{}\\.public\\..*", base.replace('-', "\\-"));
    let sink = SinkSpec::new(&stack, "unused", &group, &prefix, "max_records = 30\nrotate_interval_ms = 1000")
        .env("KPS__KAFKA__TOPICS", &format!("[{pattern:?}]"))
        .start()?;
    for t in [&tasks, &habits] {
        let ends = log_ends(produced[t].iter().map(|(p, _)| (p.partition, p.offset)));
        wait_committed(&stack, &group, t, &ends, Duration::from_secs(60))?;
    }
    let mut sink = sink;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status");

    let files = read_lake(&stack, &prefix)?;
    let mut rows: BTreeMap<String, BTreeSet<(i32, i64)>> = BTreeMap::new();
    for f in &files {
        for r in &f.rows {
            assert!(f.key.contains(&format!("/topics/{}/partition={}/", r.topic, r.partition)), "{} holds a row of {}", f.key, r.topic);
            assert!(
                rows.entry(r.topic.clone()).or_default().insert((r.partition, r.offset)),
                "{}/{}/{} twice",
                r.topic,
                r.partition,
                r.offset
            );
        }
    }
    assert!(!rows.contains_key(&other), "the non-matching topic {other} was consumed");
    for t in [&tasks, &habits] {
        let expected: BTreeSet<(i32, i64)> =
            produced[t].iter().filter(|(_, e)| e.op != Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
        assert_eq!(rows.get(t), Some(&expected), "rows of {t}");
    }
    Ok(())
}

#[test]
fn a_topic_created_after_start_is_consumed_within_seconds() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-late"), unique("it-group"), unique("it/late"));
    let sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 30\nrotate_interval_ms = 1000").start()?;
    wait_for(Duration::from_secs(30), "the sink to subscribe", || Ok(sink.log().contains("running").then_some(())))?;
    std::thread::sleep(Duration::from_secs(2));
    let produced = produce(&stack, &topic, 1, 40, None, 9)?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    // Within the 10 s metadata refresh the sink sets, plus a flush.
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(40))?;
    Ok(())
}
