//! The storage service's log source contract
//! (`chatmesh_storage::source::testsuite`) on the real broker: records are
//! produced with rdkafka to a topic of the test's own, and read by
//! [`KafkaSource`] members of the test's consumer groups, configured as
//! the storage service configures its consumer. The in-memory source
//! passes the same suite in the storage unit tests.
//!
//! Two accommodations of the broker, both as storage runs in production:
//! members are static (`group.instance.id`), so a member that replaces a
//! stopped one takes over its partitions at once instead of after the
//! session timeout; and topics are never deleted, since the broker's
//! DeleteTopics removes every topic.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_config::KafkaConfig;
use chatmesh_integration_tests::Infra;
use chatmesh_storage::source::KafkaSource;
use chatmesh_storage::source::testsuite::LogFixture;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A fresh topic, its producer, and the consumer configuration members
/// start from.
struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
}

async fn kafka_log() -> anyhow::Result<KafkaLog> {
    let infra = Infra::load()?;
    let topic = format!("chatmesh.suite.log-{}", uuid::Uuid::new_v4().simple());
    infra.create_topic(&topic).await?;
    let config: KafkaConfig = toml::from_str(&format!(
        "brokers = {:?}\ntopic = {topic:?}",
        infra.kafka_brokers
    ))?;
    Ok(KafkaLog {
        producer: chatmesh_kafka::producer(&config)?,
        config,
    })
}

#[tonic::async_trait]
impl LogFixture for KafkaLog {
    type Source = KafkaSource;

    async fn produce(&self, partition: i32, payload: &[u8]) -> anyhow::Result<i64> {
        let delivery = self
            .producer
            .send(
                FutureRecord::<(), _>::to(&self.config.topic)
                    .partition(partition)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)?;
        anyhow::ensure!(
            delivery.partition == partition,
            "produced to partition {} instead of {partition}",
            delivery.partition
        );
        Ok(delivery.offset)
    }

    async fn join(&self, group: &str) -> anyhow::Result<KafkaSource> {
        let mut config = self.config.clone();
        // Every member of a test's group is the same static member,
        // restarted.
        config
            .properties
            .insert("group.instance.id".into(), format!("{group}-member"));
        // The end of a partition comes back as a failed receive, which is
        // how `interrupt` makes one fail.
        config
            .properties
            .insert("enable.partition.eof".into(), "true".into());
        let consumer = chatmesh_kafka::consumer(&config, group)?;
        Ok(KafkaSource::subscribe(Arc::new(consumer), &config.topic)?)
    }

    async fn leave(&self, member: KafkaSource) -> anyhow::Result<()> {
        // Closing the consumer blocks until its commits are answered.
        tokio::task::spawn_blocking(move || drop(member)).await?;
        Ok(())
    }

    async fn interrupt(&self, _member: &KafkaSource) -> anyhow::Result<()> {
        // Nothing to do: each time the member catches up with a partition
        // it reports the partition's end as a failed receive.
        Ok(())
    }
}

chatmesh_storage::log_source_suite!(kafka_log().await?);
