//! Throughput of each stage, side by side in one run, on realistic Debezium events of the seed's
//! tasks table (envelopes with before/after/source, a mix of c/u/d; tombstones left out):
//!
//!   cargo bench --bench pipeline                        1,000,000 records, median of 3 rounds
//!   BENCH_RECORDS=200000 BENCH_ROUNDS=5 cargo bench --bench pipeline
//!   BENCH_ONLY=pipeline cargo bench --bench pipeline    one row (for a profiler)
//!   BENCH_PAGE_BYTES=65536 BENCH_DICTIONARY_BYTES=1048576 cargo bench --bench pipeline
//!                                                       other writer settings
//!
//! Rows:
//! * `avro decode alone`: arrow-avro's decoder on the bodies, nothing else (a lower bound of
//!   decoding);
//! * `decode`: Confluent-framed Avro → the output batches (frame, Avro → Arrow, Debezium types,
//!   layout, Kafka coordinates), as `BatchDecoder` does in the sink;
//! * `encode-only limit`: Snappy Parquet of those batches, already built (no pipeline can beat
//!   it: it is the last stage alone);
//! * `pipeline`: decode → buffer → encode → in-memory object store, through the sink's own
//!   `PartitionBuffer`, `FlushPolicy` and `Store`, one partition; files of `flush.max_records`
//!   records (100,000, and the default 1,000); `1 core`: one thread decodes and encodes
//!   (`output.parallel_encode = false`), `2 cores`: encoding overlaps decoding on a helper thread
//!   (the default);
//! * the same for the flatten layout and without dictionary encoding, the settings that change
//!   the encode limit.
//!
//! Records/s count records; MB/s count Confluent-framed Avro input. Under `cargo test` the same
//! code runs once on 2,000 records as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_avro::reader::{DecoderMode, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use kafka_parquet_sink::buffer::{DecoderSpec, PartitionBuffer, RowAt};
use kafka_parquet_sink::config::{FlushConfig, Layout, OutputConfig, S3Config};
use kafka_parquet_sink::decode::{frame, BatchDecoder};
use kafka_parquet_sink::encode::{writer_properties, ParquetFile};
use kafka_parquet_sink::flush::FlushPolicy;
use kafka_parquet_sink::metrics::Metrics;
use kafka_parquet_sink::store::Store;
use kafka_parquet_sink::testkit::{TasksGenerator, VALUE_SCHEMA_V1};
use parquet::file::properties::WriterProperties;

type R<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TOPIC: &str = "supabase-habit.public.tasks";

struct Input {
    framed: Vec<Vec<u8>>,
    avro_bytes: usize,
}

fn generate(n: usize) -> R<Input> {
    let mut g = TasksGenerator::new(11, 0)?;
    let mut framed = Vec::with_capacity(n);
    while framed.len() < n {
        for e in g.next_events()? {
            if let Some(v) = e.value {
                framed.push(frame::encode(1, &v));
            }
        }
    }
    framed.truncate(n);
    let avro_bytes = framed.iter().map(Vec::len).sum();
    Ok(Input { framed, avro_bytes })
}

/// arrow-avro alone: bodies into its record decoder, batches flushed every 8,192 rows.
fn avro_decode_alone(input: &Input) -> R<usize> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(Fingerprint::Id(1), AvroSchema::new(VALUE_SCHEMA_V1.to_string()))?;
    let mut d = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(1))
        .with_decoder_mode(DecoderMode::UnframedDatum)
        .with_batch_size(8192)
        .build_decoder()?;
    let mut rows = 0;
    for v in &input.framed {
        d.decode(&v[5..])?;
        if d.batch_is_full() {
            rows += d.flush()?.map_or(0, |b| b.num_rows());
        }
    }
    rows += d.flush()?.map_or(0, |b| b.num_rows());
    Ok(rows)
}

fn decode(input: &Input, layout: Layout) -> R<Vec<RecordBatch>> {
    let mut d = BatchDecoder::new(TOPIC, 0, (1, VALUE_SCHEMA_V1), None, 8192)?.with_layout(layout);
    let mut out = Vec::new();
    for (i, v) in input.framed.iter().enumerate() {
        let f = frame::parse(v)?;
        if let Some(b) = d.push(f.body, None, i as i64, Some(1_767_225_600_000))? {
            out.push(b);
        }
    }
    out.extend(d.finish()?);
    Ok(out)
}

fn encode(batches: &[RecordBatch], props: &WriterProperties) -> R<usize> {
    let first = batches.first().ok_or("no batches")?;
    let mut f = ParquetFile::new(first, props.clone())?;
    for b in batches {
        f.write(b)?;
    }
    Ok(f.finish()?.len())
}

/// The sink's buffer, flush policy and store on one partition: what the pipeline loop does per
/// record, without Kafka. Returns (files, bytes) uploaded to an in-memory object store.
fn pipeline(
    input: &Input,
    layout: Layout,
    props: &WriterProperties,
    (max_records, parallel): (u64, bool),
    rt: &tokio::runtime::Runtime,
) -> R<(usize, usize)> {
    let metrics = Metrics::new()?;
    let store = Store::new(Arc::new(object_store::memory::InMemory::new()), "bench", &S3Config::default(), metrics.clone());
    let policy = FlushPolicy::from_config(&FlushConfig { max_records, ..FlushConfig::default() });
    let mut buf = PartitionBuffer::new(TOPIC, 0, metrics.buffered_records.with_label_values(&[TOPIC, "0"])).with_parallel_encode(parallel);
    buf.set_decoder_spec(DecoderSpec {
        topic: TOPIC.into(),
        partition: 0,
        value: (1, VALUE_SCHEMA_V1.into()),
        key: None,
        batch_rows: max_records.min(8192) as usize,
        layout,
        tombstone_rows: false,
        headers: false,
        value_reader: None,
        key_reader: None,
    });
    let (mut files, mut bytes) = (0, 0);
    let mut upload = |buf: &mut PartitionBuffer| -> R {
        if let Some(group) = buf.close(props)? {
            for f in group.files {
                bytes += f.bytes.len();
                files += 1;
                let key = store.key(TOPIC, None, 0, f.start_offset);
                rt.block_on(store.upload(&key, f.bytes))?;
            }
        }
        Ok(())
    };
    for (i, v) in input.framed.iter().enumerate() {
        let f = frame::parse(v)?;
        buf.push_row(f.body, None, RowAt { offset: i as i64, timestamp_ms: Some(1_767_225_600_000), path: None, headers: None }, props)?;
        if buf.stats(Instant::now()).and_then(|s| policy.check(s)).is_some() {
            upload(&mut buf)?;
        }
    }
    upload(&mut buf)?;
    Ok((files, bytes))
}

struct Row {
    name: String,
    median: Duration,
}

fn main() -> R {
    let bench = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (n, rounds) = if bench { (env("BENCH_RECORDS", 1_000_000), env("BENCH_ROUNDS", 3)) } else { (2_000, 1) };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let setup = Instant::now();
    let input = generate(n)?;
    let mb = input.avro_bytes as f64 / 1e6;
    println!("{n} Confluent-framed Debezium envelopes (c/u/d), {mb:.1} MB, {} B average; median of {rounds}", input.avro_bytes / n);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    // BENCH_PAGE_BYTES / BENCH_DICTIONARY_BYTES: other data page or dictionary sizes to compare.
    let output = OutputConfig {
        data_page_bytes: env("BENCH_PAGE_BYTES", OutputConfig::default().data_page_bytes),
        dictionary_page_bytes: env("BENCH_DICTIONARY_BYTES", OutputConfig::default().dictionary_page_bytes),
        ..OutputConfig::default()
    };
    let default_props = writer_properties(&output);
    let no_dictionary = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(OutputConfig::default().row_group_rows))
        .set_data_page_size_limit(OutputConfig::default().data_page_bytes)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
        .set_dictionary_enabled(false)
        .build();
    let envelope = decode(&input, Layout::Envelope)?;
    let flatten = decode(&input, Layout::Flatten)?;
    let rows: usize = envelope.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, n, "decoded rows");
    // For a profiler: `perf record --delay <ms>` skips the set-up (generating the events).
    eprintln!("set-up took {} ms", setup.elapsed().as_millis());

    let mut results: Vec<Row> = Vec::new();
    let mut measure = |name: &str, f: &mut dyn FnMut() -> R| -> R {
        if !only.is_empty() && !name.starts_with(&only) {
            return Ok(());
        }
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "{name:<46} {:>9.0} records/s {:>7.1} MB/s  ({:.3} s)",
            n as f64 / median.as_secs_f64(),
            mb / median.as_secs_f64(),
            median.as_secs_f64()
        );
        results.push(Row { name: name.to_string(), median });
        Ok(())
    };
    measure("avro decode alone (arrow-avro)", &mut || avro_decode_alone(&input).map(drop))?;
    measure("decode (envelope)", &mut || decode(&input, Layout::Envelope).map(drop))?;
    measure("encode-only limit (envelope)", &mut || encode(&envelope, &default_props).map(drop))?;
    measure("pipeline 1 core (envelope, 100k-record files)", &mut || {
        pipeline(&input, Layout::Envelope, &default_props, (100_000, false), &rt).map(drop)
    })?;
    measure("pipeline 2 cores (envelope, 100k-record files)", &mut || {
        pipeline(&input, Layout::Envelope, &default_props, (100_000, true), &rt).map(drop)
    })?;
    measure("pipeline 1 core (envelope, 1k-record files)", &mut || {
        pipeline(&input, Layout::Envelope, &default_props, (1_000, false), &rt).map(drop)
    })?;
    measure("decode (flatten)", &mut || decode(&input, Layout::Flatten).map(drop))?;
    measure("encode-only limit (flatten)", &mut || encode(&flatten, &default_props).map(drop))?;
    measure("pipeline 1 core (flatten, 100k-record files)", &mut || {
        pipeline(&input, Layout::Flatten, &default_props, (100_000, false), &rt).map(drop)
    })?;
    measure("pipeline 2 cores (flatten, 100k-record files)", &mut || {
        pipeline(&input, Layout::Flatten, &default_props, (100_000, true), &rt).map(drop)
    })?;
    measure("encode-only limit (envelope, no dictionary)", &mut || encode(&envelope, &no_dictionary).map(drop))?;
    measure("pipeline 1 core (envelope, no dictionary)", &mut || {
        pipeline(&input, Layout::Envelope, &no_dictionary, (100_000, false), &rt).map(drop)
    })?;
    measure("pipeline 2 cores (envelope, no dictionary)", &mut || {
        pipeline(&input, Layout::Envelope, &no_dictionary, (100_000, true), &rt).map(drop)
    })?;

    let time = |name: &str| results.iter().find(|r| r.name == name).map(|r| r.median.as_secs_f64());
    for (layout, cores) in [("envelope", 1), ("envelope", 2), ("flatten", 1), ("flatten", 2)] {
        let pipeline = time(&format!("pipeline {cores} core{} ({layout}, 100k-record files)", if cores > 1 { "s" } else { "" }));
        if let (Some(p), Some(e)) = (pipeline, time(&format!("encode-only limit ({layout})"))) {
            let rate = n as f64 / p;
            println!(
                "target ({layout}, {cores} core{}): pipeline {rate:.0} records/s ({}), pipeline time / encode-only time = {:.2} ({} 1.5)",
                if cores > 1 { "s" } else { "" },
                if rate >= 1e6 { "≥ 1M" } else { "< 1M" },
                p / e,
                if p / e <= 1.5 { "≤" } else { ">" }
            );
        }
    }
    if only.is_empty() {
        if let (Ok(sizes_env), Ok(sizes_flat)) = (encode(&envelope, &default_props), encode(&flatten, &default_props)) {
            println!(
                "one Parquet file of all rows: envelope {:.1} MB, flatten {:.1} MB (Snappy)",
                sizes_env as f64 / 1e6,
                sizes_flat as f64 / 1e6
            );
        }
    }
    Ok(())
}
