//! A storage instance left without partitions says so. The topic has one
//! partition, and another member of the group, with an instance ID that
//! sorts first, holds it: the range assignor gives it to the first member.
//!
//! - While that member commits what arrives, the group keeps up: storage
//!   holds nothing and stays ready.
//! - Once it stops committing, messages wait unstored: storage reports the
//!   stall on `/readyz` and in `chatmesh_storage_stalled`.
//! - When it leaves the group, storage takes the partition, stores the
//!   backlog and is ready again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_integration_tests::messages::{MessageLog, Shards};
use chatmesh_integration_tests::storage_process::{self, StorageProcess};
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_kafka::GroupConsumer;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer as _};
use tokio_util::sync::CancellationToken;

const CHANNELS: usize = 20;
const LAG_INTERVAL: Duration = Duration::from_millis(500);
/// Longer than the broker takes to rebalance (tansu pauses about 6 s for
/// a static member), so a rebalance of the holder is no stall.
const STALL_AFTER: Duration = Duration::from_secs(10);
const SEND_EVERY: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(60);

/// Messages acknowledged, each with whether the other member was still
/// committing when it was sent.
type Acked = Mutex<Vec<((String, u64), bool)>>;

/// The other member: reads the partition and commits what it reads while
/// `committing`, without storing anything.
struct Holder {
    consumer: Arc<GroupConsumer>,
    committing: Arc<AtomicBool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Holder {
    fn join(infra: &Infra, topic: &str, group: &str, instance_id: &str) -> anyhow::Result<Self> {
        let config: chatmesh_config::KafkaConfig = toml::from_str(&format!(
            "brokers = {:?}\ntopic = {topic:?}",
            infra.kafka_brokers
        ))?;
        let consumer = Arc::new(chatmesh_kafka::group_consumer(&config, group, instance_id)?);
        consumer.subscribe(&[topic])?;
        let committing = Arc::new(AtomicBool::new(true));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (consumer, committing, stop) = (consumer.clone(), committing.clone(), stop.clone());
            async move {
                loop {
                    let message = tokio::select! {
                        m = consumer.recv() => m,
                        () = stop.cancelled() => break,
                    };
                    if let Ok(message) = message
                        && committing.load(Ordering::SeqCst)
                    {
                        let _ = consumer.commit_message(&message, CommitMode::Async);
                    }
                }
            }
        });
        Ok(Self {
            consumer,
            committing,
            stop,
            task,
        })
    }

    fn holds_the_partition(&self, topic: &str) -> bool {
        !self.consumer.context().assigned(topic).is_empty()
    }

    /// Stops reading and leaves the group, as a clean shutdown does.
    async fn leave(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?;
        anyhow::ensure!(
            chatmesh_kafka::leave(&self.consumer, Duration::from_secs(10)).await,
            "the holder's partition was not revoked"
        );
        tokio::task::spawn_blocking(move || drop(self.consumer)).await?;
        Ok(())
    }
}

async fn create_topic(infra: &Infra, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra.kafka_brokers.join(","))
        .create()?;
    for result in admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

/// Storage's readiness, stall gauge and assigned partitions.
async fn state(storage: &StorageProcess) -> anyhow::Result<(bool, String, f64, f64)> {
    let (ready, body) = storage.readyz().await?;
    let stalled = storage
        .metric("chatmesh_storage_stalled")
        .await?
        .unwrap_or(0.0);
    let assigned = storage
        .metric("chatmesh_storage_assigned_partitions")
        .await?
        .unwrap_or(0.0);
    Ok((ready, body, stalled, assigned))
}

async fn measurements(storage: &StorageProcess) -> anyhow::Result<f64> {
    Ok(storage
        .metric("chatmesh_storage_lag_measurements_total")
        .await?
        .unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_without_partitions_while_the_group_stalls_is_not_ready() -> anyhow::Result<()> {
    let started = Instant::now();
    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh.test.stall-{run}");
    let group = format!("chatmesh-storage-stall-{run}");
    create_topic(&infra, &topic).await?;
    let channels: Arc<Vec<String>> =
        Arc::new((0..CHANNELS).map(|i| format!("stall-{run}-{i}")).collect());
    let shards = Shards::new(&infra)?;

    let holder = Holder::join(&infra, &topic, &group, &format!("0-holder-{run}"))?;
    wait::until("the holder to hold the partition", WAIT, || async {
        anyhow::ensure!(holder.holds_the_partition(&topic), "not yet");
        Ok(())
    })
    .await?;

    let config = storage_process::with_fields(
        &storage_process::config(&infra, &topic, &group, "500ms", ""),
        &[
            &format!("instance_id = \"storage-{run}\""),
            &format!("stall_after = \"{}ms\"", STALL_AFTER.as_millis()),
        ],
    );
    let storage = StorageProcess::start(&config).await?;
    let fail = |e: anyhow::Error| anyhow::anyhow!("{e}\nstorage log:\n{}", storage.log());
    // Storage's join rebalances the group; the holder gets the partition
    // back once it rejoins.
    wait::until(
        "storage ready and holding nothing, the holder holding the partition",
        WAIT,
        || async {
            let (ready, body, _, assigned) = state(&storage).await?;
            anyhow::ensure!(ready, "{body}");
            anyhow::ensure!(assigned == 0.0, "{assigned} assigned");
            anyhow::ensure!(
                holder.holds_the_partition(&topic),
                "the holder is rejoining"
            );
            Ok(())
        },
    )
    .await
    .map_err(fail)?;

    let log = Arc::new(MessageLog::new(&infra, &topic)?);
    let acked: Arc<Acked> = Arc::default();
    let stop = CancellationToken::new();
    let producing = tokio::spawn({
        let (log, channels, acked, stop) =
            (log.clone(), channels.clone(), acked.clone(), stop.clone());
        let committing = holder.committing.clone();
        async move {
            let mut tick = tokio::time::interval(SEND_EVERY);
            for i in 0.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                // Read before the send: a message sent after this was
                // never committed by the holder.
                let committed = committing.load(Ordering::SeqCst);
                let message = log.message(&channels[i % CHANNELS], (i / CHANNELS) as u64 + 1);
                log.send(&message).await?;
                acked
                    .lock()
                    .unwrap()
                    .push(((message.channel_id, message.message_id), committed));
            }
            anyhow::Ok(())
        }
    });

    // The group keeps up without this instance: it stays ready for longer
    // than the stall window, measured in its own lag measurements.
    let from = measurements(&storage).await?;
    let needed = from + (STALL_AFTER.as_secs_f64() / LAG_INTERVAL.as_secs_f64()).ceil() + 3.0;
    loop {
        let (ready, body, stalled, assigned) = state(&storage).await.map_err(fail)?;
        anyhow::ensure!(
            ready && stalled == 0.0,
            "not ready while the group keeps up: {body}"
        );
        anyhow::ensure!(assigned == 0.0, "storage took the partition: {assigned}");
        if measurements(&storage).await? >= needed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "ready with no partitions while the group keeps up, over {} measurements",
        needed - from
    );

    holder.committing.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    let body = wait::until("storage to report the stall", WAIT, || async {
        let (ready, body, stalled, _) = state(&storage).await?;
        anyhow::ensure!(
            !ready && stalled == 1.0,
            "ready {ready}, stalled {stalled}: {body}"
        );
        Ok(body)
    })
    .await
    .map_err(fail)?;
    assert!(body.contains("kafka:group: group stalled"), "{body}");
    let lag = storage
        .metric("chatmesh_storage_group_lag")
        .await?
        .unwrap_or(0.0);
    assert!(lag > 0.0, "group lag {lag}");
    eprintln!(
        "stall reported {:.1}s after the commits stopped (group lag {lag}): {}",
        stopped.elapsed().as_secs_f64(),
        body.lines()
            .find(|l| l.starts_with("kafka:group"))
            .unwrap_or_default()
    );

    holder.leave().await?;
    let left = Instant::now();
    wait::until(
        "storage to take the partition and be ready",
        WAIT,
        || async {
            let (ready, body, stalled, assigned) = state(&storage).await?;
            anyhow::ensure!(
                ready && stalled == 0.0 && assigned == 1.0,
                "ready {ready}, stalled {stalled}, assigned {assigned}: {body}"
            );
            Ok(())
        },
    )
    .await
    .map_err(fail)?;
    eprintln!(
        "ready again {:.1}s after the holder left",
        left.elapsed().as_secs_f64()
    );

    stop.cancel();
    producing.await??;
    // Everything sent once the holder stopped committing is storage's to
    // store, exactly once.
    let mine: HashSet<(String, u64)> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, committed)| !committed)
        .map(|(key, _)| key.clone())
        .collect();
    anyhow::ensure!(!mine.is_empty(), "nothing was sent during the stall");
    let counts = wait::until("the backlog stored", WAIT, || async {
        let mut counts: HashMap<(String, u64), usize> = HashMap::new();
        for row in shards.rows(&channels).await?.into_iter().flatten() {
            *counts
                .entry((row.channel_id, row.message_id as u64))
                .or_default() += 1;
        }
        let missing = mine.iter().filter(|k| !counts.contains_key(*k)).count();
        anyhow::ensure!(missing == 0, "{missing} of {} not stored", mine.len());
        Ok(counts)
    })
    .await
    .map_err(fail)?;
    let duplicated = counts.values().filter(|&&n| n > 1).count();
    assert_eq!(duplicated, 0, "messages stored more than once");
    eprintln!(
        "{} messages sent during the stall, all stored once; {:.1}s in all",
        mine.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
