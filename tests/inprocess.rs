//! The whole pipeline in one process, with doubles only: librdkafka's mock cluster as the
//! broker, an in-memory object store, and a registry served from the fixture schemas. Fast, and
//! needs no local stack; the real-component tests are in `sink_e2e.rs` and beside it.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use futures::TryStreamExt;
use kafka_parquet_sink::config::Config;
use kafka_parquet_sink::metrics::Metrics;
use kafka_parquet_sink::pipeline::Pipeline;
use kafka_parquet_sink::store::{start_offset_of, Store};
use kafka_parquet_sink::testkit::{CdcProducer, Op, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::mocking::MockCluster;

use common::TestResult;

const KEY_ID: u32 = 1;
const VALUE_ID: u32 = 2;

/// `GET /schemas/ids/{id}` for the two fixture schemas, on an ephemeral port.
async fn fixture_registry() -> TestResult<String> {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/schemas/ids/{id}",
        get(|Path(id): Path<u32>| async move {
            match id {
                KEY_ID => Ok(serde_json::json!({ "schema": KEY_SCHEMA }).to_string()),
                VALUE_ID => Ok(serde_json::json!({ "schema": VALUE_SCHEMA_V1 }).to_string()),
                _ => Err(StatusCode::NOT_FOUND),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn read_parquet(bytes: Bytes) -> TestResult<Vec<RecordBatch>> {
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?.collect::<Result<Vec<_>, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_writes_each_offset_once_and_commits_after_upload() -> TestResult {
    let cluster = MockCluster::new(1)?;
    let (topic, partitions) = ("supabase-habit.public.tasks", 2);
    cluster.create_topic(topic, partitions, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    let registry = fixture_registry().await?;

    // 300 records with tombstones, produced through the test kit's independent Avro encoder.
    let producer = CdcProducer::new(&bootstrap, topic, KEY_ID, VALUE_ID)?;
    let mut generator = TasksGenerator::new(3, 10)?;
    let mut events = Vec::new();
    while events.len() < 300 {
        events.extend(generator.next_events()?);
    }
    let bodies: Vec<(Vec<u8>, Option<Vec<u8>>)> = events.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
    let produced = producer.send_all(&bodies).await?;
    let ends = common::log_ends(produced.iter().map(|p| (p.partition, p.offset)));

    let mut config = Config::default();
    config.kafka.bootstrap_servers = bootstrap.clone();
    config.kafka.group_id = "inprocess".into();
    config.kafka.topics = vec![topic.into()];
    config.schema_registry.url = registry;
    config.flush.max_records = 40;
    config.flush.rotate_interval_ms = 500;
    config.metrics.listen = String::new();
    config.validate()?;
    let memory = Arc::new(InMemory::new());
    let metrics = Metrics::new()?;
    let mut store = Store::new(memory.clone(), &config.output.prefix, &config.s3, metrics.clone());
    store.probe().await?;
    assert!(store.conditional(), "the in-memory store refuses a conditional put of an existing key");
    let pipeline = Pipeline::with_store(&config, metrics.clone(), store, kafka_parquet_sink::source::Auth::default())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(pipeline.run(async move {
        let _ = stop_rx.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (b, t) = (bootstrap.clone(), topic.to_string());
        let c = tokio::task::spawn_blocking(move || common::committed(&b, "inprocess", &t, partitions)).await??;
        if ends.iter().all(|(p, end)| c.get(p).copied().flatten() == Some(*end)) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("committed {c:?} never reached {ends:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(());
    run.await??;

    // Every non-tombstone (partition, offset) once, in the file its key names.
    let objects: Vec<_> = memory.list(None).try_collect().await?;
    let mut seen = BTreeSet::new();
    for meta in &objects {
        let key = meta.location.to_string();
        let start = start_offset_of(&key).ok_or_else(|| format!("{key} is not a data file"))?;
        let bytes = memory.get(&meta.location).await?.bytes().await?;
        for batch in read_parquet(bytes)? {
            let p = batch.column_by_name("__kafka_partition").ok_or("no partition")?.as_primitive::<arrow::datatypes::Int32Type>();
            let o = batch.column_by_name("__kafka_offset").ok_or("no offset")?.as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                assert!(key.contains(&format!("partition={}/", p.value(i))), "{key} holds partition {}", p.value(i));
                assert!(o.value(i) >= start, "{key} holds offset {} below its start", o.value(i));
                assert!(seen.insert((p.value(i), o.value(i))), "offset {}/{} twice", p.value(i), o.value(i));
            }
        }
    }
    let expected: BTreeSet<(i32, i64)> =
        produced.iter().zip(&events).filter(|(_, e)| e.op != Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
    assert_eq!(seen, expected, "offsets in the object store");
    let written: u64 = metrics.records_written.with_label_values(&[topic]).get();
    assert_eq!(written as usize, expected.len(), "kps_records_written_total");
    Ok(())
}
