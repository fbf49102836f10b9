//! The batcher's rules, on the in-memory log and store, in virtual time:
//! every test runs with the clock paused, so timers fire exactly when due
//! and a `sleep` only moves the clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_config::{PostgresConfig, ShardDatabase, ShardMapConfig};
use chatmesh_ids::{ChannelId, MessageId};
use chatmesh_proto::common::v1::Message;
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::source::{MemorySource, Offsets, Record};
use crate::store::MemoryStore;
use crate::testsuite::message;

const SHARDS: usize = 4;
/// Long enough that no test reaches it unless it means to.
const HOUR: Duration = Duration::from_secs(3_600);

/// A batcher running on an in-memory log and store.
struct Running {
    log: Arc<MemorySource>,
    store: Arc<MemoryStore>,
    shutdown: CancellationToken,
    task: JoinHandle<Totals>,
}

fn config(batch_size: usize, batch_timeout: Duration) -> BatchConfig {
    BatchConfig {
        batch_size,
        batch_timeout,
    }
}

fn start(config: BatchConfig) -> Running {
    start_on(Arc::new(MemoryStore::with_shards(SHARDS)), config)
}

fn start_on(store: Arc<MemoryStore>, config: BatchConfig) -> Running {
    let log = Arc::new(MemorySource::new());
    let shutdown = CancellationToken::new();
    let batcher = Batcher::new(log.clone(), store.clone(), config);
    let token = shutdown.clone();
    let task = tokio::spawn(async move { batcher.run(&token).await });
    Running {
        log,
        store,
        shutdown,
        task,
    }
}

impl Running {
    /// Signals shutdown and waits for the batcher to return.
    async fn stop(self) -> Totals {
        self.shutdown.cancel();
        self.task.await.expect("batcher panicked")
    }

    /// Appends message `seq` of `channel` to partition 0.
    fn push(&self, channel: &ChannelId, seq: u64) -> i64 {
        self.log.push(0, encode(channel, seq))
    }

    fn commits(&self) -> Vec<Offsets> {
        self.log.commits().into_iter().map(|c| c.offsets).collect()
    }
}

fn encode(channel: &ChannelId, seq: u64) -> Vec<u8> {
    Message::from(message(channel, seq)).encode_to_vec()
}

fn offsets(pairs: &[(i32, i64)]) -> Offsets {
    pairs.iter().copied().collect()
}

/// A channel the store keeps on `shard`.
fn channel_on(store: &MemoryStore, shard: usize) -> ChannelId {
    (0..)
        .map(|i| ChannelId::new(format!("room-{i}")).expect("a valid channel ID"))
        .find(|c| store.shard_of(c) == shard)
        .expect("some channel lands on every shard")
}

fn room() -> ChannelId {
    ChannelId::new("room").expect("a valid channel ID")
}

#[tokio::test(start_paused = true)]
async fn a_batch_closes_when_it_is_full() {
    let b = start(config(3, HOUR));
    let started = Instant::now();
    for seq in 1..=5 {
        b.push(&room(), seq);
    }
    b.log.wait_for_commits(1).await;
    let first = &b.log.commits()[0];
    assert_eq!(first.offsets, offsets(&[(0, 3)]));
    assert_eq!(
        first.at, started,
        "a full batch does not wait for its timeout"
    );
    assert_eq!(b.store.len(), 3);
    let totals = b.stop().await;
    assert_eq!((totals.batches, totals.records), (2, 5));
}

#[tokio::test(start_paused = true)]
async fn a_batch_closes_at_the_timeout_after_its_first_record() {
    let timeout = Duration::from_millis(100);
    let b = start(config(10, timeout));
    // Idle time before the first record does not count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = Instant::now();
    b.push(&room(), 1);
    // A later record joins the batch without extending it.
    tokio::time::sleep(Duration::from_millis(60)).await;
    b.push(&room(), 2);
    b.log.wait_for_commits(1).await;
    let commit = &b.log.commits()[0];
    assert_eq!(commit.at - first, timeout);
    assert_eq!(commit.offsets, offsets(&[(0, 2)]));
    assert_eq!(b.store.len(), 2);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_log_makes_no_batch() {
    let b = start(config(10, Duration::from_millis(100)));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(b.log.commits().is_empty());
    assert!(b.store.is_empty());
    for shard in 0..SHARDS {
        assert!(b.store.attempts(shard).is_empty(), "shard {shard} written");
    }
    assert_eq!(b.stop().await, Totals::default());
}

#[tokio::test(start_paused = true)]
async fn undecodable_records_are_skipped_counted_and_committed() {
    let b = start(config(6, HOUR));
    b.push(&room(), 1);
    b.log.push(0, vec![0xff, 0xff, 0xff]);
    b.log.push_record(Record {
        partition: 0,
        offset: 2,
        payload: None,
        traceparent: None,
    });
    let bad_channel = Message {
        channel_id: "no spaces".into(),
        ..Message::from(message(&room(), 3))
    };
    b.log.push(0, bad_channel.encode_to_vec());
    let unstorable = Message {
        message_id: u64::MAX,
        ..Message::from(message(&room(), 4))
    };
    b.log.push(0, unstorable.encode_to_vec());
    b.push(&room(), 5);
    b.log.wait_for_commits(1).await;
    assert_eq!(b.commits(), vec![offsets(&[(0, 6)])]);
    let stored: Vec<u64> = (0..SHARDS)
        .flat_map(|s| b.store.stored(s))
        .map(|m| m.seq)
        .collect();
    assert_eq!(stored, vec![1, 5]);
    let totals = b.stop().await;
    assert_eq!((totals.undecodable, totals.inserted), (4, 2));
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_only_undecodable_records_is_committed_without_writes() {
    let b = start(config(2, HOUR));
    b.log.push(0, b"not protobuf".to_vec());
    b.log.push(1, vec![0x0a]);
    b.log.wait_for_commits(1).await;
    assert_eq!(b.commits(), vec![offsets(&[(0, 1), (1, 1)])]);
    for shard in 0..SHARDS {
        assert!(b.store.attempts(shard).is_empty(), "shard {shard} written");
    }
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_commit_is_one_past_the_last_offset_of_each_partition() {
    let b = start(config(5, HOUR));
    for (partition, offset, seq) in [(0, 5, 1), (0, 7, 2), (1, 2, 3), (0, 6, 4), (3, 10, 5)] {
        b.log.push_record(Record {
            partition,
            offset,
            payload: Some(encode(&room(), seq)),
            traceparent: None,
        });
    }
    b.log.wait_for_commits(1).await;
    assert_eq!(b.commits(), vec![offsets(&[(0, 8), (1, 3), (3, 11)])]);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_committed_until_every_shard_is_written() {
    let store = Arc::new(MemoryStore::with_shards(SHARDS));
    let (up, down) = (channel_on(&store, 0), channel_on(&store, 1));
    store.set_down(1, true);
    let b = start_on(store, config(2, HOUR));
    b.push(&up, 1);
    b.push(&down, 1);
    b.store.wait_for_attempts(1, 4).await;
    assert!(b.log.commits().is_empty(), "committed with shard 1 down");
    // The healthy shard was written alongside, not after, the failing one.
    assert_eq!(b.store.stored(0), vec![message(&up, 1)]);
    assert_eq!(
        b.store.attempts(0).len(),
        1,
        "a written shard is not rewritten"
    );
    assert!(b.store.stored(1).is_empty());

    b.store.set_down(1, false);
    b.log.wait_for_commits(1).await;
    assert_eq!(b.commits(), vec![offsets(&[(0, 2)])]);
    assert_eq!(b.store.stored(1), vec![message(&down, 1)]);
    b.stop().await;
}

/// The gaps between successive tries of `shard`.
fn gaps(store: &MemoryStore, shard: usize) -> Vec<Duration> {
    store
        .attempts(shard)
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_shard_is_retried_with_growing_delays_then_the_batch_commits() {
    let store = Arc::new(MemoryStore::with_shards(SHARDS));
    let channel = channel_on(&store, 2);
    store.fail_writes(2, 5);
    let b = start_on(store, config(1, HOUR));
    b.push(&channel, 1);
    b.log.wait_for_commits(1).await;
    let gaps = gaps(&b.store, 2);
    assert_eq!(gaps.len(), 5, "five failures, then the write that worked");
    // Retry n waits 100 ms * 2^n plus less than as much again of jitter;
    // the timer wheel rounds a sleep up to the next millisecond, so the
    // gap may reach the upper bound itself.
    for (n, gap) in gaps.iter().enumerate() {
        let base = RETRY_MIN_DELAY * 2_u32.pow(n as u32);
        assert!(
            *gap >= base && *gap <= base * 2,
            "retry {n} after {gap:?}, not in [{base:?}, {:?}]",
            base * 2
        );
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "{gaps:?}");
    let last_try = *b.store.attempts(2).last().unwrap();
    assert_eq!(b.log.commits()[0].at, last_try, "committed once written");
    assert_eq!(b.store.stored(2), vec![message(&channel, 1)]);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retry_delays_are_capped() {
    let store = Arc::new(MemoryStore::with_shards(SHARDS));
    let channel = channel_on(&store, 0);
    store.set_down(0, true);
    let b = start_on(store, config(1, HOUR));
    b.push(&channel, 1);
    b.store.wait_for_attempts(0, 16).await;
    let gaps = gaps(&b.store, 0);
    assert!(gaps.iter().all(|g| *g <= RETRY_MAX_DELAY), "{gaps:?}");
    // Past the cap the delays stay in its upper half, jitter and all.
    for gap in &gaps[8..] {
        assert!(*gap >= RETRY_MAX_DELAY / 2, "{gaps:?}");
    }
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_retries_returns_without_committing() {
    let store = Arc::new(MemoryStore::with_shards(SHARDS));
    let (up, down) = (channel_on(&store, 0), channel_on(&store, 3));
    store.set_down(3, true);
    let b = start_on(store, config(2, HOUR));
    b.push(&up, 1);
    b.push(&down, 1);
    b.store.wait_for_attempts(3, 3).await;
    let store = b.store.clone();
    let log = b.log.clone();
    let stopping = Instant::now();
    let totals = b.stop().await;
    assert_eq!(
        stopping.elapsed(),
        Duration::ZERO,
        "waited out a retry delay"
    );
    assert!(log.commits().is_empty(), "committed a batch a shard lacks");
    assert_eq!(store.attempts(3).len(), 3, "retried after shutdown");
    assert_eq!((totals.batches, totals.inserted), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_a_batch_in_hand_writes_and_commits_it() {
    let b = start(config(100, HOUR));
    let started = Instant::now();
    for seq in 1..=3 {
        b.push(&room(), seq);
    }
    b.log.wait_until_drained().await;
    let log = b.log.clone();
    let store = b.store.clone();
    let totals = b.stop().await;
    let commits = log.commits();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].offsets, offsets(&[(0, 3)]));
    assert_eq!(commits[0].at, started, "waited for the batch timeout");
    assert_eq!(store.len(), 3);
    assert_eq!((totals.batches, totals.inserted), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_a_failing_shard_and_a_batch_in_hand_leaves_it_uncommitted() {
    let store = Arc::new(MemoryStore::with_shards(SHARDS));
    let channel = channel_on(&store, 1);
    store.set_down(1, true);
    let b = start_on(store, config(100, HOUR));
    b.push(&channel, 1);
    b.log.wait_until_drained().await;
    let (log, store) = (b.log.clone(), b.store.clone());
    let totals = b.stop().await;
    assert_eq!(
        store.attempts(1).len(),
        1,
        "the batch in hand was tried once"
    );
    assert!(log.commits().is_empty());
    assert_eq!(totals.batches, 0);
}

#[tokio::test(start_paused = true)]
async fn replayed_records_are_not_stored_twice() {
    let b = start(config(3, HOUR));
    for seq in 1..=3 {
        b.push(&room(), seq);
    }
    b.log.wait_for_commits(1).await;
    // The same records again, as a restart after a lost commit reads them.
    for (offset, seq) in (0..3).zip(1..=3) {
        b.log.push_record(Record {
            partition: 0,
            offset,
            payload: Some(encode(&room(), seq)),
            traceparent: None,
        });
    }
    b.log.wait_for_commits(2).await;
    assert_eq!(b.commits(), vec![offsets(&[(0, 3)]); 2]);
    let shard = b.store.shard_of(&room());
    assert_eq!(
        b.store.stored(shard),
        (1..=3).map(|seq| message(&room(), seq)).collect::<Vec<_>>()
    );
    let totals = b.stop().await;
    assert_eq!((totals.records, totals.inserted), (6, 3));
}

/// Four shard databases over uneven bucket ranges; nothing connects to them.
fn uneven_shards() -> ShardMapConfig {
    let ranges = [(0, 9), (10, 99), (100, 199), (200, 255)];
    ShardMapConfig {
        buckets: 256,
        databases: ranges
            .iter()
            .enumerate()
            .map(|(i, &(first_bucket, last_bucket))| ShardDatabase {
                name: format!("shard_{i}"),
                postgres: PostgresConfig {
                    url: format!("postgres://127.0.0.1:1/shard_{i}"),
                    pool_size: 1,
                    connect_timeout: Duration::from_secs(1),
                },
                first_bucket,
                last_bucket,
            })
            .collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn rows_land_on_the_shard_the_shard_map_assigns() {
    let config = uneven_shards();
    let map = chatmesh_db::ShardMap::connect(&config);
    let b = start_on(Arc::new(MemoryStore::new(&config)), self::config(400, HOUR));
    let channels: Vec<ChannelId> = (0..100)
        .map(|i| ChannelId::new(format!("chan-{i}")).unwrap())
        .collect();
    for seq in 1..=4 {
        for channel in &channels {
            b.push(channel, seq);
        }
    }
    b.log.wait_for_commits(1).await;
    let mut used = BTreeSet::new();
    for shard in 0..SHARDS {
        for m in b.store.stored(shard) {
            assert_eq!(map.shard_index(&m.channel), shard, "{}", m.channel.as_str());
            used.insert(shard);
        }
    }
    assert_eq!(b.store.len(), 400);
    assert_eq!(used.len(), SHARDS, "some shard got nothing");
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn receive_errors_do_not_stop_the_loop() {
    let b = start(config(2, Duration::from_millis(100)));
    b.log.push_error("broker transport failure");
    b.push(&room(), 1);
    b.log.push_error("broker transport failure");
    b.push(&room(), 2);
    let started = Instant::now();
    b.log.wait_for_commits(2).await;
    // Each error pauses the receive loop for 200 ms, never past the
    // batch's timeout: the second one closes the batch of record 1 at its
    // timeout, and record 2 starts the next.
    let commits = b.log.commits();
    let at: Vec<Duration> = commits.iter().map(|c| c.at - started).collect();
    assert_eq!(at, [Duration::from_millis(300), Duration::from_millis(400)]);
    assert_eq!(b.commits(), vec![offsets(&[(0, 1)]), offsets(&[(0, 2)])]);
    assert_eq!(b.store.len(), 2);
    let totals = b.stop().await;
    assert_eq!((totals.receive_errors, totals.records), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_failed_commit_does_not_stop_the_loop() {
    let b = start(config(1, HOUR));
    b.log.fail_commits(1);
    b.push(&room(), 1);
    b.push(&room(), 2);
    b.log.wait_for_commits(1).await;
    assert_eq!(b.commits(), vec![offsets(&[(0, 2)])]);
    assert_eq!(b.store.len(), 2);
    let totals = b.stop().await;
    assert_eq!((totals.batches, totals.commit_failures), (2, 1));
}

#[test]
fn next_offsets_are_per_partition_maxima_plus_one() {
    let record = |partition, offset| Record {
        partition,
        offset,
        payload: None,
        traceparent: None,
    };
    let batch = [record(2, 40), record(0, 3), record(2, 39), record(0, 0)];
    assert_eq!(next_offsets(&batch), offsets(&[(0, 4), (2, 41)]));
    assert_eq!(next_offsets(&[]), Offsets::new());
}

#[test]
fn a_decoded_record_is_the_domain_message() {
    let sent = message(&room(), 9);
    let wire = Message {
        idempotency_key: "k".into(),
        ..Message::from(sent.clone())
    };
    let decoded = decode(Some(&wire.encode_to_vec())).expect("decodes");
    assert_eq!(
        decoded,
        ChatMessage {
            idempotency_key: Some("k".into()),
            ..sent
        }
    );
    assert!(matches!(decode(None), Err(Undecodable::NoPayload)));
    let early = Message {
        created_at_ms: -1,
        ..Message::from(message(&room(), 1))
    };
    assert!(matches!(
        decode(Some(&early.encode_to_vec())),
        Err(Undecodable::Unstorable(_))
    ));
    assert_eq!(
        decode(Some(&encode(&room(), 1))).map(|m| m.id).ok(),
        Some(MessageId::from_raw(1_001))
    );
}
