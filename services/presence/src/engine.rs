//! Turns heartbeats and expiries into presence state and join/leave events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_ids::{ChannelId, Clock as _, SystemClock};
use chatmesh_proto::presence::v1::{
    HeartbeatBatch, PresenceEvent, SessionHeartbeat, presence_event,
};
use chatmesh_redis::{Cluster, keys};
use futures::StreamExt as _;
use prost::Message as _;
use redis::RedisError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::PresenceSettings;
use crate::instances::Instances;
use crate::scripts::{
    END_SESSION, JOIN_CHANNEL, LEAVE_CHANNEL, REFRESH_SESSION, SWEEP_CHANNEL, SessionRecord,
};

/// Allowance for clock differences between the hosts that write expiry
/// times, before a record counts as stale.
const STALE_GRACE_MS: u64 = 2_000;
/// A channel no heartbeat named for this long drops off the sweep list.
const SWEEP_FORGET: Duration = Duration::from_secs(600);

/// An integer from a script's reply; a missing one counts as 0.
fn count(value: Option<redis::Value>) -> Result<u64, RedisError> {
    Ok(value.map(redis::from_redis_value).transpose()?.unwrap_or(0))
}

/// The next payload, or `None` once the channel closes or on shutdown.
async fn next(rx: &mut mpsc::Receiver<Vec<u8>>, shutdown: &CancellationToken) -> Option<Vec<u8>> {
    tokio::select! {
        p = rx.recv() => p,
        () = shutdown.cancelled() => None,
    }
}

/// Presence state keeper. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Engine {
    redis: Cluster,
    instances: Instances,
    settings: PresenceSettings,
    /// Channels named by recent heartbeats, for the sweep.
    channels: Mutex<HashMap<String, Instant>>,
}

impl Engine {
    pub(crate) fn new(redis: Cluster, instances: Instances, settings: PresenceSettings) -> Self {
        Self {
            redis,
            instances,
            settings,
            channels: Mutex::default(),
        }
    }

    /// Handles heartbeat batches from `rx` until `shutdown`.
    pub(crate) async fn run_heartbeats(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        while let Some(payload) = next(&mut rx, &shutdown).await {
            match HeartbeatBatch::decode(payload.as_slice()) {
                Ok(batch) => self.handle_batch(batch).await,
                Err(err) => {
                    metrics::counter!("chatmesh_presence_bad_batches_total").increment(1);
                    tracing::warn!(error = %err, bytes = payload.len(), "undecodable heartbeat batch skipped");
                }
            }
        }
    }

    /// Ends sessions whose TTL keys expired, from `rx` until `shutdown`.
    pub(crate) async fn run_expiries(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        while let Some(payload) = next(&mut rx, &shutdown).await {
            let Ok(key) = std::str::from_utf8(&payload) else {
                continue;
            };
            let Some((user, session)) = keys::session_of_key(key) else {
                continue;
            };
            if !self.instances.owns(session) {
                continue;
            }
            metrics::counter!("chatmesh_presence_sessions_expired_total").increment(1);
            if let Err(err) = self.end(user, session, 0, &[]).await {
                metrics::counter!("chatmesh_presence_errors_total").increment(1);
                tracing::warn!(user, session, error = %err, "cannot end an expired session");
            }
        }
    }

    /// Every sweep interval, removes users whose presence in a channel
    /// lapsed without an event and announces that they left.
    pub(crate) async fn run_sweeps(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let channels: Vec<String> = {
                let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                map.retain(|_, seen| now.duration_since(*seen) < SWEEP_FORGET);
                map.keys()
                    .filter(|c| self.instances.owns(c))
                    .cloned()
                    .collect()
            };
            let cutoff = SystemClock.now_ms().saturating_sub(STALE_GRACE_MS);
            let this = &*self;
            futures::stream::iter(channels)
                .for_each_concurrent(self.settings.concurrency, |channel| async move {
                    if let Err(err) = this.sweep(&channel, cutoff).await {
                        tracing::warn!(channel, error = %err, "channel sweep failed");
                    }
                })
                .await;
        }
    }

    async fn sweep(&self, channel: &str, cutoff: u64) -> Result<(), RedisError> {
        let mut conn = self.redis.conn().await?;
        let reply: Vec<redis::Value> = SWEEP_CHANNEL
            .key(keys::online(channel))
            .arg(cutoff)
            .invoke_async(&mut conn)
            .await?;
        let mut reply = reply.into_iter();
        let online = count(reply.next())?;
        for user in reply {
            let user: String = redis::from_redis_value(user)?;
            self.publish(presence_event::Kind::Leave, channel, &user, online)
                .await;
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: HeartbeatBatch) {
        let ttl = match batch.ttl_ms {
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => self.settings.default_session_ttl,
        }
        .clamp(Duration::from_millis(100), self.settings.max_session_ttl);
        let node = batch.gateway_node;
        let total = batch.sessions.len();
        let owned: Vec<SessionHeartbeat> = batch
            .sessions
            .into_iter()
            .filter(|s| self.instances.owns(&s.session_id))
            .collect();
        metrics::counter!("chatmesh_presence_heartbeats_total").increment(owned.len() as u64);
        metrics::counter!("chatmesh_presence_heartbeats_skipped_total")
            .increment((total - owned.len()) as u64);
        let node = node.as_str();
        futures::stream::iter(owned)
            .for_each_concurrent(self.settings.concurrency, |hb| async move {
                if let Err(err) = self.handle_session(node, hb, ttl).await {
                    metrics::counter!("chatmesh_presence_errors_total").increment(1);
                    tracing::warn!(error = %err, "heartbeat not applied");
                }
            })
            .await;
    }

    async fn handle_session(
        &self,
        node: &str,
        hb: SessionHeartbeat,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        if hb.user_id.is_empty() || hb.session_id.is_empty() {
            return Ok(());
        }
        let channels: Vec<String> = hb
            .channel_ids
            .into_iter()
            .filter(|c| ChannelId::new(c.as_str()).is_ok())
            .collect();
        if hb.closed {
            let at = if hb.at_ms > 0 {
                hb.at_ms as u64
            } else {
                SystemClock.now_ms()
            };
            return self.end(&hb.user_id, &hb.session_id, at, &channels).await;
        }
        self.refresh(node, &hb.user_id, &hb.session_id, hb.at_ms, channels, ttl)
            .await
    }

    async fn refresh(
        &self,
        node: &str,
        user: &str,
        session: &str,
        at_ms: i64,
        channels: Vec<String>,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let now = SystemClock.now_ms();
        let ttl_ms = ttl.as_millis() as u64;
        let expires = now + ttl_ms;
        let record = SessionRecord {
            expires_ms: expires as i64,
            channels,
            node: node.to_owned(),
        };
        let seen = if at_ms > 0 { at_ms as u64 } else { now };
        let mut conn = self.redis.conn().await?;
        let reply: Vec<Option<String>> = REFRESH_SESSION
            .key(keys::session(user, session))
            .key(keys::user_sessions(user))
            .key(keys::last_seen(user))
            .arg(session)
            .arg(record.encode())
            .arg(ttl_ms)
            .arg(seen)
            .arg(ttl_ms * 4)
            .arg(node)
            .arg(now.saturating_sub(STALE_GRACE_MS))
            .invoke_async(&mut conn)
            .await?;
        let mut reply = reply.into_iter();
        let previous = reply
            .next()
            .flatten()
            .and_then(|r| SessionRecord::decode(&r));
        {
            let mut seen = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            let at = Instant::now();
            for channel in &record.channels {
                seen.insert(channel.clone(), at);
            }
        }
        let current: HashSet<&str> = record.channels.iter().map(String::as_str).collect();
        if let Some(previous) = previous {
            for channel in previous
                .channels
                .iter()
                .filter(|c| !current.contains(c.as_str()))
            {
                self.leave(channel, user, session, now).await?;
            }
        }
        // One script per channel, all in flight at once on the pipelined
        // cluster connection.
        futures::future::try_join_all(
            record
                .channels
                .iter()
                .map(|channel| self.join(channel, user, session, expires, now, ttl_ms * 4)),
        )
        .await?;
        // Other sessions of this user that lapsed unnoticed.
        while let (Some(Some(stale)), Some(Some(raw))) = (reply.next(), reply.next()) {
            if let Some(r) = SessionRecord::decode(&raw) {
                for channel in &r.channels {
                    self.leave(channel, user, &stale, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Ends one session: its key and record go, and it leaves its channels
    /// (and `also`, channels the gateway named when closing it).
    async fn end(
        &self,
        user: &str,
        session: &str,
        at_ms: u64,
        also: &[String],
    ) -> Result<(), RedisError> {
        let mut conn = self.redis.conn().await?;
        let previous: Option<String> = END_SESSION
            .key(keys::session(user, session))
            .key(keys::user_sessions(user))
            .key(keys::last_seen(user))
            .arg(session)
            .arg(at_ms)
            .invoke_async(&mut conn)
            .await?;
        let mut channels: Vec<String> = previous
            .and_then(|r| SessionRecord::decode(&r))
            .map(|r| r.channels)
            .unwrap_or_default();
        for channel in also {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let now = SystemClock.now_ms();
        futures::future::try_join_all(
            channels
                .iter()
                .map(|channel| self.leave(channel, user, session, now)),
        )
        .await?;
        Ok(())
    }

    async fn join(
        &self,
        channel: &str,
        user: &str,
        session: &str,
        expires: u64,
        now: u64,
        key_ttl_ms: u64,
    ) -> Result<(), RedisError> {
        let mut conn = self.redis.conn().await?;
        let reply: Vec<redis::Value> = JOIN_CHANNEL
            .key(keys::online(channel))
            .key(keys::online_sessions(channel, user))
            .arg(user)
            .arg(session)
            .arg(expires)
            .arg(now)
            .arg(key_ttl_ms)
            .arg(now.saturating_sub(STALE_GRACE_MS))
            .invoke_async(&mut conn)
            .await?;
        let mut reply = reply.into_iter();
        let joined = count(reply.next())? == 1;
        let online = count(reply.next())?;
        for lapsed in reply {
            let lapsed: String = redis::from_redis_value(lapsed)?;
            self.publish(presence_event::Kind::Leave, channel, &lapsed, online)
                .await;
        }
        if joined {
            self.publish(presence_event::Kind::Join, channel, user, online)
                .await;
        }
        Ok(())
    }

    async fn leave(
        &self,
        channel: &str,
        user: &str,
        session: &str,
        now: u64,
    ) -> Result<(), RedisError> {
        let mut conn = self.redis.conn().await?;
        let (left, online): (i64, u64) = LEAVE_CHANNEL
            .key(keys::online(channel))
            .key(keys::online_sessions(channel, user))
            .arg(user)
            .arg(session)
            .arg(now)
            .invoke_async(&mut conn)
            .await?;
        if left == 1 {
            self.publish(presence_event::Kind::Leave, channel, user, online)
                .await;
        }
        Ok(())
    }

    /// Announces a join or leave to the channel's subscribers, unless the
    /// channel has more than `events_max_online` users online. Events are
    /// advisory (`ListOnline` is the source of truth), so a failed publish
    /// is logged, not retried.
    async fn publish(&self, kind: presence_event::Kind, channel: &str, user: &str, online: u64) {
        if online > self.settings.events_max_online {
            metrics::counter!("chatmesh_presence_events_suppressed_total").increment(1);
            return;
        }
        let event = PresenceEvent {
            kind: kind as i32,
            channel_id: channel.to_owned(),
            user_id: user.to_owned(),
            at_ms: SystemClock.now_ms() as i64,
        };
        let label = match kind {
            presence_event::Kind::Join => "join",
            _ => "leave",
        };
        let result = async {
            let mut conn = self.redis.conn().await?;
            redis::cmd("SPUBLISH")
                .arg(keys::presence_events(channel))
                .arg(event.encode_to_vec())
                .query_async::<i64>(&mut conn)
                .await
        }
        .await;
        match result {
            Ok(_) => {
                metrics::counter!("chatmesh_presence_events_total", "kind" => label).increment(1)
            }
            Err(err) => {
                metrics::counter!("chatmesh_presence_errors_total").increment(1);
                tracing::warn!(channel, user, kind = label, error = %err, "presence event not published");
            }
        }
    }
}
