//! The Kafka-API broker started by scripts/infra: a record produced by the
//! idempotent producer is consumed by a consumer group that commits by hand.

use std::time::Duration;

use chatmesh_integration_tests::Infra;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;

#[tokio::test]
async fn produce_and_consume_in_a_group() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh-test-{run}");
    let config: chatmesh_config::KafkaConfig = toml::from_str(&format!(
        "brokers = {:?}\ntopic = {topic:?}",
        infra.kafka_brokers
    ))?;

    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra.kafka_brokers.join(","))
        .create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in created {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    let producer = chatmesh_kafka::producer(&config)?;
    let payload = format!("hello {run}");
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key("channel-1")
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some("00-abc"),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let (partition, offset) = (delivery.partition, delivery.offset);

    let consumer = chatmesh_kafka::consumer(&config, &format!("group-{run}"))?;
    consumer.subscribe(&[&topic])?;
    let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
    assert_eq!(message.payload(), Some(payload.as_bytes()));
    assert_eq!(message.key(), Some(&b"channel-1"[..]));
    assert_eq!((message.partition(), message.offset()), (partition, offset));
    let header = message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "traceparent"));
    assert_eq!(header.and_then(|h| h.value), Some(&b"00-abc"[..]));

    consumer.commit_message(&message, CommitMode::Sync)?;
    let committed = consumer.committed(Duration::from_secs(10))?;
    let position = committed
        .elements_for_topic(&topic)
        .into_iter()
        .find(|e| e.partition() == partition)
        .map(|e| e.offset());
    assert_eq!(position, Some(rdkafka::Offset::Offset(offset + 1)));

    // The topic is left in place: tansu's DeleteTopics currently removes
    // every topic, the shared message topic included.
    Ok(())
}
