//! Fan-out: one subscription per channel on this node, delivering each
//! channel's messages to its local sessions exactly once and in sequence
//! order. The hub holds the rules; the [`Feed`] behind it is Redis in
//! production and in memory in tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_ids::{ChannelId, ChatMessage, Clock as _, SystemClock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ports::{Feed, FeedError};
use crate::ws::outbound::{Outbox, Outgoing};
use crate::ws::protocol::{MessageBody, ServerFrame};

/// When re-subscription passes run after a lost pub/sub connection.
const RESUBSCRIBE_PASSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// A session's side of the hub.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// Where its frames go.
    pub(crate) outbox: Outbox,
    /// While the session replays missed messages, live ones wait here so
    /// the client sees the channel in order.
    pub(crate) held: Option<Vec<Arc<Outgoing>>>,
}

/// A channel's delivery state on this node.
#[derive(Debug, Default)]
struct ChannelState {
    sessions: HashMap<u64, Subscriber>,
    // Next sequence number to deliver; unknown until the subscription
    // is confirmed and the channel's counter read.
    next_seq: Option<u64>,
    pending: BTreeMap<u64, ChatMessage>,
    held_since: Option<Instant>,
}

impl ChannelState {
    fn accept(&mut self, message: ChatMessage, now: Instant) -> Vec<ChatMessage> {
        if self.next_seq.is_some_and(|next| message.seq < next) {
            return Vec::new();
        }
        self.pending.insert(message.seq, message);
        self.release(now)
    }

    fn release(&mut self, now: Instant) -> Vec<ChatMessage> {
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
    fn expire(&mut self, now: Instant, window: Duration) -> Vec<ChatMessage> {
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

/// The node's fan-out hub. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    feed: Arc<dyn Feed>,
    channels: Mutex<HashMap<ChannelId, ChannelState>>,
    reorder_window: Duration,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub over `feed`; out-of-order messages wait up to `reorder_window`.
    pub(crate) fn new(feed: Arc<dyn Feed>, reorder_window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                feed,
                channels: Mutex::new(HashMap::new()),
                reorder_window,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, ChannelState>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `session` to `channel`, subscribing the node if it is the first.
    /// Returns the channel's latest sequence number at subscribe time.
    pub(crate) async fn subscribe(
        &self,
        channel: &ChannelId,
        session: u64,
        sub: Subscriber,
    ) -> Result<u64, FeedError> {
        {
            let mut map = self.lock();
            let state = map.entry(channel.clone()).or_default();
            let known = state.next_seq;
            state.sessions.insert(session, sub);
            if let Some(next) = known {
                return Ok(next - 1);
            }
        }
        // First subscriber here (or a concurrent first): messages arriving
        // from now on are held until the counter is known.
        let result = async {
            self.inner.feed.subscribe(channel).await?;
            self.inner.feed.current_seq(channel).await
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
    pub(crate) fn release(&self, channel: &ChannelId, session: u64) {
        let mut map = self.lock();
        let Some(sub) = map
            .get_mut(channel)
            .and_then(|s| s.sessions.get_mut(&session))
        else {
            return;
        };
        for frame in sub.held.take().unwrap_or_default() {
            if !sub.outbox.offer(channel.as_str(), frame) {
                return;
            }
        }
    }

    /// Removes `session` from `channel`, unsubscribing the node if it was
    /// the last.
    pub(crate) async fn unsubscribe(&self, channel: &ChannelId, session: u64) {
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
            if let Err(err) = self.inner.feed.unsubscribe(channel).await {
                tracing::warn!(channel = %channel, error = %err, "unsubscribe failed");
            }
            // A subscriber may have arrived while the unsubscribe was in flight.
            if self.lock().contains_key(channel) {
                self.resubscribe(channel, &CancellationToken::new()).await;
            }
        }
    }

    /// The channel's latest sequence number, read from the feed.
    pub(crate) async fn current_seq(&self, channel: &ChannelId) -> Result<u64, FeedError> {
        self.inner.feed.current_seq(channel).await
    }

    /// Channels with at least one local session.
    pub(crate) fn channels(&self) -> Vec<ChannelId> {
        self.lock().keys().cloned().collect()
    }

    /// How many local sessions `channel` has.
    #[cfg(test)]
    pub(crate) fn sessions_in(&self, channel: &ChannelId) -> usize {
        self.lock().get(channel).map_or(0, |s| s.sessions.len())
    }

    /// A message published to `channel`: delivered in order to the local
    /// sessions, or held until the ones before it arrive.
    pub(crate) fn accept(&self, channel: &ChannelId, message: ChatMessage) {
        let mut map = self.lock();
        let Some(state) = map.get_mut(channel) else {
            return;
        };
        let ready = state.accept(message, Instant::now());
        deliver(channel, state, &ready);
    }

    /// Passes an unsequenced frame (a presence event) to the channel's
    /// sessions, skipping the reorder window.
    pub(crate) fn broadcast(&self, channel: &ChannelId, frame: ServerFrame) {
        let frame = Outgoing::new(frame);
        let map = self.lock();
        let Some(state) = map.get(channel) else {
            return;
        };
        for sub in state.sessions.values() {
            sub.outbox.offer(channel.as_str(), frame.clone());
        }
    }

    /// Re-subscribes every channel in passes spread over a few seconds,
    /// after the feed lost its connection. A command sent while the client
    /// repairs the connection can land on one that is replaced right after;
    /// subscribing is idempotent, so later passes make sure the
    /// subscription sits on the connection that stays.
    pub(crate) async fn resubscribe_all(self, shutdown: CancellationToken) {
        for delay in RESUBSCRIBE_PASSES {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            for channel in self.channels() {
                self.resubscribe(&channel, &shutdown).await;
            }
        }
    }

    /// Subscribes `channel` again, retrying with backoff until it works,
    /// the channel has no local session, or shutdown.
    async fn resubscribe(&self, channel: &ChannelId, shutdown: &CancellationToken) {
        use backon::{BackoffBuilder as _, ExponentialBuilder};
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .build();
        while self.lock().contains_key(channel) {
            let err = match self.inner.feed.subscribe(channel).await {
                Ok(()) => return,
                Err(err) => err,
            };
            let delay = delays.next().unwrap_or(Duration::from_secs(2));
            tracing::warn!(channel = %channel, error = %err, retry_in = ?delay, "re-subscribe failed");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Releases held messages whose gap outlived the reorder window, until
    /// `shutdown`.
    pub(crate) async fn expire_holds(self, shutdown: CancellationToken) {
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
                    tracing::debug!(channel = %channel, next = ready[0].seq, "skipped a sequence gap");
                }
                deliver(channel, state, &ready);
            }
        }
    }
}

/// Queues each message for every local session of the channel. A session
/// whose queue is full is told to close; the others never wait for it.
fn deliver(channel: &ChannelId, state: &mut ChannelState, messages: &[ChatMessage]) {
    for message in messages {
        let frame = Outgoing::new(ServerFrame::Message(MessageBody::from(message)));
        let lag_ms = SystemClock.now_ms() as i64 - message.created_at_ms;
        metrics::histogram!("chatmesh_gateway_fanout_latency_seconds")
            .record(lag_ms.max(0) as f64 / 1000.0);
        for sub in state.sessions.values_mut() {
            if sub.outbox.overflow.is_cancelled() {
                continue;
            }
            if let Some(held) = &mut sub.held {
                if held.len() < sub.outbox.tx.max_capacity() {
                    held.push(frame.clone());
                } else {
                    metrics::counter!("chatmesh_gateway_slow_consumers_total").increment(1);
                    sub.outbox.overflow.cancel();
                }
                continue;
            }
            if sub.outbox.offer(channel.as_str(), frame.clone()) {
                metrics::counter!("chatmesh_gateway_messages_delivered_total").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryFeed, message};

    fn seqs(v: &[ChatMessage]) -> Vec<u64> {
        v.iter().map(|m| m.seq).collect()
    }

    fn msg(seq: u64) -> ChatMessage {
        message("general", seq)
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

    #[tokio::test(start_paused = true)]
    async fn the_node_subscribes_once_per_channel_and_leaves_with_the_last_session() {
        let feed = Arc::new(MemoryFeed::default());
        let hub = Hub::new(feed.clone(), Duration::from_millis(500));
        let general = ChannelId::new("general").unwrap();
        let (a, _ra) = crate::memory::outbox(8);
        let (b, _rb) = crate::memory::outbox(8);
        hub.subscribe(
            &general,
            1,
            Subscriber {
                outbox: a,
                held: None,
            },
        )
        .await
        .unwrap();
        hub.subscribe(
            &general,
            2,
            Subscriber {
                outbox: b,
                held: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(feed.subscribe_calls(&general), 1);
        hub.unsubscribe(&general, 1).await;
        assert!(feed.is_subscribed(&general));
        hub.unsubscribe(&general, 2).await;
        assert!(!feed.is_subscribed(&general));
        assert!(hub.channels().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_feed_is_resubscribed_for_every_local_channel() {
        let feed = Arc::new(MemoryFeed::default());
        let hub = Hub::new(feed.clone(), Duration::from_millis(500));
        let general = ChannelId::new("general").unwrap();
        let (a, _ra) = crate::memory::outbox(8);
        hub.subscribe(
            &general,
            1,
            Subscriber {
                outbox: a,
                held: None,
            },
        )
        .await
        .unwrap();
        feed.drop_all();
        feed.fail_next_subscribes(2);
        hub.clone().resubscribe_all(CancellationToken::new()).await;
        assert!(feed.is_subscribed(&general));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_closes_only_the_slow_session() {
        let feed = Arc::new(MemoryFeed::default());
        let hub = Hub::new(feed, Duration::from_millis(500));
        let general = ChannelId::new("general").unwrap();
        let (slow, _rs) = crate::memory::outbox(1);
        let (fast, mut rf) = crate::memory::outbox(8);
        hub.subscribe(
            &general,
            1,
            Subscriber {
                outbox: slow.clone(),
                held: None,
            },
        )
        .await
        .unwrap();
        hub.subscribe(
            &general,
            2,
            Subscriber {
                outbox: fast.clone(),
                held: None,
            },
        )
        .await
        .unwrap();
        hub.accept(&general, message("general", 1));
        hub.accept(&general, message("general", 2));
        assert!(slow.overflow.is_cancelled());
        assert!(!fast.overflow.is_cancelled());
        assert_eq!(
            rf.try_recv().unwrap().frame(),
            &ServerFrame::Message(MessageBody::from(&message("general", 1)))
        );
        assert!(rf.try_recv().is_ok());
    }
}
