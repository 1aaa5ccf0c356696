//! Records that can never be written, one class per partition, on the real local stack (Apache
//! Kafka, SeaweedFS, the registry): with `errors.tolerance = "none"` each such partition stops FAILED
//! and the others go on; with `"all"` each record lands in the dead-letter topic with its key,
//! value, headers and the error headers, and every partition goes on, without reading any range
//! of the topic twice, even with a quarter of the records bad.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use kafka_parquet_sink::decode::frame;
use kafka_parquet_sink::testkit::{register_schema, BadMix, Op, Produced, Spoiled, TaskEvent, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 5;
/// A record with an empty record field: Avro takes it, Parquet cannot store an empty struct.
const EMPTY_STRUCT_SCHEMA: &str = r#"{"type":"record","name":"Odd","namespace":"kps.test","fields":[{"name":"id","type":"long"},{"name":"nothing","type":{"type":"record","name":"Empty","fields":[]}}]}"#;

struct Bad {
    class: &'static str,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
}

struct Setup {
    topic: String,
    good: Vec<(Produced, TaskEvent)>,
    bad: Vec<Bad>,
    ends: BTreeMap<i32, i64>,
}

/// Good records on every partition, then one bad record of each class on partitions 0-3 (4 has
/// none), then more good records.
fn setup(stack: &Stack, name: &str) -> TestResult<Setup> {
    let topic = unique(name);
    let mut good = produce(stack, &topic, PARTITIONS, 120, None, 31)?;
    let rt = tokio::runtime::Runtime::new()?;
    let key_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-key"), KEY_SCHEMA))?;
    let value_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), VALUE_SCHEMA_V1))?;
    let odd_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-odd-value"), EMPTY_STRUCT_SCHEMA))?;
    let sample = TasksGenerator::new(77, 1)?.next_events()?.remove(0);
    let body = sample.value.clone().ok_or("sample without a value")?;
    let key = frame::encode(key_id, &sample.key);
    let classes: [(&'static str, Vec<u8>); 4] = [
        ("not_framed", b"{\"id\": 1, \"json\": true}".to_vec()),
        ("unknown_schema", frame::encode(1_999_999_999, &body)),
        ("corrupt_body", frame::encode(value_id, &body[..body.len() / 2])),
        ("unwritable", frame::encode(odd_id, &[0x02])),
    ];
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).create()?;
    let mut bad = Vec::new();
    for (partition, (class, value)) in classes.into_iter().enumerate() {
        let partition = partition as i32;
        let headers = OwnedHeaders::new().insert(Header { key: "trace-id", value: Some(class) });
        let record = FutureRecord::to(&topic).partition(partition).key(&key).payload(&value).headers(headers);
        let d = rt.block_on(producer.send(record, Duration::from_secs(10))).map_err(|(e, _)| e)?;
        bad.push(Bad { class, partition, offset: d.offset, key: key.clone(), value });
    }
    good.extend(produce(stack, &topic, PARTITIONS, 120, None, 32)?);
    let ends = log_ends(good.iter().map(|(p, _)| (p.partition, p.offset)).chain(bad.iter().map(|b| (b.partition, b.offset))));
    assert_eq!(ends.len(), PARTITIONS as usize, "every partition should receive records: {ends:?}");
    Ok(Setup { topic, good, bad, ends })
}

fn lake_offsets(stack: &Stack, prefix: &str) -> TestResult<BTreeMap<i32, BTreeSet<i64>>> {
    let mut rows: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for f in read_lake(stack, prefix)? {
        for r in f.rows {
            if !rows.entry(r.partition).or_default().insert(r.offset) {
                return Err(format!("offset {}/{} twice in the lake", r.partition, r.offset).into());
            }
        }
    }
    Ok(rows)
}

fn good_offsets(good: &[(Produced, TaskEvent)], partition: i32, below: i64) -> BTreeSet<i64> {
    good.iter().filter(|(p, e)| p.partition == partition && e.op != Op::Tombstone && p.offset < below).map(|(p, _)| p.offset).collect()
}

#[test]
fn tolerance_none_fails_each_bad_partition_and_the_others_go_on() -> TestResult {
    let stack = Stack::get()?;
    let s = setup(&stack, "it-bad-none")?;
    let (group, prefix) = (unique("it-group"), unique("it/bad-none"));
    let sink = SinkProcess::start(&stack, &s.topic, &group, &prefix, "max_records = 25\nrotate_interval_ms = 1000")?;

    // Partition 4 has no bad record: all of it is written and committed.
    let clean_end = BTreeMap::from([(4, s.ends[&4])]);
    wait_committed(&stack, &group, &s.topic, &clean_end, Duration::from_secs(90))?;
    wait_for(Duration::from_secs(30), "four partitions FAILED", || {
        Ok((sink.metric_sum("kps_partition_state", &[("state", "FAILED")]) == 4.0).then_some(()))
    })?;
    assert!(sink.child.id() > 0 && sink.http("/healthz").0 == 200, "the process must keep running");
    let (ready, why) = sink.http("/readyz");
    assert_eq!(ready, 503, "/readyz with FAILED partitions: {why}");

    let status = sink.status()?;
    let committed = committed(&stack.bootstrap, &group, &s.topic, PARTITIONS)?;
    let lake = lake_offsets(&stack, &prefix)?;
    let log = sink.log();
    for b in &s.bad {
        let p = status["partitions"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["partition"] == b.partition))
            .ok_or_else(|| format!("partition {} missing from /status: {status}", b.partition))?;
        assert_eq!(p["state"], "FAILED", "/status of partition {} ({})", b.partition, b.class);
        let error = p["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("offset {}", b.offset)), "/status last_error of {}: {error}", b.class);
        let c = committed[&b.partition].unwrap_or(0);
        assert!(c <= b.offset, "{}: committed {c} is past the bad record at {}", b.class, b.offset);
        let written = lake.get(&b.partition).cloned().unwrap_or_default();
        assert_eq!(
            written,
            good_offsets(&s.good, b.partition, c),
            "{}: rows of partition {} below the committed offset",
            b.class,
            b.partition
        );
        let logged = log.lines().any(|l| {
            l.contains("partition FAILED")
                && l.contains(&format!("partition={}", b.partition))
                && l.contains(&format!("offset={}", b.offset))
                && l.contains(&format!("class=\"{}\"", b.class))
                && l.contains(&s.topic)
        });
        assert!(logged, "no log line names {} at {}/{} with its reason", b.class, b.partition, b.offset);
        assert_eq!(sink.metric_sum("kps_bad_records_total", &[("class", b.class), ("action", "failed")]), 1.0, "count of {}", b.class);
    }
    assert_eq!(lake.get(&4).cloned().unwrap_or_default(), good_offsets(&s.good, 4, i64::MAX), "partition 4 in the lake");
    Ok(())
}

#[test]
fn tolerance_all_sends_each_bad_record_to_the_dead_letter_topic() -> TestResult {
    let stack = Stack::get()?;
    let s = setup(&stack, "it-bad-all")?;
    let (group, prefix, dlq) = (unique("it-group"), unique("it/bad-all"), unique("it-dlq"));
    tokio::runtime::Runtime::new()?.block_on(kafka_parquet_sink::testkit::ensure_topic(&stack.bootstrap, &dlq, 1))?;
    let tables = format!("[errors]\ntolerance = \"all\"\ndead_letter_topic = \"{dlq}\"");
    // One file per partition at most until the end: the corrupt record's file holds good rows
    // before it, which must be kept without reading them again.
    let mut sink =
        SinkSpec::new(&stack, &s.topic, &group, &prefix, "max_records = 1000\nrotate_interval_ms = 2000").tables(&tables).start()?;
    wait_committed(&stack, &group, &s.topic, &s.ends, Duration::from_secs(90))?;
    let status = sink.status()?;
    let replays = sink.metric_sum("kps_bad_record_replays_total", &[]);
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    // The corrupt body came after good records of its file: the body check refused it before
    // the decoder saw it, so nothing was read again.
    assert_eq!(replays, 0.0, "kps_bad_record_replays_total");
    assert!(!sink.log().contains("reading the open file's range again"), "a bad record's file was read again");

    let lake = lake_offsets(&stack, &prefix)?;
    for p in 0..PARTITIONS {
        assert_eq!(lake.get(&p).cloned().unwrap_or_default(), good_offsets(&s.good, p, i64::MAX), "rows of partition {p}");
    }
    assert!(status["partitions"].as_array().is_some_and(|ps| ps.iter().all(|p| p["state"] == "RUNNING")), "states: {status}");

    let letters = read_topic(&stack.bootstrap, &dlq, s.bad.len())?;
    assert_eq!(letters.len(), s.bad.len(), "records in the dead-letter topic");
    for b in &s.bad {
        let l = letters
            .iter()
            .find(|l| {
                l.headers.get("__connect.errors.offset") == Some(&b.offset.to_string())
                    && l.headers.get("__connect.errors.partition") == Some(&b.partition.to_string())
            })
            .ok_or_else(|| format!("{} at {}/{} is not in the dead-letter topic", b.class, b.partition, b.offset))?;
        assert_eq!(
            (l.key.as_deref(), l.value.as_deref()),
            (Some(b.key.as_slice()), Some(b.value.as_slice())),
            "key and value of {}",
            b.class
        );
        let h = |k: &str| l.headers.get(k).map(String::as_str);
        assert_eq!(h("__connect.errors.topic"), Some(s.topic.as_str()), "source topic of {}", b.class);
        assert_eq!(h("__connect.errors.exception.class.name"), Some(format!("kafka_parquet_sink.{}", b.class).as_str()), "class header");
        assert!(h("__connect.errors.exception.message").is_some_and(|m| !m.is_empty()), "reason of {}", b.class);
        assert_eq!(h("trace-id"), Some(b.class), "original header of {}", b.class);
    }
    Ok(())
}

/// The issue's mix: a tenth corrupt bodies, a tenth unknown schema ids, a twentieth unframed
/// values, among good events on 4 partitions, dead-lettered at the speed of good records.
#[test]
fn a_quarter_bad_records_go_to_the_dead_letter_topic_without_a_replay() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix, dlq) = (unique("it-bad-mix"), unique("it-group"), unique("it/bad-mix"), unique("it-dlq"));
    let mix = BadMix { corrupt: 0.10, unknown_id: 0.10, unframed: 0.05 };
    let produced = produce_with_bad(&stack, &topic, 4, 2000, 41, mix)?;
    let spoiled: Vec<(&Produced, Spoiled)> = produced.iter().filter_map(|(p, e)| e.spoiled.map(|s| (p, s))).collect();
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &spoiled {
        *per_class.entry(s.class()).or_default() += 1;
    }
    assert!(per_class.values().all(|n| *n >= 50) && per_class.len() == 3, "the mix spoils enough of each kind: {per_class:?}");
    tokio::runtime::Runtime::new()?.block_on(kafka_parquet_sink::testkit::ensure_topic(&stack.bootstrap, &dlq, 1))?;
    let tables = format!("[errors]\ntolerance = \"all\"\ndead_letter_topic = \"{dlq}\"");
    let mut sink =
        SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 1000\nrotate_interval_ms = 2000").tables(&tables).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(120))?;
    let replays = sink.metric_sum("kps_bad_record_replays_total", &[]);
    let counted: BTreeMap<&str, f64> =
        per_class.keys().map(|c| (*c, sink.metric_sum("kps_bad_records_total", &[("class", c), ("action", "dead_letter")]))).collect();
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    assert_eq!(replays, 0.0, "kps_bad_record_replays_total: a bad record made the sink read its file's range again");
    assert_eq!(counted, per_class.iter().map(|(c, n)| (*c, *n as f64)).collect(), "kps_bad_records_total per class against the spoiled records");

    // Every good change event once, with its values; nothing else.
    let good: BTreeMap<(i32, i64), &TaskEvent> = produced
        .iter()
        .filter(|(_, e)| e.spoiled.is_none() && e.op != Op::Tombstone)
        .map(|(p, e)| ((p.partition, p.offset), e))
        .collect();
    let audit = audit_offsets(&stack, &prefix, &good.keys().copied().collect())?;
    audit.exactly_once()?;
    for row in read_lake(&stack, &prefix)?.into_iter().flat_map(|f| f.rows) {
        let e = good.get(&(row.partition, row.offset)).ok_or("a row audit_offsets let through")?;
        assert_eq!((row.id.as_deref(), row.title.as_deref()), (Some(e.id.as_str()), Some(e.title.as_str())), "id and title at {}/{}", row.partition, row.offset);
    }

    // Every spoiled record once in the dead-letter topic, as it was in the source topic.
    let source = read_partitions(&stack.bootstrap, &topic, 4, produced.len())?;
    let letters = read_topic(&stack.bootstrap, &dlq, spoiled.len())?;
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).create()?;
    let (_, high) = c.fetch_watermarks(&dlq, 0, Duration::from_secs(10))?;
    assert_eq!(high as usize, spoiled.len(), "records in the dead-letter topic against spoiled records sent");
    let mut seen = BTreeSet::new();
    for l in &letters {
        let h = |k: &str| l.headers.get(k).map(String::as_str);
        assert_eq!(h("__connect.errors.topic"), Some(topic.as_str()), "source topic header");
        let at = (
            h("__connect.errors.partition").and_then(|p| p.parse::<i32>().ok()).ok_or("no partition header")?,
            h("__connect.errors.offset").and_then(|o| o.parse::<i64>().ok()).ok_or("no offset header")?,
        );
        assert!(seen.insert(at), "{at:?} twice in the dead-letter topic");
        let kind = spoiled.iter().find(|(p, _)| (p.partition, p.offset) == at).map(|(_, s)| *s).ok_or_else(|| format!("{at:?} was not spoiled"))?;
        assert_eq!(h("__connect.errors.exception.class.name"), Some(format!("kafka_parquet_sink.{}", kind.class()).as_str()), "class header of {at:?}");
        assert!(h("__connect.errors.exception.message").is_some_and(|m| !m.is_empty()), "reason of {at:?}");
        let sent = source.iter().find(|r| (r.partition, r.offset) == at).ok_or_else(|| format!("{at:?} not in the source topic"))?;
        assert_eq!((&l.key, &l.value), (&sent.key, &sent.value), "key and value of {at:?} against the source topic");
    }
    assert_eq!(seen.len(), spoiled.len(), "distinct spoiled records in the dead-letter topic");
    Ok(())
}

struct Letter {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: BTreeMap<String, String>,
}

/// Up to `want` records of partition 0 of `topic`, from the start.
fn read_topic(bootstrap: &str, topic: &str, want: usize) -> TestResult<Vec<Letter>> {
    read_partitions(bootstrap, topic, 1, want)
}

/// Up to `want` records of partitions `0..partitions` of `topic`, from the start.
fn read_partitions(bootstrap: &str, topic: &str, partitions: i32, want: usize) -> TestResult<Vec<Letter>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", unique("reader")).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < want && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(500)) else { continue };
        let m = m?;
        let headers = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
            .unwrap_or_default();
        out.push(Letter { partition: m.partition(), offset: m.offset(), key: m.key().map(<[u8]>::to_vec), value: m.payload().map(<[u8]>::to_vec), headers });
    }
    Ok(out)
}
