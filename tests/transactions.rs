//! Transactional input and offsets with holes, on Apache Kafka (the local stack):
//! - a transactional producer (as Debezium is under a Connect worker with exactly-once source
//!   support) commits some transactions and aborts others: under the default
//!   `isolation.level = read_committed` no aborted record lands, every committed record lands
//!   once, and the group's committed offsets reach the high watermarks, past the last commit
//!   marker (lag 0);
//! - a compacted topic (`cleanup.policy = compact`), read after the log cleaner has removed
//!   older values of each key: every record still in the log lands once, and the committed
//!   offsets reach the high watermarks across the holes.
//!
//! Debezium's own exactly-once mode through the real Connect worker is covered by
//! `debezium_e2e.rs`, whose worker runs with `exactly.once.source.support = enabled`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use kafka_parquet_sink::testkit::{ensure_topic, register_schema, CdcProducer, Op, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[test]
fn aborted_transactions_never_land_and_lag_reaches_zero_past_the_markers() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-txn"), unique("it-group"), unique("it/txn"));
    let partitions = 3;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(ensure_topic(&stack.bootstrap, &topic, partitions))?;
    let key_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-key"), KEY_SCHEMA))?;
    let value_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), VALUE_SCHEMA_V1))?;
    let producer = CdcProducer::transactional(&stack.bootstrap, &topic, (key_id, value_id), &unique("it-txn-producer"))?;
    let mut generator = TasksGenerator::new(31, 40)?;
    let (mut committed_records, mut aborted) = (Vec::new(), BTreeSet::new());
    // Ten transactions of about 40 events; the 3rd, 6th and 9th are aborted, the last commits.
    for t in 0..10 {
        let mut events = Vec::new();
        while events.len() < 40 {
            events.extend(generator.next_events()?);
        }
        let bodies: Vec<(Vec<u8>, Option<Vec<u8>>)> = events.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
        producer.begin()?;
        let landed = rt.block_on(producer.send_all(&bodies))?;
        if t % 3 == 2 {
            producer.abort()?;
            aborted.extend(landed.iter().map(|p| (p.partition, p.offset)));
        } else {
            producer.commit()?;
            committed_records.extend(landed.into_iter().zip(events));
        }
    }
    let last_record = log_ends(committed_records.iter().map(|(p, _)| (p.partition, p.offset)).chain(aborted.iter().copied()));

    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100\nrotate_interval_ms = 1000").start()?;
    let high = wait_caught_up(&stack, &group, &topic, Duration::from_secs(90))?;
    // Each partition ends with a commit marker: the high watermark lies past its last record.
    for (p, end) in &last_record {
        assert!(
            high.get(p).copied().unwrap_or(0) > *end,
            "partition {p}: high watermark {high:?} should lie past the last record + 1 ({end}), at a marker"
        );
    }
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status after SIGTERM");
    let audit = audit_lake(&stack, &prefix, &committed_records)?; // fails on any aborted offset in the lake
    audit.exactly_once()?;
    eprintln!("transactions: {} aborted records kept out, committed offsets at the high watermarks {high:?}; {audit}", aborted.len());
    Ok(())
}

/// Every (partition, offset) of `topic` a read_committed consumer reads now, with whether the
/// record is a tombstone.
fn read_log(bootstrap: &str, topic: &str, high: &BTreeMap<i32, (i64, i64)>) -> TestResult<BTreeMap<(i32, i64), bool>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("it-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, (low, _)) in high {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*low))?;
    }
    c.assign(&tpl)?;
    let mut out = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = |out: &BTreeMap<(i32, i64), bool>| high.iter().all(|(p, (_, h))| out.keys().any(|(q, o)| q == p && o + 1 == *h) || *h == 0);
    while !done(&out) {
        if std::time::Instant::now() > deadline {
            return Err(format!("reading {topic} back did not reach the high watermarks {high:?}").into());
        }
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m?;
            out.insert((m.partition(), m.offset()), m.payload().is_none());
        }
    }
    Ok(out)
}

fn create_compacted(bootstrap: &str, topic: &str, partitions: i32) -> TestResult {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.001")
        .set("min.compaction.lag.ms", "0")
        .set("delete.retention.ms", "100");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in tokio::runtime::Runtime::new()?.block_on(admin.create_topics([&new], &opts))? {
        result.map_err(|(t, code)| format!("create compacted topic {t}: {code}"))?;
    }
    Ok(())
}

#[test]
fn a_compacted_topic_lands_what_is_left_and_lag_reaches_zero_across_the_holes() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-compact"), unique("it-group"), unique("it/compact"));
    // A compacted topic whose segments roll every 100 ms and are cleaned as soon as possible.
    create_compacted(&stack.bootstrap, &topic, 2)?;
    // Twenty rounds of changes to 20 tasks, apart in time, so that each round rolls a segment
    // and later values of each key supersede earlier ones.
    let mut produced = Vec::new();
    for round in 0..20 {
        produced.extend(produce(&stack, &topic, 2, 40, None, 500 + round)?);
        std::thread::sleep(Duration::from_millis(150));
    }
    // Wait until the cleaner has removed records, then until what is left stops changing.
    let mut marks = watermarks(&stack.bootstrap, &topic)?;
    let mut log = wait_for(Duration::from_secs(120), "the log cleaner to compact the topic", || {
        marks = watermarks(&stack.bootstrap, &topic)?;
        let log = read_log(&stack.bootstrap, &topic, &marks)?;
        Ok((log.len() < produced.len()).then_some(log))
    })?;
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let again = read_log(&stack.bootstrap, &topic, &marks)?;
        if again == log {
            break;
        }
        log = again;
    }
    let expected: BTreeSet<(i32, i64)> = log.iter().filter(|(_, tombstone)| !**tombstone).map(|(k, _)| *k).collect();
    let holes = produced.len() - log.len();
    assert!(
        produced.iter().any(|(p, e)| e.op != Op::Tombstone && !log.contains_key(&(p.partition, p.offset))),
        "compaction removed no change event: the test would test nothing"
    );

    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100\nrotate_interval_ms = 1000").start()?;
    let high = wait_caught_up(&stack, &group, &topic, Duration::from_secs(90))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status after SIGTERM");
    let audit = audit_offsets(&stack, &prefix, &expected)?;
    audit.exactly_once()?;
    eprintln!("compaction: {} records produced, {holes} compacted away, committed at {high:?}; {audit}", produced.len());
    Ok(())
}
