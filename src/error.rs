//! The pipeline's error: one variant per stage, each saying whether a retry can help.

use crate::commit::CommitError;
use crate::source::deadletter::DeadLetterError;
use crate::decode::registry::RegistryError;
use crate::decode::DecodeError;
use crate::encode::EncodeError;
use crate::store::StoreError;
use crate::table::TableError;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("kafka: {0}")]
    Source(#[from] rdkafka::error::KafkaError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("commit: {0}")]
    Commit(#[from] CommitError),
    #[error("table: {0}")]
    Table(#[from] TableError),
    #[error("{0}")]
    DeadLetter(#[from] DeadLetterError),
    /// A bug: the partition's state went away while one of its records was being handled.
    #[error("{topic}[{partition}] has no buffer although a record of it is being handled")]
    NotAssigned { topic: String, partition: i32 },
    #[error("{topic}[{partition}] offset {offset}: {source}")]
    AtRecord {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: Box<SinkError>,
    },
}

impl SinkError {
    pub fn retryable(&self) -> bool {
        match self {
            SinkError::Source(_) => true,
            SinkError::Registry(e) => e.retryable(),
            SinkError::Decode(e) => e.retryable(),
            SinkError::Encode(e) => e.retryable(),
            SinkError::Store(e) => e.retryable(),
            SinkError::Commit(e) => e.retryable(),
            SinkError::Table(e) => e.retryable(),
            SinkError::DeadLetter(e) => e.retryable(),
            SinkError::NotAssigned { .. } => false,
            SinkError::AtRecord { source, .. } => source.retryable(),
        }
    }

    /// The stage name, for the `stage` label of `kps_errors_total`.
    pub fn stage(&self) -> &'static str {
        match self {
            SinkError::Source(_) => "source",
            SinkError::Registry(_) => "registry",
            SinkError::Decode(_) => "decode",
            SinkError::Encode(_) => "encode",
            SinkError::Store(_) => "store",
            SinkError::Commit(_) => "commit",
            SinkError::Table(_) => "table",
            SinkError::DeadLetter(_) => "dead_letter",
            SinkError::NotAssigned { .. } => "buffer",
            SinkError::AtRecord { source, .. } => source.stage(),
        }
    }

    /// When the error is about one record that will never be writable (rather than a failing
    /// dependency or a bug): its class for metrics and dead-letter headers. The pipeline routes
    /// such a record per `errors.tolerance` instead of stopping.
    pub fn bad_record_class(&self) -> Option<&'static str> {
        match self {
            SinkError::Decode(e) => Some(e.kind()),
            SinkError::Registry(RegistryError::UnknownId { .. } | RegistryError::UnknownSubject { .. }) => Some("unknown_schema"),
            SinkError::Registry(RegistryError::NotAvro { .. }) => Some("not_avro"),
            SinkError::AtRecord { source, .. } => source.bad_record_class(),
            _ => None,
        }
    }

    /// Whether the error came out of a decoder halfway through a record, so the decoder may
    /// hold part of it: the partition's open file must be rebuilt without it. A body the
    /// check refused (`CorruptBody`) left nothing behind.
    pub fn leaves_partial_row(&self) -> bool {
        match self {
            SinkError::Decode(e) => matches!(e, DecodeError::Undecodable { .. } | DecodeError::Batch(_)),
            SinkError::AtRecord { source, .. } => source.leaves_partial_row(),
            _ => false,
        }
    }

    pub fn at(self, topic: &str, partition: i32, offset: i64) -> SinkError {
        SinkError::AtRecord { topic: topic.to_string(), partition, offset, source: Box::new(self) }
    }
}
