//! A zombie member: its object store hangs in the middle of a flush for longer than
//! `max.poll.interval.ms`, so Kafka gives its partitions to another member, which replays and
//! commits; then the store comes back and the hung upload lands. The zombie must touch nothing
//! the new owner committed: no file replaced (conditional puts), none deleted (ownership checked
//! after every upload, never below the broker's committed offset), and its own late file removed
//! again. Every offset ends in the lake exactly once.
//!
//! Broker, registry and S3: the local stack (Apache Kafka); the zombie reaches S3 through a
//! proxy of the test's that holds every byte while paused.

mod common;

use std::time::Duration;

use common::*;

fn owned(m: &SinkProcess) -> f64 {
    m.metric_sum("kps_partition_state", &[("state", "RUNNING")])
}

#[test]
fn a_member_whose_store_hangs_past_max_poll_interval_touches_nothing_the_new_owner_committed() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-zombie"), unique("it-group"), unique("it/zombie"));
    let partitions = 4;
    let s3 = Proxy::start(&stack.s3)?;
    let zombie_stack = Stack { s3: s3.url(), ..stack.clone() };
    let flush = "max_records = 100\nrotate_interval_ms = 1000";
    let mut produced = produce(&stack, &topic, partitions, 2000, None, 801)?;
    let first = produced.len();
    let mut a = SinkSpec::new(&zombie_stack, &topic, &group, &prefix, flush)
        .env("KPS__KAFKA__PROPERTIES__MAX_POLL_INTERVAL_MS", "8000")
        .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .start()?;
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(60))?;

    // A's store hangs; its next flush waits on it and A stops polling.
    s3.pause();
    produced.extend(produce(&stack, &topic, partitions, 2000, None, 802)?);
    // A takes up the new records until a flush (every 100 records, or 1 s) waits on the store.
    wait_for(Duration::from_secs(30), "A to consume new records", || {
        Ok((a.metric_sum("kps_records_consumed_total", &[]) as usize > first).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    // B joins; A cannot answer the rebalance and is dropped from the group after 8 s.
    let mut b = SinkSpec::new(&stack, &topic, &group, &prefix, flush).start()?;
    wait_for(Duration::from_secs(90), "B to own every partition", || Ok((owned(&b) == partitions as f64).then_some(())))?;
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(90))?;
    let committed_by_b = read_lake(&stack, &prefix)?.len();

    // The store comes back: A's hung request lands now.
    s3.resume();
    wait_for(Duration::from_secs(60), "A to find out, after its upload, that it lost its partition", || {
        let log = a.log();
        Ok((log.contains("partition lost while the file uploaded")
            || log.contains("fenced: the key holds a file committed by another owner"))
        .then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(a.terminate(Duration::from_secs(30))?.success(), "A's exit status after SIGTERM");
    assert!(b.terminate(Duration::from_secs(30))?.success(), "B's exit status after SIGTERM");
    let audit = audit_lake(&stack, &prefix, &produced)?;
    audit.exactly_once()?;
    let log = a.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("partition lost while") || l.contains("fenced:")).map(str::trim).collect();
    eprintln!("zombie: {committed_by_b} files when B caught up; A: {lines:?}; {audit}");
    Ok(())
}

/// The same zombie in table mode (`output.format = "delta"`): when its store answers again, its
/// late files stay unreferenced (the partition is lost) or its commit is refused by the table
/// (the new owner moved each partition's txn version past the zombie's start). Readers of the
/// table never see a row twice, and every offset is there once.
#[test]
fn in_table_mode_the_zombies_files_are_never_named_by_the_table() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-zombie-delta"), unique("it-group"), unique("it/zombie-delta"));
    let partitions = 4;
    let s3 = Proxy::start(&stack.s3)?;
    let zombie_stack = Stack { s3: s3.url(), ..stack.clone() };
    let flush = "max_records = 100\nrotate_interval_ms = 1000";
    let (delta, table) = ("format = \"delta\"", "[table]\ncommit_interval_ms = 500");
    let mut produced = produce(&stack, &topic, partitions, 2000, None, 803)?;
    let first = produced.len();
    let mut a = SinkSpec::new(&zombie_stack, &topic, &group, &prefix, flush)
        .output(delta)
        .tables(table)
        .env("KPS__KAFKA__PROPERTIES__MAX_POLL_INTERVAL_MS", "8000")
        .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .start()?;
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(60)).map_err(|e| format!("{e}\n{}", a.log()))?;
    let before = read_delta(&stack, &prefix, &topic, partitions)?;

    // A's store hangs: its uploads and its next commit wait on it.
    s3.pause();
    produced.extend(produce(&stack, &topic, partitions, 2000, None, 804)?);
    wait_for(Duration::from_secs(30), "A to consume new records", || {
        Ok((a.metric_sum("kps_records_consumed_total", &[]) as usize > first).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let mut b = SinkSpec::new(&stack, &topic, &group, &prefix, flush).output(delta).tables(table).start()?;
    wait_for(Duration::from_secs(90), "B to own every partition", || Ok((owned(&b) == partitions as f64).then_some(())))?;
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", b.log()))?;
    let by_b = read_delta(&stack, &prefix, &topic, partitions)?;
    by_b.exactly_once(&produced).map_err(|e| format!("the table once B caught up: {e}"))?;

    // The store comes back: A's hung uploads and commit land now, on a table B moved on.
    s3.resume();
    wait_for(Duration::from_secs(60), "A to find out that it lost its partitions", || {
        let log = a.log();
        Ok((log.contains("partition lost while the file uploaded") || log.contains("fenced")).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(3));
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(60))?;
    assert!(a.terminate(Duration::from_secs(30))?.success(), "A's exit status after SIGTERM\n{}", a.log());
    assert!(b.terminate(Duration::from_secs(30))?.success(), "B's exit status after SIGTERM\n{}", b.log());
    let how = Matrix { columns: &[], stream: true };
    let after = assert_every_reader_reads(&stack, (&prefix, &topic, partitions), how, &produced).map_err(|e| format!("the table after the zombie woke up: {e}"))?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    let txn: std::collections::BTreeMap<String, Option<i64>> = ends.iter().map(|(p, e)| (p.to_string(), Some(*e))).collect();
    assert_eq!(after.txn, txn, "txn versions: each partition's next offset");
    let log = a.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("partition lost while") || l.contains("fenced")).map(str::trim).collect();
    eprintln!("zombie (table): versions {} → {} (B) → {}; A: {lines:?}", before.version, by_b.version, after.version);
    Ok(())
}
