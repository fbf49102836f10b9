//! In-memory presence store and event publisher, for tests that need the
//! engine's rules without a Redis Cluster. The store mirrors the Lua
//! scripts of `scripts` step for step, and the shared suite in `testsuite`
//! holds it to the same contract as [`RedisStore`](crate::RedisStore).
//!
//! Redis also keeps time of its own: a session's TTL key expires on the
//! server's clock, and the server then publishes its name on
//! `__keyevent@0__:expired`. [`MemoryStore`] models that with an injected
//! [`Clock`]; [`MemoryStore::take_expired`] returns what Redis would have
//! published. (The longer TTLs Redis puts on session hashes and channel
//! sets only reclaim memory, so they are not modelled.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, Clock, UserId};
use chatmesh_redis::keys;
use tokio::sync::{broadcast, watch};

use crate::PresenceError;
use crate::events::{EventPublisher, PresenceEvent};
use crate::store::{
    ChannelJoin, Joined, LapsedSession, Left, PresenceStore, Refreshed, SessionRefresh, Swept,
    UserStatus,
};

/// Most lapsed members one join removes, as in `JOIN_CHANNEL`.
const JOIN_STALE_LIMIT: usize = 100;
/// Most lapsed members one sweep removes, as in `SWEEP_CHANNEL`.
const SWEEP_STALE_LIMIT: usize = 500;

/// Wall-clock milliseconds that follow tokio's clock, so a test that calls
/// `tokio::time::pause` moves timers and "now" together with
/// `tokio::time::advance`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `base_ms` now and runs with tokio's clock.
    pub fn new(base_ms: u64) -> Self {
        Self {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A session's record in its user's session hash.
#[derive(Debug, Clone)]
struct Record {
    expires_ms: u64,
    channels: Vec<ChannelId>,
}

#[derive(Debug, Default)]
struct State {
    /// Session TTL keys: when each expires, on the store's own clock.
    session_keys: HashMap<(UserId, String), u64>,
    /// Each user's sessions.
    sessions: HashMap<UserId, HashMap<String, Record>>,
    /// Last heartbeat or session end per user.
    last_seen: HashMap<UserId, u64>,
    /// Each channel's online set: user → expiry of their longest session.
    online: HashMap<ChannelId, HashMap<UserId, u64>>,
    /// Each user's sessions in a channel: session → expiry.
    online_sessions: HashMap<(ChannelId, UserId), HashMap<String, u64>>,
}

impl State {
    /// Removes and returns up to `limit` members of `channel` whose expiry
    /// is before `cutoff`, lowest expiry first, as `ZRANGEBYSCORE` orders.
    fn take_stale(&mut self, channel: &ChannelId, cutoff: u64, limit: usize) -> Vec<UserId> {
        let Some(members) = self.online.get_mut(channel) else {
            return Vec::new();
        };
        let mut stale: Vec<(u64, UserId)> = members
            .iter()
            .filter(|(_, expiry)| **expiry < cutoff)
            .map(|(user, expiry)| (*expiry, user.clone()))
            .collect();
        stale.sort_unstable();
        stale.truncate(limit);
        for (_, user) in &stale {
            members.remove(user);
        }
        stale.into_iter().map(|(_, user)| user).collect()
    }

    fn online_count(&self, channel: &ChannelId) -> u64 {
        self.online.get(channel).map_or(0, |m| m.len() as u64)
    }

    fn see(&mut self, user: &UserId, at_ms: u64) {
        let seen = self.last_seen.entry(user.clone()).or_default();
        *seen = (*seen).max(at_ms);
    }
}

/// The presence store in memory. Cheap to share behind an `Arc`.
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    // A std mutex: every call is a few map operations and never awaits.
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store whose session keys expire on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the session's TTL key still exists, as a gateway's `EXISTS`
    /// sees it.
    pub fn session_alive(&self, user: &UserId, session: &str) -> bool {
        let now = self.clock.now_ms();
        self.state()
            .session_keys
            .get(&(user.clone(), session.to_owned()))
            .is_some_and(|expires| *expires > now)
    }

    /// Removes the session keys whose TTL has run out and returns their
    /// names, as Redis publishes them on `__keyevent@0__:expired`.
    pub fn take_expired(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut state = self.state();
        let mut expired: Vec<String> = Vec::new();
        state.session_keys.retain(|(user, session), expires| {
            let alive = *expires > now;
            if !alive {
                expired.push(keys::session(user.as_str(), session));
            }
            alive
        });
        expired.sort_unstable();
        expired
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn refresh_session(
        &self,
        refresh: SessionRefresh<'_>,
    ) -> Result<Refreshed, PresenceError> {
        let ttl_ms = u64::try_from(refresh.ttl.as_millis()).unwrap_or(u64::MAX);
        let key_expires = self.clock.now_ms().saturating_add(ttl_ms);
        let mut state = self.state();
        state.session_keys.insert(
            (refresh.user.clone(), refresh.session.to_owned()),
            key_expires,
        );
        let sessions = state.sessions.entry(refresh.user.clone()).or_default();
        let previous = sessions.insert(
            refresh.session.to_owned(),
            Record {
                expires_ms: refresh.now_ms.saturating_add(ttl_ms),
                channels: refresh.channels.to_vec(),
            },
        );
        let mut lapsed: Vec<LapsedSession> = sessions
            .iter()
            .filter(|(id, r)| *id != refresh.session && r.expires_ms < refresh.stale_before_ms)
            .map(|(id, r)| LapsedSession {
                session: id.clone(),
                channels: r.channels.clone(),
            })
            .collect();
        for l in &lapsed {
            sessions.remove(&l.session);
        }
        lapsed.sort_unstable_by(|a, b| a.session.cmp(&b.session));
        state.see(refresh.user, refresh.seen_ms);
        Ok(Refreshed {
            previous: previous.map(|r| r.channels),
            lapsed,
        })
    }

    async fn end_session(
        &self,
        user: &UserId,
        session: &str,
        at_ms: u64,
    ) -> Result<Vec<ChannelId>, PresenceError> {
        let mut state = self.state();
        state
            .session_keys
            .remove(&(user.clone(), session.to_owned()));
        let previous = state
            .sessions
            .get_mut(user)
            .and_then(|sessions| sessions.remove(session));
        if at_ms > 0 {
            state.see(user, at_ms);
        }
        Ok(previous.map(|r| r.channels).unwrap_or_default())
    }

    async fn join_channel(&self, join: ChannelJoin<'_>) -> Result<Joined, PresenceError> {
        let mut state = self.state();
        state
            .online_sessions
            .entry((join.channel.clone(), join.user.clone()))
            .or_default()
            .insert(join.session.to_owned(), join.expires_ms);
        let members = state.online.entry(join.channel.clone()).or_default();
        let old = members.get(join.user).copied();
        let first = old.is_none_or(|old| old <= join.now_ms);
        if old.is_none_or(|old| old < join.expires_ms) {
            members.insert(join.user.clone(), join.expires_ms);
        }
        let lapsed = state.take_stale(join.channel, join.stale_before_ms, JOIN_STALE_LIMIT);
        Ok(Joined {
            first,
            online: state.online_count(join.channel),
            lapsed,
        })
    }

    async fn leave_channel(
        &self,
        channel: &ChannelId,
        user: &UserId,
        session: &str,
        now_ms: u64,
    ) -> Result<Left, PresenceError> {
        let mut state = self.state();
        let key = (channel.clone(), user.clone());
        let best = state.online_sessions.get_mut(&key).and_then(|sessions| {
            sessions.remove(session);
            sessions.values().copied().filter(|e| *e > now_ms).max()
        });
        if let Some(best) = best {
            state
                .online
                .entry(channel.clone())
                .or_default()
                .insert(user.clone(), best);
            return Ok(Left {
                last: false,
                online: state.online_count(channel),
            });
        }
        state.online_sessions.remove(&key);
        let last = state
            .online
            .get_mut(channel)
            .is_some_and(|members| members.remove(user).is_some());
        Ok(Left {
            last,
            online: state.online_count(channel),
        })
    }

    async fn sweep_channel(
        &self,
        channel: &ChannelId,
        cutoff_ms: u64,
    ) -> Result<Swept, PresenceError> {
        let mut state = self.state();
        let left = state.take_stale(channel, cutoff_ms, SWEEP_STALE_LIMIT);
        Ok(Swept {
            online: state.online_count(channel),
            left,
        })
    }

    async fn user_status(
        &self,
        users: &[UserId],
        now_ms: u64,
    ) -> Result<Vec<UserStatus>, PresenceError> {
        let state = self.state();
        Ok(users
            .iter()
            .map(|user| UserStatus {
                user: user.clone(),
                online: state
                    .sessions
                    .get(user)
                    .is_some_and(|s| s.values().any(|r| r.expires_ms > now_ms)),
                last_seen_ms: state.last_seen.get(user).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn online_users(
        &self,
        channel: &ChannelId,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<UserId>, PresenceError> {
        let state = self.state();
        let mut live: Vec<(u64, &UserId)> = state
            .online
            .get(channel)
            .into_iter()
            .flatten()
            .filter(|(_, expiry)| **expiry > now_ms)
            .map(|(user, expiry)| (*expiry, user))
            .collect();
        live.sort_unstable();
        Ok(live
            .into_iter()
            .take(limit)
            .map(|(_, user)| user.clone())
            .collect())
    }
}

/// Events a subscription may fall behind by before it misses some: far
/// more than any test publishes.
const STREAM_CAPACITY: usize = 4096;

/// Records published events, for tests to read or wait for, and streams
/// them to per-channel subscriptions as Redis pub/sub does.
#[derive(Debug)]
pub struct MemoryPublisher {
    events: watch::Sender<Vec<PresenceEvent>>,
    // Apart from `events`, which `take` empties: a subscription must see
    // every event published after it began.
    stream: broadcast::Sender<PresenceEvent>,
}

impl Default for MemoryPublisher {
    fn default() -> Self {
        Self {
            events: watch::Sender::new(Vec::new()),
            stream: broadcast::Sender::new(STREAM_CAPACITY),
        }
    }
}

impl MemoryPublisher {
    /// A publisher that has recorded nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event published so far, in order.
    pub fn events(&self) -> Vec<PresenceEvent> {
        self.events.borrow().clone()
    }

    /// Returns the events published so far and forgets them.
    pub fn take(&self) -> Vec<PresenceEvent> {
        let mut taken = Vec::new();
        self.events
            .send_modify(|events| taken = std::mem::take(events));
        taken
    }

    /// Starts receiving `channel`'s events, from the next one published.
    pub fn subscribe(&self, channel: &ChannelId) -> MemorySubscription {
        MemorySubscription {
            channel: channel.clone(),
            rx: self.stream.subscribe(),
        }
    }

    /// Waits until at least `n` events are recorded, then returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<PresenceEvent> {
        let mut rx = self.events.subscribe();
        match rx.wait_for(|events| events.len() >= n).await {
            Ok(events) => events.clone(),
            // The sender lives in `self`, so it cannot be gone.
            Err(_) => self.events(),
        }
    }
}

#[async_trait]
impl EventPublisher for MemoryPublisher {
    async fn publish(&self, event: &PresenceEvent) -> Result<(), PresenceError> {
        self.events.send_modify(|events| events.push(event.clone()));
        // No subscriber is not an error, as in Redis.
        let _ = self.stream.send(event.clone());
        Ok(())
    }
}

/// One channel's events from a [`MemoryPublisher`], like an `SSUBSCRIBE`
/// to the channel's presence stream.
#[derive(Debug)]
pub struct MemorySubscription {
    channel: ChannelId,
    rx: broadcast::Receiver<PresenceEvent>,
}

impl MemorySubscription {
    /// The channel's next event; `None` once the publisher is gone or this
    /// subscription fell so far behind that it missed events.
    pub async fn next(&mut self) -> Option<PresenceEvent> {
        loop {
            let event = self.rx.recv().await.ok()?;
            if event.channel == self.channel {
                return Some(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chatmesh_ids::SystemClock;

    use super::*;

    async fn store() -> MemoryStore {
        MemoryStore::new(Arc::new(SystemClock))
    }

    crate::presence_store_suite!(store);
    crate::presence_events_suite!(MemoryPublisher::new());

    #[tokio::test(start_paused = true)]
    async fn session_keys_expire_on_the_stores_clock_and_are_reported_once() {
        let clock = Arc::new(TokioClock::new(1_000));
        let store = MemoryStore::new(clock.clone());
        let alice = UserId::new("alice").expect("valid");
        // The caller's "now" is an hour off; the key's TTL runs on the
        // store's clock regardless, as in Redis.
        let now_ms = clock.now_ms() + 3_600_000;
        store
            .refresh_session(SessionRefresh {
                user: &alice,
                session: "s1",
                node: "gw",
                channels: &[],
                ttl: Duration::from_secs(2),
                seen_ms: now_ms,
                now_ms,
                stale_before_ms: now_ms,
            })
            .await
            .expect("memory store");
        tokio::time::advance(Duration::from_millis(1_999)).await;
        assert!(store.session_alive(&alice, "s1"));
        assert!(store.take_expired().is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!store.session_alive(&alice, "s1"));
        assert_eq!(store.take_expired(), [keys::session("alice", "s1")]);
        assert!(store.take_expired().is_empty(), "reported once");
    }
}
