//! Session liveness on a gateway node.
//!
//! Client pings become heartbeats, gathered per node and published as one
//! batch per flush interval on the Redis channel `HEARTBEAT`; the presence
//! service turns them into per-session TTL keys. When a key expires, the
//! master holding it publishes an expiry event; the node listens on every
//! master and closes the session if it has really gone quiet. A periodic
//! sweep closes quiet sessions whose key is gone even when the event was
//! lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chatmesh_ids::{Clock as _, SystemClock};
use chatmesh_proto::presence::v1::{HeartbeatBatch, SessionHeartbeat};
use chatmesh_redis::{Cluster, Scope, Subscriber, SubscriberProbe, keys};
use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use chatmesh_ids::UserId;
use chatmesh_server::Tasks;

use crate::config::PresenceSettings;
use crate::ports::Liveness;

/// Sessions per published batch; larger flushes are split.
const MAX_BATCH: usize = 2_000;

/// A session on this node, as liveness tracking sees it.
#[derive(Debug)]
struct Local {
    user: String,
    last_ping: Instant,
    expired: CancellationToken,
}

#[derive(Debug)]
struct Inner {
    node: String,
    redis: Cluster,
    settings: PresenceSettings,
    /// Heartbeats waiting for the next flush, newest per session.
    pending: Mutex<HashMap<String, SessionHeartbeat>>,
    sessions: Mutex<HashMap<String, Local>>,
}

impl Liveness for Presence {
    fn open(&self, user: &UserId) -> (String, CancellationToken) {
        self.open_session(user.as_str())
    }

    fn alive(&self, id: &str, channels: Vec<String>) {
        self.session_alive(id, channels);
    }

    fn close(&self, id: &str, channels: Vec<String>) {
        self.session_closed(id, channels);
    }
}

/// Liveness tracking for a node's sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Presence {
    inner: Arc<Inner>,
}

impl Presence {
    /// Starts the flusher, the expiry listener and the sweep; they stop
    /// with `tasks`, after a last flush. The probe passes once expiry events
    /// are subscribed on every master.
    pub(crate) fn start(
        node: String,
        redis: Cluster,
        settings: PresenceSettings,
        tasks: &Tasks,
    ) -> (Self, SubscriberProbe) {
        let presence = Self {
            inner: Arc::new(Inner {
                node,
                redis: redis.clone(),
                settings: settings.clone(),
                pending: Mutex::default(),
                sessions: Mutex::default(),
            }),
        };
        let (tx, rx) = mpsc::channel(4096);
        let expiries = Subscriber::new(redis, keys::EXPIRED_EVENTS, Scope::EveryMaster)
            .refresh(settings.topology_refresh);
        let probe = expiries.probe("expiry-subscriptions");
        let stop = tasks.shutdown();
        tasks.spawn("expiry-subscriber", expiries.run(tx, stop.clone()));
        tasks.spawn("expiries", presence.clone().on_expiries(rx, stop.clone()));
        tasks.spawn("heartbeat-flush", presence.clone().flush_loop(stop.clone()));
        tasks.spawn("presence-sweep", presence.clone().sweep_loop(stop.clone()));
        (presence, probe)
    }

    fn open_session(&self, user: &str) -> (String, CancellationToken) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let expired = CancellationToken::new();
        self.lock_sessions().insert(
            id.clone(),
            Local {
                user: user.to_owned(),
                last_ping: Instant::now(),
                expired: expired.clone(),
            },
        );
        self.queue(&id, user, Vec::new(), false);
        (id, expired)
    }

    fn session_alive(&self, id: &str, channels: Vec<String>) {
        let user = {
            let mut sessions = self.lock_sessions();
            let Some(local) = sessions.get_mut(id) else {
                return;
            };
            local.last_ping = Instant::now();
            local.user.clone()
        };
        self.queue(id, &user, channels, false);
    }

    fn session_closed(&self, id: &str, channels: Vec<String>) {
        let Some(local) = self.lock_sessions().remove(id) else {
            return;
        };
        self.queue(id, &local.user, channels, true);
    }

    fn queue(&self, id: &str, user: &str, channel_ids: Vec<String>, closed: bool) {
        let heartbeat = SessionHeartbeat {
            session_id: id.to_owned(),
            user_id: user.to_owned(),
            channel_ids,
            at_ms: SystemClock.now_ms() as i64,
            closed,
        };
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), heartbeat);
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    async fn flush_loop(self, tasks: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                () = tasks.cancelled() => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    /// Publishes the pending heartbeats. A batch that fails to publish goes
    /// back to the queue unless a newer heartbeat replaced it meanwhile.
    async fn flush(&self) {
        let pending: Vec<SessionHeartbeat> = {
            let mut map = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, hb)| hb).collect()
        };
        if pending.is_empty() {
            return;
        }
        let ttl_ms = self.inner.settings.session_ttl.as_millis() as i64;
        let mut pending = pending.into_iter().peekable();
        while pending.peek().is_some() {
            let sessions: Vec<SessionHeartbeat> = pending.by_ref().take(MAX_BATCH).collect();
            let count = sessions.len();
            let batch = HeartbeatBatch {
                gateway_node: self.inner.node.clone(),
                sessions,
                ttl_ms,
            };
            let result = async {
                let mut conn = self.inner.redis.conn().await?;
                redis::cmd("PUBLISH")
                    .arg(keys::HEARTBEAT)
                    .arg(batch.encode_to_vec())
                    .query_async::<i64>(&mut conn)
                    .await
            }
            .await;
            match result {
                Ok(_) => {
                    metrics::counter!("chatmesh_gateway_heartbeats_published_total")
                        .increment(count as u64);
                }
                Err(err) => {
                    metrics::counter!("chatmesh_gateway_heartbeat_publish_failures_total")
                        .increment(1);
                    tracing::warn!(sessions = count, error = %err, "heartbeat batch not published; retrying next flush");
                    let mut map = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                    for hb in batch.sessions {
                        map.entry(hb.session_id.clone()).or_insert(hb);
                    }
                }
            }
        }
    }

    /// Closes the named session if it has been quiet for a whole TTL. A
    /// session that pinged since is left alone: the presence service was
    /// late, and the next heartbeat brings the key back.
    fn expire(&self, id: &str, why: &'static str) -> bool {
        let ttl = self.inner.settings.session_ttl;
        let sessions = self.lock_sessions();
        let Some(local) = sessions.get(id) else {
            return false;
        };
        if local.last_ping.elapsed() < ttl {
            tracing::debug!(
                session = id,
                why,
                "presence key gone but the session pinged recently"
            );
            return false;
        }
        tracing::info!(session = id, user = %local.user, why, "closing a session whose presence expired");
        metrics::counter!("chatmesh_gateway_sessions_expired_total", "by" => why).increment(1);
        local.expired.cancel();
        true
    }

    async fn on_expiries(self, mut rx: mpsc::Receiver<Vec<u8>>, tasks: CancellationToken) {
        loop {
            let payload = tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => return },
                () = tasks.cancelled() => return,
            };
            if let Some((_, session)) = std::str::from_utf8(&payload)
                .ok()
                .and_then(keys::session_of_key)
            {
                self.expire(session, "event");
            }
        }
    }

    async fn sweep_loop(self, tasks: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tasks.cancelled() => return,
            }
            if let Err(err) = self.sweep().await {
                tracing::warn!(error = %err, "presence sweep failed");
            }
        }
    }

    /// Closes quiet sessions whose key is gone.
    async fn sweep(&self) -> Result<(), redis::RedisError> {
        let ttl = self.inner.settings.session_ttl;
        let quiet: Vec<(String, String)> = self
            .lock_sessions()
            .iter()
            .filter(|(_, l)| l.last_ping.elapsed() >= ttl && !l.expired.is_cancelled())
            .map(|(id, l)| (id.clone(), l.user.clone()))
            .collect();
        if quiet.is_empty() {
            return Ok(());
        }
        let conn = self.inner.redis.conn().await?;
        let results: Vec<(String, Result<bool, redis::RedisError>)> = futures::stream::iter(quiet)
            .map(|(id, user)| {
                let mut conn = conn.clone();
                async move {
                    let exists = redis::cmd("EXISTS")
                        .arg(keys::session(&user, &id))
                        .query_async::<bool>(&mut conn)
                        .await;
                    (id, exists)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        for (id, exists) in results {
            match exists {
                Ok(false) => {
                    self.expire(&id, "sweep");
                }
                Ok(true) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
