//! Fan-out: one subscription per channel on this node, delivering each
//! channel's messages to its local sessions exactly once and in sequence
//! order. The hub holds the rules; the [`Feed`] behind it is Redis in
//! production and in memory in tests.
//!
//! A live session never skips a message in silence. A gap that outlives
//! the reorder window (a publish lost while Redis failed over, say) is
//! filled from the recent window and storage; what cannot be found, and a
//! jump to a new sequence epoch, reach the sessions as `reload_required`
//! for exactly the numbers they miss.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_ids::{ChannelId, ChatMessage, Clock as _, SystemClock, UserId, seq};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ports::{Feed, FeedError, GapSource, ReadEvent};
use crate::ws::outbound::{Outbox, Outgoing};
use crate::ws::protocol::{MessageBody, ServerFrame};
use crate::ws::replay;

/// When re-subscription passes run after a lost pub/sub connection.
const RESUBSCRIBE_PASSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// How long a gap fill may take before another may start; well above the
/// fill's own wait for storage.
const FILL_GIVE_UP: Duration = Duration::from_secs(30);

/// A session's side of the hub.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// The session's user, whose access gap fills are read with.
    pub(crate) user: UserId,
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
    // The first `next_seq` this state had. A session that joined before
    // it was known has been sent every message from it on, however far
    // `next_seq` has moved since, so its replay must stop just below it.
    first_next: Option<u64>,
    pending: BTreeMap<u64, ChatMessage>,
    held_since: Option<Instant>,
    // Since when a fill of the gap before the first pending message has
    // been under way.
    filling: Option<Instant>,
    // Who is typing in the channel, as the node heard it.
    typers: typing::Typers,
}

/// Numbers the sessions of a channel missed and cannot be given:
/// `from..=to`, sent to them as `reload_required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lost {
    from: u64,
    to: u64,
}

/// What a channel's state releases: messages in order, preceded by the
/// range the sessions must reload, if any.
#[derive(Debug, Default, PartialEq)]
struct Released {
    lost: Option<Lost>,
    messages: Vec<ChatMessage>,
}

/// A gap to fill: the numbers after `after` up to `upto`.
#[derive(Debug, Clone)]
struct GapJob {
    channel: ChannelId,
    user: UserId,
    after: u64,
    upto: u64,
}

impl ChannelState {
    fn accept(&mut self, message: ChatMessage, now: Instant) -> Released {
        let Some(next) = self.next_seq else {
            self.pending.insert(message.seq, message);
            return Released::default();
        };
        if message.seq < next {
            return Released::default();
        }
        let mut lost = None;
        let epoch = seq::epoch_of(message.seq);
        if epoch > seq::epoch_of(next - 1) {
            // The counter moved to a new epoch: whatever the old one held
            // after `next` cannot be accounted for here. The new epoch is
            // followed from its first number.
            let first = seq::epoch_base(epoch) + 1;
            lost = Some(Lost {
                from: next,
                to: first - 1,
            });
            self.pending.retain(|&s, _| s >= first);
            self.next_seq = Some(first);
            self.held_since = None;
            self.filling = None;
        }
        self.pending.insert(message.seq, message);
        Released {
            lost,
            messages: self.release(now),
        }
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

    /// The gap held longer than `window`, to be filled, once.
    fn expired_gap(
        &mut self,
        channel: &ChannelId,
        now: Instant,
        window: Duration,
    ) -> Option<GapJob> {
        let (since, &first, next) = (
            self.held_since?,
            self.pending.keys().next()?,
            self.next_seq?,
        );
        if now.duration_since(since) < window {
            return None;
        }
        self.gap_job(channel, next - 1, first - 1, now)
    }

    /// A fill of `after < seq <= upto`, unless one is under way. A fill
    /// that never reported back (its task failed) stops counting after
    /// [`FILL_GIVE_UP`], so the channel is not held forever.
    fn gap_job(
        &mut self,
        channel: &ChannelId,
        after: u64,
        upto: u64,
        now: Instant,
    ) -> Option<GapJob> {
        let busy = self
            .filling
            .is_some_and(|since| now.duration_since(since) < FILL_GIVE_UP);
        if busy || upto <= after {
            return None;
        }
        let user = self.sessions.values().next()?.user.clone();
        self.filling = Some(now);
        Some(GapJob {
            channel: channel.clone(),
            user,
            after,
            upto,
        })
    }

    /// Applies a gap fill of `after < seq <= upto`: `Some` holds every
    /// durable message of the range (the others were void), `None` means
    /// the range could not be recovered.
    fn filled(
        &mut self,
        after: u64,
        upto: u64,
        found: Option<Vec<ChatMessage>>,
        now: Instant,
    ) -> Released {
        self.filling = None;
        let Some(next) = self.next_seq else {
            return Released::default();
        };
        if next > upto || next <= after {
            // Delivery moved on meanwhile (a new epoch, or the messages
            // arrived after all): the fill is stale.
            return Released {
                lost: None,
                messages: self.release(now),
            };
        }
        let lost = match found {
            Some(found) => {
                for m in found.into_iter().filter(|m| m.seq >= next && m.seq <= upto) {
                    self.pending.entry(m.seq).or_insert(m);
                }
                None
            }
            None => Some(Lost {
                from: next,
                to: upto,
            }),
        };
        let mut messages: Vec<ChatMessage> = Vec::new();
        let mut kept = self.pending.split_off(&(upto + 1));
        std::mem::swap(&mut kept, &mut self.pending);
        if lost.is_none() {
            messages.extend(kept.into_values());
        }
        self.next_seq = Some(upto + 1);
        messages.extend(self.release(now));
        Released { lost, messages }
    }
}

/// The node's fan-out hub. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    feed: Arc<dyn Feed>,
    gaps: Option<Arc<dyn GapSource>>,
    channels: Mutex<HashMap<ChannelId, ChannelState>>,
    reorder_window: Duration,
    jobs: mpsc::UnboundedSender<GapJob>,
    job_queue: Mutex<Option<mpsc::UnboundedReceiver<GapJob>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub over `feed`; out-of-order messages wait up to `reorder_window`,
    /// and gaps beyond it are reported to the sessions as lost.
    #[cfg(any(test, feature = "testsuite"))]
    pub(crate) fn new(feed: Arc<dyn Feed>, reorder_window: Duration) -> Self {
        Self::build(feed, None, reorder_window)
    }

    /// A hub that fills gaps beyond the reorder window from `gaps`.
    pub(crate) fn with_gaps(
        feed: Arc<dyn Feed>,
        gaps: Arc<dyn GapSource>,
        reorder_window: Duration,
    ) -> Self {
        Self::build(feed, Some(gaps), reorder_window)
    }

    fn build(
        feed: Arc<dyn Feed>,
        gaps: Option<Arc<dyn GapSource>>,
        reorder_window: Duration,
    ) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                feed,
                gaps,
                channels: Mutex::new(HashMap::new()),
                reorder_window,
                jobs,
                job_queue: Mutex::new(Some(queue)),
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
                // A concurrent first subscriber may have set the counter
                // already and released messages to every session, this
                // one included: this one's replay ends where those began.
                let next = match state.first_next {
                    Some(first) => first,
                    None => {
                        let next = *state.next_seq.get_or_insert(current + 1);
                        state.first_next = Some(next);
                        next
                    }
                };
                let held = std::mem::take(&mut state.pending);
                let now = Instant::now();
                for m in held.into_values().filter(|m| m.seq >= next) {
                    let released = state.accept(m, now);
                    deliver(channel, state, &released);
                }
                let ready = Released {
                    lost: None,
                    messages: state.release(now),
                };
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
    #[cfg(test)]
    pub(crate) fn accept(&self, channel: &ChannelId, message: ChatMessage) {
        self.accept_traced(channel, message, None);
    }

    /// [`Hub::accept`] for a message published with the trace context of
    /// its send. The `gateway.deliver` span is a child of that context, so
    /// this node's delivery joins the message's trace: one span per message
    /// and node, however many local sessions it reaches. A message held
    /// for order goes out in the span of the one that releases it.
    pub(crate) fn accept_traced(
        &self,
        channel: &ChannelId,
        message: ChatMessage,
        traceparent: Option<&str>,
    ) {
        let span = tracing::info_span!(
            parent: None,
            "gateway.deliver",
            channel = %channel,
            seq = message.seq,
            sessions = tracing::field::Empty,
            released = tracing::field::Empty,
        );
        if let Some(traceparent) = traceparent {
            chatmesh_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        let _entered = span.enter();
        let mut map = self.lock();
        let Some(state) = map.get_mut(channel) else {
            return;
        };
        let released = state.accept(message, Instant::now());
        span.record("sessions", state.sessions.len());
        span.record("released", released.messages.len());
        deliver(channel, state, &released);
    }

    /// Passes an unsequenced frame (a presence event) to the channel's
    /// sessions, skipping the reorder window.
    pub(crate) fn broadcast(&self, channel: &ChannelId, frame: ServerFrame) {
        let map = self.lock();
        if let Some(state) = map.get(channel) {
            offer_unsequenced(channel, state, frame);
        }
    }

    /// Tells every node serving `event.channel` that a member's read
    /// position moved.
    pub(crate) async fn publish_read(&self, event: &ReadEvent) -> Result<(), FeedError> {
        self.inner.feed.publish_read(event).await
    }

    /// A read receipt heard on the channel's subscription: every session
    /// subscribed to the channel gets it.
    pub(crate) fn on_read(&self, event: &ReadEvent) {
        let frame = ServerFrame::Read {
            request_id: None,
            channel_id: event.channel.as_str().to_owned(),
            user_id: event.user.as_str().to_owned(),
            seq: event.seq,
        };
        self.broadcast(&event.channel, frame);
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
                self.catch_up(&channel).await;
            }
        }
    }

    /// Compares `channel`'s counter with what was delivered and fills what
    /// was published while the subscription was down.
    async fn catch_up(&self, channel: &ChannelId) {
        let current = match self.inner.feed.current_seq(channel).await {
            Ok(current) => current,
            Err(err) => {
                tracing::debug!(channel = %channel, error = %err, "cannot read the counter to catch up");
                return;
            }
        };
        let job = {
            let mut map = self.lock();
            let Some(state) = map.get_mut(channel) else {
                return;
            };
            match state.next_seq {
                Some(next) if current >= next && seq::same_epoch(next - 1, current) => {
                    state.gap_job(channel, next - 1, current, Instant::now())
                }
                _ => None,
            }
        };
        if let Some(job) = job {
            tracing::debug!(channel = %channel, after = job.after, upto = job.upto, "catching up after a lost subscription");
            let _ = self.inner.jobs.send(job);
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

    /// Fills gaps that outlived the reorder window, and those found after a
    /// lost subscription, until `shutdown`. Fills run concurrently; a
    /// channel's live messages wait behind its fill.
    pub(crate) async fn mend_gaps(self, shutdown: CancellationToken) {
        let Some(mut queue) = self
            .inner
            .job_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let window = self.inner.reorder_window;
        let mut tick = tokio::time::interval((window / 4).max(Duration::from_millis(10)));
        let mut fills: JoinSet<(GapJob, Option<Vec<ChatMessage>>)> = JoinSet::new();
        loop {
            let jobs = tokio::select! {
                _ = tick.tick() => self.expired_gaps(window),
                Some(job) = queue.recv() => vec![job],
                Some(done) = fills.join_next(), if !fills.is_empty() => {
                    match done {
                        Ok((job, found)) => self.apply_fill(&job, found),
                        Err(err) => tracing::error!(error = %err, "a gap fill failed"),
                    }
                    Vec::new()
                }
                () = shutdown.cancelled() => return,
            };
            for job in jobs {
                let gaps = self.inner.gaps.clone();
                fills.spawn(async move {
                    let found = match gaps {
                        Some(gaps) => {
                            replay::fill(&*gaps, &job.channel, &job.user, job.after, job.upto).await
                        }
                        None => None,
                    };
                    (job, found)
                });
            }
        }
    }

    fn expired_gaps(&self, window: Duration) -> Vec<GapJob> {
        let now = Instant::now();
        self.lock()
            .iter_mut()
            .filter_map(|(channel, state)| state.expired_gap(channel, now, window))
            .collect()
    }

    fn apply_fill(&self, job: &GapJob, found: Option<Vec<ChatMessage>>) {
        let mut map = self.lock();
        let Some(state) = map.get_mut(&job.channel) else {
            return;
        };
        let released = state.filled(job.after, job.upto, found, Instant::now());
        match released.lost {
            Some(lost) => {
                metrics::counter!("chatmesh_gateway_gaps_lost_total").increment(1);
                tracing::warn!(channel = %job.channel, from = lost.from, to = lost.to, "a gap could not be filled; sessions are told to reload it");
            }
            None => {
                metrics::counter!("chatmesh_gateway_gaps_filled_total").increment(1);
                tracing::debug!(channel = %job.channel, after = job.after, upto = job.upto, "filled a sequence gap");
            }
        }
        deliver(&job.channel, state, &released);
    }
}

/// Queues an unsequenced frame (presence, typing) for every local session
/// of the channel, skipping the reorder window and any replay hold.
fn offer_unsequenced(channel: &ChannelId, state: &ChannelState, frame: ServerFrame) {
    let frame = Outgoing::new(frame);
    for sub in state.sessions.values() {
        sub.outbox.offer(channel.as_str(), frame.clone());
    }
}

/// Queues what `released` holds for every local session of the channel:
/// first the numbers they must reload, then each message. A session whose
/// queue is full is told to close; the others never wait for it.
fn deliver(channel: &ChannelId, state: &mut ChannelState, released: &Released) {
    if let Some(lost) = released.lost {
        metrics::counter!("chatmesh_gateway_reloads_total").increment(1);
        let frame = Outgoing::new(ServerFrame::ReloadRequired {
            channel_id: channel.as_str().to_owned(),
            from_seq: lost.from,
            to_seq: lost.to,
        });
        offer_all(channel, state, &frame, false);
    }
    for message in &released.messages {
        let frame = Outgoing::new(ServerFrame::Message(MessageBody::from(message)));
        let lag_ms = SystemClock.now_ms() as i64 - message.created_at_ms;
        metrics::histogram!("chatmesh_gateway_fanout_latency_seconds")
            .record(lag_ms.max(0) as f64 / 1000.0);
        offer_all(channel, state, &frame, true);
    }
}

fn offer_all(channel: &ChannelId, state: &mut ChannelState, frame: &Arc<Outgoing>, count: bool) {
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
        if sub.outbox.offer(channel.as_str(), frame.clone()) && count {
            metrics::counter!("chatmesh_gateway_messages_delivered_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests;
mod typing;

pub(crate) use typing::{TYPING_INTERVAL, TYPING_TTL};
