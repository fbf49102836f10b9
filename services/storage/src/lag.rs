//! Consumer lag: for each partition assigned to this instance, how many
//! messages of the log are not yet committed, that is not yet stored on
//! every shard. Measured from the broker on a timer rather than from the
//! consume loop, so the gauge keeps rising while that loop is stalled on a
//! shard that is down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaResult;
use tokio_util::sync::CancellationToken;

/// Longest one broker request of a measurement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes `chatmesh_storage_consumer_lag{partition}` every `interval`
/// until `shutdown`. `watermarks` is a client of its own: on the group
/// consumer's connection an offset request would queue behind the fetch
/// long-poll, up to `fetch.wait.max.ms` per partition.
pub(crate) async fn run(
    consumer: Arc<StreamConsumer>,
    watermarks: BaseConsumer,
    topic: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // Partitions with a published gauge: a partition that moves to another
    // instance is reported as 0 here, so summing over instances stays right.
    let mut reported: BTreeSet<i32> = BTreeSet::new();
    let watermarks = Arc::new(watermarks);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let (consumer, watermarks, topic) = (consumer.clone(), watermarks.clone(), topic.clone());
        // Offset and watermark requests block on librdkafka.
        let measured = tokio::task::spawn_blocking(move || measure(&consumer, &watermarks, &topic));
        let measured = tokio::select! {
            m = measured => m,
            () = shutdown.cancelled() => break,
        };
        match measured {
            Ok(Ok(lags)) => publish(&lags, &mut reported),
            Ok(Err(err)) => {
                metrics::counter!("chatmesh_storage_lag_errors_total").increment(1);
                tracing::debug!(error = %err, "consumer lag not measured");
            }
            Err(err) => tracing::warn!(error = %err, "consumer lag measurement panicked"),
        }
    }
}

/// Lag per partition of `topic` assigned to `consumer`, with the end of
/// each partition read through `watermarks`.
fn measure(
    consumer: &StreamConsumer,
    watermarks: &BaseConsumer,
    topic: &str,
) -> KafkaResult<BTreeMap<i32, i64>> {
    let mut lags = BTreeMap::new();
    if consumer.assignment()?.count() == 0 {
        return Ok(lags);
    }
    // Committed offsets first: messages produced between the two reads
    // count as lag, never the other way round.
    let committed = consumer.committed(REQUEST_TIMEOUT)?;
    for partition in committed.elements_for_topic(topic) {
        let (low, high) =
            watermarks.fetch_watermarks(topic, partition.partition(), REQUEST_TIMEOUT)?;
        lags.insert(partition.partition(), lag(partition.offset(), low, high));
    }
    Ok(lags)
}

/// Messages between the committed offset and the high watermark. With no
/// usable commit the group starts from the earliest offset, so the whole
/// retained log is pending.
fn lag(committed: Offset, low: i64, high: i64) -> i64 {
    let from = match committed {
        Offset::Offset(next) => next.clamp(low, high),
        _ => low,
    };
    (high - from).max(0)
}

fn publish(lags: &BTreeMap<i32, i64>, reported: &mut BTreeSet<i32>) {
    for gone in reported.difference(&lags.keys().copied().collect()) {
        metrics::gauge!("chatmesh_storage_consumer_lag", "partition" => gone.to_string()).set(0.0);
    }
    for (partition, lag) in lags {
        metrics::gauge!("chatmesh_storage_consumer_lag", "partition" => partition.to_string())
            .set(*lag as f64);
    }
    *reported = lags.keys().copied().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_to_the_end_of_the_log() {
        assert_eq!(lag(Offset::Offset(40), 0, 100), 60);
        assert_eq!(lag(Offset::Offset(100), 0, 100), 0);
    }

    #[test]
    fn lag_without_a_commit_counts_the_retained_log() {
        assert_eq!(lag(Offset::Invalid, 10, 100), 90);
        assert_eq!(lag(Offset::Invalid, 0, 0), 0);
    }

    #[test]
    fn lag_treats_a_commit_outside_the_log_as_its_nearest_end() {
        // Below the low watermark: retention removed messages, the group
        // resets to the earliest one left.
        assert_eq!(lag(Offset::Offset(5), 10, 100), 90);
        // Above the high watermark: a watermark read just before a commit.
        assert_eq!(lag(Offset::Offset(120), 0, 100), 0);
    }
}
