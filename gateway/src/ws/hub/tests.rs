//! The hub's delivery rules, on a channel's state and on the in-memory feed.

use super::*;
use crate::memory::{MemoryFeed, message};

fn seqs(v: &[ChatMessage]) -> Vec<u64> {
    v.iter().map(|m| m.seq).collect()
}

fn msg(seq: u64) -> ChatMessage {
    message("general", seq)
}

fn sub(outbox: Outbox) -> Subscriber {
    Subscriber {
        user: UserId::new("alice").unwrap(),
        outbox,
        held: None,
    }
}

fn state_at(next: u64) -> ChannelState {
    let mut s = ChannelState {
        next_seq: Some(next),
        ..Default::default()
    };
    s.sessions.insert(1, sub(crate::memory::outbox(8).0));
    s
}

#[test]
fn releases_in_order_and_drops_duplicates() {
    let now = Instant::now();
    let mut s = state_at(5);
    assert_eq!(seqs(&s.accept(msg(6), now).messages), Vec::<u64>::new());
    assert_eq!(seqs(&s.accept(msg(7), now).messages), Vec::<u64>::new());
    assert_eq!(seqs(&s.accept(msg(5), now).messages), vec![5, 6, 7]);
    assert_eq!(seqs(&s.accept(msg(6), now).messages), Vec::<u64>::new());
    assert_eq!(seqs(&s.accept(msg(4), now).messages), Vec::<u64>::new());
    assert_eq!(seqs(&s.accept(msg(8), now).messages), vec![8]);
}

#[test]
fn holds_until_the_counter_is_known() {
    let now = Instant::now();
    let mut s = ChannelState::default();
    assert_eq!(s.accept(msg(3), now), Released::default());
    assert_eq!(s.accept(msg(4), now), Released::default());
    s.next_seq = Some(3);
    assert_eq!(seqs(&s.release(now)), vec![3, 4]);
}

#[test]
fn a_gap_past_the_window_is_filled_not_skipped() {
    let start = Instant::now();
    let window = Duration::from_millis(500);
    let channel = ChannelId::new("general").unwrap();
    let mut s = state_at(1);
    assert!(s.accept(msg(3), start).messages.is_empty());
    assert!(s.accept(msg(4), start).messages.is_empty());
    assert!(
        s.expired_gap(&channel, start + Duration::from_millis(100), window)
            .is_none()
    );
    let job = s
        .expired_gap(&channel, start + window, window)
        .expect("a fill");
    assert_eq!((job.after, job.upto), (0, 2));
    assert!(
        s.expired_gap(&channel, start + window * 2, window)
            .is_none(),
        "one fill at a time"
    );
    assert!(
        s.expired_gap(&channel, start + window + FILL_GIVE_UP, window)
            .is_some(),
        "a fill that never reported back stops blocking the channel"
    );
    s.filling = Some(start + window);
    // 1 was found, 2 is void: both are accounted for.
    let released = s.filled(0, 2, Some(vec![msg(1)]), start + window);
    assert_eq!(released.lost, None);
    assert_eq!(seqs(&released.messages), vec![1, 3, 4]);
    assert_eq!(s.next_seq, Some(5));
    assert!(s.held_since.is_none());
}

#[test]
fn a_gap_that_cannot_be_filled_is_reported_lost() {
    let start = Instant::now();
    let mut s = state_at(1);
    s.accept(msg(4), start);
    let released = s.filled(0, 3, None, start);
    assert_eq!(released.lost, Some(Lost { from: 1, to: 3 }));
    assert_eq!(seqs(&released.messages), vec![4]);
    assert_eq!(s.next_seq, Some(5));
}

#[test]
fn a_stale_fill_changes_nothing() {
    let now = Instant::now();
    let mut s = state_at(1);
    s.accept(msg(2), now);
    assert_eq!(seqs(&s.accept(msg(1), now).messages), vec![1, 2]);
    let released = s.filled(0, 1, None, now);
    assert_eq!(released, Released::default());
    assert_eq!(s.next_seq, Some(3));
}

#[test]
fn a_new_epoch_reports_the_old_ones_tail_lost_and_follows_the_new_one() {
    let now = Instant::now();
    let mut s = state_at(8);
    s.accept(msg(10), now);
    let base = seq::epoch_base(1);
    let released = s.accept(msg(base + 2), now);
    assert_eq!(released.lost, Some(Lost { from: 8, to: base }));
    assert!(
        released.messages.is_empty(),
        "waits for the epoch's first number"
    );
    assert_eq!(
        seqs(&s.accept(msg(base + 1), now).messages),
        vec![base + 1, base + 2]
    );
    assert_eq!(
        s.accept(msg(10), now),
        Released::default(),
        "the old epoch is behind"
    );
}

#[tokio::test(start_paused = true)]
async fn the_node_subscribes_once_per_channel_and_leaves_with_the_last_session() {
    let feed = Arc::new(MemoryFeed::default());
    let hub = Hub::new(feed.clone(), Duration::from_millis(500));
    let general = ChannelId::new("general").unwrap();
    let (a, _ra) = crate::memory::outbox(8);
    let (b, _rb) = crate::memory::outbox(8);
    hub.subscribe(&general, 1, sub(a)).await.unwrap();
    hub.subscribe(&general, 2, sub(b)).await.unwrap();
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
    hub.subscribe(&general, 1, sub(a)).await.unwrap();
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
    hub.subscribe(&general, 1, sub(slow.clone())).await.unwrap();
    hub.subscribe(&general, 2, sub(fast.clone())).await.unwrap();
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

/// The in-memory feed, with each read of a channel's counter held until
/// the test lets it go: the test learns of each read as it starts, and
/// answers it with the counter as it is when let go.
struct GatedFeed {
    inner: MemoryFeed,
    reads: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
}

#[async_trait::async_trait]
impl Feed for GatedFeed {
    async fn subscribe(&self, channel: &ChannelId) -> Result<(), FeedError> {
        self.inner.subscribe(channel).await
    }

    async fn unsubscribe(&self, channel: &ChannelId) -> Result<(), FeedError> {
        self.inner.unsubscribe(channel).await
    }

    async fn current_seq(&self, channel: &ChannelId) -> Result<u64, FeedError> {
        let (go, wait) = tokio::sync::oneshot::channel();
        let _ = self.reads.send(go);
        let _ = wait.await;
        self.inner.current_seq(channel).await
    }

    async fn publish_typing(&self, event: &crate::ports::TypingEvent) -> Result<(), FeedError> {
        self.inner.publish_typing(event).await
    }

    async fn publish_read(&self, event: &ReadEvent) -> Result<(), FeedError> {
        self.inner.publish_read(event).await
    }
}

/// Two sessions become a channel's first subscribers on this node at once.
/// The first to learn the counter releases a live message to both; the
/// second then learns a counter that already counts that message, and must
/// still replay only what came before it, or its client gets it twice.
#[tokio::test]
async fn concurrent_first_subscribers_replay_up_to_the_first_live_message() {
    let (reads, mut read_started) = mpsc::unbounded_channel();
    let feed = Arc::new(GatedFeed {
        inner: MemoryFeed::default(),
        reads,
    });
    let hub = Hub::new(feed.clone(), Duration::from_millis(500));
    let general = ChannelId::new("general").unwrap();
    feed.inner.set_seq(&general, 6);
    let resuming = |outbox| Subscriber {
        held: Some(Vec::new()),
        ..sub(outbox)
    };
    let (a, _ra) = crate::memory::outbox(8);
    let (b, _rb) = crate::memory::outbox(8);
    let first = tokio::spawn({
        let (hub, general, a) = (hub.clone(), general.clone(), resuming(a));
        async move { hub.subscribe(&general, 1, a).await }
    });
    let go_first = read_started.recv().await.unwrap();
    let second = tokio::spawn({
        let (hub, general, b) = (hub.clone(), general.clone(), resuming(b));
        async move { hub.subscribe(&general, 2, b).await }
    });
    let go_second = read_started.recv().await.unwrap();

    go_first.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 6);
    // Message 7 is live on the node, and held for both sessions.
    feed.inner.set_seq(&general, 7);
    hub.accept(&general, msg(7));
    go_second.send(()).unwrap();
    assert_eq!(
        second.await.unwrap().unwrap(),
        6,
        "the second session replays up to 6: 7 reached it live"
    );
    // Both hold 7 once, to be sent after their replays.
    let map = hub.lock();
    for session in [1, 2] {
        let held = map[&general].sessions[&session].held.as_ref().unwrap();
        assert_eq!(held.len(), 1, "session {session}");
    }
}
