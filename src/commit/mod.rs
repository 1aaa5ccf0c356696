//! Commit stage: the offset protocol. [`uploads`] runs each closed group's upload, fencing and
//! clean-up as a task of its own while consumption goes on, and says, per partition and in
//! offset order, which offset is durable; this module commits it to the group.

pub mod uploads;

use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::source;

#[derive(Debug, thiserror::Error)]
#[error("commit of {topic}[{partition}] at {offset} failed: {reason}")]
pub struct CommitError {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
}

impl CommitError {
    /// A later commit of a higher offset supersedes this one, so the caller moves on.
    pub fn retryable(&self) -> bool {
        true
    }
}

/// Commits `next_offset` (last offset in the file + 1) for one partition and waits for the
/// broker's answer, on a blocking thread so the runtime keeps running.
pub async fn commit(consumer: Arc<source::Consumer>, topic: &str, partition: i32, next_offset: i64) -> Result<(), CommitError> {
    let err = |reason: String| CommitError { topic: topic.to_string(), partition, offset: next_offset, reason };
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(topic, partition, Offset::Offset(next_offset)).map_err(|e| err(e.to_string()))?;
    tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
        .await
        .map_err(|e| err(format!("commit task failed: {e}")))?
        .map_err(|e| err(e.to_string()))
}

/// The group's committed offset of one partition as the broker reports it now (`None`: nothing
/// committed). A member that has left the group still reads it: it is the group's, not the
/// member's. On a blocking thread.
pub async fn broker_committed(consumer: Arc<source::Consumer>, topic: &str, partition: i32) -> Result<Option<i64>, CommitError> {
    let err = |reason: String| CommitError { topic: topic.to_string(), partition, offset: -1, reason };
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition(topic, partition);
    let got = tokio::task::spawn_blocking(move || consumer.committed_offsets(tpl, std::time::Duration::from_secs(10)))
        .await
        .map_err(|e| err(format!("committed-offset task failed: {e}")))?
        .map_err(|e| err(format!("reading the committed offset: {e}")))?;
    Ok(got.elements().first().and_then(|e| match e.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }))
}

/// What the upload stage asks of the consumer group: whether this member has lost a partition,
/// and the group's committed offset as the broker reports it. [`KafkaGroup`] is the consumer's
/// answer; the stage's unit tests give their own.
pub trait Group: Send + Sync + 'static {
    /// The assignment is lost (session or max poll interval), or a revocation of `tp` is queued.
    fn lost(&self, tp: &source::TopicPartition) -> bool;
    /// The group's committed offset of `tp` now (`None`: nothing committed).
    fn committed(&self, tp: &source::TopicPartition) -> futures::future::BoxFuture<'static, Result<Option<i64>, CommitError>>;
}

/// The Kafka consumer as the upload stage's [`Group`].
pub struct KafkaGroup(pub Arc<source::Consumer>);

impl Group for KafkaGroup {
    fn lost(&self, tp: &source::TopicPartition) -> bool {
        self.0.assignment_lost() || self.0.context().revocation_pending(tp)
    }

    fn committed(&self, tp: &source::TopicPartition) -> futures::future::BoxFuture<'static, Result<Option<i64>, CommitError>> {
        let (consumer, tp) = (self.0.clone(), tp.clone());
        Box::pin(async move { broker_committed(consumer, &tp.0, tp.1).await })
    }
}
