//! Three members in one group over six partitions, under each group protocol (classic with
//! cooperative-sticky assignment, and KIP-848's consumer protocol), joining and leaving under
//! continuous produce: a member joins, one leaves cleanly (SIGTERM), one is
//! killed (SIGKILL) and comes back. Nothing is lost or duplicated, and revoked partitions'
//! open files are dropped, not uploaded (DESIGN.md, "Rebalances").
//!
//! Broker: Apache Kafka, the local stack's (`scripts/stack.sh up`), whose group coordinator
//! expires a dead member after its session timeout. Registry and S3: the local stack.

mod common;

use std::time::Duration;

use common::*;

fn owned(m: &SinkProcess) -> f64 {
    m.metric_sum("kps_partition_state", &[("state", "RUNNING")])
}

#[test]
fn classic_protocol_members_join_leave_and_crash_without_loss_or_duplicates() -> TestResult {
    scale_out(Protocol::Classic)
}

#[test]
fn consumer_protocol_members_join_leave_and_crash_without_loss_or_duplicates() -> TestResult {
    scale_out(Protocol::Consumer)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    /// `group.protocol = classic` with cooperative-sticky assignment, 6 s sessions.
    Classic,
    /// `group.protocol = consumer` (KIP-848): the broker assigns, and expires a dead member
    /// after its `group.consumer.session.timeout.ms` (10 s in `scripts/kafka.sh`).
    Consumer,
}

fn scale_out(protocol: Protocol) -> TestResult {
    let (topic, group, prefix) = (unique("it-scale"), unique("it-group"), unique("it/scale"));
    let partitions = 6;
    let stack = Stack::get()?;
    let spec = || {
        let spec = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 200\nrotate_interval_ms = 1500");
        match protocol {
            Protocol::Classic => spec
                .env("KPS__KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "cooperative-sticky")
                .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
                .env("KPS__KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000"),
            Protocol::Consumer => spec.consumer_protocol(),
        }
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

    wait_caught_up(&stack, &group, &topic, Duration::from_secs(90))?;
    let revoked_drops: usize = [&a2, &c].iter().map(|m| m.log().matches("revoked: open file discarded").count()).sum();
    for mut m in [a2, c] {
        assert!(m.terminate(Duration::from_secs(30))?.success(), "exit status after SIGTERM");
    }
    let audit = audit_lake(&stack, &prefix, &produced)?;
    audit.exactly_once()?;
    eprintln!("scale-out ({protocol:?} protocol): {partitions} partitions, {revoked_drops} open files dropped on revocation by the last members; {audit}");
    Ok(())
}
