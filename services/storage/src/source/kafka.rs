//! The message log on Kafka, read through rdkafka's stream consumer.

use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::Message as _;
use rdkafka::consumer::{
    CommitMode, Consumer as _, ConsumerContext, DefaultConsumerContext, StreamConsumer,
};
use rdkafka::message::Headers as _;
use rdkafka::{Offset, TopicPartitionList};

use super::{LogSource, Offsets, Record};
use crate::error::StorageError;

/// One topic read by a group consumer that never commits on its own
/// (`chatmesh_kafka::group_consumer`, or `chatmesh_kafka::consumer` with
/// the default context).
pub struct KafkaSource<C: ConsumerContext + 'static = DefaultConsumerContext> {
    consumer: Arc<StreamConsumer<C>>,
    topic: String,
}

impl<C: ConsumerContext + 'static> std::fmt::Debug for KafkaSource<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static> KafkaSource<C> {
    /// Subscribes `consumer` to `topic`. The consumer stays shared, so the
    /// service can watch its membership and leave the group at shutdown.
    pub fn subscribe(consumer: Arc<StreamConsumer<C>>, topic: &str) -> Result<Self, StorageError> {
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
impl<C: ConsumerContext + 'static> LogSource for KafkaSource<C> {
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
            traceparent: message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == chatmesh_telemetry::TRACEPARENT)
                    .and_then(|h| std::str::from_utf8(h.value?).ok())
                    .map(str::to_owned)
            }),
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
