//! Join and leave announcements, and the seam they leave the engine by.

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, UserId};

use crate::PresenceError;

/// Whether a user came online in a channel or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The user's first live session in the channel.
    Join,
    /// The user's last live session in the channel ended or expired.
    Leave,
}

impl EventKind {
    /// `join` or `leave`, for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// A user joined or left a channel's online set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// Join or leave.
    pub kind: EventKind,
    /// The channel.
    pub channel: ChannelId,
    /// The user.
    pub user: UserId,
    /// When the engine noticed, ms since the epoch.
    pub at_ms: u64,
}

/// Delivers events to the channel's subscribers. Events are advisory (the
/// online set is the source of truth), so the engine logs a failed publish
/// and does not retry it.
#[async_trait]
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes `event` on its channel's presence stream.
    async fn publish(&self, event: &PresenceEvent) -> Result<(), PresenceError>;
}
