//! The presence rules: heartbeats and expiries become presence state and
//! join/leave events. State goes through a [`PresenceStore`], events
//! through an [`EventPublisher`]; neither the wire format nor Redis shows
//! up here beyond decoding a payload.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_ids::{ChannelId, Clock, UserId};
use chatmesh_redis::keys;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::PresenceError;
use crate::config::PresenceSettings;
use crate::events::{EventKind, EventPublisher, PresenceEvent};
use crate::heartbeat::{Batch, Beat};
use crate::instances::Instances;
use crate::store::{ChannelJoin, PresenceStore, SessionRefresh};

#[cfg(test)]
mod tests;

/// Allowance for clock differences between the hosts that write expiry
/// times, before a record counts as stale.
pub(crate) const STALE_GRACE_MS: u64 = 2_000;
/// A channel no heartbeat named for this long drops off the sweep list.
const SWEEP_FORGET: Duration = Duration::from_secs(600);
/// Shortest session TTL a gateway may ask for: below it a session would
/// expire between two flushes.
const MIN_SESSION_TTL: Duration = Duration::from_millis(100);

/// The next payload, or `None` once the channel closes or on shutdown.
async fn next(rx: &mut mpsc::Receiver<Vec<u8>>, shutdown: &CancellationToken) -> Option<Vec<u8>> {
    tokio::select! {
        p = rx.recv() => p,
        () = shutdown.cancelled() => None,
    }
}

/// Counts of what the engine did, kept beside the exported metrics so
/// tests can read them.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Sessions this instance handled.
    pub(crate) heartbeats: AtomicU64,
    /// Sessions owned by other instances.
    pub(crate) skipped: AtomicU64,
    /// Sessions dropped as malformed.
    pub(crate) invalid: AtomicU64,
    /// Payloads that were not a `HeartbeatBatch`.
    pub(crate) bad_batches: AtomicU64,
    /// Sessions ended because their key expired.
    pub(crate) expired: AtomicU64,
    /// Events published.
    pub(crate) events: AtomicU64,
    /// Events not published because the channel is over `events_max_online`.
    pub(crate) suppressed: AtomicU64,
    /// Store or publish failures.
    pub(crate) errors: AtomicU64,
}

/// Adds `n` to a test-visible count and to the exported counter `name`.
fn bump(count: &AtomicU64, name: &'static str, n: u64) {
    count.fetch_add(n, Ordering::Relaxed);
    metrics::counter!(name).increment(n);
}

/// Presence state keeper. Cheap to share behind an `Arc`.
pub(crate) struct Engine {
    store: Arc<dyn PresenceStore>,
    events: Arc<dyn EventPublisher>,
    instances: Instances,
    clock: Arc<dyn Clock>,
    settings: PresenceSettings,
    /// Channels named by recent heartbeats, for the sweep. A std mutex:
    /// held for a map update, never across an await.
    channels: Mutex<HashMap<ChannelId, Instant>>,
    stats: Stats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("instance", &self.instances.me())
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        store: Arc<dyn PresenceStore>,
        events: Arc<dyn EventPublisher>,
        instances: Instances,
        clock: Arc<dyn Clock>,
        settings: PresenceSettings,
    ) -> Self {
        Self {
            store,
            events,
            instances,
            clock,
            settings,
            channels: Mutex::default(),
            stats: Stats::default(),
        }
    }

    /// What the engine has done so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Handles heartbeat payloads from `rx` until it closes or `shutdown`.
    pub(crate) async fn run_heartbeats(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        while let Some(payload) = next(&mut rx, &shutdown).await {
            self.handle_payload(&payload).await;
        }
    }

    /// Ends sessions whose TTL keys expired, from `rx` until it closes or
    /// `shutdown`.
    pub(crate) async fn run_expiries(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        while let Some(payload) = next(&mut rx, &shutdown).await {
            self.handle_expiry(&payload).await;
        }
    }

    /// Every sweep interval, until `shutdown`, removes users whose presence
    /// in a channel lapsed without an event and announces that they left.
    pub(crate) async fn run_sweeps(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            self.sweep().await;
        }
    }

    /// Decodes and applies one `HeartbeatBatch` payload; an undecodable one
    /// is counted and skipped.
    pub(crate) async fn handle_payload(&self, payload: &[u8]) {
        match Batch::decode(payload) {
            Ok(batch) => self.handle_batch(batch).await,
            Err(err) => {
                bump(
                    &self.stats.bad_batches,
                    "chatmesh_presence_bad_batches_total",
                    1,
                );
                tracing::warn!(error = %err, bytes = payload.len(), "undecodable heartbeat batch skipped");
            }
        }
    }

    /// Ends the session named by an expired key, if this instance owns it.
    pub(crate) async fn handle_expiry(&self, payload: &[u8]) {
        let Ok(key) = std::str::from_utf8(payload) else {
            return;
        };
        let Some((user, session)) = keys::session_of_key(key) else {
            return;
        };
        let Ok(user) = UserId::new(user) else {
            return;
        };
        if !self.instances.owns(session) {
            return;
        }
        bump(
            &self.stats.expired,
            "chatmesh_presence_sessions_expired_total",
            1,
        );
        if let Err(err) = self.end(&user, session, 0, &[]).await {
            self.failed();
            tracing::warn!(user = user.as_str(), session, error = %err, "cannot end an expired session");
        }
    }

    /// The TTL a batch's sessions get: the gateway's, or the default, kept
    /// within [`MIN_SESSION_TTL`] and `max_session_ttl`.
    pub(crate) fn session_ttl(&self, asked: Option<Duration>) -> Duration {
        let max = self.settings.max_session_ttl;
        asked
            .unwrap_or(self.settings.default_session_ttl)
            .clamp(MIN_SESSION_TTL.min(max), max)
    }

    async fn handle_batch(&self, batch: Batch) {
        let ttl = self.session_ttl(batch.ttl);
        let total = batch.sessions.len();
        let owned: Vec<Beat> = batch
            .sessions
            .into_iter()
            .filter(|s| self.instances.owns(&s.session))
            .collect();
        bump(
            &self.stats.heartbeats,
            "chatmesh_presence_heartbeats_total",
            owned.len() as u64,
        );
        bump(
            &self.stats.skipped,
            "chatmesh_presence_heartbeats_skipped_total",
            (total - owned.len()) as u64,
        );
        if batch.invalid > 0 {
            bump(
                &self.stats.invalid,
                "chatmesh_presence_heartbeats_invalid_total",
                batch.invalid as u64,
            );
        }
        let node = batch.node.as_str();
        futures::stream::iter(owned)
            .for_each_concurrent(self.settings.concurrency, |beat| async move {
                let result = if beat.closed {
                    let at = beat.at_ms.unwrap_or_else(|| self.clock.now_ms());
                    self.end(&beat.user, &beat.session, at, &beat.channels)
                        .await
                } else {
                    self.refresh(node, &beat, ttl).await
                };
                if let Err(err) = result {
                    self.failed();
                    tracing::warn!(error = %err, "heartbeat not applied");
                }
            })
            .await;
    }

    async fn refresh(&self, node: &str, beat: &Beat, ttl: Duration) -> Result<(), PresenceError> {
        let now = self.clock.now_ms();
        let stale_before = now.saturating_sub(STALE_GRACE_MS);
        let (user, session) = (&beat.user, beat.session.as_str());
        let refreshed = self
            .store
            .refresh_session(SessionRefresh {
                user,
                session,
                node,
                channels: &beat.channels,
                ttl,
                seen_ms: beat.at_ms.unwrap_or(now),
                now_ms: now,
                stale_before_ms: stale_before,
            })
            .await?;
        self.note_channels(&beat.channels);
        let current: HashSet<&ChannelId> = beat.channels.iter().collect();
        for channel in refreshed.previous.iter().flatten() {
            if !current.contains(channel) {
                self.leave(channel, user, session, now).await?;
            }
        }
        let expires = now + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        // One store call per channel, all in flight at once on the
        // pipelined cluster connection.
        futures::future::try_join_all(beat.channels.iter().map(|channel| {
            self.join(ChannelJoin {
                channel,
                user,
                session,
                expires_ms: expires,
                now_ms: now,
                stale_before_ms: stale_before,
            })
        }))
        .await?;
        // Other sessions of this user that lapsed unnoticed.
        for lapsed in &refreshed.lapsed {
            for channel in &lapsed.channels {
                self.leave(channel, user, &lapsed.session, now).await?;
            }
        }
        Ok(())
    }

    /// Ends one session: its key and record go, and it leaves its channels
    /// (and `also`, channels the gateway named when closing it).
    async fn end(
        &self,
        user: &UserId,
        session: &str,
        at_ms: u64,
        also: &[ChannelId],
    ) -> Result<(), PresenceError> {
        let mut channels = self.store.end_session(user, session, at_ms).await?;
        for channel in also {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let now = self.clock.now_ms();
        futures::future::try_join_all(
            channels
                .iter()
                .map(|channel| self.leave(channel, user, session, now)),
        )
        .await?;
        Ok(())
    }

    async fn join(&self, join: ChannelJoin<'_>) -> Result<(), PresenceError> {
        let joined = self.store.join_channel(join).await?;
        for lapsed in &joined.lapsed {
            self.announce(EventKind::Leave, join.channel, lapsed, joined.online)
                .await;
        }
        if joined.first {
            self.announce(EventKind::Join, join.channel, join.user, joined.online)
                .await;
        }
        Ok(())
    }

    async fn leave(
        &self,
        channel: &ChannelId,
        user: &UserId,
        session: &str,
        now: u64,
    ) -> Result<(), PresenceError> {
        let left = self
            .store
            .leave_channel(channel, user, session, now)
            .await?;
        if left.last {
            self.announce(EventKind::Leave, channel, user, left.online)
                .await;
        }
        Ok(())
    }

    /// Sweeps the channels this instance owns among those heard of lately.
    pub(crate) async fn sweep(&self) {
        let channels: Vec<ChannelId> = {
            let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            map.retain(|_, seen| now.duration_since(*seen) < SWEEP_FORGET);
            map.keys()
                .filter(|c| self.instances.owns(c.as_str()))
                .cloned()
                .collect()
        };
        let cutoff = self.clock.now_ms().saturating_sub(STALE_GRACE_MS);
        futures::stream::iter(channels)
            .for_each_concurrent(self.settings.concurrency, |channel| async move {
                match self.store.sweep_channel(&channel, cutoff).await {
                    Ok(swept) => {
                        for user in &swept.left {
                            self.announce(EventKind::Leave, &channel, user, swept.online)
                                .await;
                        }
                    }
                    Err(err) => {
                        self.failed();
                        tracing::warn!(channel = channel.as_str(), error = %err, "channel sweep failed");
                    }
                }
            })
            .await;
    }

    fn note_channels(&self, channels: &[ChannelId]) {
        let mut seen = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let at = Instant::now();
        for channel in channels {
            seen.insert(channel.clone(), at);
        }
    }

    fn failed(&self) {
        bump(&self.stats.errors, "chatmesh_presence_errors_total", 1);
    }

    /// Announces a join or leave to the channel's subscribers, unless the
    /// channel has more than `events_max_online` users online: there every
    /// join would reach every member, N² frames when all reconnect at once.
    async fn announce(&self, kind: EventKind, channel: &ChannelId, user: &UserId, online: u64) {
        if online > self.settings.events_max_online {
            bump(
                &self.stats.suppressed,
                "chatmesh_presence_events_suppressed_total",
                1,
            );
            return;
        }
        let event = PresenceEvent {
            kind,
            channel: channel.clone(),
            user: user.clone(),
            at_ms: self.clock.now_ms(),
        };
        match self.events.publish(&event).await {
            Ok(()) => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("chatmesh_presence_events_total", "kind" => kind.label())
                    .increment(1);
            }
            Err(err) => {
                self.failed();
                tracing::warn!(
                    channel = channel.as_str(),
                    user = user.as_str(),
                    kind = kind.label(),
                    error = %err,
                    "presence event not published"
                );
            }
        }
    }
}
