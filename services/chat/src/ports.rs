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

/// Hands out each channel's sequence numbers: dense within an epoch, from
/// 1, never repeated and never going backwards (see
/// [`chatmesh_ids::seq`]). A counter that may have lost numbers continues
/// in a new epoch instead of handing any of them out again.
#[async_trait]
pub trait Sequencer: Send + Sync {
    /// The next sequence number of `channel`.
    async fn next(&self, channel: &ChannelId) -> Result<u64, ChatError>;

    /// Marks `seq` void after its message could not be made durable, so
    /// readers skip it instead of waiting for it. A number is never handed
    /// out twice, even when the failed append may yet have landed.
    async fn release(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError>;

    /// Gives back `seq`, which no message ever carried: the counter moves
    /// back if `seq` is still the newest, so the next send takes it and
    /// readers see no hole; otherwise it is voided like a released one.
    async fn give_back(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError>;
}

/// The durable record of each channel's epochs, consulted only when a
/// channel's live counter has to start a new one.
#[async_trait]
pub trait EpochSource: Send + Sync {
    /// A fresh epoch of `channel`, above every epoch handed out before:
    /// 0 the first time.
    async fn next_epoch(&self, channel: &ChannelId) -> Result<u64, ChatError>;
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
    /// `traceparent` (W3C) travels with the published copy only, for the
    /// gateways' delivery spans; the window keeps the message alone.
    async fn publish(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError>;

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
    /// The key is new; it now holds this send's message.
    New,
    /// The key's send was acknowledged; this is its message.
    Duplicate(ChatMessage),
    /// The key holds a message whose outcome is unknown: its append failed,
    /// or the instance sending it is still at it or died. The retry sends
    /// this very message again (same ID, same number): the log may end up
    /// with it twice, and storage and the gateways keep it once.
    Resume(ChatMessage),
}

impl Claim {
    /// The admission of `message`, the message this claim was made for.
    pub fn admitted(self, message: ChatMessage) -> Admitted {
        match self {
            Claim::New => Admitted::New(message),
            Claim::Duplicate(original) => Admitted::Duplicate(original),
            Claim::Resume(held) => Admitted::Resume(held),
        }
    }
}

/// Remembers which idempotency keys were used, and for which message.
///
/// A key holds its message from before the append, not only after it, so a
/// retry after any failure (the log's, or this instance's death mid-send)
/// repeats the same message instead of minting a second one.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `message`, held for `ttl`, unless the key already
    /// holds a message, which is returned instead.
    async fn claim(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<Claim, ChatError>;

    /// Marks the message under `key` acknowledged, for `ttl`.
    async fn record(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<(), ChatError>;
}

/// Per-second send limits that hold across every chat instance.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one send by `sender`; fails with [`ChatError::RateLimited`]
    /// (scope `user`) when the sender, across channels, is over its limit
    /// for the current second.
    async fn check_user(&self, sender: &UserId) -> Result<(), ChatError>;

    /// Counts one send into `channel`; fails with
    /// [`ChatError::RateLimited`] (scope `channel`) when the channel, across
    /// senders, is over its limit for the current second.
    async fn check_channel(&self, channel: &ChannelId) -> Result<(), ChatError>;
}

/// The outcome of [`Admission::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// The message, numbered; if keyed, its key now holds it.
    New(ChatMessage),
    /// The key's send was acknowledged; this is its message.
    Duplicate(ChatMessage),
    /// The key holds a message whose outcome is unknown, which the retry
    /// sends again (see [`Claim::Resume`]).
    Resume(ChatMessage),
}

/// Admits a message into its channel: counts it against the channel's
/// per-second limit, and unless its idempotency key already holds a
/// message, numbers it and holds it under the key.
///
/// These are one step because all three live with the channel: the Redis
/// adapter runs them as one script in the channel's slot, one round trip
/// per send instead of three. [`crate::Stepwise`] composes them from
/// a [`RateLimiter`], a [`Sequencer`] and an [`IdempotencyStore`], with
/// the same outcomes.
#[async_trait]
pub trait Admission: Send + Sync {
    /// Admits `draft`, whose `seq` is ignored. A number taken is never
    /// left unused: it is either the admitted message's or given back.
    async fn admit(
        &self,
        draft: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
    ) -> Result<Admitted, ChatError>;
}

/// Settles a durable message before the sender's ack: marks its
/// idempotency key, if it has one, acknowledged, and fans it out (see
/// [`FanOut::publish`]).
///
/// These are one step because both live with the channel: the Redis
/// adapter sends them as one pipeline in the channel's slot, one round trip
/// instead of two side by side. [`crate::StepwiseSettlement`] composes them
/// from an [`IdempotencyStore`] and a [`FanOut`], with the same outcomes.
#[async_trait]
pub trait Settlement: Send + Sync {
    /// Settles `message`, whose key (if any) holds it for `ttl` from now
    /// on. `traceparent` (W3C) travels with the published copy.
    async fn settle(
        &self,
        message: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
        traceparent: Option<&str>,
    ) -> Result<(), Unsettled>;
}

/// What [`Settlement::settle`] left undone. Neither loses the message: a
/// key not marked keeps holding it, so a retry sends it again and storage
/// and the gateways keep it once; a message not fanned out reaches clients
/// through gap filling.
#[derive(Debug)]
pub struct Unsettled {
    /// Whether the key, if there was one, is marked acknowledged.
    pub recorded: bool,
    /// Whether the message was fanned out.
    pub published: bool,
    /// The first failure.
    pub error: ChatError,
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

    /// Whether `user` is an owner of `channel`. Asked only when a member
    /// deletes someone else's message.
    async fn is_owner(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError>;

    /// Phrases `channel` allows on top of the service-wide allow list.
    /// Asked only for messages the filter has hits in.
    async fn moderation_allow(&self, _channel: &ChannelId) -> Result<Vec<String>, ChatError> {
        Ok(Vec::new())
    }
}

/// Stored posts, read to check a change against the message it names.
#[async_trait]
pub trait PostLookup: Send + Sync {
    /// The post numbered `seq` in `channel`, in its current state (author,
    /// whether deleted), or `None` when no post with that number is stored.
    async fn post(&self, channel: &ChannelId, seq: u64) -> Result<Option<ChatMessage>, ChatError>;
}

/// Mints message IDs: the Snowflake of this instance's worker ID lease.
pub trait IdSource: Send + Sync {
    /// A fresh ID, or `None` while this instance holds no worker ID.
    fn next_id(&self) -> Option<MessageId>;
}
