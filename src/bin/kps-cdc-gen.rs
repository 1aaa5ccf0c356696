//! Produces Debezium-shaped change events of the `public.tasks` table into a topic, in the
//! Confluent wire format, registering the real Debezium schemas first. For demos and tests.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use kafka_parquet_sink::testkit::{self, ProducePlan};

#[derive(Parser)]
#[command(name = "kps-cdc-gen", about = "Produce Debezium-shaped Avro change events of public.tasks")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    registry: String,
    #[arg(long, default_value = "supabase-habit.public.tasks")]
    topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Records to produce (tombstones included).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Switch to the v2 value schema (an added `category` column) after this many records.
    #[arg(long)]
    v2_after: Option<usize>,
    /// Alternate between the v1 and v2 value schemas every this many records (v1 first).
    #[arg(long)]
    alternate_every: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The producer's compression.type: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Percent of the change events sent as bad records instead, as a broken serializer would:
    /// four tenths corrupt Avro bodies, four tenths unknown schema ids, two tenths values that
    /// are not in the Confluent wire format. Counted apart on the first line ("bad").
    #[arg(long, default_value_t = 0.0)]
    bad_percent: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kps-cdc-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(a: Args) -> Result<(), testkit::BoxError> {
    let plan = ProducePlan {
        bootstrap: a.bootstrap,
        registry: a.registry,
        topic: a.topic,
        partitions: a.partitions,
        count: a.count,
        v2_after: a.v2_after,
        alternate_every: a.alternate_every,
        timestamps: None,
        seed: a.seed,
        compression: a.compression,
        bad: testkit::BadMix::percent(a.bad_percent),
        titles: &[],
    };
    let events = testkit::produce_tasks(&plan).await?;
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (p, e) in &events {
        let kind = match e.spoiled {
            Some(_) => "bad",
            None => e.op.letter().unwrap_or("tombstone"),
        };
        *ops.entry(kind).or_default() += 1;
        let r = ranges.entry(p.partition).or_insert((p.offset, p.offset));
        r.0 = r.0.min(p.offset);
        r.1 = r.1.max(p.offset);
    }
    println!("produced {} records to {}: {ops:?}", events.len(), plan.topic);
    for (p, (lo, hi)) in ranges {
        println!("  partition {p}: offsets {lo}..={hi}");
    }
    Ok(())
}
