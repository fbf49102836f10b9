//! A message store in memory, for tests: routed like the shard databases,
//! and able to fail per shard on demand.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chatmesh_config::ShardMapConfig;
use chatmesh_db::DbError;
use chatmesh_ids::{ChannelId, ChatMessage, MessageId};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{HistoryPage, MessageStore, Page, check_storable, column};
use crate::error::StorageError;

/// Messages in memory, split into shards the way a [`ShardMapConfig`]
/// splits them over databases.
#[derive(Debug)]
pub struct MemoryStore {
    names: Vec<String>,
    buckets: u32,
    /// Last bucket of each shard, shards in bucket order.
    last_buckets: Vec<u32>,
    // A std mutex: every critical section is a few map operations and none
    // awaits.
    shards: Mutex<Vec<ShardState>>,
    /// Woken on every write attempt, for tests that wait for one.
    attempted: Notify,
}

#[derive(Debug, Default)]
struct ShardState {
    messages: BTreeMap<(ChannelId, MessageId), ChatMessage>,
    down: bool,
    failing_writes: usize,
    attempts: Vec<Instant>,
}

impl MemoryStore {
    /// A store with the shards of a validated `config`, routed as
    /// `chatmesh_db::ShardMap` routes them.
    pub fn new(config: &ShardMapConfig) -> Self {
        let mut databases: Vec<_> = config.databases.iter().collect();
        databases.sort_by_key(|db| db.first_bucket);
        Self {
            names: databases.iter().map(|db| db.name.clone()).collect(),
            buckets: config.buckets,
            last_buckets: databases.iter().map(|db| db.last_bucket).collect(),
            shards: Mutex::new(databases.iter().map(|_| ShardState::default()).collect()),
            attempted: Notify::new(),
        }
    }

    /// A store of `shards` shards named `shard_<i>`, each holding an equal
    /// range of 256 buckets.
    pub fn with_shards(shards: usize) -> Self {
        let n = shards as u32;
        Self {
            names: (0..shards).map(|i| format!("shard_{i}")).collect(),
            buckets: 256,
            last_buckets: (1..=n).map(|i| 256 * i / n - 1).collect(),
            shards: Mutex::new((0..shards).map(|_| ShardState::default()).collect()),
            attempted: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ShardState>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `shard` down (every read and write of it fails) or brings it
    /// back up.
    pub fn set_down(&self, shard: usize, down: bool) {
        self.lock()[shard].down = down;
    }

    /// Makes the next `writes` inserts into `shard` fail.
    pub fn fail_writes(&self, shard: usize, writes: usize) {
        self.lock()[shard].failing_writes = writes;
    }

    /// When each insert into `shard` was tried, successful or not.
    pub fn attempts(&self, shard: usize) -> Vec<Instant> {
        self.lock()[shard].attempts.clone()
    }

    /// Waits until `shard` has seen at least `attempts` inserts.
    pub async fn wait_for_attempts(&self, shard: usize, attempts: usize) {
        loop {
            let notified = self.attempted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock()[shard].attempts.len() >= attempts {
                return;
            }
            notified.await;
        }
    }

    /// The messages stored on `shard`, by channel and ID.
    pub fn stored(&self, shard: usize) -> Vec<ChatMessage> {
        self.lock()[shard].messages.values().cloned().collect()
    }

    /// How many messages are stored on every shard together.
    pub fn len(&self) -> usize {
        self.lock().iter().map(|s| s.messages.len()).sum()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn down(&self, shard: usize) -> StorageError {
        StorageError::Database(DbError::Connection(format!(
            "{} is down",
            self.names[shard]
        )))
    }

    /// The messages of `channel`, by ID, unless its shard is down.
    fn channel(&self, channel: &ChannelId) -> Result<Vec<ChatMessage>, StorageError> {
        let shard = self.shard_of(channel);
        let shards = self.lock();
        if shards[shard].down {
            return Err(self.down(shard));
        }
        let from = (channel.clone(), MessageId::from_raw(0));
        let to = (channel.clone(), MessageId::from_raw(u64::MAX));
        Ok(shards[shard]
            .messages
            .range(from..=to)
            .map(|(_, m)| m.clone())
            .collect())
    }
}

/// The first `limit` of `messages`, in order (reversed when they were
/// read newest first), and whether there were more.
fn page_of(
    messages: impl Iterator<Item = ChatMessage>,
    limit: usize,
    newest_first: bool,
) -> HistoryPage {
    let mut messages: Vec<_> = messages.take(limit.saturating_add(1)).collect();
    let more = messages.len() > limit;
    messages.truncate(limit);
    if newest_first {
        messages.reverse();
    }
    HistoryPage { messages, more }
}

#[async_trait]
impl MessageStore for MemoryStore {
    fn shard_count(&self) -> usize {
        self.names.len()
    }

    fn shard_name(&self, shard: usize) -> &str {
        &self.names[shard]
    }

    fn shard_of(&self, channel: &ChannelId) -> usize {
        let bucket = chatmesh_db::bucket_of(channel, self.buckets);
        self.last_buckets.partition_point(|last| *last < bucket)
    }

    async fn insert(&self, shard: usize, messages: &[ChatMessage]) -> Result<usize, StorageError> {
        for message in messages {
            check_storable(message)?;
        }
        if messages.is_empty() {
            return Ok(0);
        }
        let inserted = {
            let mut shards = self.lock();
            let state = &mut shards[shard];
            state.attempts.push(Instant::now());
            if state.down {
                Err(self.down(shard))
            } else if state.failing_writes > 0 {
                state.failing_writes -= 1;
                Err(self.down(shard))
            } else {
                let mut inserted = 0;
                for message in messages {
                    let key = (message.channel.clone(), message.id);
                    state.messages.entry(key).or_insert_with(|| {
                        inserted += 1;
                        ChatMessage {
                            idempotency_key: None,
                            ..message.clone()
                        }
                    });
                }
                Ok(inserted)
            }
        };
        self.attempted.notify_waiters();
        inserted
    }

    async fn page(
        &self,
        channel: &ChannelId,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        Ok(match page {
            Page::Latest => page_of(self.channel(channel)?.into_iter().rev(), limit, true),
            Page::Before(id) => {
                column("before", id.get())?;
                let older = self.channel(channel)?.into_iter().rev();
                page_of(older.filter(|m| m.id < id), limit, true)
            }
            Page::After(id) => {
                column("after", id.get())?;
                let newer = self.channel(channel)?.into_iter();
                page_of(newer.filter(|m| m.id > id), limit, false)
            }
        })
    }

    async fn since(
        &self,
        channel: &ChannelId,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        column("after_seq", after_seq)?;
        let mut newer: Vec<_> = self
            .channel(channel)?
            .into_iter()
            .filter(|m| m.seq > after_seq)
            .collect();
        newer.sort_by_key(|m| m.seq);
        Ok(page_of(newer.into_iter(), limit, false))
    }
}
