//! `kafka.group_instance_id` (static membership): a replica killed with SIGKILL and restarted
//! with the same id gets its partitions back at once, and the lake holds every offset once.
//!
//! Broker: Apache Kafka (the local stack). Its coordinator returns a static member's partitions
//! to the restarted member with the same `group.instance.id` without waiting for the session to
//! expire, which is what is tested (`crash_loop.rs` tests the dynamic member's path). Records go
//! out in ordinary batches, so the restart resumes from commits inside produce batches.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_restarted_static_member_gets_its_partitions_back_and_nothing_doubles() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-static"), unique("it-group"), unique("it/static"));
    let mut produced = produce(&stack, &topic, 3, 600, None, 71)?;
    let instance = unique("replica");
    let spec = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 50\nrotate_interval_ms = 800")
        .env("KPS__KAFKA__GROUP_INSTANCE_ID", &instance);

    let mut first = spec.start()?;
    wait_for(Duration::from_secs(60), "the first run to upload files", || {
        Ok((first.metric_sum("kps_files_uploaded_total", &[]) >= 3.0).then_some(()))
    })?;
    first.kill9()?;
    produced.extend(produce(&stack, &topic, 3, 300, None, 72)?);

    let restarted_at = Instant::now();
    let mut second = spec.start()?;
    wait_for(Duration::from_secs(30), "the restarted member to get its 3 partitions back", || {
        Ok((second.metric_sum("kps_partition_state", &[("state", "RUNNING")]) == 3.0).then_some(()))
    })?;
    let back_after = restarted_at.elapsed();

    let audit = drain_and_audit(&stack, &mut second, (&group, &topic, &prefix), &produced)?;
    eprintln!("static membership: partitions back {:.1}s after the restart; {audit}", back_after.as_secs_f64());
    Ok(())
}
