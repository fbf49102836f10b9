//! The [`PresenceStore`] contract as a suite of generic async tests, run
//! against every implementation (after quickwit's metastore suite): the
//! unit tests run it on [`MemoryStore`](crate::MemoryStore), and
//! `integration-tests/tests/presence_suites.rs` on
//! [`RedisStore`](crate::RedisStore) against the real cluster, through
//! [`presence_store_suite!`](crate::presence_store_suite).
//!
//! The [`EventPublisher`] contract is a second suite, at the end of this
//! file, heard through [`EventStreams`]: the unit tests run it on
//! [`MemoryPublisher`](crate::MemoryPublisher), and
//! `integration-tests/tests/presence_events_suites.rs` on
//! [`RedisPublisher`](crate::RedisPublisher) with sharded subscriptions
//! like a gateway's, through
//! [`presence_events_suite!`](crate::presence_events_suite).
//!
//! Each test names its own users and channels with a random suffix, so it
//! may share a store with other tests and earlier runs. Time moves by
//! passing later `now_ms` values, never by waiting; real TTLs stay long
//! (a minute), so no Redis key expires while a test runs.

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, Clock as _, SystemClock, UserId};
use chatmesh_redis::keys;

use crate::events::{EventKind, EventPublisher, PresenceEvent};
use crate::memory::{MemoryPublisher, MemorySubscription};
use crate::store::{ChannelJoin, LapsedSession, PresenceStore, Refreshed, SessionRefresh};

/// The session TTL every test uses.
pub const TTL: Duration = Duration::from_secs(60);
const TTL_MS: u64 = 60_000;
/// The engine's allowance for clock skew before an entry counts as stale.
const GRACE_MS: u64 = crate::engine::STALE_GRACE_MS;

/// Generates one `#[tokio::test]` per suite test, each on a fresh store
/// from `$make`, an async function returning a [`PresenceStore`].
#[macro_export]
macro_rules! presence_store_suite {
    ($make:path) => {
        $crate::presence_store_suite!(@tests $make;
            refresh_keeps_a_session_online_until_its_ttl,
            refresh_reports_the_previous_channels,
            refresh_removes_the_users_stale_sessions_once,
            last_seen_only_moves_forward,
            end_session_returns_its_channels_once,
            unknown_users_are_offline_and_never_seen,
            the_first_session_joins_and_later_ones_do_not,
            the_last_session_leaving_leaves,
            leaving_keeps_the_longest_remaining_expiry,
            leaving_an_unknown_channel_changes_nothing,
            joining_after_expiry_counts_as_joining_again,
            a_join_removes_lapsed_members,
            a_sweep_removes_only_stale_members,
            online_lists_live_users_up_to_a_limit,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store = $make().await;
                $crate::testsuite::$name(&store).await;
            }
        )*
    };
}

/// Names unique to one test run.
struct Names(String);

impl Names {
    fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    fn user(&self, tag: &str) -> UserId {
        UserId::new(format!("suite-{tag}-{}", self.0)).expect("a valid user ID")
    }

    fn channel(&self, tag: &str) -> ChannelId {
        ChannelId::new(format!("suite-{tag}-{}", self.0)).expect("a valid channel ID")
    }
}

fn now() -> u64 {
    SystemClock.now_ms()
}

fn refresh<'a>(
    user: &'a UserId,
    session: &'a str,
    channels: &'a [ChannelId],
    now_ms: u64,
) -> SessionRefresh<'a> {
    SessionRefresh {
        user,
        session,
        node: "suite-node",
        channels,
        ttl: TTL,
        seen_ms: now_ms,
        now_ms,
        stale_before_ms: now_ms - GRACE_MS,
    }
}

fn join<'a>(
    channel: &'a ChannelId,
    user: &'a UserId,
    session: &'a str,
    expires_ms: u64,
    now_ms: u64,
) -> ChannelJoin<'a> {
    ChannelJoin {
        channel,
        user,
        session,
        expires_ms,
        now_ms,
        stale_before_ms: now_ms - GRACE_MS,
    }
}

async fn status(store: &dyn PresenceStore, user: &UserId, now_ms: u64) -> (bool, u64) {
    let statuses = store
        .user_status(std::slice::from_ref(user), now_ms)
        .await
        .expect("user_status");
    assert_eq!(statuses.len(), 1, "one status per user");
    assert_eq!(&statuses[0].user, user);
    (statuses[0].online, statuses[0].last_seen_ms)
}

async fn online(store: &dyn PresenceStore, channel: &ChannelId, now_ms: u64) -> Vec<UserId> {
    let mut users = store
        .online_users(channel, now_ms, 100)
        .await
        .expect("online_users");
    users.sort_unstable();
    users
}

/// A refreshed session is online until `now + ttl`, exclusive, and its
/// heartbeat time is the user's last-seen time.
pub async fn refresh_keeps_a_session_online_until_its_ttl(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let t = now();
    let refreshed = store
        .refresh_session(refresh(&alice, "s1", &[], t))
        .await
        .expect("refresh");
    assert_eq!(refreshed, Refreshed::default(), "a new session");
    assert_eq!(status(store, &alice, t).await, (true, t));
    assert_eq!(status(store, &alice, t + TTL_MS - 1).await, (true, t));
    assert_eq!(status(store, &alice, t + TTL_MS).await, (false, t));
}

/// A refresh returns the channels the session's record named before it.
pub async fn refresh_reports_the_previous_channels(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let (a, b) = (names.channel("a"), names.channel("b"));
    let t = now();
    let first = store
        .refresh_session(refresh(&alice, "s1", &[a.clone(), b.clone()], t))
        .await
        .expect("refresh");
    assert_eq!(first.previous, None);
    let second = store
        .refresh_session(refresh(&alice, "s1", std::slice::from_ref(&b), t + 10))
        .await
        .expect("refresh");
    assert_eq!(second.previous, Some(vec![a, b.clone()]));
    let third = store
        .refresh_session(refresh(&alice, "s1", &[], t + 20))
        .await
        .expect("refresh");
    assert_eq!(third.previous, Some(vec![b]));
    assert!(third.lapsed.is_empty(), "the session itself never lapses");
}

/// A user's other sessions that expired more than the grace ago are
/// removed by their next refresh, and reported exactly once; ones within
/// the grace stay.
pub async fn refresh_removes_the_users_stale_sessions_once(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let a = names.channel("a");
    let t = now();
    store
        .refresh_session(refresh(&alice, "old", std::slice::from_ref(&a), t))
        .await
        .expect("refresh");
    store
        .refresh_session(refresh(&alice, "recent", &[], t + GRACE_MS))
        .await
        .expect("refresh");

    // "old" expired at t + TTL; "recent" at t + GRACE + TTL.
    let later = t + TTL_MS + GRACE_MS + 1;
    let refreshed = store
        .refresh_session(refresh(&alice, "new", &[], later))
        .await
        .expect("refresh");
    assert_eq!(
        refreshed.lapsed,
        vec![LapsedSession {
            session: "old".into(),
            channels: vec![a],
        }]
    );
    let again = store
        .refresh_session(refresh(&alice, "new", &[], later + 1))
        .await
        .expect("refresh");
    assert!(again.lapsed.is_empty(), "reported once: {:?}", again.lapsed);
    assert!(
        store
            .end_session(&alice, "old", 0)
            .await
            .expect("end")
            .is_empty(),
        "the lapsed record is gone"
    );
}

/// Last-seen never moves back, whether from a late heartbeat or a session
/// end, and an end without a time leaves it alone.
pub async fn last_seen_only_moves_forward(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let t = now();
    store
        .refresh_session(refresh(&alice, "s1", &[], t))
        .await
        .expect("refresh");
    let mut late = refresh(&alice, "s1", &[], t);
    late.seen_ms = t - 5_000;
    store.refresh_session(late).await.expect("refresh");
    assert_eq!(status(store, &alice, t).await.1, t);

    store.end_session(&alice, "s1", 0).await.expect("end");
    assert_eq!(status(store, &alice, t).await, (false, t));
    store.end_session(&alice, "s1", t + 10).await.expect("end");
    assert_eq!(status(store, &alice, t).await.1, t + 10);
    store.end_session(&alice, "s1", t + 5).await.expect("end");
    assert_eq!(status(store, &alice, t).await.1, t + 10);
}

/// Ending a session returns its channels; a second end finds nothing.
pub async fn end_session_returns_its_channels_once(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let (a, b) = (names.channel("a"), names.channel("b"));
    let t = now();
    store
        .refresh_session(refresh(&alice, "s1", &[a.clone(), b.clone()], t))
        .await
        .expect("refresh");
    store
        .refresh_session(refresh(&alice, "s2", &[], t))
        .await
        .expect("refresh");
    let ended = store.end_session(&alice, "s1", t).await.expect("end");
    assert_eq!(ended, vec![a, b]);
    assert!(
        store
            .end_session(&alice, "s1", t)
            .await
            .expect("end")
            .is_empty()
    );
    assert!(status(store, &alice, t).await.0, "s2 still lives");
    store.end_session(&alice, "s2", t).await.expect("end");
    assert!(!status(store, &alice, t).await.0);
}

/// Users never seen are offline with last-seen 0, and statuses come back
/// in the order asked.
pub async fn unknown_users_are_offline_and_never_seen(store: &dyn PresenceStore) {
    let names = Names::new();
    let (ghost, alice) = (names.user("ghost"), names.user("alice"));
    let t = now();
    store
        .refresh_session(refresh(&alice, "s1", &[], t))
        .await
        .expect("refresh");
    let statuses = store
        .user_status(&[ghost.clone(), alice.clone()], t)
        .await
        .expect("user_status");
    let got: Vec<(&UserId, bool, u64)> = statuses
        .iter()
        .map(|s| (&s.user, s.online, s.last_seen_ms))
        .collect();
    assert_eq!(got, [(&ghost, false, 0), (&alice, true, t)]);
    assert!(
        store
            .user_status(&[], t)
            .await
            .expect("user_status")
            .is_empty()
    );
}

/// A user's first live session in a channel joins it; their other
/// sessions, and repeated joins, do not.
pub async fn the_first_session_joins_and_later_ones_do_not(store: &dyn PresenceStore) {
    let names = Names::new();
    let (alice, bob) = (names.user("alice"), names.user("bob"));
    let room = names.channel("room");
    let t = now();
    let first = store
        .join_channel(join(&room, &alice, "s1", t + TTL_MS, t))
        .await
        .expect("join");
    assert!(first.first && first.online == 1 && first.lapsed.is_empty());
    let second = store
        .join_channel(join(&room, &alice, "s2", t + TTL_MS, t))
        .await
        .expect("join");
    assert!(!second.first, "a second session of the same user");
    assert_eq!(second.online, 1);
    let again = store
        .join_channel(join(&room, &alice, "s1", t + TTL_MS + 10, t + 10))
        .await
        .expect("join");
    assert!(!again.first, "a refresh of the same session");
    let other = store
        .join_channel(join(&room, &bob, "s3", t + TTL_MS, t))
        .await
        .expect("join");
    assert!(other.first);
    assert_eq!(other.online, 2);
    assert_eq!(online(store, &room, t).await, [alice, bob]);
}

/// A user leaves a channel when their last live session there goes.
pub async fn the_last_session_leaving_leaves(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let room = names.channel("room");
    let t = now();
    for session in ["s1", "s2"] {
        store
            .join_channel(join(&room, &alice, session, t + TTL_MS, t))
            .await
            .expect("join");
    }
    let one = store
        .leave_channel(&room, &alice, "s1", t)
        .await
        .expect("leave");
    assert_eq!((one.last, one.online), (false, 1));
    let two = store
        .leave_channel(&room, &alice, "s2", t)
        .await
        .expect("leave");
    assert_eq!((two.last, two.online), (true, 0));
    assert!(online(store, &room, t).await.is_empty());
    let again = store
        .leave_channel(&room, &alice, "s2", t)
        .await
        .expect("leave");
    assert!(!again.last, "leaving twice announces once");
}

/// After a session leaves, the user stays online in the channel only as
/// long as their longest remaining live session; sessions that already
/// expired do not count.
pub async fn leaving_keeps_the_longest_remaining_expiry(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let room = names.channel("room");
    let t = now();
    store
        .join_channel(join(&room, &alice, "short", t + TTL_MS, t))
        .await
        .expect("join");
    store
        .join_channel(join(&room, &alice, "long", t + 3 * TTL_MS, t))
        .await
        .expect("join");
    let left = store
        .leave_channel(&room, &alice, "long", t)
        .await
        .expect("leave");
    assert!(!left.last, "the short session still lives");
    assert_eq!(
        online(store, &room, t + TTL_MS - 1).await,
        std::slice::from_ref(&alice)
    );
    assert!(
        online(store, &room, t + TTL_MS).await.is_empty(),
        "online only as long as the short session"
    );

    store
        .join_channel(join(&room, &alice, "long", t + 3 * TTL_MS, t))
        .await
        .expect("join");
    let late = store
        .leave_channel(&room, &alice, "long", t + 2 * TTL_MS)
        .await
        .expect("leave");
    assert!(late.last, "the short session had expired by then");
}

/// Leaving a channel the session never joined announces nothing.
pub async fn leaving_an_unknown_channel_changes_nothing(store: &dyn PresenceStore) {
    let names = Names::new();
    let (alice, bob) = (names.user("alice"), names.user("bob"));
    let (room, empty) = (names.channel("room"), names.channel("empty"));
    let t = now();
    let nothing = store
        .leave_channel(&empty, &alice, "s1", t)
        .await
        .expect("leave");
    assert_eq!((nothing.last, nothing.online), (false, 0));
    store
        .join_channel(join(&room, &bob, "s2", t + TTL_MS, t))
        .await
        .expect("join");
    let stranger = store
        .leave_channel(&room, &alice, "s1", t)
        .await
        .expect("leave");
    assert_eq!((stranger.last, stranger.online), (false, 1));
}

/// A user whose presence in a channel expired joins it again.
pub async fn joining_after_expiry_counts_as_joining_again(store: &dyn PresenceStore) {
    let names = Names::new();
    let alice = names.user("alice");
    let room = names.channel("room");
    let t = now();
    store
        .join_channel(join(&room, &alice, "s1", t + TTL_MS, t))
        .await
        .expect("join");
    let back = store
        .join_channel(join(&room, &alice, "s2", t + 2 * TTL_MS, t + TTL_MS))
        .await
        .expect("join");
    assert!(back.first, "expired at t + TTL, back at t + TTL");
    assert_eq!(back.online, 1);
}

/// A join removes members that expired more than the grace ago and
/// reports them; members within the grace stay counted.
pub async fn a_join_removes_lapsed_members(store: &dyn PresenceStore) {
    let names = Names::new();
    let (alice, bob, carol) = (names.user("alice"), names.user("bob"), names.user("carol"));
    let room = names.channel("room");
    let t = now();
    store
        .join_channel(join(&room, &bob, "s1", t + TTL_MS, t))
        .await
        .expect("join");
    store
        .join_channel(join(&room, &carol, "s2", t + TTL_MS + 1_000, t + 1_000))
        .await
        .expect("join");
    let later = t + TTL_MS + GRACE_MS + 1;
    let joined = store
        .join_channel(join(&room, &alice, "s3", later + TTL_MS, later))
        .await
        .expect("join");
    assert!(joined.first);
    assert_eq!(joined.lapsed, [bob]);
    assert_eq!(joined.online, 2, "carol expired within the grace");
    assert_eq!(online(store, &room, later).await, [alice]);
}

/// A sweep removes members that expired before the cutoff, and only them.
pub async fn a_sweep_removes_only_stale_members(store: &dyn PresenceStore) {
    let names = Names::new();
    let (alice, bob) = (names.user("alice"), names.user("bob"));
    let (room, empty) = (names.channel("room"), names.channel("empty"));
    let t = now();
    store
        .join_channel(join(&room, &alice, "s1", t + TTL_MS, t))
        .await
        .expect("join");
    store
        .join_channel(join(&room, &bob, "s2", t + 3 * TTL_MS, t))
        .await
        .expect("join");
    let swept = store.sweep_channel(&room, t + TTL_MS).await.expect("sweep");
    assert!(swept.left.is_empty(), "the cutoff is exclusive");
    let swept = store
        .sweep_channel(&room, t + TTL_MS + 1)
        .await
        .expect("sweep");
    assert_eq!((swept.online, swept.left), (1, vec![alice]));
    let again = store
        .sweep_channel(&room, t + TTL_MS + 1)
        .await
        .expect("sweep");
    assert_eq!((again.online, again.left), (1, vec![]));
    let nothing = store.sweep_channel(&empty, t).await.expect("sweep");
    assert_eq!((nothing.online, nothing.left), (0, vec![]));
}

/// `online_users` lists members whose presence has not expired, at most
/// `limit` of them.
pub async fn online_lists_live_users_up_to_a_limit(store: &dyn PresenceStore) {
    let names = Names::new();
    let users: Vec<UserId> = (1..=3).map(|i| names.user(&format!("u{i}"))).collect();
    let (room, empty) = (names.channel("room"), names.channel("empty"));
    let t = now();
    for (i, user) in (1..).zip(&users) {
        store
            .join_channel(join(&room, user, "s", t + i * TTL_MS, t))
            .await
            .expect("join");
    }
    assert_eq!(online(store, &room, t).await, users);
    assert_eq!(online(store, &room, t + TTL_MS).await, users[1..]);
    assert!(online(store, &room, t + 3 * TTL_MS).await.is_empty());
    let one = store.online_users(&room, t, 1).await.expect("online_users");
    assert_eq!(one.len(), 1);
    assert!(users.contains(&one[0]));
    assert!(online(store, &empty, t).await.is_empty());
}

// The event publisher suite.

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
