//! `kafka.topics` entries starting with `^` are patterns: every matching topic is consumed and
//! lands under its own `topics/<topic>/` path; a topic that does not match is left alone.

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
