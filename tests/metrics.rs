//! The metrics table (docs/metrics.md) is what the service exports: after a run that exercises every
//! metric (files, tombstones, a bad record sent to the dead-letter topic), each documented
//! metric is in `/metrics` with the documented type, and nothing exported is undocumented.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn documented() -> TestResult<BTreeMap<String, String>> {
    let readme = std::fs::read_to_string(root().join("docs/metrics.md"))?;
    let mut out = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `kps_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        out.insert(cells[1].trim_matches('`').to_string(), cells[2].to_string());
    }
    Ok(out)
}

fn exported(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

#[test]
fn every_documented_metric_is_exported_with_its_type() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix, dlq) = (unique("it-metrics"), unique("it-group"), unique("it/metrics"), unique("it-dlq"));
    let mut produced = produce(&stack, &topic, 1, 60, None, 91)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(kafka_parquet_sink::testkit::ensure_topic(&stack.bootstrap, &dlq, 1))?;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).create()?;
    let d = rt
        .block_on(producer.send(FutureRecord::<(), [u8]>::to(&topic).partition(0).payload(b"not avro"), Duration::from_secs(10)))
        .map_err(|(e, _)| e)?;
    produced.extend(produce(&stack, &topic, 1, 20, None, 92)?);
    let mut ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    ends.entry(0).and_modify(|e| *e = (*e).max(d.offset + 1));

    let sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 25\nrotate_interval_ms = 1000")
        .tables(&format!("[errors]\ntolerance = \"all\"\ndead_letter_topic = \"{dlq}\""))
        .start()?;
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(60))?;
    // A second sink in table mode (`output.format = "delta"`) exports the `kps_table_*` series.
    let (table_topic, table_group, table_prefix) = (unique("it-metrics-delta"), unique("it-group"), unique("it/metrics-delta"));
    let table_produced = produce(&stack, &table_topic, 1, 60, None, 93)?;
    let table_sink = SinkSpec::new(&stack, &table_topic, &table_group, &table_prefix, "max_records = 10\nrotate_interval_ms = 500")
        .output("format = \"delta\"")
        .tables("[table]\ncommit_interval_ms = 300\ncompaction_min_files = 2")
        .start()?;
    let table_ends = log_ends(table_produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &table_group, &table_topic, &table_ends, Duration::from_secs(60))?;
    let docs = documented()?;
    let mut text = String::new();
    let both = |text: &mut String| {
        *text = format!("{}\n{}", sink.metrics(), table_sink.metrics());
        exported(text)
    };
    // Lag comes with librdkafka's statistics, every 5 s.
    wait_for(Duration::from_secs(20), "every documented metric to be exported", || {
        let got = both(&mut text);
        Ok(docs.keys().all(|m| got.contains_key(m)).then_some(()))
    })
    .map_err(|e| format!("{e}; missing: {:?}", docs.keys().filter(|m| !exported(&text).contains_key(*m)).collect::<Vec<_>>()))?;
    let got = exported(&text);
    for (name, kind) in &docs {
        assert_eq!(got.get(name), Some(kind), "type of {name}");
        assert!(text.lines().any(|l| l.starts_with(name.as_str()) && !l.starts_with('#')), "{name} has no sample");
    }
    let undocumented: Vec<&String> = got.keys().filter(|m| !docs.contains_key(*m)).collect();
    assert!(undocumented.is_empty(), "exported but not in docs/metrics.md's table: {undocumented:?}");
    Ok(())
}
