//! The message store: sharded, idempotent writes of chat messages and the
//! history reads served to clients. [`PostgresStore`] is the real one; an
//! in-memory one stands in for it in tests, and both pass the same suite
//! (`crate::testsuite`).

mod apply;
mod changes;
#[cfg(any(test, feature = "testsuite"))]
mod memory;
mod postgres;
mod reads;
mod rows;
mod schema;

use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};

use crate::error::StorageError;

#[cfg(any(test, feature = "testsuite"))]
pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Which page of a channel's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Messages older than this ID.
    Before(MessageId),
    /// Messages newer than this ID.
    After(MessageId),
}

/// Events of one channel, oldest first, and whether more exist beyond
/// them in the direction read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The events, oldest first: posts in their current state and, where
    /// the read lists them, changes as they were sent.
    pub messages: Vec<ChatMessage>,
    /// True when the limit cut the read short.
    pub more: bool,
}

/// Sharded storage of channel events: posts, and the changes (edits,
/// deletes, reactions) that apply to them.
///
/// Writes are idempotent by (channel, message ID): the consumer replays a
/// batch after a crash or a failed commit, and a replayed event must not
/// be stored, or applied, twice. Stored events do not keep their
/// idempotency key, and a post is stored in its initial state whatever
/// state it carries.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// How many shards there are; shards are numbered from 0.
    fn shard_count(&self) -> usize;

    /// The stable name of `shard`, for logs and metrics.
    fn shard_name(&self, shard: usize) -> &str;

    /// The shard holding `channel`.
    fn shard_of(&self, channel: &ChannelId) -> usize;

    /// Stores `messages`, all of channels held by `shard`, in one
    /// transaction, skipping any already stored. In the same transaction,
    /// each change stored by this call (never one stored before) is
    /// applied to its target post, in sequence order per channel. Returns
    /// how many events were new.
    async fn insert(&self, shard: usize, messages: &[ChatMessage]) -> Result<usize, StorageError>;

    /// Up to `limit` posts of `channel` around `page`, ordered by ID, in
    /// their current state; `me` marks `reader`'s reactions. Changes are
    /// not listed: their effect is in the posts' state.
    async fn page(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError>;

    /// Up to `limit` replies in the thread of post `root` of `channel`
    /// around `page`, ordered by ID, each in its current state for
    /// `reader`, like [`MessageStore::page`].
    async fn thread(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        root: u64,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError>;

    /// Up to `limit` events of `channel` with a sequence number above
    /// `after_seq`, ordered by sequence number; `more` when there are
    /// others. Posts come in their current state (`me` for `reader`),
    /// changes as they were sent.
    async fn since(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError>;

    /// The post of `channel` numbered `seq`, in its current state; `None`
    /// when nothing, or a change, has that number.
    async fn get(&self, channel: &ChannelId, seq: u64)
    -> Result<Option<ChatMessage>, StorageError>;

    /// Moves `user`'s read position in `channel` up to `seq`; a position
    /// never moves back. Returns the position after the call.
    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, StorageError>;

    /// Every read position kept for `channel`, by user.
    async fn read_positions(&self, channel: &ChannelId) -> Result<Vec<ReadPosition>, StorageError>;

    /// `user`'s read state in each of `channels`, in their order: one
    /// query per shard holding any of them, reading counters and index
    /// entries, never the channels' messages.
    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<Unread>, StorageError>;

    /// Up to `limit` posts of `channels` that mention `user`, newest
    /// first, older than `before` when given, each in its current state
    /// for `user`; `more` when there are others.
    async fn mentions(
        &self,
        user: &UserId,
        channels: &[ChannelId],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, StorageError>;
}

/// A member's read position in a channel: a read receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPosition {
    /// The member.
    pub user: UserId,
    /// The highest sequence number they have read.
    pub seq: u64,
    /// When it last moved, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A member's read state in one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// The channel.
    pub channel: ChannelId,
    /// The member's read position; 0 before they read anything.
    pub read_seq: u64,
    /// The sequence number of the channel's newest stored event.
    pub last_seq: u64,
    /// Stored posts after the read position that are not deleted.
    pub unread: u64,
    /// Those of them that mention the member.
    pub mentions: u64,
}

impl Unread {
    /// The state of a channel with nothing stored and nothing read.
    pub fn empty(channel: ChannelId) -> Self {
        Self {
            channel,
            read_seq: 0,
            last_seq: 0,
            unread: 0,
            mentions: 0,
        }
    }
}

#[async_trait]
impl<T: MessageStore + ?Sized> MessageStore for Arc<T> {
    fn shard_count(&self) -> usize {
        (**self).shard_count()
    }

    fn shard_name(&self, shard: usize) -> &str {
        (**self).shard_name(shard)
    }

    fn shard_of(&self, channel: &ChannelId) -> usize {
        (**self).shard_of(channel)
    }

    async fn insert(&self, shard: usize, messages: &[ChatMessage]) -> Result<usize, StorageError> {
        (**self).insert(shard, messages).await
    }

    async fn page(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        (**self).page(channel, reader, page, limit).await
    }

    async fn thread(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        root: u64,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        (**self).thread(channel, reader, root, page, limit).await
    }

    async fn since(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        (**self).since(channel, reader, after_seq, limit).await
    }

    async fn get(
        &self,
        channel: &ChannelId,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StorageError> {
        (**self).get(channel, seq).await
    }

    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, StorageError> {
        (**self).mark_read(channel, user, seq).await
    }

    async fn read_positions(&self, channel: &ChannelId) -> Result<Vec<ReadPosition>, StorageError> {
        (**self).read_positions(channel).await
    }

    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<Unread>, StorageError> {
        (**self).unread(user, channels).await
    }

    async fn mentions(
        &self,
        user: &UserId,
        channels: &[ChannelId],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        (**self).mentions(user, channels, before, limit).await
    }
}

/// `value` as a signed 64-bit column. Snowflake IDs and sequence numbers
/// keep their top bit clear, so a larger value is not one of them.
pub(crate) fn column(field: &'static str, value: u64) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::InvalidArgument {
        field,
        reason: "out of range",
    })
}

/// Checks that `message` fits the store: ID, sequence number and a
/// change's target in a signed 64-bit column, and a send time after the Unix epoch that a timestamp can
/// hold. A message that does not fit could never be written, so the
/// consumer skips it rather than retry it forever.
pub fn check_storable(message: &ChatMessage) -> Result<(), StorageError> {
    column("message_id", message.id.get())?;
    column("seq", message.seq)?;
    if let Some(root) = message.reply_to {
        column("reply_to", root)?;
    }
    if let Some(target) = message.change.target() {
        column("target_seq", target)?;
    }
    if message.created_at_ms < 0
        || chrono::DateTime::from_timestamp_millis(message.created_at_ms).is_none()
    {
        return Err(StorageError::InvalidArgument {
            field: "created_at_ms",
            reason: "not a time a message can have been sent",
        });
    }
    Ok(())
}
