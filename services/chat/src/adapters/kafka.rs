//! The message log on Kafka. A record's key is the channel ID (one
//! partition per channel keeps its order) and its payload the Protobuf
//! `Message`, which the storage service decodes.

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_config::KafkaConfig;
use chatmesh_ids::ChatMessage;
use chatmesh_proto::common::v1::Message;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::ChatError;
use crate::ports::MessageLog;

/// Appends messages with the idempotent, `acks=all` producer of
/// `chatmesh_kafka`, replaced after a failed delivery.
///
/// After delivery timeouts librdkafka bumps the epoch of an idempotent
/// producer, and some Kafka-API brokers (tansu 0.6) fail every request once
/// they see an epoch they never issued. A fresh producer starts a fresh
/// producer session instead; the old one is purged so it sends nothing more.
pub struct KafkaLog {
    config: KafkaConfig,
    // (generation, producer); a std mutex for a clone or a swap.
    current: std::sync::Mutex<(u64, FutureProducer)>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("topic", &self.config.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// A log on `config.topic`; the producer connects in the background.
    pub fn new(config: KafkaConfig) -> Result<Self, KafkaError> {
        let producer = chatmesh_kafka::producer(&config)?;
        Ok(Self {
            config,
            current: std::sync::Mutex::new((0, producer)),
        })
    }

    fn get(&self) -> (u64, FutureProducer) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the producer of `generation`, unless another failure already did.
    fn replace(&self, generation: u64) {
        let fresh = match chatmesh_kafka::producer(&self.config) {
            Ok(p) => p,
            Err(err) => return tracing::warn!(error = %err, "cannot create a new kafka producer"),
        };
        let old = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.0 != generation {
                return;
            }
            std::mem::replace(&mut *current, (generation + 1, fresh)).1
        };
        old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        tracing::info!(
            generation = generation + 1,
            "kafka producer replaced after a failed delivery"
        );
    }
}

#[async_trait]
impl MessageLog for KafkaLog {
    /// Waits until Kafka has the record on every in-sync replica.
    async fn append(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError> {
        let payload = Message::from(message).encode_to_vec();
        let mut headers = OwnedHeaders::new();
        if let Some(tp) = traceparent {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(tp),
            });
        }
        let (generation, producer) = self.get();
        let record = FutureRecord::to(&self.config.topic)
            .key(message.channel.as_str())
            .payload(&payload)
            .headers(headers);
        match producer.send(record, Duration::from_secs(0)).await {
            Ok(_) => Ok(()),
            Err((err, _)) => {
                self.replace(generation);
                Err(ChatError::Kafka(err))
            }
        }
    }
}
