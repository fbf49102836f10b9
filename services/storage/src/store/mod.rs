//! The message store: sharded, idempotent writes of chat messages and the
//! history reads served to clients. [`PostgresStore`] is the real one; an
//! in-memory one stands in for it in tests, and both pass the same suite
//! (`crate::testsuite`).

#[cfg(any(test, feature = "testsuite"))]
mod memory;
mod postgres;
mod rows;
mod schema;

use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, MessageId};

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

/// Messages of one channel, oldest first, and whether more exist beyond
/// them in the direction read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// True when the limit cut the read short.
    pub more: bool,
}

/// Sharded storage of chat messages.
///
/// Writes are idempotent by (channel, message ID): the consumer replays a
/// batch after a crash or a failed commit, and a replayed message must not
/// be stored twice. Stored messages do not keep their idempotency key.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// How many shards there are; shards are numbered from 0.
    fn shard_count(&self) -> usize;

    /// The stable name of `shard`, for logs and metrics.
    fn shard_name(&self, shard: usize) -> &str;

    /// The shard holding `channel`.
    fn shard_of(&self, channel: &ChannelId) -> usize;

    /// Stores `messages`, all of channels held by `shard`, in one
    /// transaction, skipping any already stored. Returns how many were new.
    async fn insert(&self, shard: usize, messages: &[ChatMessage]) -> Result<usize, StorageError>;

    /// Up to `limit` messages of `channel` around `page`, ordered by ID.
    async fn page(
        &self,
        channel: &ChannelId,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError>;

    /// Up to `limit` messages of `channel` with a sequence number above
    /// `after_seq`, ordered by sequence number; `more` when there are others.
    async fn since(
        &self,
        channel: &ChannelId,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError>;
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
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        (**self).page(channel, page, limit).await
    }

    async fn since(
        &self,
        channel: &ChannelId,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        (**self).since(channel, after_seq, limit).await
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

/// Checks that `message` fits the store: ID and sequence number in a signed
/// 64-bit column, and a send time after the Unix epoch that a timestamp can
/// hold. A message that does not fit could never be written, so the
/// consumer skips it rather than retry it forever.
pub fn check_storable(message: &ChatMessage) -> Result<(), StorageError> {
    column("message_id", message.id.get())?;
    column("seq", message.seq)?;
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
