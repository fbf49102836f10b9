//! The floor under a durable acknowledgement here: the broker's own
//! produce-ack latency, measured with the producer chat uses (same
//! settings, `acks=all`), at a fixed rate into a topic of its own.

use std::time::{Duration, Instant};

use chatmesh_config::KafkaConfig;
use chatmesh_integration_tests::Infra;
use rdkafka::producer::FutureRecord;

/// Produces `rate` records a second for `secs` seconds, each about as
/// large as a chat message record, keyed over 100 channels; returns every
/// send-to-ack latency in µs, sorted.
pub(crate) async fn produce_acks(infra: &Infra, rate: u64, secs: u64) -> anyhow::Result<Vec<u32>> {
    let topic = format!("chatmesh.peers-floor.{}", uuid::Uuid::new_v4().simple());
    infra.create_topic(&topic).await?;
    let producer = chatmesh_kafka::producer(&KafkaConfig {
        brokers: infra.kafka_brokers.clone(),
        topic: topic.clone(),
        properties: Default::default(),
    })?;
    let payload = vec![b'x'; 160];
    // The first records wait for the new topic's metadata and the
    // producer's ID; a second of records first, not counted, so only the
    // broker's steady state is timed.
    timed(&producer, &topic, &payload, rate, 1).await?;
    timed(&producer, &topic, &payload, rate, secs).await
}

async fn timed(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    payload: &[u8],
    rate: u64,
    secs: u64,
) -> anyhow::Result<Vec<u32>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = tokio::task::JoinSet::new();
    for n in 0..rate * secs {
        tick.tick().await;
        let (producer, topic, payload) = (producer.clone(), topic.to_owned(), payload.to_vec());
        pending.spawn(async move {
            let key = format!("floor-{}", n % 100);
            let started = Instant::now();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
            anyhow::Ok(started.elapsed().as_micros() as u32)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = pending.join_next().await {
        latencies.push(done??);
    }
    latencies.sort_unstable();
    Ok(latencies)
}
