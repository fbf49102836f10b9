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
    /// What this event does to its channel: a new message, or a change to
    /// an earlier one.
    pub change: Change,
    /// A post's thread: the sequence number of the post it replies to,
    /// always a thread's first post (a reply to a reply joins the first
    /// post's thread).
    pub reply_to: Option<u64>,
    /// A posted message's current state, as history serves it; the
    /// default on live events and on everything but posts.
    pub state: MessageState,
}

impl ChatMessage {
    /// The users the text mentions (see [`crate::mentions`]): those of a
    /// post or of an edit's new text, never the sender; none for other
    /// changes or a deleted post.
    pub fn mentions(&self) -> Vec<UserId> {
        match self.change {
            Change::Post | Change::Edit { .. } if !self.state.deleted => {
                crate::mentions(&self.body, Some(&self.sender))
            }
            _ => Vec::new(),
        }
    }
}

/// What a channel event does. Every event, a post or a change, takes the
/// channel's next sequence number, so replay and gap filling carry changes
/// exactly as they carry messages, in order and once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change {
    /// A new message.
    #[default]
    Post,
    /// The author replaces the text of message `target` with the body.
    Edit {
        /// The sequence number of the message edited.
        target: u64,
    },
    /// The author or a channel owner deletes message `target`; its number
    /// stays, as a tombstone.
    Delete {
        /// The sequence number of the message deleted.
        target: u64,
    },
    /// The sender adds `emoji` to message `target`.
    React {
        /// The sequence number of the message reacted to.
        target: u64,
        /// The reaction.
        emoji: String,
    },
    /// The sender takes back their `emoji` on message `target`.
    Unreact {
        /// The sequence number of the message.
        target: u64,
        /// The reaction taken back.
        emoji: String,
    },
}

impl Change {
    /// The message this change applies to; `None` for a post.
    pub fn target(&self) -> Option<u64> {
        match self {
            Self::Post => None,
            Self::Edit { target }
            | Self::Delete { target }
            | Self::React { target, .. }
            | Self::Unreact { target, .. } => Some(*target),
        }
    }

    /// The emoji of a reaction or its removal.
    pub fn emoji(&self) -> Option<&str> {
        match self {
            Self::React { emoji, .. } | Self::Unreact { emoji, .. } => Some(emoji),
            _ => None,
        }
    }
}

/// A posted message's state after the changes applied to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    /// How many times the text was edited.
    pub edit_count: u32,
    /// When it was last edited (milliseconds since the Unix epoch), or 0.
    pub edited_at_ms: i64,
    /// The sequence number of the edit whose text it shows, or 0. Kept by
    /// storage so an edit that arrives after a later one changes no text.
    pub edited_seq: u64,
    /// Deleted: the body and attachments are gone, the number stays.
    pub deleted: bool,
    /// Reactions, by emoji in first-use order.
    pub reactions: Vec<Reaction>,
    /// The sequence number of the last change applied; a change at or
    /// below it is already part of this state.
    pub version: u64,
    /// How many replies were posted in its thread (deleted ones too).
    pub reply_count: u32,
    /// When the last of them was posted (milliseconds since the Unix
    /// epoch), or 0.
    pub last_reply_at_ms: i64,
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// How many members reacted with it.
    pub count: u32,
    /// Whether the member the message was read for is among them.
    pub me: bool,
}
