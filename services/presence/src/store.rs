//! Where presence state lives: the seam between the engine's rules and
//! Redis. [`RedisStore`](crate::RedisStore) is the real one,
//! [`MemoryStore`](crate::MemoryStore) the in-memory one; the suite in
//! `testsuite` holds both to the same contract.
//!
//! Times are explicit arguments, in milliseconds since the Unix epoch, so
//! the contract does not depend on any clock: "expired" always means
//! "expiry at or before the `now_ms` the caller passed".

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, UserId};

use crate::PresenceError;

/// A live session's heartbeat, as the store records it.
#[derive(Debug, Clone, Copy)]
pub struct SessionRefresh<'a> {
    /// Whose session.
    pub user: &'a UserId,
    /// The session ID, unique per connection.
    pub session: &'a str,
    /// The gateway node holding the session.
    pub node: &'a str,
    /// Every channel the session is in now.
    pub channels: &'a [ChannelId],
    /// How long the session lives without another heartbeat.
    pub ttl: Duration,
    /// The heartbeat's time; last-seen only ever moves forward.
    pub seen_ms: u64,
    /// Now. The session expires at `now_ms + ttl`.
    pub now_ms: u64,
    /// The user's other sessions that expired before this are removed.
    pub stale_before_ms: u64,
}

/// What a refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// The session's channels before this heartbeat, if it was known.
    pub previous: Option<Vec<ChannelId>>,
    /// Other sessions of the user that expired unnoticed. The store removed
    /// them, so exactly one caller sees each.
    pub lapsed: Vec<LapsedSession>,
}

/// A session that expired without being ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LapsedSession {
    /// The session ID.
    pub session: String,
    /// The channels it was in.
    pub channels: Vec<ChannelId>,
}

/// One session's membership of one channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelJoin<'a> {
    /// The channel.
    pub channel: &'a ChannelId,
    /// Whose session.
    pub user: &'a UserId,
    /// The session ID.
    pub session: &'a str,
    /// When the session expires without another heartbeat.
    pub expires_ms: u64,
    /// Now.
    pub now_ms: u64,
    /// Members whose presence expired before this are removed.
    pub stale_before_ms: u64,
}

/// What a join found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// The user had no live session in the channel before.
    pub first: bool,
    /// Users online in the channel now.
    pub online: u64,
    /// Members whose presence lapsed without an event; the store removed
    /// them.
    pub lapsed: Vec<UserId>,
}

/// What a leave found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Left {
    /// That was the user's last live session in the channel.
    pub last: bool,
    /// Users online in the channel now.
    pub online: u64,
}

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Users online in the channel now.
    pub online: u64,
    /// Users whose presence lapsed; they are gone from the channel.
    pub left: Vec<UserId>,
}

/// A user's status, as `GetPresence` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatus {
    /// The user.
    pub user: UserId,
    /// At least one session has not expired.
    pub online: bool,
    /// The last heartbeat or session end, ms since the epoch; 0 if never.
    pub last_seen_ms: u64,
}

/// Presence state: sessions with TTLs, users' last-seen times, and each
/// channel's online users. Each call is atomic on its own.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Records a live session and its channels, moves last-seen forward,
    /// and removes the user's other sessions that went stale.
    async fn refresh_session(
        &self,
        refresh: SessionRefresh<'_>,
    ) -> Result<Refreshed, PresenceError>;

    /// Removes a session and returns the channels its record named (none if
    /// it was already gone). `at_ms` > 0 moves last-seen forward.
    async fn end_session(
        &self,
        user: &UserId,
        session: &str,
        at_ms: u64,
    ) -> Result<Vec<ChannelId>, PresenceError>;

    /// Marks a session online in a channel until `expires_ms`, and removes
    /// members that went stale.
    async fn join_channel(&self, join: ChannelJoin<'_>) -> Result<Joined, PresenceError>;

    /// Takes a session out of a channel; the user leaves it when no other
    /// session of theirs there is live at `now_ms`.
    async fn leave_channel(
        &self,
        channel: &ChannelId,
        user: &UserId,
        session: &str,
        now_ms: u64,
    ) -> Result<Left, PresenceError>;

    /// Removes a channel's members whose presence expired before
    /// `cutoff_ms`.
    async fn sweep_channel(
        &self,
        channel: &ChannelId,
        cutoff_ms: u64,
    ) -> Result<Swept, PresenceError>;

    /// The status of each of `users` at `now_ms`, in order.
    async fn user_status(
        &self,
        users: &[UserId],
        now_ms: u64,
    ) -> Result<Vec<UserStatus>, PresenceError>;

    /// Up to `limit` users online in a channel at `now_ms`, in no
    /// particular order.
    async fn online_users(
        &self,
        channel: &ChannelId,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<UserId>, PresenceError>;
}
