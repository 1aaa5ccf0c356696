//! Prometheus metrics, in one registry, served as text on `[metrics] listen` at `/metrics`.

use std::net::SocketAddr;

use crate::health::Health;
use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric the service exports. Cheap to clone (all handles are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Records polled from Kafka, by topic.
    pub records_consumed: IntCounterVec,
    /// Rows written to uploaded files, by topic.
    pub records_written: IntCounterVec,
    /// Records that produced no row (tombstones), by topic and reason.
    pub records_skipped: IntCounterVec,
    /// Files uploaded, by topic and flush reason.
    pub files_uploaded: IntCounterVec,
    /// Bytes of Parquet uploaded, by topic.
    pub bytes_uploaded: IntCounterVec,
    /// Seconds from the flush decision to the committed offset (encode + upload + commit).
    pub flush_duration: Histogram,
    /// Uploaded file sizes.
    pub file_size: HistogramVec,
    /// Offset commits that succeeded, by topic.
    pub offsets_committed: IntCounterVec,
    /// Last committed offset per partition.
    pub committed_offset: IntGaugeVec,
    /// Errors by stage and kind.
    pub errors: IntCounterVec,
    /// Retries of a store or registry request, by stage.
    pub retries: IntCounterVec,
    /// Consumer lag per assigned partition (last stable offset under read_committed, else high
    /// watermark, − committed offset), from librdkafka statistics every 5 s.
    pub consumer_lag: IntGaugeVec,
    /// Rows + skipped records held in open files, per partition.
    pub buffered_records: IntGaugeVec,
    /// Memory held by all open files together (what `flush.max_buffered_bytes` caps).
    pub buffered_bytes: prometheus::IntGauge,
    /// Records that could not be written, by topic, class and what was done (`dead_letter`,
    /// `failed`: the partition stopped).
    pub bad_records: IntCounterVec,
    /// Bad records the decoder refused after the body check passed: each had its open file
    /// dropped and its range read again from Kafka. Stays 0 when the check sees every
    /// corruption before the decoder does.
    pub bad_record_replays: prometheus::IntCounter,
    /// Dead-letter records produced and not yet acknowledged by the brokers.
    pub dead_letter_queue: prometheus::IntGauge,
    /// Key and value bytes polled from Kafka, by topic.
    pub bytes_consumed: IntCounterVec,
    /// Seconds from an event's time to the completion of the upload holding it, by topic and
    /// clock: `source` (Debezium's `ts_ms`) or `kafka` (the record timestamp).
    pub time_to_lake: HistogramVec,
    /// Records of a new schema version merged into an open file instead of closing it
    /// (`output.schema_change = "merge"`), by topic.
    pub schema_reconciliations: IntCounterVec,
    /// Table mode: log versions this member wrote, by topic.
    pub table_commits: IntCounterVec,
    /// Table mode: seconds of one table commit (reading the log, writing the version).
    pub table_commit_duration: Histogram,
    /// Table mode: log versions lost to another writer (each reloads the log), by topic.
    pub table_conflicts: IntCounterVec,
    /// Table mode: partitions fenced by the table (another writer moved their version), by topic.
    pub table_fenced: IntCounterVec,
    /// Table mode: the table's latest log version as this member last read or wrote it.
    pub table_version: IntGaugeVec,
    /// Table mode: data files no version named, removed after the orphan retention, by topic.
    pub table_orphans_removed: IntCounterVec,
    /// Table mode: data files a version removed (compaction), deleted after the table's
    /// `delta.deletedFileRetentionDuration`, by topic.
    pub table_files_expired: IntCounterVec,
    /// Table mode: log entries past the table's `delta.logRetentionDuration`, removed behind a
    /// checkpoint, by topic.
    pub table_log_entries_removed: IntCounterVec,
    /// Table mode: bytes compaction read (`in`) and wrote (`out`), by topic.
    pub table_compaction_bytes: IntCounterVec,
    /// Partition states and dependency reachability, for `/readyz` and `/status`.
    pub health: Health,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let flush_duration = Histogram::with_opts(
            HistogramOpts::new("kps_flush_duration_seconds", "Encode + upload + commit time of one file")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
        )?;
        registry.register(Box::new(flush_duration.clone()))?;
        let file_size = HistogramVec::new(
            HistogramOpts::new("kps_file_size_bytes", "Size of uploaded Parquet files")
                .buckets(prometheus::exponential_buckets(1024.0, 4.0, 10)?),
            &["topic"],
        )?;
        registry.register(Box::new(file_size.clone()))?;
        let time_to_lake = HistogramVec::new(
            HistogramOpts::new("kps_time_to_lake_seconds", "Event time to upload completion, per record")
                .buckets(prometheus::exponential_buckets(0.05, 2.0, 18)?),
            &["topic", "from"],
        )?;
        registry.register(Box::new(time_to_lake.clone()))?;
        let table_commit_duration = Histogram::with_opts(
            HistogramOpts::new("kps_table_commit_duration_seconds", "Time of one Delta table commit").buckets(prometheus::exponential_buckets(0.005, 2.0, 14)?),
        )?;
        registry.register(Box::new(table_commit_duration.clone()))?;
        let buffered_bytes = prometheus::IntGauge::new("kps_buffered_bytes", "Memory held by all open files")?;
        registry.register(Box::new(buffered_bytes.clone()))?;
        let bad_record_replays = prometheus::IntCounter::new(
            "kps_bad_record_replays_total",
            "Bad records that cost a re-read of their open file's range (the decoder refused what the body check passed)",
        )?;
        registry.register(Box::new(bad_record_replays.clone()))?;
        let dead_letter_queue = prometheus::IntGauge::new("kps_dead_letter_queue_depth", "Dead-letter records produced and not yet acknowledged")?;
        registry.register(Box::new(dead_letter_queue.clone()))?;
        let health = Health::new(
            gauge(
                "kps_partition_state",
                "1 for the partition's current state (RUNNING, PAUSED, FAILED)",
                &["topic", "partition", "state"],
            )?,
            gauge("kps_dependency_up", "1 when the dependency answered last time, 0 during an outage", &["dependency"])?,
        );
        let retries = counter("kps_retries_total", "Retried requests by stage", &["stage"])?;
        for stage in ["store", "registry"] {
            retries.with_label_values(&[stage]); // present at 0 before the first retry
        }
        Ok(Self {
            bytes_consumed: counter("kps_bytes_consumed_total", "Key and value bytes polled from Kafka", &["topic"])?,
            time_to_lake,
            buffered_bytes,
            bad_record_replays,
            dead_letter_queue,
            bad_records: counter("kps_bad_records_total", "Records that could not be written", &["topic", "class", "action"])?,
            health,
            schema_reconciliations: counter(
                "kps_schema_reconciliations_total",
                "New schema versions merged into an open file instead of closing it",
                &["topic"],
            )?,
            records_consumed: counter("kps_records_consumed_total", "Records polled from Kafka", &["topic"])?,
            records_written: counter("kps_records_written_total", "Rows written to uploaded Parquet files", &["topic"])?,
            records_skipped: counter("kps_records_skipped_total", "Records that produced no row", &["topic", "reason"])?,
            files_uploaded: counter("kps_files_uploaded_total", "Parquet files uploaded", &["topic", "reason"])?,
            bytes_uploaded: counter("kps_bytes_uploaded_total", "Bytes of Parquet uploaded", &["topic"])?,
            offsets_committed: counter("kps_offsets_committed_total", "Successful offset commits", &["topic"])?,
            committed_offset: gauge("kps_committed_offset", "Last committed offset", &["topic", "partition"])?,
            errors: counter("kps_errors_total", "Errors by stage and kind", &["stage", "kind"])?,
            retries,
            consumer_lag: gauge(
                "kps_consumer_lag_records",
                "Records not yet committed: last stable offset (high watermark under read_uncommitted) minus committed offset",
                &["topic", "partition"],
            )?,
            table_commits: counter("kps_table_commits_total", "Delta log versions written", &["topic"])?,
            table_commit_duration,
            table_conflicts: counter("kps_table_conflicts_total", "Delta log versions lost to another writer", &["topic"])?,
            table_fenced: counter("kps_table_fenced_partitions_total", "Partitions fenced by the Delta table", &["topic"])?,
            table_version: gauge("kps_table_version", "Latest Delta log version seen", &["topic"])?,
            table_orphans_removed: counter("kps_table_orphans_removed_total", "Data files no Delta version named, removed", &["topic"])?,
            table_files_expired: counter("kps_table_files_expired_total", "Data files a Delta version removed, deleted after the table's deleted-file retention", &["topic"])?,
            table_log_entries_removed: counter("kps_table_log_entries_removed_total", "Delta log entries past the table's log retention, removed behind a checkpoint", &["topic"])?,
            table_compaction_bytes: counter("kps_table_compaction_bytes_total", "Bytes compaction read and wrote", &["topic", "direction"])?,
            buffered_records: gauge("kps_buffered_records", "Records held in open files", &["topic", "partition"])?,
            flush_duration,
            file_size,
            registry,
        })
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encode error: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn readyz(health: &Health) -> (axum::http::StatusCode, String) {
    match health.ready() {
        Ok(()) => (axum::http::StatusCode::OK, "ready\n".into()),
        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", why.join("\n"))),
    }
}

/// Serves `/metrics`, `/healthz` (the process answers), `/readyz` (joined, every dependency
/// reachable, no partition FAILED) and `/status` (JSON) until the process ends. Binding errors are returned at once.
pub async fn serve(listen: SocketAddr, metrics: Metrics) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use axum::{routing::get, Router};
    let (ready, status) = (metrics.health.clone(), metrics.health.clone());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || async move { readyz(&ready) }))
        .route(
            "/status",
            get(move || async move {
                let body = serde_json::to_string_pretty(&status.status()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
                ([("content-type", "application/json")], body)
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}
