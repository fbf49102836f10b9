//! Consumer lag: for every partition of the topic, how many messages of the
//! log the group has not yet committed, that is not yet stored on every
//! shard, whichever instance holds the partition. Measured from the broker
//! on a timer rather than from the consume loop, so the figures keep
//! rising while that loop is stalled on a shard that is down, or while this
//! instance has no partitions at all. Each measurement also feeds the stall
//! rule ([`crate::stall`]) and the group's part in readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chatmesh_kafka::GroupConsumer;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::group::GroupStatus;
use crate::stall::{Position, StallRule, Verdict};

/// Longest one broker request of a measurement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the lag watch needs.
pub(crate) struct LagWatch {
    /// The group member, for its assignment and its fatal error.
    pub(crate) consumer: Arc<GroupConsumer>,
    /// A client of its own for the group's commits and the watermarks: on
    /// the group consumer's connection an offset request would queue
    /// behind the fetch long-poll, up to `fetch.wait.max.ms` per partition.
    pub(crate) offsets: BaseConsumer,
    pub(crate) topic: String,
    pub(crate) interval: Duration,
    pub(crate) stall_after: Duration,
    pub(crate) status: GroupStatus,
}

/// Measures every `interval` until `shutdown`, publishing
/// `chatmesh_storage_group_lag{partition}` for every partition,
/// `chatmesh_storage_consumer_lag{partition}` for those held here,
/// `chatmesh_storage_assigned_partitions`, `chatmesh_storage_stuck_partitions`,
/// `chatmesh_storage_stalled` and `chatmesh_storage_fenced`.
pub(crate) async fn run(watch: LagWatch, shutdown: CancellationToken) {
    let LagWatch {
        consumer,
        offsets,
        topic,
        interval,
        stall_after,
        status,
    } = watch;
    let context = consumer.context().clone();
    let offsets = Arc::new(offsets);
    let mut rule = StallRule::new(stall_after);
    let mut last = Verdict::default();
    // Partitions with a published per-instance gauge: a partition that
    // moves to another instance is reported as 0 here, so summing over
    // instances stays right.
    let mut reported: BTreeSet<i32> = BTreeSet::new();
    let mut fatal_reported = false;
    metrics::gauge!("chatmesh_storage_stalled").set(0.0);
    metrics::gauge!("chatmesh_storage_fenced").set(0.0);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        if !fatal_reported && let Some(fatal) = chatmesh_kafka::fatal(&consumer) {
            fatal_reported = true;
            report_fatal(&fatal, context.group(), context.instance_id(), &status);
        }
        let (offsets, topic_name) = (offsets.clone(), topic.clone());
        // Offset, watermark and metadata requests block on librdkafka.
        let measured = tokio::task::spawn_blocking(move || positions(&offsets, &topic_name));
        let measured = tokio::select! {
            m = measured => m,
            () = shutdown.cancelled() => break,
        };
        let positions = match measured {
            Ok(Ok(positions)) => positions,
            Ok(Err(err)) => {
                metrics::counter!("chatmesh_storage_lag_errors_total").increment(1);
                tracing::debug!(error = %err, "consumer lag not measured");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "consumer lag measurement panicked");
                continue;
            }
        };
        metrics::counter!("chatmesh_storage_lag_measurements_total").increment(1);
        let assigned = context.assigned(&topic);
        publish(&positions, &assigned, &mut reported);
        let verdict = rule.observe(Instant::now(), assigned.len(), &positions);
        report(&last, &verdict, &assigned, stall_after, &status);
        last = verdict;
    }
}

fn report_fatal(
    fatal: &chatmesh_kafka::Fatal,
    group: &str,
    instance_id: &str,
    status: &GroupStatus,
) {
    metrics::gauge!("chatmesh_storage_fenced").set(if fatal.fenced { 1.0 } else { 0.0 });
    if fatal.fenced {
        tracing::error!(
            group,
            instance_id,
            reason = %fatal.reason,
            "consumer fenced: another live process joined the group with this instance ID; this one no longer consumes. Give each process its own instance_id"
        );
        status.set_fatal(format!(
            "fenced: instance ID {instance_id} is in use by another process in group {group}"
        ));
    } else {
        tracing::error!(group, instance_id, reason = %fatal.reason, "consumer failed for good; this process no longer consumes");
        status.set_fatal(format!("consumer failed: {}", fatal.reason));
    }
}

/// Logs and publishes what changed between two verdicts.
fn report(
    last: &Verdict,
    now: &Verdict,
    assigned: &BTreeSet<i32>,
    stall_after: Duration,
    status: &GroupStatus,
) {
    metrics::gauge!("chatmesh_storage_stuck_partitions").set(now.stuck.len() as f64);
    if now.stuck != last.stuck {
        if now.stuck.is_empty() {
            tracing::info!(
                pending = now.pending,
                "every partition's commits progress again"
            );
        } else {
            tracing::warn!(
                stuck = ?now.stuck,
                held_here = ?now.stuck.intersection(assigned).collect::<Vec<_>>(),
                pending = now.pending,
                ?stall_after,
                "partitions with pending messages and no commit progress"
            );
        }
    }
    metrics::gauge!("chatmesh_storage_stalled").set(if now.stalled { 1.0 } else { 0.0 });
    status.set_stalled(now.stalled.then(|| {
        format!(
            "group stalled: {} messages pending on partitions {:?} with no commit for {stall_after:?}, and none assigned here",
            now.pending, now.stuck
        )
    }));
    match (last.stalled, now.stalled) {
        (false, true) => tracing::warn!(
            stuck = ?now.stuck,
            pending = now.pending,
            ?stall_after,
            "consumer group stalled: messages wait unstored and this instance holds no partition; not ready"
        ),
        (true, false) => tracing::info!(
            pending = now.pending,
            held = assigned.len(),
            "consumer group progressing again; ready"
        ),
        _ => {}
    }
}

/// The group's position on every partition of `topic`, through `offsets`
/// (a client with the group's `group.id` that never joins it).
fn positions(offsets: &BaseConsumer, topic: &str) -> KafkaResult<BTreeMap<i32, Position>> {
    let metadata = offsets.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .ok_or_else(|| KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopic))?;
    let mut list = TopicPartitionList::new();
    for &partition in &partitions {
        list.add_partition(topic, partition);
    }
    // Committed offsets first: messages produced between the two reads
    // count as lag, never the other way round.
    let committed = offsets.committed_offsets(list, REQUEST_TIMEOUT)?;
    let mut positions = BTreeMap::new();
    for entry in committed.elements_for_topic(topic) {
        let (low, high) = offsets.fetch_watermarks(topic, entry.partition(), REQUEST_TIMEOUT)?;
        positions.insert(entry.partition(), position(entry.offset(), low, high));
    }
    Ok(positions)
}

/// Where the group stands between the low and high watermark. With no
/// usable commit the group starts from the earliest offset, so the whole
/// retained log is pending.
fn position(committed: Offset, low: i64, high: i64) -> Position {
    let from = match committed {
        Offset::Offset(next) => next.max(low).min(high),
        _ => low,
    };
    Position {
        committed: from,
        end: high,
    }
}

fn publish(
    positions: &BTreeMap<i32, Position>,
    assigned: &BTreeSet<i32>,
    reported: &mut BTreeSet<i32>,
) {
    for (partition, position) in positions {
        metrics::gauge!("chatmesh_storage_group_lag", "partition" => partition.to_string())
            .set(position.pending() as f64);
    }
    metrics::gauge!("chatmesh_storage_assigned_partitions").set(assigned.len() as f64);
    let held: BTreeSet<i32> = positions
        .keys()
        .copied()
        .filter(|p| assigned.contains(p))
        .collect();
    for gone in reported.difference(&held) {
        metrics::gauge!("chatmesh_storage_consumer_lag", "partition" => gone.to_string()).set(0.0);
    }
    for partition in &held {
        metrics::gauge!("chatmesh_storage_consumer_lag", "partition" => partition.to_string())
            .set(positions[partition].pending() as f64);
    }
    *reported = held;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done` until it holds; fails after 30 s.
    async fn until(done: impl Fn() -> bool) {
        let polling = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), polling)
            .await
            .expect("timed out");
    }

    /// The whole watch on librdkafka's mock broker: a member fenced by the
    /// broker makes the instance not ready, naming its instance ID.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_member_is_reported_with_its_instance_id() {
        use rdkafka::mocking::MockCluster;
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("messages", 2, 1).unwrap();
        let config = chatmesh_config::KafkaConfig {
            brokers: vec![mock.bootstrap_servers()],
            topic: "messages".into(),
            properties: [("heartbeat.interval.ms".into(), "100".into())].into(),
        };
        let consumer =
            Arc::new(chatmesh_kafka::group_consumer(&config, "storage", "storage-7").unwrap());
        consumer.subscribe(&["messages"]).unwrap();
        let shutdown = CancellationToken::new();
        // Stands in for the batcher, which serves the consumer.
        let serving = tokio::spawn({
            let (consumer, shutdown) = (consumer.clone(), shutdown.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = consumer.recv() => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        });
        let status = GroupStatus::default();
        let watch = LagWatch {
            consumer: consumer.clone(),
            offsets: chatmesh_kafka::offsets_client(&config, "storage").unwrap(),
            topic: "messages".into(),
            interval: Duration::from_millis(50),
            stall_after: Duration::from_secs(60),
            status: status.clone(),
        };
        let watching = tokio::spawn(run(watch, shutdown.clone()));
        until(|| consumer.context().joined()).await;
        assert_eq!(status.problem(), None);

        mock.request_errors(
            RDKafkaApiKey::Heartbeat,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID],
        );
        until(|| status.problem().is_some()).await;
        let problem = status.problem().unwrap();
        assert!(
            problem.contains("fenced: instance ID storage-7"),
            "{problem}"
        );

        shutdown.cancel();
        watching.await.unwrap();
        serving.await.unwrap();
    }

    #[test]
    fn a_stall_verdict_takes_readiness_away_and_progress_gives_it_back() {
        let status = GroupStatus::default();
        let after = Duration::from_secs(15);
        let idle = Verdict::default();
        let stalled = Verdict {
            stuck: BTreeSet::from([3]),
            stalled: true,
            pending: 1_570,
        };
        report(&idle, &stalled, &BTreeSet::new(), after, &status);
        let problem = status.problem().expect("not ready");
        assert!(
            problem.contains("1570 messages pending on partitions {3}"),
            "{problem}"
        );
        report(&stalled, &stalled, &BTreeSet::new(), after, &status);
        assert!(status.problem().is_some());
        report(&stalled, &idle, &BTreeSet::from([3]), after, &status);
        assert_eq!(status.problem(), None);
    }

    fn pending(committed: Offset, low: i64, high: i64) -> i64 {
        position(committed, low, high).pending()
    }

    #[test]
    fn lag_counts_from_the_commit_to_the_end_of_the_log() {
        assert_eq!(pending(Offset::Offset(40), 0, 100), 60);
        assert_eq!(pending(Offset::Offset(100), 0, 100), 0);
    }

    #[test]
    fn lag_without_a_commit_counts_the_retained_log() {
        assert_eq!(pending(Offset::Invalid, 10, 100), 90);
        assert_eq!(pending(Offset::Invalid, 0, 0), 0);
    }

    #[test]
    fn lag_treats_a_commit_outside_the_log_as_its_nearest_end() {
        // Below the low watermark: retention removed messages, the group
        // resets to the earliest one left.
        assert_eq!(pending(Offset::Offset(5), 10, 100), 90);
        // Above the high watermark: a watermark read just before a commit.
        assert_eq!(pending(Offset::Offset(120), 0, 100), 0);
    }
}
