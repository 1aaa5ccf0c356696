//! The pipeline's error: one variant per stage, each saying whether a retry can help.

use crate::commit::CommitError;
use crate::decode::registry::RegistryError;
use crate::decode::DecodeError;
use crate::encode::EncodeError;
use crate::store::StoreError;

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
            SinkError::NotAssigned { .. } => "buffer",
            SinkError::AtRecord { source, .. } => source.stage(),
        }
    }

    pub fn at(self, topic: &str, partition: i32, offset: i64) -> SinkError {
        SinkError::AtRecord { topic: topic.to_string(), partition, offset, source: Box::new(self) }
    }
}
