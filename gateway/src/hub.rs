//! Fan-out: one sharded pub/sub subscription per channel on this node,
//! delivering each channel's messages to its local sessions exactly once
//! and in sequence order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use chatmesh_ids::{Clock as _, SystemClock};
use chatmesh_proto::common::v1::Message;
use chatmesh_proto::presence::v1::PresenceEvent;
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::{MessageBody, ServerFrame};

/// When re-subscription passes run after a lost pub/sub connection.
const RESUBSCRIBE_PASSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// A session's side of the hub: its outbound queue and its kill switch.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Bounded queue of JSON frames to the client.
    pub tx: mpsc::Sender<Utf8Bytes>,
    /// Cancelled when the session must close because it fell behind.
    pub overflow: CancellationToken,
    /// While the session replays missed messages, live ones wait here so
    /// the client sees the channel in order.
    pub held: Option<Vec<Utf8Bytes>>,
}

/// A channel's delivery state on this node.
#[derive(Debug, Default)]
struct ChannelState {
    sessions: HashMap<u64, Subscriber>,
    // Next sequence number to deliver; unknown until the subscription
    // is confirmed and the channel's counter read.
    next_seq: Option<u64>,
    pending: BTreeMap<u64, Message>,
    held_since: Option<Instant>,
}

impl ChannelState {
    fn accept(&mut self, message: Message, now: Instant) -> Vec<Message> {
        if self.next_seq.is_some_and(|next| message.seq < next) {
            return Vec::new();
        }
        self.pending.insert(message.seq, message);
        self.release(now)
    }

    fn release(&mut self, now: Instant) -> Vec<Message> {
        let Some(mut next) = self.next_seq else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(m) = self.pending.remove(&next) {
            out.push(m);
            next += 1;
        }
        self.next_seq = Some(next);
        self.held_since = if self.pending.is_empty() {
            None
        } else {
            self.held_since.or(Some(now))
        };
        out
    }

    /// Gives up on a gap held longer than `window`: the missing numbers
    /// were never made durable or their publish was lost.
    fn expire(&mut self, now: Instant, window: Duration) -> Vec<Message> {
        match (self.held_since, self.pending.keys().next()) {
            (Some(since), Some(&first)) if now.duration_since(since) >= window => {
                self.next_seq = Some(first);
                self.held_since = None;
                self.release(now)
            }
            _ => Vec::new(),
        }
    }
}

/// The node's fan-out hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Cluster,
    pubsub: ClusterConnection,
    channels: Mutex<HashMap<String, ChannelState>>,
    reorder_window: Duration,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Connects the node's pub/sub connection and starts the tasks that
    /// read pushes and release held messages. They stop with `shutdown`.
    pub async fn start(
        redis: Cluster,
        config: &chatmesh_config::RedisConfig,
        reorder_window: Duration,
        shutdown: CancellationToken,
    ) -> Result<Self, redis::RedisError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = redis::cluster::ClusterClient::builder(config.nodes.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.response_timeout)
            .push_sender(tx)
            .build()?;
        let pubsub = client.get_async_connection().await?;
        let hub = Self {
            inner: Arc::new(Inner {
                redis,
                pubsub,
                channels: Mutex::new(HashMap::new()),
                reorder_window,
            }),
        };
        tokio::spawn(hub.clone().read_pushes(rx, shutdown.clone()));
        tokio::spawn(hub.clone().expire_holds(shutdown));
        Ok(hub)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ChannelState>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `session` to `channel`, subscribing the node if it is the first.
    /// Returns the channel's latest sequence number at subscribe time.
    pub async fn subscribe(
        &self,
        channel: &str,
        session: u64,
        sub: Subscriber,
    ) -> Result<u64, redis::RedisError> {
        {
            let mut map = self.lock();
            let state = map.entry(channel.to_owned()).or_default();
            let known = state.next_seq;
            state.sessions.insert(session, sub);
            if let Some(next) = known {
                return Ok(next - 1);
            }
        }
        // First subscriber here (or a concurrent first): messages arriving
        // from now on are held until the counter is known.
        let result = async {
            let mut pubsub = self.inner.pubsub.clone();
            pubsub.ssubscribe(keys::fanout(channel)).await?;
            pubsub.ssubscribe(keys::presence_events(channel)).await?;
            let mut conn = self.inner.redis.conn().await?;
            let current: Option<u64> = redis::cmd("GET")
                .arg(keys::seq(channel))
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(current.unwrap_or(0))
        }
        .await;
        let mut map = self.lock();
        let Some(state) = map.get_mut(channel) else {
            return result;
        };
        match result {
            Ok(current) => {
                let next = *state.next_seq.get_or_insert(current + 1);
                state.pending.retain(|&seq, _| seq >= next);
                let ready = state.release(Instant::now());
                deliver(channel, state, &ready);
                Ok(next - 1)
            }
            Err(err) => {
                state.sessions.remove(&session);
                if state.sessions.is_empty() {
                    map.remove(channel);
                }
                Err(err)
            }
        }
    }

    /// Ends the hold on `session`'s live messages in `channel`, queueing
    /// what arrived meanwhile behind what the session already sent.
    pub fn release(&self, channel: &str, session: u64) {
        let mut map = self.lock();
        let Some(sub) = map
            .get_mut(channel)
            .and_then(|s| s.sessions.get_mut(&session))
        else {
            return;
        };
        for text in sub.held.take().unwrap_or_default() {
            if sub.tx.try_send(text).is_err() {
                metrics::counter!("chatmesh_gateway_slow_consumers_total").increment(1);
                sub.overflow.cancel();
                return;
            }
        }
    }

    /// Removes `session` from `channel`, unsubscribing the node if it was
    /// the last.
    pub async fn unsubscribe(&self, channel: &str, session: u64) {
        let now_empty = {
            let mut map = self.lock();
            match map.get_mut(channel) {
                Some(state) => {
                    state.sessions.remove(&session);
                    let empty = state.sessions.is_empty();
                    if empty {
                        map.remove(channel);
                    }
                    empty
                }
                None => false,
            }
        };
        if now_empty {
            let mut pubsub = self.inner.pubsub.clone();
            for name in [keys::fanout(channel), keys::presence_events(channel)] {
                if let Err(err) = pubsub.sunsubscribe(&name).await {
                    tracing::warn!(channel, error = %err, "sunsubscribe failed");
                }
            }
            // A subscriber may have arrived while the unsubscribe was in flight.
            if self.lock().contains_key(channel) {
                self.clone()
                    .resubscribe(channel.to_owned(), CancellationToken::new())
                    .await;
            }
        }
    }

    /// Channels with at least one local session.
    pub fn channels(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    async fn read_pushes(
        self,
        mut rx: mpsc::UnboundedReceiver<PushInfo>,
        shutdown: CancellationToken,
    ) {
        loop {
            let push = tokio::select! {
                push = rx.recv() => match push { Some(p) => p, None => return },
                () = shutdown.cancelled() => return,
            };
            match push.kind {
                PushKind::SMessage => self.on_message(&push.data),
                // redis-rs re-subscribes all channels in one SSUBSCRIBE after
                // a reconnect, which Redis refuses with CROSSSLOT as soon as
                // they span slots. Re-subscribe each channel on its own.
                PushKind::Disconnection => {
                    metrics::counter!("chatmesh_gateway_pubsub_reconnects_total").increment(1);
                    tracing::warn!("pub/sub connection lost, re-subscribing every channel");
                    tokio::spawn(self.clone().resubscribe_all(shutdown.clone()));
                }
                _ => {}
            }
        }
    }

    /// Re-subscribes every channel in passes spread over a few seconds. The
    /// client repairs a lost connection in the background, and a command
    /// sent while it does so can land on a connection that is replaced
    /// right after; SSUBSCRIBE is idempotent, so later passes make sure the
    /// subscription sits on the connection that stays.
    async fn resubscribe_all(self, shutdown: CancellationToken) {
        for delay in RESUBSCRIBE_PASSES {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            for channel in self.channels() {
                self.clone().resubscribe(channel, shutdown.clone()).await;
            }
        }
    }

    /// Subscribes `channel` again, retrying with backoff until it works,
    /// the channel has no local session, or shutdown.
    async fn resubscribe(self, channel: String, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(50);
        while self.lock().contains_key(&channel) {
            let mut pubsub = self.inner.pubsub.clone();
            let result = async {
                pubsub.ssubscribe(keys::fanout(&channel)).await?;
                pubsub.ssubscribe(keys::presence_events(&channel)).await
            };
            match result.await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(channel, error = %err, retry_in = ?delay, "re-subscribe failed")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn on_message(&self, data: &[Value]) {
        // RESP3 smessage push: [channel, payload].
        let [.., Value::BulkString(name), Value::BulkString(payload)] = data else {
            return;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        if let Some(channel) = keys::channel_of_presence_events(name) {
            self.on_presence(channel, payload);
            return;
        }
        let Some(channel) = keys::channel_of_fanout(name) else {
            return;
        };
        let message = match Message::decode(payload.as_slice()) {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(channel, error = %err, "undecodable fan-out payload dropped");
                return;
            }
        };
        let mut map = self.lock();
        let Some(state) = map.get_mut(channel) else {
            return;
        };
        let ready = state.accept(message, Instant::now());
        deliver(channel, state, &ready);
    }

    /// Passes a join or leave event to the channel's sessions. Events are
    /// not sequenced, so they skip the reorder window.
    fn on_presence(&self, channel: &str, payload: &[u8]) {
        let event = match PresenceEvent::decode(payload) {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(channel, error = %err, "undecodable presence event dropped");
                return;
            }
        };
        let Some(frame) = ServerFrame::presence(&event) else {
            return;
        };
        let text: Utf8Bytes = frame.to_json().into();
        let mut map = self.lock();
        let Some(state) = map.get_mut(channel) else {
            return;
        };
        for sub in state.sessions.values_mut() {
            if sub.overflow.is_cancelled() {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(text.clone()) {
                tracing::info!(channel, "closing a client whose outbound queue is full");
                metrics::counter!("chatmesh_gateway_slow_consumers_total").increment(1);
                sub.overflow.cancel();
            }
        }
    }

    async fn expire_holds(self, shutdown: CancellationToken) {
        let window = self.inner.reorder_window;
        let mut tick = tokio::time::interval((window / 4).max(Duration::from_millis(10)));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = Instant::now();
            let mut map = self.lock();
            for (channel, state) in map.iter_mut() {
                let ready = state.expire(now, window);
                if !ready.is_empty() {
                    metrics::counter!("chatmesh_gateway_gaps_skipped_total").increment(1);
                    tracing::debug!(channel, next = ready[0].seq, "skipped a sequence gap");
                }
                deliver(channel, state, &ready);
            }
        }
    }
}

/// Queues each message for every local session of the channel. A session
/// whose queue is full is told to close; the others never wait for it.
fn deliver(channel: &str, state: &mut ChannelState, messages: &[Message]) {
    for message in messages {
        let text: Utf8Bytes = ServerFrame::Message(MessageBody::from(message))
            .to_json()
            .into();
        let lag_ms = SystemClock.now_ms() as i64 - message.created_at_ms;
        metrics::histogram!("chatmesh_gateway_fanout_latency_seconds")
            .record(lag_ms.max(0) as f64 / 1000.0);
        for sub in state.sessions.values_mut() {
            if sub.overflow.is_cancelled() {
                continue;
            }
            if let Some(held) = &mut sub.held {
                if held.len() < sub.tx.max_capacity() {
                    held.push(text.clone());
                } else {
                    metrics::counter!("chatmesh_gateway_slow_consumers_total").increment(1);
                    sub.overflow.cancel();
                }
                continue;
            }
            match sub.tx.try_send(text.clone()) {
                Ok(()) => {
                    metrics::counter!("chatmesh_gateway_messages_delivered_total").increment(1)
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(channel, "closing a client whose outbound queue is full");
                    metrics::counter!("chatmesh_gateway_slow_consumers_total").increment(1);
                    sub.overflow.cancel();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Message {
        Message {
            seq,
            ..Default::default()
        }
    }

    fn seqs(v: &[Message]) -> Vec<u64> {
        v.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn releases_in_order_and_drops_duplicates() {
        let now = Instant::now();
        let mut s = ChannelState {
            next_seq: Some(5),
            ..Default::default()
        };
        assert_eq!(seqs(&s.accept(msg(6), now)), Vec::<u64>::new());
        assert_eq!(seqs(&s.accept(msg(7), now)), Vec::<u64>::new());
        assert_eq!(seqs(&s.accept(msg(5), now)), vec![5, 6, 7]);
        assert_eq!(seqs(&s.accept(msg(6), now)), Vec::<u64>::new());
        assert_eq!(seqs(&s.accept(msg(4), now)), Vec::<u64>::new());
        assert_eq!(seqs(&s.accept(msg(8), now)), vec![8]);
    }

    #[test]
    fn holds_until_the_counter_is_known() {
        let now = Instant::now();
        let mut s = ChannelState::default();
        assert!(s.accept(msg(3), now).is_empty());
        assert!(s.accept(msg(4), now).is_empty());
        s.next_seq = Some(3);
        assert_eq!(seqs(&s.release(now)), vec![3, 4]);
    }

    #[test]
    fn a_gap_is_skipped_after_the_window() {
        let start = Instant::now();
        let window = Duration::from_millis(500);
        let mut s = ChannelState {
            next_seq: Some(1),
            ..Default::default()
        };
        assert!(s.accept(msg(2), start).is_empty());
        assert!(s.accept(msg(3), start).is_empty());
        assert!(
            s.expire(start + Duration::from_millis(100), window)
                .is_empty()
        );
        assert_eq!(seqs(&s.expire(start + window, window)), vec![2, 3]);
        assert_eq!(s.next_seq, Some(4));
        assert!(s.held_since.is_none());
    }
}
