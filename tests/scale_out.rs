//! Three members in one group over six partitions, with cooperative-sticky assignment, joining
//! and leaving under continuous produce: a member joins, one leaves cleanly (SIGTERM), one is
//! killed (SIGKILL) and comes back. Nothing is lost or duplicated, and revoked partitions'
//! open files are dropped, not uploaded (DESIGN.md, "Rebalances").
//!
//! Broker: librdkafka's mock cluster, in this test process, reached by the members over TCP. It
//! expires a dead member after its session timeout and rebalances as Kafka does; tansu 0.6.0's
//! coordinator never hands a departed member's partitions to another, so it cannot run this.
//! Registry and S3: the local stack (`scripts/stack.sh up`).

mod common;

use std::time::Duration;

use common::*;

fn owned(m: &SinkProcess) -> f64 {
    m.metric_sum("kps_partition_state", &[("state", "RUNNING")])
}

#[test]
fn members_join_leave_and_crash_under_load_without_loss_or_duplicates() -> TestResult {
    let (topic, group, prefix) = (unique("it-scale"), unique("it-group"), unique("it/scale"));
    let partitions = 6;
    let (_cluster, stack) = mock_broker_stack(&topic, partitions)?;
    let spec = || {
        SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 200\nrotate_interval_ms = 1500")
            .env("KPS__KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "cooperative-sticky")
            .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("KPS__KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
    };
    let producer = BackgroundProducer::start(&stack, &topic, partitions, 150, Duration::from_millis(50));

    let mut a = spec().start()?;
    let b = spec().start()?;
    wait_for(Duration::from_secs(60), "A and B to share the six partitions", || {
        Ok((owned(&a) + owned(&b) == 6.0 && owned(&a) > 0.0 && owned(&b) > 0.0).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));

    let c = spec().start()?;
    wait_for(Duration::from_secs(60), "C to join and get partitions", || {
        Ok((owned(&c) > 0.0 && owned(&a) + owned(&b) + owned(&c) == 6.0).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));

    let mut b = b;
    assert!(b.terminate(Duration::from_secs(30))?.success(), "B's exit status after SIGTERM");
    wait_for(Duration::from_secs(60), "A and C to take over B's partitions", || Ok((owned(&a) + owned(&c) == 6.0).then_some(())))?;
    std::thread::sleep(Duration::from_secs(2));

    a.kill9()?;
    wait_for(Duration::from_secs(60), "C to take over the killed A's partitions", || Ok((owned(&c) == 6.0).then_some(())))?;
    let a2 = spec().start()?;
    wait_for(Duration::from_secs(60), "the restarted A to get partitions", || {
        Ok((owned(&a2) > 0.0 && owned(&a2) + owned(&c) == 6.0).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let produced = producer.stop()?;

    wait_committed(&stack, &group, &topic, &log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset))), Duration::from_secs(90))?;
    let revoked_drops: usize = [&a2, &c].iter().map(|m| m.log().matches("revoked: open file discarded").count()).sum();
    for mut m in [a2, c] {
        assert!(m.terminate(Duration::from_secs(30))?.success(), "exit status after SIGTERM");
    }
    let audit = audit_lake(&stack, &prefix, &produced)?;
    audit.exactly_once()?;
    eprintln!("scale-out: {partitions} partitions, {revoked_drops} open files dropped on revocation by the last members; {audit}");
    Ok(())
}
