//! Dead-letter topic (`errors.tolerance = "all"`): a record that cannot be written is produced
//! there as it came (key, value, headers) plus headers saying why and where it came from. The
//! header names are Kafka Connect's, so tools that read Connect's dead-letter queues read ours.
//!
//! Sends are pipelined: [`DeadLetter::send`] queues the record in the producer (which batches
//! as any producer does) and hands back a [`Delivery`]; the group holding the record's offset
//! waits for it beside its upload, so no offset is ever committed over a record that is
//! neither in the lake nor acknowledged in this topic, and no record waits a round trip.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientConfig, ClientContext};

use super::Auth;
use crate::config::KafkaConfig;

pub const HEADER_TOPIC: &str = "__connect.errors.topic";
pub const HEADER_PARTITION: &str = "__connect.errors.partition";
pub const HEADER_OFFSET: &str = "__connect.errors.offset";
pub const HEADER_CLASS: &str = "__connect.errors.exception.class.name";
pub const HEADER_REASON: &str = "__connect.errors.exception.message";
pub const HEADER_STAGE: &str = "__connect.errors.stage";

#[derive(Debug, thiserror::Error)]
#[error("dead-letter topic {topic}: {source}")]
pub struct DeadLetterError {
    pub topic: String,
    #[source]
    pub source: rdkafka::error::KafkaError,
}

impl DeadLetterError {
    /// The brokers did not take the record within the delivery timeout: the next attempt may.
    pub fn retryable(&self) -> bool {
        true
    }
}

pub struct DeadLetter {
    producer: FutureProducer<Tokens>,
    topic: String,
}

/// The producer's context: signs its OAUTHBEARER tokens as the consumer's does.
pub struct Tokens(Auth);

impl ClientContext for Tokens {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.0.token()
    }
}

/// Why a record was dead-lettered.
pub struct Reason<'a> {
    /// Short class (`not_framed`, `unknown_schema`, `corrupt_body`, ...), as in the metrics.
    pub class: &'a str,
    /// The stage that refused it (`decode`, `registry`, ...).
    pub stage: &'a str,
    pub message: &'a str,
}

impl DeadLetter {
    /// A producer with the consumer's connection and security properties.
    pub fn new(kafka: &KafkaConfig, topic: &str, auth: &Auth) -> Result<Self, DeadLetterError> {
        let mut cfg = ClientConfig::new();
        // Idempotent: a send librdkafka retries after a lost answer (a slow broker, a dropped
        // connection) is written once, so a bad record is in the topic once.
        cfg.set("bootstrap.servers", &kafka.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "60000");
        for (k, v) in &kafka.properties {
            if crate::source::is_client_property(k) {
                cfg.set(k, v);
            }
        }
        auth.configure(&mut cfg);
        let producer = cfg.create_with_context(Tokens(auth.clone())).map_err(|source| DeadLetterError { topic: topic.to_string(), source })?;
        Ok(Self { producer, topic: topic.to_string() })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records produced and not yet acknowledged (or failed) by the brokers.
    pub fn queue_depth(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Queues `m` with the error headers; the brokers' acknowledgement is the [`Delivery`]'s.
    /// Waits only while the producer's queue is full.
    pub async fn send(&self, m: &BorrowedMessage<'_>, why: &Reason<'_>) -> Result<Delivery, DeadLetterError> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = m.headers() {
            for h in original.iter() {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
        let (partition, offset) = (m.partition().to_string(), m.offset().to_string());
        let class = format!("kafka_parquet_sink.{}", why.class);
        for (key, value) in [
            (HEADER_TOPIC, m.topic()),
            (HEADER_PARTITION, partition.as_str()),
            (HEADER_OFFSET, offset.as_str()),
            (HEADER_CLASS, class.as_str()),
            (HEADER_REASON, why.message),
            (HEADER_STAGE, why.stage),
        ] {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(Delivery { future, topic: self.topic.clone() }),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((source, _)) => return Err(DeadLetterError { topic: self.topic.clone(), source }),
            }
        }
    }
}

/// A dead-lettered record on its way: resolved once the brokers acknowledged it or refused it
/// (after the producer's retries, within `message.timeout.ms`). Dropping it does not cancel
/// the send.
pub struct Delivery {
    future: DeliveryFuture,
    topic: String,
}

impl Delivery {
    pub async fn acknowledged(self) -> Result<(), DeadLetterError> {
        let topic = self.topic;
        match self.future.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((source, _))) => Err(DeadLetterError { topic, source }),
            Err(_canceled) => Err(DeadLetterError { topic, source: KafkaError::Canceled }),
        }
    }
}
