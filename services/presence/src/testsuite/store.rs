//! The [`PresenceStore`] contract.

use std::time::Duration;

use chatmesh_ids::{ChannelId, UserId};

use super::{Names, now};
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
