//! What a session needs from the world, as small traits. The real adapters
//! (gRPC clients, Redis) live in `upstream/` and `ws/hub.rs`; in-memory ones
//! in `memory.rs` let the session rules be unit-tested without a network.

use std::collections::HashSet;

use async_trait::async_trait;
use chatmesh_error::ClientError;
use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};
use tokio_util::sync::CancellationToken;

/// Whether a user may read and write a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A member.
    Member,
    /// The channel exists; the user is not in it.
    NotMember,
    /// No such channel.
    UnknownChannel,
}

/// A message a client asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendCommand {
    /// Target channel.
    pub(crate) channel: ChannelId,
    /// The session's user.
    pub(crate) sender: UserId,
    /// Text.
    pub(crate) body: String,
    /// Media IDs.
    pub(crate) attachments: Vec<String>,
    /// The client's key for idempotent retries.
    pub(crate) idempotency_key: Option<String>,
    /// The `seq` of the message it replies to.
    pub(crate) reply_to: Option<u64>,
}

/// What the chat service answered to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendReceipt {
    /// The stored message's ID.
    pub(crate) message_id: MessageId,
    /// Its place in the channel.
    pub(crate) seq: u64,
    /// Moderation masked part of it.
    pub(crate) masked: bool,
    /// An earlier send with the same key was answered again.
    pub(crate) duplicate: bool,
}

/// What a client asked to do to a posted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangeRequest {
    /// Replace its text (its author only).
    Edit {
        /// The new text.
        body: String,
    },
    /// Delete it (its author or a channel owner).
    Delete,
    /// Add the user's `emoji` reaction, or take it back.
    React {
        /// The reaction.
        emoji: String,
        /// Take it back instead of adding it.
        remove: bool,
    },
}

/// A change a client asked to make to message `target` of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeCommand {
    /// The channel of the message.
    pub(crate) channel: ChannelId,
    /// The session's (or HTTP caller's) user.
    pub(crate) sender: UserId,
    /// The `seq` of the message changed.
    pub(crate) target: u64,
    /// What to do to it.
    pub(crate) request: ChangeRequest,
    /// The client's key for idempotent retries.
    pub(crate) idempotency_key: Option<String>,
}

/// What the chat service answered to a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeReceipt {
    /// The change as a channel event, with its own ID and `seq`.
    pub(crate) event: ChatMessage,
    /// Moderation masked part of an edit's text.
    pub(crate) masked: bool,
    /// An earlier change with the same key was answered again.
    pub(crate) duplicate: bool,
}

/// The chat service, as the gateway calls it.
#[async_trait]
pub(crate) trait ChatApi: Send + Sync {
    /// Whether `user` may subscribe to `channel`.
    async fn access(&self, channel: &ChannelId, user: &UserId) -> Result<Access, ClientError>;
    /// Sends a message; on success it is durable.
    async fn send(&self, command: SendCommand) -> Result<SendReceipt, ClientError>;
    /// Edits, deletes or reacts to a message; on success the change is a
    /// durable channel event.
    async fn change(&self, command: ChangeCommand) -> Result<ChangeReceipt, ClientError>;
}

/// A user's read state in one channel, as storage keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChannelUnread {
    /// The channel.
    pub(crate) channel_id: String,
    /// The user's read position; 0 before they read anything.
    pub(crate) read_seq: u64,
    /// The `seq` of the channel's newest stored event.
    pub(crate) last_seq: u64,
    /// Posts after the read position that are not deleted.
    pub(crate) unread: u64,
    /// Those of them that mention the user.
    pub(crate) mentions: u64,
}

/// Read positions and unread counts, kept by the storage service.
#[async_trait]
pub(crate) trait ReadState: Send + Sync {
    /// Moves `user`'s read position in `channel` forward to `seq`;
    /// answers the position held after the call.
    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, ClientError>;
    /// `user`'s read state in `channels` (every channel of theirs when
    /// empty), by channel ID.
    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<ChannelUnread>, ClientError>;
}

/// A user started or stopped typing in a channel. It travels between
/// gateway nodes only: never stored, never through chat or Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypingEvent {
    /// Where they type.
    pub(crate) channel: ChannelId,
    /// Who types.
    pub(crate) user: UserId,
    /// They stopped; otherwise they are typing.
    pub(crate) stop: bool,
}

/// A member's read position in a channel moved: a read receipt for the
/// channel's sessions on every node. Never stored by the feed (storage
/// keeps the position); it only tells the sessions watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadEvent {
    /// The channel read.
    pub(crate) channel: ChannelId,
    /// Who read it.
    pub(crate) user: UserId,
    /// Their position now.
    pub(crate) seq: u64,
}

/// The Redis side of fan-out: the node's subscriptions and the channels'
/// counters. Messages come back through [`crate::ws::hub::Hub::accept`],
/// typing events through [`crate::ws::hub::Hub::on_typing`].
#[async_trait]
pub(crate) trait Feed: Send + Sync {
    /// Starts receiving `channel`'s messages, presence and typing events.
    async fn subscribe(&self, channel: &ChannelId) -> Result<(), FeedError>;
    /// Stops receiving them.
    async fn unsubscribe(&self, channel: &ChannelId) -> Result<(), FeedError>;
    /// The channel's latest sequence number (0 before the first message).
    async fn current_seq(&self, channel: &ChannelId) -> Result<u64, FeedError>;
    /// Tells every node subscribed to `event.channel`, this one included,
    /// that its user is typing or stopped.
    async fn publish_typing(&self, event: &TypingEvent) -> Result<(), FeedError>;
    /// Tells every node subscribed to `event.channel`, this one included,
    /// that a member's read position moved.
    async fn publish_read(&self, event: &ReadEvent) -> Result<(), FeedError>;
}

/// A fan-out failure. The text is for logs; clients get `unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("fan-out unavailable: {0}")]
pub(crate) struct FeedError(pub(crate) String);

/// Where missed messages are found for a reconnecting client.
#[async_trait]
pub(crate) trait GapSource: Send + Sync {
    /// The recent window's messages with `after < seq <= upto`, and the
    /// numbers in that range that were never made durable.
    async fn recent(
        &self,
        channel: &ChannelId,
        after: u64,
        upto: u64,
    ) -> Result<(Vec<ChatMessage>, HashSet<u64>), ClientError>;
    /// Stored messages after `after`, oldest first, and whether more follow.
    async fn stored_since(
        &self,
        channel: &ChannelId,
        user: &UserId,
        after: u64,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError>;
}

/// Session liveness: what presence learns from this node.
pub(crate) trait Liveness: Send + Sync {
    /// A new session of `user`: its presence ID and a token that fires when
    /// its presence expires.
    fn open(&self, user: &UserId) -> (String, CancellationToken);
    /// The session is alive, in `channels`.
    fn alive(&self, id: &str, channels: Vec<String>);
    /// The session ended.
    fn close(&self, id: &str, channels: Vec<String>);
}
