//! `kps_consumer_lag_records` against Apache Kafka (the local stack): present for every assigned
//! partition within seconds of the assignment, equal to the backlog before anything is
//! committed, and 0 once the group has caught up.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

fn lag_samples(sink: &SinkProcess, topic: &str) -> BTreeMap<i32, f64> {
    let text = sink.metrics();
    text.lines()
        .filter(|l| l.starts_with("kps_consumer_lag_records{") && l.contains(&format!("topic=\"{topic}\"")))
        .filter_map(|l| {
            let p = l.split("partition=\"").nth(1)?.split('"').next()?.parse().ok()?;
            Some((p, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn lag_is_reported_for_every_assigned_partition_and_reaches_zero() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-lag"), unique("it-group"), unique("it/lag"));
    let produced = produce(&stack, &topic, 3, 300, None, 61)?;
    let backlog: BTreeMap<i32, f64> = watermarks(&stack.bootstrap, &topic)?.into_iter().map(|(p, (_, h))| (p, h as f64)).collect();
    // Files close only after 20 s: the first statistics (every 5 s) come before any commit.
    let sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 20000").start()?;
    wait_for(Duration::from_secs(60), "the three partitions to be assigned", || {
        Ok((sink.metric_sum("kps_partition_state", &[("state", "RUNNING")]) == 3.0).then_some(()))
    })?;
    let assigned = Instant::now();
    let first = wait_for(Duration::from_secs(12), "a lag sample for each of the 3 partitions", || {
        let got = lag_samples(&sink, &topic);
        Ok((got.len() == 3).then_some(got))
    })?;
    eprintln!("lag: every partition reported {:.1}s after the assignment: {first:?}", assigned.elapsed().as_secs_f64());
    assert_eq!(first, backlog, "lag before the first commit (nothing committed: the whole backlog)");

    wait_caught_up(&stack, &group, &topic, Duration::from_secs(90))?;
    wait_for(Duration::from_secs(15), "the lag of every partition to read 0", || {
        let got = lag_samples(&sink, &topic);
        Ok((got.len() == 3 && got.values().all(|v| *v == 0.0)).then_some(()))
    })
    .map_err(|e| format!("{e}; last samples {:?}", lag_samples(&sink, &topic)))?;
    assert!(!produced.is_empty());
    Ok(())
}
