//! Decode and encode throughput on realistic Debezium events of the seed's tasks table.
//!
//!   cargo bench --bench pipeline            (200,000 records, best of 3)
//!
//! Under `cargo test` the same code runs once on 2,000 records as a smoke test.

use std::time::{Duration, Instant};

use kafka_parquet_sink::config::OutputConfig;
use kafka_parquet_sink::decode::{frame, BatchDecoder};
use kafka_parquet_sink::encode::{writer_properties, ParquetFile};
use kafka_parquet_sink::testkit::{TasksGenerator, VALUE_SCHEMA_V1};

type R<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> R {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if bench { (200_000, 3) } else { (2_000, 1) };
    let mut g = TasksGenerator::new(11, 0)?;
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        for e in g.next_events()? {
            if let Some(v) = e.value {
                values.push(frame::encode(1, &v));
            }
        }
    }
    values.truncate(n);
    let avro_bytes: usize = values.iter().map(Vec::len).sum();
    println!("{n} Confluent-framed Debezium envelopes, {:.1} MB, {} B average", avro_bytes as f64 / 1e6, avro_bytes / n);

    let decode = || -> R<Vec<arrow::array::RecordBatch>> {
        let mut d = BatchDecoder::new("supabase-habit.public.tasks", 0, (1, VALUE_SCHEMA_V1), None, 8192)?;
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let f = frame::parse(v)?;
            if let Some(b) = d.push(f.body, None, i as i64, Some(0))? {
                out.push(b);
            }
        }
        out.extend(d.finish()?);
        Ok(out)
    };
    let batches = decode()?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, n, "decoded rows");
    let encode = |batches: &[arrow::array::RecordBatch]| -> R<usize> {
        let mut f = ParquetFile::new(&batches[0], writer_properties(&OutputConfig::default()))?;
        for b in batches {
            f.write(b)?;
        }
        Ok(f.finish()?.len())
    };

    let report = |name: &str, t: Duration| {
        println!(
            "{name:<28} {:>10.0} records/s  {:>7.1} MB/s of Avro  ({:.3} s)",
            n as f64 / t.as_secs_f64(),
            avro_bytes as f64 / 1e6 / t.as_secs_f64(),
            t.as_secs_f64()
        )
    };
    let best = |f: &dyn Fn() -> R| -> R<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed());
        }
        Ok(best)
    };
    report("decode (Avro → Arrow)", best(&|| decode().map(|_| ()))?);
    let size = encode(&batches)?;
    report("encode (Arrow → Parquet)", best(&|| encode(&batches).map(|_| ()))?);
    report("decode + encode", best(&|| encode(&decode()?).map(|_| ()))?);
    println!("parquet file: {:.1} MB (snappy)", size as f64 / 1e6);
    Ok(())
}
