//! A message store in memory, for tests: routed like the shard databases,
//! and able to fail per shard on demand.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chatmesh_config::ShardMapConfig;
use chatmesh_db::DbError;
use chatmesh_ids::{Change, ChannelId, ChatMessage, MessageId, UserId};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::apply::{ReactionKey, ReactionSet, Register, apply, mark_mine, new_changes};
use super::{HistoryPage, MessageStore, Page, ReadPosition, Unread, check_storable, column};
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
    /// Every event, posts with their current state.
    messages: BTreeMap<(ChannelId, MessageId), ChatMessage>,
    /// Posts by sequence number, as changes find their targets.
    posts: BTreeMap<(ChannelId, u64), MessageId>,
    reactions: Reactions,
    /// Read positions: the seq and when it last moved.
    reads: BTreeMap<(ChannelId, UserId), (u64, i64)>,
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

    /// `read` of the state of `channel`'s shard, unless the shard is down.
    fn read<T>(
        &self,
        channel: &ChannelId,
        read: impl FnOnce(&ShardState) -> T,
    ) -> Result<T, StorageError> {
        let shard = self.shard_of(channel);
        let shards = self.lock();
        if shards[shard].down {
            return Err(self.down(shard));
        }
        Ok(read(&shards[shard]))
    }
}

impl ShardState {
    /// The events of `channel`, by ID.
    fn channel<'a>(
        &'a self,
        channel: &ChannelId,
    ) -> impl DoubleEndedIterator<Item = &'a ChatMessage> {
        let from = (channel.clone(), MessageId::from_raw(0));
        let to = (channel.clone(), MessageId::from_raw(u64::MAX));
        self.messages.range(from..=to).map(|(_, m)| m)
    }

    /// `event` as a reader sees it: a post with `reader`'s reactions marked.
    fn for_reader(&self, event: &ChatMessage, reader: Option<&UserId>) -> ChatMessage {
        let mut event = event.clone();
        if let Some(reader) = reader {
            let (channel, target) = (event.channel.clone(), event.seq);
            mark_mine(&mut event, |emoji| {
                let key = ReactionKey {
                    channel: channel.clone(),
                    target,
                    emoji: emoji.to_owned(),
                    user: reader.clone(),
                };
                self.reactions.get(&key).is_some_and(|r| r.present)
            });
        }
        event
    }

    /// Stores the events of `messages` not stored yet, then applies the
    /// changes among them. Returns how many were new.
    fn insert(&mut self, messages: &[ChatMessage]) -> usize {
        let mut new = HashSet::new();
        for message in messages {
            let key = (message.channel.clone(), message.id);
            if let Entry::Vacant(slot) = self.messages.entry(key.clone()) {
                slot.insert(ChatMessage {
                    idempotency_key: None,
                    state: Default::default(),
                    ..message.clone()
                });
                if message.change == Change::Post {
                    let by_seq = (message.channel.clone(), message.seq);
                    let id = self.posts.entry(by_seq).or_insert(message.id);
                    *id = (*id).min(message.id);
                }
                new.insert(key);
            }
        }
        let inserted = new.len();
        // Posting moves the author's read position to the post.
        for post in messages.iter().filter(|m| m.change == Change::Post) {
            if new.contains(&(post.channel.clone(), post.id)) {
                self.move_read(&post.channel, &post.sender, post.seq);
            }
        }
        // Replies stored now count in their threads, once each.
        for reply in messages.iter().filter(|m| m.change == Change::Post) {
            let Some(root) = reply.reply_to else { continue };
            if !new.contains(&(reply.channel.clone(), reply.id)) {
                continue;
            }
            let root_post = self
                .posts
                .get(&(reply.channel.clone(), root))
                .and_then(|id| self.messages.get_mut(&(reply.channel.clone(), *id)));
            if let Some(root_post) = root_post {
                let state = &mut root_post.state;
                state.reply_count += 1;
                state.last_reply_at_ms = state.last_reply_at_ms.max(reply.created_at_ms);
            }
        }
        for change in new_changes(messages, |channel, id| new.remove(&(channel.clone(), id))) {
            let Some(target) = change.change.target() else {
                continue;
            };
            let Some(id) = self.posts.get(&(change.channel.clone(), target)) else {
                continue;
            };
            if let Some(post) = self.messages.get_mut(&(change.channel.clone(), *id)) {
                apply(change, post, &mut self.reactions);
            }
        }
        inserted
    }
}

impl ShardState {
    /// Moves `user`'s read position in `channel` up to `seq`; returns it.
    fn move_read(&mut self, channel: &ChannelId, user: &UserId, seq: u64) -> u64 {
        let now = chrono::Utc::now().timestamp_millis();
        let read = self
            .reads
            .entry((channel.clone(), user.clone()))
            .or_insert((seq, now));
        if seq > read.0 {
            *read = (seq, now);
        }
        read.0
    }

    /// `user`'s read state in `channel`, counted the slow way: the
    /// database's counters must agree with it.
    fn unread(&self, channel: &ChannelId, user: &UserId) -> Unread {
        let read_seq = self
            .reads
            .get(&(channel.clone(), user.clone()))
            .map_or(0, |r| r.0);
        let mut state = Unread::empty(channel.clone());
        state.read_seq = read_seq;
        for event in self.channel(channel) {
            state.last_seq = state.last_seq.max(event.seq);
            if event.change != Change::Post || event.seq <= read_seq || event.state.deleted {
                continue;
            }
            state.unread += 1;
            if event.mentions().contains(user) {
                state.mentions += 1;
            }
        }
        state
    }
}

/// Who reacted with what, in key order.
#[derive(Debug, Default)]
pub(super) struct Reactions(BTreeMap<ReactionKey, Register>);

impl ReactionSet for Reactions {
    fn get(&self, key: &ReactionKey) -> Option<Register> {
        self.0.get(key).copied()
    }

    fn set(&mut self, key: ReactionKey, register: Register) {
        self.0.insert(key, register);
    }

    fn of_post(&self, channel: &ChannelId, target: u64) -> Vec<(ReactionKey, Register)> {
        self.0
            .iter()
            .filter(|(k, _)| &k.channel == channel && k.target == target)
            .map(|(k, r)| (k.clone(), *r))
            .collect()
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
                Ok(state.insert(messages))
            }
        };
        self.attempted.notify_waiters();
        inserted
    }

    async fn page(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        match page {
            Page::Latest => {}
            Page::Before(id) => _ = column("before", id.get())?,
            Page::After(id) => _ = column("after", id.get())?,
        }
        self.read(channel, |state| {
            let posts = state
                .channel(channel)
                .filter(|m| m.change == Change::Post)
                .map(|m| state.for_reader(m, reader));
            match page {
                Page::Latest => page_of(posts.rev(), limit, true),
                Page::Before(id) => page_of(posts.rev().filter(|m| m.id < id), limit, true),
                Page::After(id) => page_of(posts.filter(|m| m.id > id), limit, false),
            }
        })
    }

    async fn thread(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        root: u64,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        column("root_seq", root)?;
        match page {
            Page::Latest => {}
            Page::Before(id) => _ = column("before", id.get())?,
            Page::After(id) => _ = column("after", id.get())?,
        }
        self.read(channel, |state| {
            let replies = state
                .channel(channel)
                .filter(|m| m.change == Change::Post && m.reply_to == Some(root))
                .map(|m| state.for_reader(m, reader));
            match page {
                Page::Latest => page_of(replies.rev(), limit, true),
                Page::Before(id) => page_of(replies.rev().filter(|m| m.id < id), limit, true),
                Page::After(id) => page_of(replies.filter(|m| m.id > id), limit, false),
            }
        })
    }

    async fn since(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        column("after_seq", after_seq)?;
        self.read(channel, |state| {
            let mut newer: Vec<_> = state
                .channel(channel)
                .filter(|m| m.seq > after_seq)
                .collect();
            newer.sort_by_key(|m| m.seq);
            let events = newer.into_iter().map(|m| state.for_reader(m, reader));
            page_of(events, limit, false)
        })
    }

    async fn get(
        &self,
        channel: &ChannelId,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StorageError> {
        column("seq", seq)?;
        self.read(channel, |state| {
            let id = state.posts.get(&(channel.clone(), seq))?;
            state.messages.get(&(channel.clone(), *id)).cloned()
        })
    }

    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, StorageError> {
        column("seq", seq)?;
        let shard = self.shard_of(channel);
        let mut shards = self.lock();
        if shards[shard].down {
            return Err(self.down(shard));
        }
        Ok(shards[shard].move_read(channel, user, seq))
    }

    async fn read_positions(&self, channel: &ChannelId) -> Result<Vec<ReadPosition>, StorageError> {
        self.read(channel, |state| {
            state
                .reads
                .iter()
                .filter(|((c, _), _)| c == channel)
                .map(|((_, user), (seq, at))| ReadPosition {
                    user: user.clone(),
                    seq: *seq,
                    updated_at_ms: *at,
                })
                .collect()
        })
    }

    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<Unread>, StorageError> {
        channels
            .iter()
            .map(|channel| self.read(channel, |state| state.unread(channel, user)))
            .collect()
    }

    async fn mentions(
        &self,
        user: &UserId,
        channels: &[ChannelId],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        if let Some(id) = before {
            column("before", id.get())?;
        }
        let mut found = Vec::new();
        for channel in channels {
            found.extend(self.read(channel, |state| {
                state
                    .channel(channel)
                    .filter(|m| m.change == Change::Post && before.is_none_or(|b| m.id < b))
                    .filter(|m| m.mentions().contains(user))
                    .map(|m| state.for_reader(m, Some(user)))
                    .collect::<Vec<_>>()
            })?);
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.id));
        let more = found.len() > limit;
        found.truncate(limit);
        Ok(HistoryPage {
            messages: found,
            more,
        })
    }
}
