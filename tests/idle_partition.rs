//! An idle partition flushes on time while another is consumed from a backlog: the wall-clock
//! rotation runs on its tick whatever the consumer's queue holds, by construction (the loop
//! serves a due tick before the next message).
//!
//! Broker, registry and S3: the local stack (Apache Kafka).

mod common;

use std::time::Duration;

use common::*;
use kafka_parquet_sink::decode::frame;
use kafka_parquet_sink::testkit::{ensure_topic, register_schema, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

#[test]
fn an_idle_partition_is_committed_while_another_is_still_catching_up() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-idle"), unique("it-group"), unique("it/idle"));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(ensure_topic(&stack.bootstrap, &topic, 2))?;
    let key_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-key"), KEY_SCHEMA))?;
    let value_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), VALUE_SCHEMA_V1))?;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).set("linger.ms", "20").create()?;
    // A backlog of change events in partition 0, one in partition 1.
    let mut generator = TasksGenerator::new(5, 100)?;
    let mut events = Vec::new();
    while events.len() < 100_000 {
        events.extend(generator.next_events()?.into_iter().filter(|e| e.value.is_some()));
    }
    let send = |p: i32, e: &kafka_parquet_sink::testkit::TaskEvent| {
        let (key, value) = (frame::encode(key_id, &e.key), e.value.as_ref().map(|v| frame::encode(value_id, v)));
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let mut r = FutureRecord::<Vec<u8>, Vec<u8>>::to(&topic).partition(p).key(&key);
            if let Some(v) = value.as_ref() {
                r = r.payload(v);
            }
            producer.send(r, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
        }
    };
    rt.block_on(async {
        use futures::StreamExt;
        futures::stream::iter(events.iter().map(|e| send(0, e)))
            .buffer_unordered(2000)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
    })?;
    rt.block_on(send(1, &events[0]))?;

    // Files close only by time (1 s) or at 1M records: partition 0 stays busy for many ticks.
    let sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 1000000\nrotate_interval_ms = 1000").start()?;
    let (busy_committed, busy_end) = wait_for(Duration::from_secs(60), "partition 1's one record to be committed", || {
        let c = committed(&stack.bootstrap, &group, &topic, 2)?;
        if c.get(&1).copied().flatten() != Some(1) {
            return Ok(None);
        }
        let end = watermarks(&stack.bootstrap, &topic)?.get(&0).map_or(0, |(_, h)| *h);
        Ok(Some((c.get(&0).copied().flatten().unwrap_or(0), end)))
    })?;
    assert!(
        busy_committed < busy_end,
        "partition 1 was committed only once partition 0 had caught up ({busy_committed} of {busy_end}): its time flush waited for the backlog"
    );
    eprintln!("idle partition committed while partition 0 stood at {busy_committed} of {busy_end}");
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(120))?;
    drop(sink);
    Ok(())
}
