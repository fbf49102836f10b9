//! The consumer's batcher: reads the message log in batches by size and
//! time, writes each batch to the channels' shards, and commits offsets
//! only after every write of the batch succeeded. A crash at any point
//! replays at most the batch, and the inserts skip what is already stored:
//! no loss, no duplicates.

mod decode;
#[cfg(test)]
mod tests;

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use chatmesh_ids::ChatMessage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::BatchConfig;
use crate::error::StorageError;
use crate::source::{LogSource, Offsets, Record};
use crate::store::MessageStore;

pub use decode::{Undecodable, decode};

/// First delay before a failed shard write is retried.
pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between two tries of a shard write. Jitter adds up to the
/// delay again, so the exponential part is capped at half of this.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(5);
/// Pause after a failed receive, so a broken connection is not spun on.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// What a batcher did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Batches written and committed (or their commit attempted).
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Records skipped as not chat messages.
    pub undecodable: u64,
    /// Rows new to their shard.
    pub inserted: u64,
    /// Receives that failed.
    pub receive_errors: u64,
    /// Commits that failed; their batches may be replayed.
    pub commit_failures: u64,
}

/// Moves messages from a log to a store, batch by batch.
#[derive(Debug)]
pub struct Batcher<L, S> {
    log: L,
    store: S,
    config: BatchConfig,
    backoff: ExponentialBuilder,
}

impl<L: LogSource, S: MessageStore> Batcher<L, S> {
    /// A batcher reading `log` into `store`, batching by `config`.
    pub fn new(log: L, store: S, config: BatchConfig) -> Self {
        let backoff = ExponentialBuilder::new()
            .with_min_delay(RETRY_MIN_DELAY)
            .with_max_delay(RETRY_MAX_DELAY / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            log,
            store,
            config,
            backoff,
        }
    }

    /// Consumes until `shutdown`. The batch in hand when it comes is
    /// written and committed; if a shard is failing then, the batch is
    /// left uncommitted, to be replayed.
    pub async fn run(&self, shutdown: &CancellationToken) -> Totals {
        tracing::info!(
            batch_size = self.config.batch_size,
            batch_timeout = ?self.config.batch_timeout,
            "storage consumer started"
        );
        let mut totals = Totals::default();
        while !shutdown.is_cancelled() {
            let batch = self.collect(shutdown, &mut totals).await;
            if batch.is_empty() {
                continue;
            }
            if !self.write(&batch, shutdown, &mut totals).await {
                tracing::info!(
                    records = batch.len(),
                    "shut down while a shard write was retried; the batch replays"
                );
                break;
            }
            self.commit(&batch, &mut totals).await;
        }
        tracing::info!(
            batches = totals.batches,
            records = totals.records,
            inserted = totals.inserted,
            "storage consumer stopped"
        );
        totals
    }

    /// Up to `batch_size` records, waiting at most `batch_timeout` after
    /// the first. Empty only on shutdown.
    async fn collect(&self, shutdown: &CancellationToken, totals: &mut Totals) -> Vec<Record> {
        let mut batch = Vec::new();
        let mut closes: Option<Instant> = None;
        while batch.len() < self.config.batch_size {
            let deadline = async {
                match closes {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = deadline => break,
                next = self.log.recv() => next,
            };
            match next {
                Ok(record) => {
                    closes.get_or_insert_with(|| Instant::now() + self.config.batch_timeout);
                    batch.push(record);
                }
                Err(err) => {
                    totals.receive_errors += 1;
                    metrics::counter!("chatmesh_storage_consume_errors_total").increment(1);
                    tracing::warn!(error = %err, "message log receive failed");
                    let resume = Instant::now() + RECEIVE_ERROR_PAUSE;
                    let resume = closes.map_or(resume, |at| at.min(resume));
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep_until(resume) => {}
                    }
                }
            }
        }
        batch
    }

    /// Decodes `batch` and writes it, shard by shard in parallel, retrying
    /// each failed shard with backoff. False if shutdown interrupted the
    /// retries.
    #[tracing::instrument(name = "storage.batch", parent = None, skip_all, fields(records = batch.len()))]
    async fn write(
        &self,
        batch: &[Record],
        shutdown: &CancellationToken,
        totals: &mut Totals,
    ) -> bool {
        let shards = self.store.shard_count();
        let mut per_shard: Vec<Vec<ChatMessage>> = vec![Vec::new(); shards];
        // The trace context of each message's send, per shard.
        let mut traces: Vec<Vec<&str>> = vec![Vec::new(); shards];
        for record in batch {
            match decode(record.payload.as_deref()) {
                Ok(message) => {
                    let shard = self.store.shard_of(&message.channel);
                    per_shard[shard].push(message);
                    traces[shard].extend(record.traceparent.as_deref());
                }
                Err(reason) => {
                    // Not a chat message: keeping it would block the
                    // partition forever, so it is logged with its position
                    // and skipped.
                    totals.undecodable += 1;
                    metrics::counter!("chatmesh_storage_undecodable_total").increment(1);
                    tracing::error!(
                        partition = record.partition,
                        offset = record.offset,
                        %reason,
                        "undecodable record skipped"
                    );
                }
            }
        }
        metrics::histogram!("chatmesh_storage_batch_size").record(batch.len() as f64);
        let writes = per_shard
            .iter()
            .enumerate()
            .filter(|(_, messages)| !messages.is_empty())
            .map(|(shard, messages)| self.write_shard(shard, messages, &traces[shard], shutdown));
        let mut complete = true;
        for written in futures::future::join_all(writes).await {
            match written {
                Some(new) => totals.inserted += new as u64,
                None => complete = false,
            }
        }
        complete
    }

    /// Writes `messages` to `shard`, retrying until it succeeds. `None` if
    /// shutdown came while retrying; a write in progress is never cut off.
    /// Its span links the send of each message that carried trace context:
    /// one insert serves many traces, so it is the child of none of them.
    async fn write_shard(
        &self,
        shard: usize,
        messages: &[ChatMessage],
        traces: &[&str],
        shutdown: &CancellationToken,
    ) -> Option<usize> {
        let name = self.store.shard_name(shard);
        let span = tracing::info_span!(
            "storage.insert",
            shard = name,
            rows = messages.len(),
            inserted = tracing::field::Empty,
        );
        for traceparent in traces {
            chatmesh_telemetry::link_traceparent(&span, traceparent);
        }
        let mut tries = 0_u32;
        let attempt = || {
            tries += 1;
            let retry = tries > 1;
            async move {
                // A retry after shutdown is not made: the batch replays.
                if retry && shutdown.is_cancelled() {
                    return Err(StorageError::ShuttingDown);
                }
                self.store.insert(shard, messages).await
            }
        };
        let token = shutdown.clone();
        let pause = move |delay: Duration| {
            let token = token.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = token.cancelled() => {}
                }
            }
        };
        let written = attempt
            .retry(self.backoff)
            .sleep(pause)
            .when(|_| !shutdown.is_cancelled())
            .notify(|err, retry_in| {
                shard_failed(name);
                tracing::warn!(shard = name, rows = messages.len(), error = %err, ?retry_in, "shard write failed; offsets held");
            })
            .instrument(span.clone())
            .await;
        match written {
            Ok(new) => {
                span.record("inserted", new);
                metrics::counter!("chatmesh_storage_rows_inserted_total", "shard" => name.to_owned())
                    .increment(new as u64);
                metrics::gauge!("chatmesh_storage_shard_down", "shard" => name.to_owned()).set(0.0);
                Some(new)
            }
            Err(StorageError::ShuttingDown) => None,
            Err(err) => {
                shard_failed(name);
                tracing::warn!(shard = name, rows = messages.len(), error = %err, "shard write failed at shutdown; offsets held");
                None
            }
        }
    }

    /// Commits the offset after the last record of each partition in
    /// `batch`. A failed commit replays the batch; the inserts skip what
    /// is stored.
    async fn commit(&self, batch: &[Record], totals: &mut Totals) {
        totals.batches += 1;
        totals.records += batch.len() as u64;
        if let Err(err) = self.log.commit(&next_offsets(batch)).await {
            totals.commit_failures += 1;
            metrics::counter!("chatmesh_storage_commit_failures_total").increment(1);
            tracing::warn!(error = %err, "offset commit failed; the batch may be replayed");
        }
    }
}

fn shard_failed(name: &str) {
    metrics::counter!("chatmesh_storage_write_failures_total", "shard" => name.to_owned())
        .increment(1);
    metrics::gauge!("chatmesh_storage_shard_down", "shard" => name.to_owned()).set(1.0);
}

/// The offset after the last record of each partition in `batch`.
pub fn next_offsets(batch: &[Record]) -> Offsets {
    let mut next = Offsets::new();
    for record in batch {
        let entry = next.entry(record.partition).or_insert(0);
        *entry = (*entry).max(record.offset + 1);
    }
    next
}
