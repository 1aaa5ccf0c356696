//! Test kit and sample producer: Debezium-shaped change events of the seed's `public.tasks`
//! table, encoded with apache-avro (an encoder independent of the arrow-avro decoder we test),
//! registered through a Confluent-compatible registry and produced in the Confluent wire format.
//!
//! Used by the integration tests and by the `kps-cdc-gen` binary; never by the sink itself.

pub mod bad;
pub(crate) mod events;

pub use bad::{BadMix, Spoiled};
pub use events::{allow_debezium_names, Op, TaskEvent, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::decode::frame;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Registers `schema` under `subject` (`POST /subjects/{subject}/versions`); returns its id.
pub async fn register_schema(registry_url: &str, subject: &str, schema: &str) -> Result<u32, BoxError> {
    #[derive(serde::Deserialize)]
    struct Registered {
        id: u32,
    }
    let url = format!("{}/subjects/{subject}/versions", registry_url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("POST {url}: HTTP {status}: {}", resp.text().await.unwrap_or_default()).into());
    }
    Ok(resp.json::<Registered>().await?.id)
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("allow.auto.create.topics", "false").create()?;
    // Look first: librdkafka's mock cluster has topics made by the test and no CreateTopics.
    let md = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    if md.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()) {
        return Ok(());
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &opts).await? {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("create topic {t}: {code}").into()),
        }
    }
    Ok(())
}

/// Where a produced record landed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Produced {
    pub partition: i32,
    pub offset: i64,
}

/// Produces Confluent-framed Avro records with librdkafka's murmur2 partitioner (the Java
/// client's, which Debezium uses), so one task id always lands in one partition.
pub struct CdcProducer {
    producer: FutureProducer,
    topic: String,
    key_schema_id: u32,
    value_schema_id: u32,
}

impl CdcProducer {
    pub fn new(bootstrap: &str, topic: &str, key_schema_id: u32, value_schema_id: u32) -> Result<Self, BoxError> {
        Self::compressed(bootstrap, topic, (key_schema_id, value_schema_id), "none")
    }

    /// As [`CdcProducer::new`], its batches compressed with `codec` (`compression.type`:
    /// `gzip`, `snappy`, `lz4`, `zstd` or `none`), as a Debezium worker may be configured.
    pub fn compressed(bootstrap: &str, topic: &str, (key_schema_id, value_schema_id): (u32, u32), codec: &str) -> Result<Self, BoxError> {
        let producer: FutureProducer = Self::config(bootstrap).set("compression.type", codec).create()?;
        Ok(Self { producer, topic: topic.to_string(), key_schema_id, value_schema_id })
    }

    /// As [`CdcProducer::new`], a transactional producer (`transactional.id`), as Debezium is
    /// under a Connect worker with exactly-once source support: records go out between
    /// [`CdcProducer::begin`] and [`CdcProducer::commit`] or [`CdcProducer::abort`], and each
    /// transaction leaves a marker in every partition it wrote to.
    pub fn transactional(
        bootstrap: &str,
        topic: &str,
        (key_schema_id, value_schema_id): (u32, u32),
        transactional_id: &str,
    ) -> Result<Self, BoxError> {
        use rdkafka::producer::Producer as _;
        let producer: FutureProducer = Self::config(bootstrap).set("transactional.id", transactional_id).create()?;
        producer.init_transactions(Duration::from_secs(30))?;
        Ok(Self { producer, topic: topic.to_string(), key_schema_id, value_schema_id })
    }

    fn config(bootstrap: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        cfg
    }

    pub fn begin(&self) -> Result<(), BoxError> {
        use rdkafka::producer::Producer as _;
        Ok(self.producer.begin_transaction()?)
    }

    pub fn commit(&self) -> Result<(), BoxError> {
        use rdkafka::producer::Producer as _;
        Ok(self.producer.commit_transaction(Duration::from_secs(30))?)
    }

    pub fn abort(&self) -> Result<(), BoxError> {
        use rdkafka::producer::Producer as _;
        Ok(self.producer.abort_transaction(Duration::from_secs(30))?)
    }

    pub fn set_value_schema_id(&mut self, id: u32) {
        self.value_schema_id = id;
    }

    /// Sends one event (a `None` value is a tombstone) and waits for the broker's ack.
    pub async fn send(&self, key_body: &[u8], value_body: Option<&[u8]>) -> Result<Produced, BoxError> {
        self.send_at(key_body, value_body, None).await
    }

    /// As [`CdcProducer::send`], with the record's timestamp (Unix ms) when given.
    pub async fn send_at(&self, key_body: &[u8], value_body: Option<&[u8]>, timestamp_ms: Option<i64>) -> Result<Produced, BoxError> {
        let value = value_body.map(|b| frame::encode(self.value_schema_id, b));
        self.send_value_at(key_body, value.as_deref(), timestamp_ms).await
    }

    /// As [`CdcProducer::send_at`], `value` sent as it is (framed already, or not at all).
    pub async fn send_value_at(&self, key_body: &[u8], value: Option<&[u8]>, timestamp_ms: Option<i64>) -> Result<Produced, BoxError> {
        let key = frame::encode(self.key_schema_id, key_body);
        let mut record = FutureRecord::<Vec<u8>, [u8]>::to(&self.topic).key(&key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(t) = timestamp_ms {
            record = record.timestamp(t);
        }
        let delivery = self.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e)?;
        Ok(Produced { partition: delivery.partition, offset: delivery.offset })
    }

    /// Sends many events concurrently (bounded), returning where each landed, in input order.
    pub async fn send_all(&self, events: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<Vec<Produced>, BoxError> {
        self.send_all_at(events, |_| None).await
    }

    /// As [`CdcProducer::send_all`], the i-th event with timestamp `timestamp(i)`.
    pub async fn send_all_at(
        &self,
        events: &[(Vec<u8>, Option<Vec<u8>>)],
        timestamp: impl Fn(usize) -> Option<i64>,
    ) -> Result<Vec<Produced>, BoxError> {
        let framed: Vec<Option<Vec<u8>>> = events.iter().map(|(_, v)| v.as_deref().map(|b| frame::encode(self.value_schema_id, b))).collect();
        let keys = events.iter().map(|(k, _)| k.as_slice());
        self.send_values_at(keys.zip(framed.iter().map(Option::as_deref)), timestamp).await
    }

    /// As [`CdcProducer::send_all_at`], each value sent as it is (see [`CdcProducer::send_value_at`]).
    pub async fn send_values_at<'a>(
        &self,
        records: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        timestamp: impl Fn(usize) -> Option<i64>,
    ) -> Result<Vec<Produced>, BoxError> {
        use futures::StreamExt;
        futures::stream::iter(records.enumerate().map(|(i, (k, v))| self.send_value_at(k, v, timestamp(i))))
            .buffered(1000)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// What [`produce_tasks`] should produce.
#[derive(Debug, Clone)]
pub struct ProducePlan {
    pub bootstrap: String,
    pub registry: String,
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    pub partitions: i32,
    /// Records to produce, tombstones included (a final delete may add its tombstone: +1).
    pub count: usize,
    /// Switch to the v2 value schema after this many records.
    pub v2_after: Option<usize>,
    /// Alternate between the v1 and v2 value schemas every this many records (v1 first), as
    /// while a column change rolls out.
    pub alternate_every: Option<usize>,
    /// Record timestamps `(first, step)` in Unix ms; `None`: the producer's clock.
    pub timestamps: Option<(i64, i64)>,
    pub seed: u64,
    /// The producer's `compression.type` (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub compression: String,
    /// Records sent spoiled instead ([`TaskEvent::spoiled`] says which and how).
    pub bad: BadMix,
    /// New tasks' titles taken from these (edits add ` (edit N)`), for few distinct values;
    /// empty: `Task <n>`.
    pub titles: &'static [&'static str],
}

/// Creates the topic, registers the real Debezium schemas (`<topic>-key`, `<topic>-value`) and
/// produces the plan's events; returns every event with where it landed, in produce order.
pub async fn produce_tasks(plan: &ProducePlan) -> Result<Vec<(Produced, TaskEvent)>, BoxError> {
    ensure_topic(&plan.bootstrap, &plan.topic, plan.partitions).await?;
    let key_id = register_schema(&plan.registry, &format!("{}-key", plan.topic), KEY_SCHEMA).await?;
    let v1_id = register_schema(&plan.registry, &format!("{}-value", plan.topic), VALUE_SCHEMA_V1).await?;
    let mut producer = CdcProducer::compressed(&plan.bootstrap, &plan.topic, (key_id, v1_id), &plan.compression)?;
    let mut generator = TasksGenerator::new(plan.seed, (plan.count / 10).min(100))?.with_titles(plan.titles);
    let mut spoiler = bad::Spoiler::new(plan.bad, plan.seed);
    let mut out = Vec::with_capacity(plan.count + 1);
    let mut switched = false;
    let subject = format!("{}-value", plan.topic);
    let alternate_v2_id = match plan.alternate_every {
        Some(_) => Some(register_schema(&plan.registry, &subject, &TasksGenerator::value_schema_v2()?).await?),
        None => None,
    };
    while out.len() < plan.count {
        let limit = match (plan.v2_after, plan.alternate_every) {
            (Some(n), _) if !switched && n > out.len() => n,
            (_, Some(n)) => (out.len() / n + 1) * n,
            _ => plan.count,
        }
        .min(plan.count);
        let mut chunk = Vec::new();
        while out.len() + chunk.len() < limit {
            chunk.extend(generator.next_events()?);
        }
        let mut values = Vec::with_capacity(chunk.len());
        for e in &mut chunk {
            let Some(body) = e.value.as_deref() else {
                values.push(None);
                continue;
            };
            e.spoiled = spoiler.roll();
            values.push(Some(match e.spoiled {
                Some(kind) => spoiler.payload(kind, producer.value_schema_id, body),
                None => frame::encode(producer.value_schema_id, body),
            }));
        }
        let base = out.len();
        let records = chunk.iter().map(|e| e.key.as_slice()).zip(values.iter().map(Option::as_deref));
        let produced = producer.send_values_at(records, |i| plan.timestamps.map(|(first, step)| first + (base + i) as i64 * step)).await?;
        out.extend(produced.into_iter().zip(chunk));
        if plan.v2_after.is_some_and(|n| !switched && out.len() >= n) {
            generator.switch_to_v2()?;
            let v2_id = register_schema(&plan.registry, &subject, &TasksGenerator::value_schema_v2()?).await?;
            producer.set_value_schema_id(v2_id);
            switched = true;
        }
        if let (Some(v2_id), Some(n)) = (alternate_v2_id, plan.alternate_every) {
            if (out.len() / n) % 2 == 1 {
                generator.switch_to_v2()?;
                producer.set_value_schema_id(v2_id);
            } else {
                generator.switch_to_v1()?;
                producer.set_value_schema_id(v1_id);
            }
        }
    }
    Ok(out)
}
