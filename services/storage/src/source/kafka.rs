//! The message log on Kafka, read through rdkafka's stream consumer.

use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{LogSource, Offsets, Record};
use crate::error::StorageError;

/// One topic read by a group consumer that never commits on its own
/// (`chatmesh_kafka::consumer`).
pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    topic: String,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Subscribes `consumer` to `topic`. The consumer stays shared, so the
    /// lag measurement can read the group's assignment and commits.
    pub fn subscribe(consumer: Arc<StreamConsumer>, topic: &str) -> Result<Self, StorageError> {
        consumer
            .subscribe(&[topic])
            .map_err(|e| StorageError::Log(e.to_string()))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
        })
    }
}

#[async_trait]
impl LogSource for KafkaSource {
    async fn recv(&self) -> Result<Record, StorageError> {
        let message = self
            .consumer
            .recv()
            .await
            .map_err(|e| StorageError::Log(e.to_string()))?;
        Ok(Record {
            partition: message.partition(),
            offset: message.offset(),
            payload: message.payload().map(<[u8]>::to_vec),
        })
    }

    async fn commit(&self, next: &Offsets) -> Result<(), StorageError> {
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in next {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(|e| StorageError::Log(e.to_string()))?;
        }
        // Asynchronous: the broker's answer is not awaited. A commit that
        // fails (say, during a rebalance) replays the batch elsewhere, and
        // the inserts skip what is stored.
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(|e| StorageError::Log(e.to_string()))
    }
}
