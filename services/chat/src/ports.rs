//! The seams of the send path. Each is a small trait with a real adapter
//! (`adapters`) and an in-memory one (`memory`, for tests); the send path's
//! rules see only these traits, so they are tested without a network.
//!
//! Every method fails with [`ChatError`]; adapters put their client's error
//! in the matching variant, which is logged and never shown to clients.

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};

use crate::{ChatError, Moderation};

/// Hands out each channel's dense sequence numbers, from 1.
#[async_trait]
pub trait Sequencer: Send + Sync {
    /// The next sequence number of `channel`.
    async fn next(&self, channel: &ChannelId) -> Result<u64, ChatError>;

    /// Gives `seq` back after its message could not be made durable: the
    /// counter rolls back if `seq` is still the newest, otherwise `seq` is
    /// marked void so readers skip it instead of waiting for it.
    async fn release(&self, channel: &ChannelId, seq: u64) -> Result<Released, ChatError>;
}

/// What [`Sequencer::release`] did with a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// It was the newest: the next send reuses it.
    RolledBack,
    /// A later number was already handed out: it is void for good.
    Voided,
}

/// The durable message log. A message exists once it is appended.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// Appends `message`; `Ok` only once the log has it durably.
    /// `traceparent` (W3C) travels with the record for the consumers' spans.
    async fn append(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError>;
}

/// Live delivery to a channel's subscribers, plus the window of recent
/// messages that reconnecting clients fill gaps from.
#[async_trait]
pub trait FanOut: Send + Sync {
    /// Publishes `message` to the subscribers of its channel and adds it to
    /// the recent window, which keeps the newest messages by sequence.
    async fn publish(&self, message: &ChatMessage) -> Result<(), ChatError>;

    /// The channel's recent window, oldest first.
    async fn recent(&self, channel: &ChannelId) -> Result<Vec<ChatMessage>, ChatError>;
}

/// An idempotency key as the store sees it: scoped to the channel and the
/// sender, so two senders' keys never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The channel sent to.
    pub channel: ChannelId,
    /// The sender.
    pub sender: UserId,
    /// The client's key, already validated.
    pub key: String,
}

/// The outcome of [`IdempotencyStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and is now held by this send.
    New,
    /// The key was used by a send that succeeded; this is its message.
    Duplicate(ChatMessage),
    /// A send with this key is still in flight.
    InFlight,
}

/// How long a claim without a recorded message holds its key, so a sender
/// that crashed mid-send does not block retries forever.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// Remembers which idempotency keys were used, and for which message.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a send, for at most [`IN_FLIGHT_TTL`] unless a
    /// message is recorded under it.
    async fn claim(&self, key: &IdempotencyKey) -> Result<Claim, ChatError>;

    /// Records the message sent under a claimed `key`, for `ttl`.
    async fn record(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<(), ChatError>;

    /// Frees `key` after its send failed, so a retry can claim it.
    async fn forget(&self, key: &IdempotencyKey) -> Result<(), ChatError>;
}

/// Per-second send limits that hold across every chat instance.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one send by `sender` into `channel`; fails with
    /// [`ChatError::RateLimited`] when the sender (across channels) or the
    /// channel (across senders) is over its limit for the current second.
    async fn check(&self, channel: &ChannelId, sender: &UserId) -> Result<(), ChatError>;
}

/// Who may send where, and what a message may attach.
#[async_trait]
pub trait MemberDirectory: Send + Sync {
    /// The channel's moderation policy, if `user` may send to it; otherwise
    /// [`ChatError::ChannelNotFound`] or [`ChatError::NotMember`].
    async fn policy_for_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Moderation, ChatError>;

    /// Fails with [`ChatError::Attachment`] unless every ID names a ready
    /// upload of `channel`.
    async fn check_attachments(&self, channel: &ChannelId, ids: &[String])
    -> Result<(), ChatError>;
}

/// Mints message IDs: the Snowflake of this instance's worker ID lease.
pub trait IdSource: Send + Sync {
    /// A fresh ID, or `None` while this instance holds no worker ID.
    fn next_id(&self) -> Option<MessageId>;
}
