//! Producers compress their batches (a Debezium worker with `producer.override.compression.type`,
//! any client with `compression.type`): the sink reads batches of every Kafka codec, gzip, snappy,
//! lz4 and zstd, and lands each record once. The broker keeps batches as the producer compressed
//! them, which Kafka's own DumpLogSegments shows for each topic before the sink reads it.
//!
//! Needs: the local stack (registry, S3) and Java (a broker of the test's own, whose log
//! segments it reads).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn batches_of_every_producer_codec_land_once() -> TestResult {
    let broker = Broker::start()?;
    let stack = Stack { bootstrap: broker.bootstrap(), ..Stack::get()? };
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique(&format!("it-codec-{codec}"));
        let produced = produce_compressed(&stack, &topic, 2, 300, 23, codec)?;
        let dump = broker.dump_log(&topic, 0)?;
        let batches: Vec<&str> = dump.lines().filter(|l| l.contains("baseOffset:")).collect();
        assert!(
            !batches.is_empty() && batches.iter().all(|b| b.to_ascii_lowercase().contains(&format!("compresscodec: {codec}"))),
            "{codec}: the broker's batches of {topic}-0:\n{dump}"
        );
        let (group, prefix) = (unique("it-group"), unique(&format!("it/codec-{codec}")));
        let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, "max_records = 100\nrotate_interval_ms = 1000")?;
        let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
        wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{codec}: {e}\n{}", sink.log()))?;
        assert!(sink.terminate(Duration::from_secs(30))?.success(), "{codec}: exit status\n{}", sink.log());
        let audit = audit_lake(&stack, &prefix, &produced)?;
        audit.exactly_once().map_err(|e| format!("{codec}: {e}"))?;
        eprintln!("{codec}: {} batches on partition 0; {} records in, {} rows out", batches.len(), produced.len(), audit.records);
    }
    Ok(())
}
