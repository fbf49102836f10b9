//! The [`EventPublisher`] contract, heard through [`EventStreams`].

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_redis::keys;

use super::{Names, now};
use crate::events::{EventKind, EventPublisher, PresenceEvent};
use crate::memory::{MemoryPublisher, MemorySubscription};

/// Generates one `#[tokio::test]` per event suite test, each on the
/// publisher `$make` evaluates to (inside the async test, so it may
/// `.await` and use `?` on an `anyhow::Result`). The publisher must also
/// implement [`EventStreams`].
#[macro_export]
macro_rules! presence_events_suite {
    ($make:expr) => {
        $crate::presence_events_suite!(@tests $make;
            a_join_reaches_the_channels_subscriber,
            joins_and_leaves_arrive_in_publish_order,
            every_subscriber_of_the_channel_hears_the_event,
            subscribers_hear_only_their_channel,
            a_publish_nobody_hears_succeeds,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        mod presence_events {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() -> ::anyhow::Result<()> {
                    let publisher = $make;
                    $crate::testsuite::$name(&publisher).await
                }
            )*
        }
    };
}

/// How long a subscriber waits for an event before the test fails.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// The listening side of the streams an [`EventPublisher`] feeds, as a
/// gateway subscribes to a channel it serves.
#[async_trait]
pub trait EventStreams: Send + Sync {
    /// Subscribes to `channel`'s events; every event published after this
    /// returns reaches the subscription.
    async fn listen(&self, channel: &ChannelId) -> anyhow::Result<Box<dyn EventListener>>;
}

/// One subscription to a channel's event stream.
#[async_trait]
pub trait EventListener: Send {
    /// The next event heard; the suite bounds the wait.
    async fn next(&mut self) -> anyhow::Result<PresenceEvent>;
}

#[async_trait]
impl EventStreams for MemoryPublisher {
    async fn listen(&self, channel: &ChannelId) -> anyhow::Result<Box<dyn EventListener>> {
        Ok(Box::new(self.subscribe(channel)))
    }
}

#[async_trait]
impl EventListener for MemorySubscription {
    async fn next(&mut self) -> anyhow::Result<PresenceEvent> {
        MemorySubscription::next(self)
            .await
            .ok_or_else(|| anyhow::anyhow!("the stream ended"))
    }
}

async fn heard(listener: &mut dyn EventListener) -> anyhow::Result<PresenceEvent> {
    tokio::time::timeout(EVENT_WAIT, listener.next())
        .await
        .map_err(|_| anyhow::anyhow!("no event within {EVENT_WAIT:?}"))?
}

fn event(kind: EventKind, channel: &ChannelId, user: &UserId, at_ms: u64) -> PresenceEvent {
    PresenceEvent {
        kind,
        channel: channel.clone(),
        user: user.clone(),
        at_ms,
    }
}

/// A channel of `names` whose event stream hashes to the same Redis slot
/// as `channel`'s. Pub/sub keeps order only within a shard, so an event
/// of `channel` that leaked to this one would arrive before anything
/// published here after it.
fn same_slot_channel(names: &Names, channel: &ChannelId) -> ChannelId {
    let slot =
        |c: &ChannelId| chatmesh_redis::key_slot(keys::presence_events(c.as_str()).as_bytes());
    let target = slot(channel);
    (0..)
        .map(|i| names.channel(&format!("slot{i}")))
        .find(|c| c != channel && slot(c) == target)
        .expect("every slot has channel names")
}

/// A published join reaches a subscriber of its channel with its kind,
/// channel, user and time.
pub async fn a_join_reaches_the_channels_subscriber<P>(publisher: &P) -> anyhow::Result<()>
where
    P: EventPublisher + EventStreams,
{
    let names = Names::new();
    let (room, alice) = (names.channel("room"), names.user("alice"));
    let mut listener = publisher.listen(&room).await?;
    let join = event(EventKind::Join, &room, &alice, now());
    publisher.publish(&join).await?;
    assert_eq!(heard(listener.as_mut()).await?, join);
    Ok(())
}

/// A channel's events arrive in the order they were published, leaves
/// as faithfully as joins.
pub async fn joins_and_leaves_arrive_in_publish_order<P>(publisher: &P) -> anyhow::Result<()>
where
    P: EventPublisher + EventStreams,
{
    let names = Names::new();
    let room = names.channel("room");
    let (alice, bob) = (names.user("alice"), names.user("bob"));
    let mut listener = publisher.listen(&room).await?;
    let t = now();
    let sent = [
        event(EventKind::Join, &room, &alice, t),
        event(EventKind::Join, &room, &bob, t + 1),
        event(EventKind::Leave, &room, &alice, t + 2),
        event(EventKind::Leave, &room, &bob, t + 3),
    ];
    for e in &sent {
        publisher.publish(e).await?;
    }
    for e in &sent {
        assert_eq!(&heard(listener.as_mut()).await?, e);
    }
    Ok(())
}

/// Every subscriber of a channel (one per gateway node serving it) hears
/// each of its events.
pub async fn every_subscriber_of_the_channel_hears_the_event<P>(publisher: &P) -> anyhow::Result<()>
where
    P: EventPublisher + EventStreams,
{
    let names = Names::new();
    let (room, alice) = (names.channel("room"), names.user("alice"));
    let mut first = publisher.listen(&room).await?;
    let mut second = publisher.listen(&room).await?;
    let leave = event(EventKind::Leave, &room, &alice, now());
    publisher.publish(&leave).await?;
    assert_eq!(heard(first.as_mut()).await?, leave);
    assert_eq!(heard(second.as_mut()).await?, leave);
    Ok(())
}

/// A subscriber hears its own channel's events and no other's.
pub async fn subscribers_hear_only_their_channel<P>(publisher: &P) -> anyhow::Result<()>
where
    P: EventPublisher + EventStreams,
{
    let names = Names::new();
    let room = names.channel("room");
    let other = same_slot_channel(&names, &room);
    let alice = names.user("alice");
    let mut in_room = publisher.listen(&room).await?;
    let mut in_other = publisher.listen(&other).await?;
    let t = now();
    let room_join = event(EventKind::Join, &room, &alice, t);
    let other_join = event(EventKind::Join, &other, &alice, t + 1);
    let room_leave = event(EventKind::Leave, &room, &alice, t + 2);
    publisher.publish(&room_join).await?;
    publisher.publish(&other_join).await?;
    publisher.publish(&room_leave).await?;
    assert_eq!(heard(in_other.as_mut()).await?, other_join);
    assert_eq!(heard(in_room.as_mut()).await?, room_join);
    assert_eq!(heard(in_room.as_mut()).await?, room_leave);
    Ok(())
}

/// Events are advisory: publishing to a channel no node subscribes to
/// succeeds.
pub async fn a_publish_nobody_hears_succeeds<P>(publisher: &P) -> anyhow::Result<()>
where
    P: EventPublisher + EventStreams,
{
    let names = Names::new();
    let join = event(
        EventKind::Join,
        &names.channel("empty"),
        &names.user("alice"),
        now(),
    );
    publisher.publish(&join).await?;
    Ok(())
}
