//! Tests of [`Feed`]: the node's subscriptions and the channels' counters,
//! with deliveries observed where a node observes them, in the sessions of
//! a [`Hub`] the feed delivers to.
//!
//! The hub puts each channel's messages in sequence order and drops
//! repeats, so a message delivered twice looks like one delivered once;
//! what the suite can see is which messages arrive, in which order, and
//! which never do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, UserId};
use chatmesh_proto::presence::v1::{PresenceEvent, presence_event};
use chatmesh_redis::keys;
use chatmesh_server::Tasks;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{SuiteResult, message, unique_channel, unique_user};
use crate::ports::{Feed, TypingEvent};
use crate::ws::hub::{Hub, Subscriber};
use crate::ws::outbound::{Outbox, Outgoing};
use crate::ws::protocol::{MessageBody, ServerFrame};

/// How long a session waits for a frame before the test fails.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);
/// Frames a suite session can hold unread.
const SESSION_QUEUE: usize = 64;

/// Writes to the backend a feed reads, as the other services do.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Moves `message.channel`'s counter to `message.seq` and fans the
    /// message out, as the chat service's send does. The suite publishes
    /// each channel's messages numbered from 1 up.
    async fn publish(&self, message: &ChatMessage) -> SuiteResult<()>;
    /// Announces `event` on its channel's presence stream, as the presence
    /// service does.
    async fn announce(&self, event: &PresenceEvent) -> SuiteResult<()>;
}

/// A feed wired to a hub as a gateway node wires them, and the publisher
/// that writes what the feed reads.
pub struct FeedUnderTest {
    feed: Arc<dyn Feed>,
    hub: Hub,
    publisher: Arc<dyn Publisher>,
    /// The task moving the feed's deliveries into the hub, if it has one.
    tasks: Tasks,
    next_session: AtomicU64,
}

impl std::fmt::Debug for FeedUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedUnderTest").finish_non_exhaustive()
    }
}

impl Drop for FeedUnderTest {
    fn drop(&mut self) {
        self.tasks.shutdown().cancel();
    }
}

impl FeedUnderTest {
    fn new(feed: Arc<dyn Feed>, publisher: Arc<dyn Publisher>, tasks: Tasks) -> (Self, Hub) {
        let hub = Hub::new(feed.clone(), Duration::from_secs(1));
        let under_test = Self {
            feed,
            hub: hub.clone(),
            publisher,
            tasks,
            next_session: AtomicU64::new(1),
        };
        (under_test, hub)
    }

    /// The Redis feed on the cluster of `config`, its pushes read into the
    /// hub by the node's own push reader; `publisher` writes to the same
    /// cluster.
    pub async fn redis(
        config: &chatmesh_config::RedisConfig,
        publisher: impl Publisher + 'static,
    ) -> SuiteResult<Self> {
        let redis = chatmesh_redis::Cluster::new(config)?;
        let (feed, pushes) = crate::upstream::feed::RedisFeed::connect(redis, config).await?;
        let tasks = Tasks::new(CancellationToken::new());
        let (under_test, hub) = Self::new(Arc::new(feed), Arc::new(publisher), tasks.clone());
        tasks.spawn(
            "fanout-pushes",
            crate::upstream::feed::read_pushes(hub, pushes, tasks.clone()),
        );
        Ok(under_test)
    }

    /// The in-memory feed, published to as Redis pub/sub would deliver.
    #[cfg(test)]
    pub(crate) fn memory() -> Self {
        let feed = Arc::new(crate::memory::MemoryFeed::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (typing_tx, typing_rx) = mpsc::unbounded_channel();
        feed.deliver_typing_to(typing_tx);
        let tasks = Tasks::new(CancellationToken::new());
        let publisher = Arc::new(memory::MemoryPubSub {
            feed: feed.clone(),
            pushes: tx,
        });
        let (under_test, hub) = Self::new(feed, publisher, tasks.clone());
        tasks.spawn(
            "memory-pushes",
            memory::deliver(hub, rx, typing_rx, tasks.clone()),
        );
        under_test
    }

    /// A session of the hub in `channel`, which subscribes the feed if it
    /// is the channel's first. Returns the channel's counter as the hub
    /// read it.
    async fn watch(&self, channel: &ChannelId) -> SuiteResult<(u64, Session)> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let outbox = Outbox {
            tx,
            overflow: CancellationToken::new(),
        };
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let seq = self
            .hub
            .subscribe(
                channel,
                id,
                Subscriber {
                    user: UserId::new("suite-watcher")?,
                    outbox,
                    held: None,
                },
            )
            .await?;
        Ok((
            seq,
            Session {
                channel: channel.clone(),
                rx,
            },
        ))
    }

    async fn publish(&self, message: &ChatMessage) -> SuiteResult<()> {
        self.publisher.publish(message).await
    }
}

/// The frames one hub session received.
struct Session {
    channel: ChannelId,
    rx: mpsc::Receiver<Arc<Outgoing>>,
}

impl Session {
    async fn next(&mut self) -> SuiteResult<ServerFrame> {
        match tokio::time::timeout(DELIVERY_WAIT, self.rx.recv()).await {
            Ok(Some(frame)) => Ok(frame.frame().clone()),
            Ok(None) => anyhow::bail!("the hub dropped the session of {}", self.channel),
            Err(_) => anyhow::bail!(
                "nothing delivered in {} within {DELIVERY_WAIT:?}",
                self.channel
            ),
        }
    }

    /// Asserts the next frames are `messages`, in order.
    async fn expect(&mut self, messages: &[ChatMessage]) -> SuiteResult<()> {
        for m in messages {
            assert_eq!(self.next().await?, frame(m), "in {}", self.channel);
        }
        Ok(())
    }

    /// Asserts nothing is waiting to be read.
    fn expect_nothing(&mut self) {
        if let Ok(frame) = self.rx.try_recv() {
            panic!("{} received {:?}", self.channel, frame.frame());
        }
    }
}

fn frame(message: &ChatMessage) -> ServerFrame {
    ServerFrame::Message(MessageBody::from(message))
}

/// A channel whose fan-out hashes to the same Redis slot as `channel`'s,
/// so a node receives both on one connection, in publish order. Once a
/// message published to it after one to `channel` has arrived, the one to
/// `channel` has arrived too, or never will.
fn same_slot_channel(channel: &ChannelId) -> ChannelId {
    let slot = |c: &ChannelId| chatmesh_redis::key_slot(keys::fanout(c.as_str()).as_bytes());
    let target = slot(channel);
    (0..)
        .map(|i| ChannelId::new(format!("{channel}-{i}")).expect("a valid channel ID"))
        .find(|c| slot(c) == target)
        .expect("every slot has channel names")
}

/// Messages `seqs` of `channel`, from one sender.
fn messages(channel: &ChannelId, seqs: std::ops::RangeInclusive<u64>) -> Vec<ChatMessage> {
    let sender = unique_user("sender");
    seqs.map(|seq| message(channel, &sender, seq)).collect()
}

/// A channel nothing was published to is at 0.
pub async fn a_fresh_channel_is_at_zero(t: &FeedUnderTest) -> SuiteResult<()> {
    assert_eq!(t.feed.current_seq(&unique_channel("fresh")).await?, 0);
    Ok(())
}

/// The counter is the newest published number, subscribed or not.
pub async fn the_counter_follows_published_messages(t: &FeedUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("counter");
    for m in messages(&channel, 1..=3) {
        t.publish(&m).await?;
        assert_eq!(t.feed.current_seq(&channel).await?, m.seq);
    }
    Ok(())
}

/// Once subscribed, a channel's messages reach its sessions in order.
pub async fn a_subscribed_channel_receives_its_messages_in_order(
    t: &FeedUnderTest,
) -> SuiteResult<()> {
    let channel = unique_channel("ordered");
    let (seq, mut session) = t.watch(&channel).await?;
    assert_eq!(seq, 0);
    let sent = messages(&channel, 1..=5);
    for m in &sent {
        t.publish(m).await?;
    }
    session.expect(&sent).await?;
    assert_eq!(t.feed.current_seq(&channel).await?, 5);
    Ok(())
}

/// A subscribed channel's presence events reach its sessions too.
pub async fn presence_events_reach_the_channels_sessions(t: &FeedUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("presence");
    let (_, mut session) = t.watch(&channel).await?;
    let event = PresenceEvent {
        kind: presence_event::Kind::Join as i32,
        channel_id: channel.to_string(),
        user_id: unique_user("alice").to_string(),
        at_ms: 1_800_000_000_000,
    };
    t.publisher.announce(&event).await?;
    let want = ServerFrame::presence(&event).expect("a join is a presence frame");
    assert_eq!(session.next().await?, want);
    Ok(())
}

/// Typing events published for a subscribed channel come back to its
/// sessions as the set of typers, without disturbing presence events on
/// the same subscription.
pub async fn typing_events_reach_the_channels_sessions(t: &FeedUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("typing");
    let (_, mut session) = t.watch(&channel).await?;
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let event = |user: &UserId, stop: bool| TypingEvent {
        channel: channel.clone(),
        user: user.clone(),
        stop,
    };
    let typers = |users: &[&UserId]| {
        let mut user_ids: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        user_ids.sort();
        ServerFrame::Typing {
            channel_id: channel.to_string(),
            user_ids,
        }
    };
    t.feed.publish_typing(&event(&alice, false)).await?;
    assert_eq!(session.next().await?, typers(&[&alice]));
    t.feed.publish_typing(&event(&bob, false)).await?;
    assert_eq!(session.next().await?, typers(&[&alice, &bob]));

    let join = PresenceEvent {
        kind: presence_event::Kind::Join as i32,
        channel_id: channel.to_string(),
        user_id: unique_user("carol").to_string(),
        at_ms: 1_800_000_000_000,
    };
    t.publisher.announce(&join).await?;
    let want = ServerFrame::presence(&join).expect("a join is a presence frame");
    assert_eq!(session.next().await?, want);

    t.feed.publish_typing(&event(&alice, true)).await?;
    assert_eq!(session.next().await?, typers(&[&bob]));
    Ok(())
}

/// After an unsubscribe the channel's messages no longer arrive.
pub async fn unsubscribing_stops_delivery(t: &FeedUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("unsubscribed");
    let marker = same_slot_channel(&channel);
    let (_, mut session) = t.watch(&channel).await?;
    let (_, mut markers) = t.watch(&marker).await?;
    let sent = messages(&channel, 1..=2);
    t.publish(&sent[0]).await?;
    session.expect(&sent[..1]).await?;

    t.feed.unsubscribe(&channel).await?;
    t.publish(&sent[1]).await?;
    let mark = messages(&marker, 1..=1);
    t.publish(&mark[0]).await?;
    markers.expect(&mark).await?;
    session.expect_nothing();
    Ok(())
}

/// Subscribing a subscribed channel again delivers nothing twice and
/// counts nothing: one unsubscribe still ends it.
pub async fn subscribing_twice_is_subscribing_once(t: &FeedUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("twice");
    let marker = same_slot_channel(&channel);
    let (_, mut session) = t.watch(&channel).await?;
    let (_, mut markers) = t.watch(&marker).await?;
    t.feed.subscribe(&channel).await?;
    t.feed.subscribe(&channel).await?;
    let sent = messages(&channel, 1..=3);
    for m in &sent[..2] {
        t.publish(m).await?;
    }
    session.expect(&sent[..2]).await?;

    t.feed.unsubscribe(&channel).await?;
    t.publish(&sent[2]).await?;
    let mark = messages(&marker, 1..=1);
    t.publish(&mark[0]).await?;
    markers.expect(&mark).await?;
    session.expect_nothing();
    Ok(())
}

/// A channel unsubscribed and subscribed again is delivered again, as when
/// a session arrives while the node was leaving the channel.
pub async fn a_channel_subscribed_again_is_delivered_again(t: &FeedUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("again");
    let (_, mut session) = t.watch(&channel).await?;
    let sent = messages(&channel, 1..=2);
    t.publish(&sent[0]).await?;
    session.expect(&sent[..1]).await?;
    t.feed.unsubscribe(&channel).await?;
    t.feed.subscribe(&channel).await?;
    t.publish(&sent[1]).await?;
    session.expect(&sent[1..]).await?;
    Ok(())
}

/// Unsubscribing a channel the node never subscribed to succeeds.
pub async fn unsubscribing_a_channel_never_subscribed_is_harmless(
    t: &FeedUnderTest,
) -> SuiteResult<()> {
    let channel = unique_channel("never");
    t.feed.unsubscribe(&channel).await?;
    assert_eq!(t.feed.current_seq(&channel).await?, 0);
    Ok(())
}

/// In-memory pub/sub over [`MemoryFeed`](crate::memory::MemoryFeed): a
/// publish reaches the hub only while the feed is subscribed to the
/// channel, through a queue read by a task as the Redis pushes are.
#[cfg(test)]
mod memory {
    use super::*;
    use crate::memory::MemoryFeed;

    /// A delivery from the in-memory feed.
    pub(super) enum Push {
        Message(ChatMessage),
        Presence(ChannelId, ServerFrame),
        Typing(TypingEvent),
    }

    pub(super) struct MemoryPubSub {
        pub(super) feed: Arc<MemoryFeed>,
        pub(super) pushes: mpsc::UnboundedSender<Push>,
    }

    #[async_trait]
    impl Publisher for MemoryPubSub {
        async fn publish(&self, message: &ChatMessage) -> SuiteResult<()> {
            self.feed.set_seq(&message.channel, message.seq);
            if self.feed.is_subscribed(&message.channel) {
                self.pushes.send(Push::Message(message.clone()))?;
            }
            Ok(())
        }

        async fn announce(&self, event: &PresenceEvent) -> SuiteResult<()> {
            let channel = ChannelId::new(event.channel_id.clone())?;
            let frame = ServerFrame::presence(event)
                .ok_or_else(|| anyhow::anyhow!("not a presence event: {event:?}"))?;
            if self.feed.is_subscribed(&channel) {
                self.pushes.send(Push::Presence(channel, frame))?;
            }
            Ok(())
        }
    }

    /// Delivers the pushes, and the typing events the feed publishes, to
    /// `hub` until `tasks` shut down.
    pub(super) async fn deliver(
        hub: Hub,
        mut rx: mpsc::UnboundedReceiver<Push>,
        mut typing: mpsc::UnboundedReceiver<TypingEvent>,
        tasks: Tasks,
    ) {
        loop {
            let push = tokio::select! {
                push = rx.recv() => match push { Some(p) => p, None => return },
                Some(event) = typing.recv() => Push::Typing(event),
                () = tasks.shutdown().cancelled() => return,
            };
            match push {
                Push::Message(m) => hub.accept(&m.channel.clone(), m),
                Push::Presence(channel, frame) => hub.broadcast(&channel, frame),
                Push::Typing(event) => hub.on_typing(&event),
            }
        }
    }
}
