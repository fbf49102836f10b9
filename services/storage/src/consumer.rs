//! The Kafka consumer: batches messages by size and time, writes each batch
//! to the channels' shards, and commits offsets only after every write of
//! the batch succeeded. A crash at any point replays at most the batch,
//! and the inserts skip what is already stored: no loss, no duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_db::ShardMap;
use chatmesh_ids::ChannelId;
use chatmesh_proto::common::v1::Message;
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::BatchConfig;
use crate::rows::Row;
use crate::writer;

/// Consumes until `shutdown`, finishing and committing the batch in hand.
pub(crate) async fn run(
    consumer: Arc<StreamConsumer>,
    topic: String,
    shards: ShardMap,
    config: BatchConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    consumer.subscribe(&[&topic])?;
    tracing::info!(topic, "storage consumer started");
    while !shutdown.is_cancelled() {
        let batch = collect(&consumer, &config, &shutdown).await;
        if batch.is_empty() {
            continue;
        }
        if !write(&shards, &batch, &shutdown).await {
            // Shut down mid-retry: leave the offsets, the batch replays.
            break;
        }
        commit(&consumer, &topic, &batch);
    }
    tracing::info!("storage consumer stopped");
    Ok(())
}

/// Up to `batch_size` messages, waiting at most `batch_timeout` after the first.
async fn collect(
    consumer: &StreamConsumer,
    config: &BatchConfig,
    shutdown: &CancellationToken,
) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    let mut deadline: Option<Instant> = None;
    while batch.len() < config.batch_size {
        let wait = deadline.map_or(Duration::from_millis(500), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let next = tokio::select! {
            m = tokio::time::timeout(wait, consumer.recv()) => m,
            () = shutdown.cancelled() => break,
        };
        match next {
            Ok(Ok(message)) => {
                batch.push(message.detach());
                deadline.get_or_insert_with(|| Instant::now() + config.batch_timeout);
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "kafka receive failed");
                metrics::counter!("chatmesh_storage_consume_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) if batch.is_empty() => {}
            Err(_) => break,
        }
    }
    batch
}

/// Writes a batch, shard by shard in parallel, retrying each failed shard
/// with backoff. False if shutdown interrupted the retries.
async fn write(shards: &ShardMap, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
    let mut per_shard: Vec<Vec<Row>> = vec![Vec::new(); shards.shards().len()];
    for record in batch {
        let decoded = record.payload().map(Message::decode);
        let row = match decoded {
            Some(Ok(message)) => ChannelId::new(message.channel_id.as_str())
                .ok()
                .zip(Row::from_message(message)),
            _ => None,
        };
        match row {
            Some((channel, row)) => per_shard[shards.shard_index(&channel)].push(row),
            None => {
                // Not a chat message: keeping it would block the partition
                // forever, so it is logged with its position and skipped.
                metrics::counter!("chatmesh_storage_undecodable_total").increment(1);
                tracing::error!(
                    partition = record.partition(),
                    offset = record.offset(),
                    "undecodable record skipped"
                );
            }
        }
    }
    metrics::histogram!("chatmesh_storage_batch_size").record(batch.len() as f64);
    let writes = per_shard.iter().enumerate().filter(|(_, rows)| !rows.is_empty()).map(|(i, rows)| async move {
        let shard = &shards.shards()[i];
        let mut delay = Duration::from_millis(100);
        loop {
            match writer::insert(shard, rows).await {
                Ok(new) => {
                    metrics::counter!("chatmesh_storage_rows_inserted_total", "shard" => shard.name.clone()).increment(new as u64);
                    metrics::gauge!("chatmesh_storage_shard_down", "shard" => shard.name.clone()).set(0.0);
                    return true;
                }
                Err(err) => {
                    metrics::counter!("chatmesh_storage_write_failures_total", "shard" => shard.name.clone()).increment(1);
                    metrics::gauge!("chatmesh_storage_shard_down", "shard" => shard.name.clone()).set(1.0);
                    tracing::warn!(shard = %shard.name, rows = rows.len(), error = %err, retry_in = ?delay, "shard write failed; offsets held");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return false,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
    futures::future::join_all(writes)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// Commits the offset after the last record of each partition in the batch.
fn commit(consumer: &StreamConsumer, topic: &str, batch: &[OwnedMessage]) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for record in batch {
        let entry = next.entry(record.partition()).or_insert(0);
        *entry = (*entry).max(record.offset() + 1);
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in next {
        if let Err(err) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(partition, error = %err, "bad offset");
        }
    }
    // A failed commit (say, during a rebalance) replays the batch elsewhere;
    // the inserts skip what is stored.
    if let Err(err) = consumer.commit(&list, CommitMode::Async) {
        metrics::counter!("chatmesh_storage_commit_failures_total").increment(1);
        tracing::warn!(error = %err, "offset commit failed; the batch may be replayed");
    }
}
