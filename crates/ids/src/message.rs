//! The chat message as the domain code sees it. The Protobuf `Message` is
//! its wire form; conversions live in `chatmesh-proto`, at the edge.

use crate::{ChannelId, MessageId, UserId};

/// A message with its ID and place in its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Snowflake ID; sorts by time.
    pub id: MessageId,
    /// The channel it was sent to.
    pub channel: ChannelId,
    /// Who sent it.
    pub sender: UserId,
    /// Dense per-channel sequence number, from 1.
    pub seq: u64,
    /// The text, after moderation.
    pub body: String,
    /// Media IDs of ready uploads.
    pub attachments: Vec<String>,
    /// Milliseconds since the Unix epoch, from the Snowflake ID.
    pub created_at_ms: i64,
    /// The sender's key for idempotent retries, if any.
    pub idempotency_key: Option<String>,
}
