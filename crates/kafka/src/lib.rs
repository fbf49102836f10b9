//! Kafka clients for chatmesh's message log. The producer is idempotent with
//! `acks=all`, so an acknowledged send is on every in-sync replica exactly
//! once; consumers commit offsets by hand, only after their writes succeed.
//! A service's long-lived consumer is a static group member ([`group`]).

mod group;

use std::sync::Arc;
use std::time::Duration;

use chatmesh_config::KafkaConfig;
use chatmesh_probe::{Probe, ProbeFuture};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, FutureProducer, Producer as _};

pub use group::{
    Fatal, GroupConsumer, GroupContext, STATIC_SESSION_TIMEOUT, fatal, group_consumer, leave,
};

/// How long a send may wait for the broker before it fails. Kept short: a
/// chat send is interactive, and the sender gets a retryable error.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

fn base(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", config.brokers.join(","));
    client
}

/// Operator-supplied properties win over the defaults set here.
fn with_overrides(mut client: ClientConfig, config: &KafkaConfig) -> ClientConfig {
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// An idempotent producer: `acks=all`, retries without reordering or
/// duplicates, and a bounded delivery timeout.
pub fn producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    let mut client = base(config);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .set("linger.ms", "2");
    with_overrides(client, config).create()
}

/// How long the broker keeps a dynamic member that stopped heartbeating.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a consumer in `group` that never commits on its own and
/// starts from the earliest offset when the group has none.
fn consumer_settings(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = base(config);
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        );
    client
}

/// A dynamic member of `group` that never commits on its own and starts
/// from the earliest offset when the group has none. Services use
/// [`group_consumer`], a static member.
pub fn consumer(config: &KafkaConfig, group: &str) -> Result<StreamConsumer, KafkaError> {
    with_overrides(consumer_settings(config, group), config).create()
}

/// A consumer that never joins a group, for `group`'s committed offsets
/// and the partitions' watermarks and metadata. It keeps its own broker
/// connections, so its requests never wait behind a group consumer's fetch
/// long-poll.
pub fn offsets_client(config: &KafkaConfig, group: &str) -> Result<BaseConsumer, KafkaError> {
    let mut client = base(config);
    // Never subscribed, so never a member: `group.id` only names the group
    // whose commits it reads. It has nothing to commit itself.
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    with_overrides(client, config).create()
}

/// Checks that the broker answers and the topic exists, through a plain
/// client of its own so it never shares state with a producer or consumer.
pub struct KafkaProbe {
    topic: String,
    client: Arc<BaseProducer>,
}

impl std::fmt::Debug for KafkaProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProbe")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

impl KafkaProbe {
    /// A probe of `config.topic` on `config.brokers`.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let client: BaseProducer = base(config).create()?;
        Ok(Self {
            topic: config.topic.clone(),
            client: Arc::new(client),
        })
    }
}

impl Probe for KafkaProbe {
    fn name(&self) -> &str {
        "kafka"
    }

    fn check(&self) -> ProbeFuture<'_> {
        let client = self.client.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            // Metadata requests block on librdkafka; keep them off the runtime.
            let partitions = tokio::task::spawn_blocking(move || {
                let md = client
                    .client()
                    .fetch_metadata(Some(&topic), METADATA_TIMEOUT)?;
                Ok::<_, KafkaError>(
                    md.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map_or(0, |t| t.partitions().len()),
                )
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            if partitions == 0 {
                return Err(format!("topic {} does not exist", self.topic));
            }
            Ok(())
        })
    }
}
