//! Source stage: the Kafka consumer-group member. Offsets are never committed or stored
//! automatically; rebalance events are queued for the pipeline, which owns all partition state.
//! `auth.rs`: how every client authenticates (MSK IAM tokens); `diagnose.rs`: why a connection
//! failed, naming the key to fix; `deadletter.rs`: the dead-letter producer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::health::Dependency;
use crate::metrics::Metrics;

pub mod auth;
pub mod deadletter;
pub mod diagnose;

pub use auth::Auth;
pub use diagnose::Probe;

/// Prefetch limit of the consumer queue unless `[kafka.properties]` sets it: librdkafka's
/// default (64 MiB) would count against the memory bound on top of `flush.max_buffered_bytes`.
pub const DEFAULT_QUEUE_KBYTES: &str = "16384";

/// How long librdkafka waits to fetch again once that queue is full, unless `[kafka.properties]`
/// sets it. Its default, 1000 ms, idles the consumer for a second each time the queue fills,
/// which with the queue capped above happens all through a catch-up: measured on Apache Kafka
/// 4.4 (1M Debezium records, 4 partitions), 17.8 s with the default against 6.5 s with 10 ms,
/// for the same 5 CPU seconds (docs/performance.md).
pub const DEFAULT_FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Whether a `[kafka.properties]` entry is about the connection (security, sockets, client id)
/// and so applies to the dead-letter producer too.
pub fn is_client_property(key: &str) -> bool {
    ["security.", "sasl.", "ssl.", "socket.", "broker.", "client.", "enable.ssl.", "api.version."].iter().any(|p| key.starts_with(p))
        || key == "debug"
}

/// A topic-partition, owned.
pub type TopicPartition = (String, i32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// The isolation level unless `[kafka.properties]` sets it: records of aborted transactions
/// (a transactional producer's, Debezium's with exactly-once source support) never reach the
/// lake, and records of open transactions wait until they commit. librdkafka's default too, set
/// here so it is visible in the effective configuration.
pub const DEFAULT_ISOLATION_LEVEL: &str = "read_committed";

/// Consumer context: queues rebalance events, turns librdkafka statistics into lag gauges,
/// signs OAUTHBEARER tokens when `kafka.auth` asks for it.
pub struct SinkContext {
    auth: Auth,
    events: Mutex<Vec<RebalanceEvent>>,
    metrics: Metrics,
    /// Where a partition without a committed offset starts: `kafka.auto_offset_reset` is
    /// "earliest", so its lag counts from the low watermark; with "latest" it has none until the
    /// first commit.
    lag_from_low_watermark: bool,
    /// `isolation.level` is read_committed: lag counts to the last stable offset.
    read_committed: bool,
    /// Table mode: where each assigned partition resumes, read from its table while the
    /// partitions are assigned (see [`TableOffsets`]).
    table_offsets: Option<TableOffsets>,
    /// Table mode: what `table_offsets` answered, for the pipeline to take with the assignment.
    positions: Mutex<Vec<(TopicPartition, Option<i64>)>>,
}

/// Table mode: the txn version (next offset) of each partition in its table, `None` when the
/// table has none. Called inside the rebalance, so the partitions are assigned at those offsets
/// and librdkafka never fetches the group's (a seek after the assignment could lose a race
/// with that fetch). An error leaves the partitions paused for the pipeline to position.
pub type TableOffsets = Arc<dyn Fn(&[TopicPartition]) -> Result<Vec<(TopicPartition, Option<i64>)>, String> + Send + Sync>;

/// The part of librdkafka's statistics JSON the sink reads. Parsed on its own rather than
/// through `rdkafka::statistics::Statistics`, whose every field must be present: a field that a
/// librdkafka release renames or drops would fail the whole parse and silence the lag gauges.
#[derive(Debug, Default, serde::Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: std::collections::HashMap<String, BrokerStats>,
    #[serde(default)]
    topics: std::collections::HashMap<String, TopicStats>,
}

#[derive(Debug, serde::Deserialize)]
struct BrokerStats {
    nodeid: i32,
    state: String,
}

#[derive(Debug, serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: std::collections::HashMap<String, PartitionStats>,
}

#[derive(Debug, serde::Deserialize)]
struct PartitionStats {
    partition: i32,
    /// Whether this member consumes the partition now (librdkafka reports others it knows of).
    #[serde(default)]
    fetch_state: String,
    #[serde(default = "invalid_offset")]
    committed_offset: i64,
    #[serde(default = "invalid_offset")]
    lo_offset: i64,
    #[serde(default = "invalid_offset")]
    hi_offset: i64,
    #[serde(default = "invalid_offset")]
    ls_offset: i64,
}

fn invalid_offset() -> i64 {
    -1001
}

impl PartitionStats {
    /// Records not yet committed: the end of what a read_committed consumer can read (the last
    /// stable offset; the high watermark under read_uncommitted) minus the committed offset, or
    /// the low watermark when nothing is committed yet and consumption starts there. `None`
    /// while librdkafka knows neither end.
    fn lag(&self, read_committed: bool, from_low_watermark: bool) -> Option<i64> {
        let end = if read_committed && self.ls_offset >= 0 { self.ls_offset } else { self.hi_offset };
        let start = if self.committed_offset >= 0 {
            self.committed_offset
        } else if from_low_watermark && self.lo_offset >= 0 {
            self.lo_offset
        } else {
            return None;
        };
        (end >= 0).then(|| (end - start).max(0))
    }
}

impl SinkContext {
    /// Rebalance events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        match self.events.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Whether a revocation of `tp` is queued and not yet applied: the partition is no longer
    /// ours, whatever the pipeline's state still says.
    pub fn revocation_pending(&self, tp: &TopicPartition) -> bool {
        let q = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        q.iter().any(|e| matches!(e, RebalanceEvent::Revoked(tps) if tps.contains(tp)))
    }

    fn push(&self, e: RebalanceEvent) {
        match self.events.lock() {
            Ok(mut q) => q.push(e),
            Err(poisoned) => poisoned.into_inner().push(e),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl ClientContext for SinkContext {
    // librdkafka's own token sources (OIDC, the unsecured JWS) do not come through here.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.auth.token().inspect_err(|e| {
            self.metrics.errors.with_label_values(&["source", "token"]).inc();
            tracing::warn!(error = %e, "could not make an OAUTHBEARER token");
        })
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.metrics.health.down(Dependency::Kafka, reason);
        }
        self.metrics.errors.with_label_values(&["source", "client"]).inc();
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    fn stats_raw(&self, json: &[u8]) {
        let stats: Stats = match serde_json::from_slice(json) {
            Ok(s) => s,
            Err(e) => {
                self.metrics.errors.with_label_values(&["source", "statistics"]).inc();
                tracing::warn!(error = %e, "librdkafka statistics could not be read; lag gauges not updated");
                return;
            }
        };
        if stats.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP") {
            self.metrics.health.up(Dependency::Kafka);
        }
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                if p.partition < 0 || p.fetch_state == "none" || p.fetch_state.is_empty() {
                    continue; // not consumed by this member
                }
                if let Some(lag) = p.lag(self.read_committed, self.lag_from_low_watermark) {
                    self.metrics.consumer_lag.with_label_values(&[topic.as_str(), &p.partition.to_string()]).set(lag);
                }
            }
        }
    }
}

impl SinkContext {
    /// The positions read from the tables at the last assignments (table mode).
    pub fn take_positions(&self) -> Vec<(TopicPartition, Option<i64>)> {
        match self.positions.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Sets each partition's offset in `tpl` to its table's version; `false` when the tables
    /// could not be read.
    fn position_from_tables(&self, tpl: &mut TopicPartitionList) -> bool {
        let Some(read) = &self.table_offsets else { return true };
        let tps = partitions(tpl);
        match read(&tps) {
            Ok(found) => {
                for ((topic, partition), version) in &found {
                    if let Some(v) = version {
                        if let Err(e) = tpl.set_partition_offset(topic, *partition, rdkafka::Offset::Offset(*v)) {
                            tracing::warn!(topic, partition, error = %e, "could not set the table's offset on the assignment");
                            return false;
                        }
                    }
                    tracing::info!(topic, partition, table_version = ?version, "positioned from the table");
                }
                match self.positions.lock() {
                    Ok(mut q) => q.extend(found),
                    Err(poisoned) => poisoned.into_inner().extend(found),
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the tables' offsets during the assignment; the partitions stay paused until they are positioned");
                false
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    /// librdkafka's own handling (rdkafka's default), but in table mode the assignment carries
    /// each partition's offset from its table.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: rdkafka::types::RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        use rdkafka::consumer::{Consumer as _, RebalanceProtocol};
        use rdkafka::types::RDKafkaRespErr;
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let positioned = self.position_from_tables(tpl);
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                let done = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = done {
                    tracing::error!(error = %e, "assigning the partitions failed");
                }
                if !positioned {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "could not pause the assigned partitions until they are positioned");
                    }
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                let done = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(e) = done {
                    tracing::error!(error = %e, "revoking the partitions failed");
                }
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                let e = KafkaError::Rebalance(other.into());
                self.post_rebalance(consumer, &Rebalance::Error(e));
            }
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
            self.push(RebalanceEvent::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned");
                self.push(RebalanceEvent::Assigned(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit reported an error");
        }
    }
}

pub type Consumer = StreamConsumer<SinkContext>;

/// The librdkafka configuration of the consumer.
pub fn client_config(c: &KafkaConfig, auth: &Auth) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &c.bootstrap_servers)
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &c.auto_offset_reset)
        .set("isolation.level", DEFAULT_ISOLATION_LEVEL)
        .set("statistics.interval.ms", "5000")
        .set("queued.max.messages.kbytes", DEFAULT_QUEUE_KBYTES)
        .set("fetch.queue.backoff.ms", DEFAULT_FETCH_QUEUE_BACKOFF_MS)
        // A topic created after start (Debezium creates it with the first change; a new table
        // matching a pattern) is seen at the next metadata refresh: librdkafka's default is 5 min.
        .set("topic.metadata.refresh.interval.ms", "10000");
    if !c.group_instance_id.is_empty() {
        cfg.set("group.instance.id", &c.group_instance_id);
    }
    for (k, v) in &c.properties {
        cfg.set(k, v);
    }
    auth.configure(&mut cfg);
    cfg
}

/// Creates the consumer and subscribes to the configured topics.
/// With `table_offsets` (table mode) partitions are assigned at their tables' offsets: see
/// [`TableOffsets`].
pub fn subscribe(c: &KafkaConfig, metrics: Metrics, auth: Auth, table_offsets: Option<TableOffsets>) -> KafkaResult<Arc<Consumer>> {
    use rdkafka::consumer::Consumer as _;
    let cfg = client_config(c, &auth);
    let ctx = SinkContext {
        auth,
        events: Mutex::new(Vec::new()),
        metrics,
        lag_from_low_watermark: c.auto_offset_reset == "earliest",
        read_committed: cfg.get("isolation.level") != Some("read_uncommitted"),
        table_offsets,
        positions: Mutex::new(Vec::new()),
    };
    let consumer: Consumer = cfg.create_with_context(ctx)?;
    let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(Arc::new(consumer))
}

/// A consumer outside the group (`group.id` `group`) with the sink's connection settings, for
/// the start-up check and `doctor`: its metadata within `timeout`, or why not, naming the key
/// to fix. Blocks: call it off the runtime's workers.
pub fn probe(c: &KafkaConfig, auth: &Auth, group: &str, timeout: Duration) -> Result<(BaseConsumer<Probe>, Metadata), String> {
    use rdkafka::consumer::Consumer as _;
    let mut cfg = client_config(c, auth);
    cfg.set("group.id", group);
    let consumer: BaseConsumer<Probe> = cfg.create_with_context(Probe::new(auth.clone())).map_err(|e| format!("kafka.properties: {e}"))?;
    // Serves the token request librdkafka queues at start (MSK IAM) before the first connection.
    serve_events(&consumer, Duration::from_millis(100));
    // Short attempts, so that a refused login or certificate ends the wait at once.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.fetch_metadata(None, left.min(Duration::from_secs(1))) {
            Ok(md) => return Ok((consumer, md)),
            Err(e) => {
                serve_events(&consumer, Duration::from_millis(100));
                if let Some(why) = diagnose::explain(&consumer.context().errors(), c, auth) {
                    return Err(why);
                }
                if left <= Duration::from_secs(1) {
                    return Err(format!(
                        "kafka.bootstrap_servers: no broker at {:?} answered within {}s ({e}): check the address and that Kafka is running",
                        c.bootstrap_servers,
                        timeout.as_secs()
                    ));
                }
            }
        }
    }
}

/// Serves the probe's queued events (errors and log lines, which the consumer queue holds
/// until polled) for `budget`.
fn serve_events(consumer: &BaseConsumer<Probe>, budget: Duration) {
    let end = std::time::Instant::now() + budget;
    while std::time::Instant::now() < end {
        let _ = consumer.poll(Duration::from_millis(10));
    }
}

/// Whether a consumer error means librdkafka could not read a batch (a CRC or decoding error, a
/// codec it was built without) and skipped it: its records are lost to this fetch, so nothing
/// may be committed past them. Other consumer errors (a topic not created yet, a broker away)
/// are waited out.
pub fn unreadable_batch(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(e, KafkaError::MessageConsumption(c) | KafkaError::MessageConsumptionFatal(c) if matches!(c, C::BadMessage | C::BadCompression | C::NotImplemented))
}

/// librdkafka's version and `builtin.features` (what this binary can speak: ssl, sasl_scram,
/// sasl_oauthbearer, oidc, zstd, ...).
pub fn librdkafka() -> (String, String) {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_else(|e| format!("(unknown: {e})"));
    (version, features)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreadable_batch_stops_the_consumer() {
        use rdkafka::types::RDKafkaErrorCode as C;
        for code in [C::BadMessage, C::BadCompression, C::NotImplemented] {
            assert!(unreadable_batch(&KafkaError::MessageConsumption(code)), "{code:?} loses a batch");
        }
        for e in [KafkaError::MessageConsumption(C::UnknownTopicOrPartition), KafkaError::Global(C::AllBrokersDown), KafkaError::PartitionEOF(0)] {
            assert!(!unreadable_batch(&e), "{e} is waited out");
        }
    }

    /// The features the README and the Docker image promise are compiled in.
    #[test]
    fn librdkafka_has_tls_sasl_oidc_and_every_codec() {
        let (version, features) = librdkafka();
        let have: Vec<&str> = features.split(',').collect();
        for want in ["gzip", "snappy", "ssl", "sasl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "sasl_gssapi", "zstd", "lz4", "oidc", "http"] {
            assert!(have.contains(&want), "librdkafka {version} lacks {want}: builtin.features = {features}");
        }
    }

    fn partition(json: &str) -> Result<PartitionStats, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn lag_counts_to_the_stable_offset_from_the_commit_or_the_low_watermark() -> Result<(), serde_json::Error> {
        // An open transaction: the last stable offset (90) lags the high watermark (100).
        let p = partition(
            r#"{"partition": 0, "fetch_state": "active", "committed_offset": 40, "lo_offset": 0, "hi_offset": 100, "ls_offset": 90, "unknown_field": 1}"#,
        )?;
        assert_eq!(p.lag(true, true), Some(50), "read_committed: to the last stable offset");
        assert_eq!(p.lag(false, true), Some(60), "read_uncommitted: to the high watermark");
        // Nothing committed yet: from the low watermark when consumption starts there, else none.
        let fresh = partition(
            r#"{"partition": 1, "fetch_state": "active", "committed_offset": -1001, "lo_offset": 10, "hi_offset": 25, "ls_offset": 25}"#,
        )?;
        assert_eq!(fresh.lag(true, true), Some(15), "earliest: the whole backlog");
        assert_eq!(fresh.lag(true, false), None, "latest: no lag before the first commit");
        // Watermarks not known yet.
        let unknown = partition(r#"{"partition": 2, "committed_offset": 5}"#)?;
        assert_eq!(unknown.lag(true, true), None);
        // The whole document, with the fields the sink does not read and a missing `topics`.
        let stats: Stats = serde_json::from_str(r#"{"name": "c", "brokers": {"b1": {"nodeid": 1, "state": "UP", "rtt": {}}}}"#)?;
        assert!(stats.topics.is_empty() && stats.brokers.values().all(|b| b.nodeid == 1 && b.state == "UP"));
        Ok(())
    }
}
