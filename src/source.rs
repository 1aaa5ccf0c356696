//! Source stage: the Kafka consumer-group member. Offsets are never committed or stored
//! automatically; rebalance events are queued for the pipeline, which owns all partition state.

use std::sync::{Arc, Mutex};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::health::Dependency;
use crate::metrics::Metrics;

/// librdkafka properties the sink sets itself; `[kafka.properties]` may not override them.
pub const RESERVED_PROPERTIES: &[&str] =
    &["bootstrap.servers", "group.id", "group.instance.id", "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset"];

/// Prefetch limit of the consumer queue unless `[kafka.properties]` sets it: librdkafka's
/// default (64 MiB) would count against the memory bound on top of `flush.max_buffered_bytes`.
pub const DEFAULT_QUEUE_KBYTES: &str = "16384";

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

/// Consumer context: queues rebalance events, turns librdkafka statistics into lag gauges.
pub struct SinkContext {
    events: Mutex<Vec<RebalanceEvent>>,
    metrics: Metrics,
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
    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.metrics.health.down(Dependency::Kafka, reason);
        }
        self.metrics.errors.with_label_values(&["source", "client"]).inc();
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    fn stats(&self, stats: Statistics) {
        if stats.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP") {
            self.metrics.health.up(Dependency::Kafka);
        }
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.consumer_lag.with_label_values(&[topic.as_str(), &partition.to_string()]).set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SinkContext {
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
pub fn client_config(c: &KafkaConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &c.bootstrap_servers)
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &c.auto_offset_reset)
        .set("statistics.interval.ms", "5000")
        .set("queued.max.messages.kbytes", DEFAULT_QUEUE_KBYTES)
        // A topic created after start (Debezium creates it with the first change; a new table
        // matching a pattern) is seen at the next metadata refresh: librdkafka's default is 5 min.
        .set("topic.metadata.refresh.interval.ms", "10000");
    if !c.group_instance_id.is_empty() {
        cfg.set("group.instance.id", &c.group_instance_id);
    }
    for (k, v) in &c.properties {
        cfg.set(k, v);
    }
    cfg
}

/// Creates the consumer and subscribes to the configured topics.
pub fn subscribe(c: &KafkaConfig, metrics: Metrics) -> KafkaResult<Arc<Consumer>> {
    use rdkafka::consumer::Consumer as _;
    let ctx = SinkContext { events: Mutex::new(Vec::new()), metrics };
    let consumer: Consumer = client_config(c).create_with_context(ctx)?;
    let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(Arc::new(consumer))
}
