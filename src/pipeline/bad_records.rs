//! Records that can never be written (not Confluent-framed, unknown schema id, corrupt Avro, a
//! schema Parquet cannot take, a tombstone with `tombstones = "fail"`), routed per
//! `errors.tolerance`:
//!
//! - `none`: the partition stops. Its open file is dropped, it is paused, its state is FAILED
//!   (`/status`, `kps_partition_state`), and nothing is committed past the committed offset, so
//!   a restart after the fix starts again before the record. Other partitions go on.
//! - `all`: the record is queued to the dead-letter topic and its offset stays in the open
//!   file's range as a skipped record; the file's upload waits for the send's acknowledgement
//!   before anything past it can be committed, so the loop never waits a round trip per record.
//!   A corrupt body is refused by the body check (`decode::datum`) before the decoder sees it,
//!   so it costs what a good record costs. Only when the decoder refuses what the check passed
//!   (and may hold part of the record) is the open file dropped and its range read again from
//!   Kafka with the record skipped (counted in `kps_bad_record_replays_total`).

use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::Pipeline;
use crate::source::deadletter::Reason;
use crate::error::SinkError;
use crate::health::PartitionState;
use crate::source::TopicPartition;

impl Pipeline {
    pub(super) async fn bad_record(
        &mut self,
        m: &BorrowedMessage<'_>,
        tp: &TopicPartition,
        e: SinkError,
        class: &'static str,
    ) -> Result<(), SinkError> {
        let (topic, partition, offset) = (tp.0.as_str(), tp.1, m.offset());
        let reason = e.to_string();
        self.metrics.errors.with_label_values(&[e.stage(), class]).inc();
        let Some(dead_letter) = &self.dead_letter else {
            tracing::error!(topic, partition, offset, class, error = %reason, "record cannot be written: partition FAILED (errors.tolerance = \"none\"); nothing is committed past it");
            self.metrics.bad_records.with_label_values(&[topic, class, "failed"]).inc();
            let buf = self.buffer(tp)?;
            buf.discard();
            buf.failed = true;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            if let Err(err) = self.consumer.pause(&tpl) {
                tracing::warn!(topic, partition, error = %err, "could not pause the failed partition; its records are ignored");
            }
            self.metrics.health.set_state(topic, partition, PartitionState::Failed, Some(format!("offset {offset}: {reason}")));
            return Ok(());
        };
        let delivery = dead_letter
            .send(m, &Reason { class, stage: e.stage(), message: &reason })
            .await
            .map_err(|err| SinkError::from(err).at(topic, partition, offset))?;
        self.metrics.dead_letter_queue.set(i64::from(dead_letter.queue_depth()));
        self.letters.entry(tp.clone()).or_default().push(delivery);
        tracing::warn!(topic, partition, offset, class, error = %reason, dead_letter_topic = dead_letter.topic(), "record cannot be written: sent to the dead-letter topic");
        self.metrics.bad_records.with_label_values(&[topic, class, "dead_letter"]).inc();
        let partial = e.leaves_partial_row();
        let buf = self.buffer(tp)?;
        buf.dead_lettered.insert(offset);
        if !partial {
            buf.push_skipped(offset);
            return Ok(());
        }
        let from = buf.open_start().unwrap_or(offset);
        buf.discard();
        buf.replay_through = Some(offset);
        self.metrics.bad_record_replays.inc();
        tracing::info!(topic, partition, from_offset = from, "reading the open file's range again without the corrupt record");
        self.consumer
            .seek(topic, partition, Offset::Offset(from), Duration::from_secs(10))
            .map_err(|err| SinkError::from(err).at(topic, partition, offset))?;
        Ok(())
    }
}
