//! The engine's rules on the in-memory store, with tokio's clock paused so
//! TTLs and sweeps run on virtual time.

use std::sync::atomic::Ordering;

use chatmesh_proto::presence::v1 as pb;
use prost::Message as _;

use super::*;
use crate::memory::{MemoryPublisher, MemoryStore, TokioClock};
use crate::test_support::DownPublisher;

/// "Now" when a test starts, in ms since the epoch.
const BASE_MS: u64 = 1_750_000_000_000;
const ME: &str = "p-a";
const PEER: &str = "p-b";

struct Harness {
    engine: Arc<Engine>,
    store: Arc<MemoryStore>,
    events: Arc<MemoryPublisher>,
    instances: Instances,
    clock: Arc<TokioClock>,
}

fn settings() -> PresenceSettings {
    PresenceSettings {
        sweep_interval: Duration::from_secs(1),
        ..PresenceSettings::default()
    }
}

/// An engine on an empty store that owns every session and channel.
fn harness() -> Harness {
    harness_with(settings(), None)
}

fn harness_with(settings: PresenceSettings, publisher: Option<Arc<dyn EventPublisher>>) -> Harness {
    let clock = Arc::new(TokioClock::new(BASE_MS));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let events = Arc::new(MemoryPublisher::new());
    let instances = Instances::new(ME);
    instances.set(vec![ME.into()]);
    let engine = Arc::new(Engine::new(
        store.clone(),
        publisher.unwrap_or_else(|| events.clone()),
        instances.clone(),
        clock.clone(),
        settings,
    ));
    Harness {
        engine,
        store,
        events,
        instances,
        clock,
    }
}

fn user(raw: &str) -> UserId {
    UserId::new(raw).expect("a valid user ID")
}

fn channel(raw: &str) -> ChannelId {
    ChannelId::new(raw).expect("a valid channel ID")
}

fn beat(session: &str, user: &str, channels: &[&str]) -> pb::SessionHeartbeat {
    pb::SessionHeartbeat {
        session_id: session.into(),
        user_id: user.into(),
        channel_ids: channels.iter().map(|c| (*c).to_owned()).collect(),
        at_ms: 0,
        closed: false,
    }
}

fn closed(session: &str, user: &str, channels: &[&str], at_ms: i64) -> pb::SessionHeartbeat {
    pb::SessionHeartbeat {
        at_ms,
        closed: true,
        ..beat(session, user, channels)
    }
}

fn batch(ttl_ms: i64, sessions: Vec<pb::SessionHeartbeat>) -> Vec<u8> {
    pb::HeartbeatBatch {
        gateway_node: "gw-1".into(),
        sessions,
        ttl_ms,
    }
    .encode_to_vec()
}

/// A name that rendezvous hashing over `live` gives to `owner`.
fn owned_by(owner: &str, live: &[&str], prefix: &str) -> String {
    let view = Instances::new(owner);
    view.set(live.iter().map(|i| (*i).to_owned()).collect());
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|name| view.owns(name))
        .expect("some name has every owner")
}

/// Events as (kind, channel, user), easy to compare.
fn summary(events: &[PresenceEvent]) -> Vec<(EventKind, String, String)> {
    events
        .iter()
        .map(|e| (e.kind, e.channel.to_string(), e.user.to_string()))
        .collect()
}

fn ev(kind: EventKind, channel: &str, user: &str) -> (EventKind, String, String) {
    (kind, channel.to_owned(), user.to_owned())
}

impl Harness {
    async fn send(&self, ttl_ms: i64, sessions: Vec<pb::SessionHeartbeat>) {
        self.engine.handle_payload(&batch(ttl_ms, sessions)).await;
    }

    /// (online, last seen) of `name` now.
    async fn status(&self, name: &str) -> (bool, u64) {
        let statuses = self
            .store
            .user_status(&[user(name)], self.clock.now_ms())
            .await
            .expect("memory store");
        (statuses[0].online, statuses[0].last_seen_ms)
    }

    /// Users online in `name` now, sorted.
    async fn online(&self, name: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .store
            .online_users(&channel(name), self.clock.now_ms(), 100)
            .await
            .expect("memory store")
            .into_iter()
            .map(String::from)
            .collect();
        users.sort_unstable();
        users
    }

    /// The events published once there are at least `n`, failing after a
    /// minute of (virtual) time rather than hanging.
    async fn wait_events(&self, n: usize) -> Vec<PresenceEvent> {
        tokio::time::timeout(Duration::from_secs(60), self.events.wait_for(n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} events: {:?}", self.events.events()))
    }

    fn stat(&self, pick: fn(&Stats) -> &AtomicU64) -> u64 {
        pick(self.engine.stats()).load(Ordering::Relaxed)
    }
}

#[tokio::test(start_paused = true)]
async fn a_first_session_joins_with_one_event() {
    let h = harness();
    h.send(0, vec![beat("s1", "alice", &["room"])]).await;
    let events = h.events.events();
    assert_eq!(summary(&events), [ev(EventKind::Join, "room", "alice")]);
    assert_eq!(events[0].at_ms, BASE_MS);
    assert_eq!(h.online("room").await, ["alice"]);
    assert_eq!(h.status("alice").await, (true, BASE_MS));
    assert_eq!(h.stat(|s| &s.heartbeats), 1);
}

#[tokio::test(start_paused = true)]
async fn a_second_session_of_the_same_user_announces_nothing() {
    let h = harness();
    // Both in one batch, handled concurrently: still one join.
    h.send(
        0,
        vec![
            beat("s1", "alice", &["room"]),
            beat("s2", "alice", &["room"]),
        ],
    )
    .await;
    h.send(0, vec![beat("s3", "alice", &["room"])]).await;
    assert_eq!(
        summary(&h.events.events()),
        [ev(EventKind::Join, "room", "alice")]
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_session_leaving_announces_a_leave() {
    let h = harness();
    h.send(
        0,
        vec![
            beat("s1", "alice", &["room"]),
            beat("s2", "alice", &["room"]),
        ],
    )
    .await;
    h.events.take();
    // s1 unsubscribes: alice is still in the room through s2.
    h.send(0, vec![beat("s1", "alice", &[])]).await;
    assert!(h.events.events().is_empty());
    assert_eq!(h.online("room").await, ["alice"]);
    h.send(0, vec![beat("s2", "alice", &[])]).await;
    assert_eq!(
        summary(&h.events.take()),
        [ev(EventKind::Leave, "room", "alice")]
    );
    assert!(h.online("room").await.is_empty());
    assert!(h.status("alice").await.0, "still connected, in no channel");
}

#[tokio::test(start_paused = true)]
async fn a_closed_heartbeat_ends_the_session_and_leaves_every_channel() {
    let h = harness();
    h.send(0, vec![beat("s1", "alice", &["a", "b"])]).await;
    h.events.take();
    let at = BASE_MS + 500;
    h.send(0, vec![closed("s1", "alice", &[], at as i64)]).await;
    let mut left = summary(&h.events.take());
    left.sort();
    assert_eq!(
        left,
        [
            ev(EventKind::Leave, "a", "alice"),
            ev(EventKind::Leave, "b", "alice")
        ]
    );
    assert_eq!(h.status("alice").await, (false, at));
    assert!(!h.store.session_alive(&user("alice"), "s1"));
    assert!(h.online("a").await.is_empty() && h.online("b").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_closed_heartbeat_also_leaves_the_channels_the_gateway_names() {
    let h = harness();
    // Alice is in the room, but her session record is gone (as when the
    // session hash lapsed): only the gateway still knows the channel.
    h.store
        .join_channel(ChannelJoin {
            channel: &channel("room"),
            user: &user("alice"),
            session: "s1",
            expires_ms: BASE_MS + 30_000,
            now_ms: BASE_MS,
            stale_before_ms: BASE_MS - STALE_GRACE_MS,
        })
        .await
        .expect("memory store");
    tokio::time::advance(Duration::from_millis(10)).await;
    h.send(0, vec![closed("s1", "alice", &["room"], 0)]).await;
    assert_eq!(
        summary(&h.events.events()),
        [ev(EventKind::Leave, "room", "alice")]
    );
    assert_eq!(
        h.status("alice").await.1,
        BASE_MS + 10,
        "a close without a time is stamped now"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_owned_here_is_ended() {
    let h = harness();
    h.send(1_000, vec![beat("s1", "alice", &["room"])]).await;
    h.events.take();
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(h.store.take_expired().is_empty(), "not yet");
    tokio::time::advance(Duration::from_millis(1)).await;
    let expired = h.store.take_expired();
    assert_eq!(expired, [keys::session("alice", "s1")]);
    h.engine.handle_expiry(expired[0].as_bytes()).await;
    assert_eq!(
        summary(&h.events.take()),
        [ev(EventKind::Leave, "room", "alice")]
    );
    assert_eq!(h.status("alice").await, (false, BASE_MS));
    assert_eq!(h.stat(|s| &s.expired), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_owned_elsewhere_is_skipped() {
    let h = harness();
    let live = [ME, PEER];
    let theirs = owned_by(PEER, &live, "s");
    h.send(1_000, vec![beat(&theirs, "alice", &["room"])]).await;
    h.events.take();
    h.instances.set(live.map(String::from).to_vec());
    tokio::time::advance(Duration::from_secs(1)).await;
    for key in h.store.take_expired() {
        h.engine.handle_expiry(key.as_bytes()).await;
    }
    // Not session keys at all.
    h.engine.handle_expiry(b"cm:user:{alice}:seen").await;
    h.engine.handle_expiry(&[0xff, 0xfe]).await;
    assert!(h.events.events().is_empty());
    assert_eq!(h.stat(|s| &s.expired), 0);
    let record = h
        .store
        .end_session(&user("alice"), &theirs, 0)
        .await
        .expect("memory store");
    assert_eq!(record, [channel("room")], "the owner ends it, not us");
}

#[tokio::test(start_paused = true)]
async fn a_batch_ttl_below_100ms_is_raised_to_100ms() {
    let h = harness();
    h.send(1, vec![beat("s1", "alice", &[])]).await;
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(h.status("alice").await.0);
    assert!(h.store.session_alive(&user("alice"), "s1"));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!h.status("alice").await.0);
    assert!(!h.store.session_alive(&user("alice"), "s1"));
}

#[tokio::test(start_paused = true)]
async fn a_batch_ttl_above_the_maximum_is_capped() {
    let h = harness_with(
        PresenceSettings {
            max_session_ttl: Duration::from_secs(60),
            ..settings()
        },
        None,
    );
    h.send(3_600_000, vec![beat("s1", "alice", &[])]).await;
    tokio::time::advance(Duration::from_millis(59_999)).await;
    assert!(h.status("alice").await.0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!h.status("alice").await.0);
    assert_eq!(h.store.take_expired(), [keys::session("alice", "s1")]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_without_a_ttl_gets_the_default() {
    let h = harness();
    let default = PresenceSettings::default().default_session_ttl;
    h.send(0, vec![beat("s1", "alice", &[])]).await;
    h.send(-5, vec![beat("s2", "bob", &[])]).await;
    tokio::time::advance(default - Duration::from_millis(1)).await;
    assert!(h.status("alice").await.0 && h.status("bob").await.0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!h.status("alice").await.0 && !h.status("bob").await.0);
}

#[test]
fn session_ttls_stay_within_the_limits() {
    let h = harness();
    let max = h.engine.settings.max_session_ttl;
    let default = h.engine.settings.default_session_ttl;
    assert_eq!(h.engine.session_ttl(None), default);
    assert_eq!(
        h.engine.session_ttl(Some(Duration::from_millis(1))),
        MIN_SESSION_TTL
    );
    assert_eq!(h.engine.session_ttl(Some(max * 2)), max);
    let tight = harness_with(
        PresenceSettings {
            default_session_ttl: Duration::from_millis(50),
            max_session_ttl: Duration::from_millis(50),
            ..settings()
        },
        None,
    );
    assert_eq!(
        tight.engine.session_ttl(Some(Duration::from_millis(1))),
        Duration::from_millis(50),
        "a maximum under 100ms wins over the minimum"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_channel_ids_are_skipped() {
    let h = harness();
    h.send(
        0,
        vec![beat("s1", "alice", &["good", "bad room", "../x", ""])],
    )
    .await;
    assert_eq!(
        summary(&h.events.take()),
        [ev(EventKind::Join, "good", "alice")]
    );
    let record = h
        .store
        .end_session(&user("alice"), "s1", 0)
        .await
        .expect("memory store");
    assert_eq!(
        record,
        [channel("good")],
        "only the valid channel is stored"
    );
}

#[tokio::test(start_paused = true)]
async fn sessions_without_a_user_or_session_id_are_ignored() {
    let h = harness();
    h.send(
        0,
        vec![
            beat("", "alice", &["room"]),
            beat("s2", "", &["room"]),
            beat("s3", "has space", &["room"]),
        ],
    )
    .await;
    assert!(h.events.events().is_empty());
    assert!(h.online("room").await.is_empty());
    assert_eq!(h.status("alice").await, (false, 0));
    assert_eq!(h.stat(|s| &s.invalid), 3);
    assert_eq!(h.stat(|s| &s.heartbeats), 0);
}

#[tokio::test(start_paused = true)]
async fn the_sweep_removes_lapsed_users_and_announces_their_leaves() {
    let h = harness();
    h.send(1_000, vec![beat("s1", "alice", &["room"])]).await;
    // No expiry event arrives: only the sweep can notice.
    let shutdown = CancellationToken::new();
    let sweeps = tokio::spawn(h.engine.clone().run_sweeps(shutdown.clone()));
    let events = h.wait_events(2).await;
    assert_eq!(
        summary(&events),
        [
            ev(EventKind::Join, "room", "alice"),
            ev(EventKind::Leave, "room", "alice")
        ]
    );
    // Expired at +1s; stale once the grace has passed too, at the next
    // 1s tick after +3s.
    assert_eq!(events[1].at_ms, BASE_MS + 4_000);
    assert!(h.online("room").await.is_empty());
    shutdown.cancel();
    sweeps.await.expect("sweep loop");
}

#[tokio::test(start_paused = true)]
async fn only_channels_owned_here_are_swept() {
    let h = harness();
    let live = [ME, PEER];
    let mine = owned_by(ME, &live, "room");
    let theirs = owned_by(PEER, &live, "room");
    h.send(1_000, vec![beat("s1", "alice", &[&mine, &theirs])])
        .await;
    h.events.take();
    h.instances.set(live.map(String::from).to_vec());
    tokio::time::advance(Duration::from_secs(4)).await;
    h.engine.sweep().await;
    assert_eq!(
        summary(&h.events.take()),
        [ev(EventKind::Leave, &mine, "alice")]
    );
}

#[tokio::test(start_paused = true)]
async fn channels_unheard_of_for_ten_minutes_are_no_longer_swept() {
    let h = harness();
    h.send(1_000, vec![beat("s1", "alice", &["room"])]).await;
    h.events.take();
    tokio::time::advance(SWEEP_FORGET).await;
    h.engine.sweep().await;
    assert!(h.events.events().is_empty());
    let swept = h
        .store
        .sweep_channel(&channel("room"), h.clock.now_ms())
        .await
        .expect("memory store");
    assert_eq!(swept.left, [user("alice")], "still there, just forgotten");
}

#[tokio::test(start_paused = true)]
async fn channels_over_the_event_limit_get_no_events() {
    let h = harness_with(
        PresenceSettings {
            events_max_online: 2,
            ..settings()
        },
        None,
    );
    for (session, name) in [("s1", "alice"), ("s2", "bob"), ("s3", "carol")] {
        h.send(0, vec![beat(session, name, &["room"])]).await;
    }
    assert_eq!(
        summary(&h.events.events()),
        [
            ev(EventKind::Join, "room", "alice"),
            ev(EventKind::Join, "room", "bob")
        ]
    );
    assert_eq!(h.stat(|s| &s.suppressed), 1, "carol's join");
    assert_eq!(h.online("room").await, ["alice", "bob", "carol"]);
    // Back at the limit after Bob leaves: his leave is announced.
    h.send(0, vec![closed("s2", "bob", &[], 0)]).await;
    assert_eq!(
        summary(&h.events.events())[2..],
        [ev(EventKind::Leave, "room", "bob")]
    );
    assert_eq!(h.stat(|s| &s.events), 3);
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_batch_is_skipped_and_the_loop_goes_on() {
    let h = harness();
    let (tx, rx) = mpsc::channel(8);
    let heartbeats = tokio::spawn(
        h.engine
            .clone()
            .run_heartbeats(rx, CancellationToken::new()),
    );
    tx.send(vec![0xff, 0xff, 0xff]).await.expect("loop running");
    tx.send(batch(0, vec![beat("s1", "alice", &["room"])]))
        .await
        .expect("loop running");
    let events = h.wait_events(1).await;
    assert_eq!(summary(&events), [ev(EventKind::Join, "room", "alice")]);
    assert_eq!(h.stat(|s| &s.bad_batches), 1);
    drop(tx);
    heartbeats.await.expect("loop ends when its input does");
}

#[tokio::test(start_paused = true)]
async fn sessions_owned_elsewhere_are_skipped() {
    let h = harness();
    let live = [ME, PEER];
    h.instances.set(live.map(String::from).to_vec());
    let mine = owned_by(ME, &live, "s");
    let theirs = owned_by(PEER, &live, "s");
    h.send(
        0,
        vec![
            beat(&mine, "alice", &["room"]),
            beat(&theirs, "bob", &["room"]),
        ],
    )
    .await;
    assert_eq!(
        summary(&h.events.events()),
        [ev(EventKind::Join, "room", "alice")]
    );
    assert_eq!(h.status("bob").await, (false, 0));
    assert_eq!((h.stat(|s| &s.heartbeats), h.stat(|s| &s.skipped)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn nothing_is_owned_before_registering() {
    let h = harness();
    h.instances.set(Vec::new());
    h.send(0, vec![beat("s1", "alice", &["room"])]).await;
    assert!(h.events.events().is_empty());
    assert_eq!(h.stat(|s| &s.skipped), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_loop() {
    let h = harness();
    let shutdown = CancellationToken::new();
    // Inputs stay open: only the token can stop the loops.
    let (_heartbeat_tx, heartbeat_rx) = mpsc::channel(8);
    let (_expiry_tx, expiry_rx) = mpsc::channel(8);
    let loops = [
        tokio::spawn(
            h.engine
                .clone()
                .run_heartbeats(heartbeat_rx, shutdown.clone()),
        ),
        tokio::spawn(h.engine.clone().run_expiries(expiry_rx, shutdown.clone())),
        tokio::spawn(h.engine.clone().run_sweeps(shutdown.clone())),
    ];
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(loops.iter().all(|l| !l.is_finished()), "running until told");
    shutdown.cancel();
    for l in loops {
        tokio::time::timeout(Duration::from_secs(1), l)
            .await
            .expect("stopped promptly")
            .expect("no panic");
    }
}

#[tokio::test(start_paused = true)]
async fn the_expiry_loop_ends_sessions_it_hears_of() {
    let h = harness();
    h.send(1_000, vec![beat("s1", "alice", &["room"])]).await;
    let (tx, rx) = mpsc::channel(8);
    let expiries = tokio::spawn(h.engine.clone().run_expiries(rx, CancellationToken::new()));
    tokio::time::advance(Duration::from_secs(1)).await;
    for key in h.store.take_expired() {
        tx.send(key.into_bytes()).await.expect("loop running");
    }
    let events = h.wait_events(2).await;
    assert_eq!(events[1].kind, EventKind::Leave);
    drop(tx);
    expiries.await.expect("loop ends when its input does");
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_session_is_cleared_by_the_users_next_heartbeat() {
    let h = harness();
    // s1's gateway died, and its expiry event was lost.
    h.send(1_000, vec![beat("s1", "alice", &["a", "both"])])
        .await;
    tokio::time::advance(Duration::from_millis(1_000 + STALE_GRACE_MS + 1)).await;
    h.send(0, vec![beat("s2", "alice", &["b", "both"])]).await;
    let events = summary(&h.events.events());
    assert!(
        events.contains(&ev(EventKind::Leave, "a", "alice")),
        "{events:?}"
    );
    assert!(
        !events.contains(&ev(EventKind::Leave, "both", "alice")),
        "still there through s2: {events:?}"
    );
    assert_eq!(h.online("both").await, ["alice"]);
    assert!(h.online("a").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_publish_is_counted_and_the_state_still_applied() {
    let h = harness_with(settings(), Some(Arc::new(DownPublisher)));
    h.send(0, vec![beat("s1", "alice", &["room"])]).await;
    assert_eq!(h.online("room").await, ["alice"]);
    assert_eq!(h.stat(|s| &s.errors), 1);
    assert_eq!(h.stat(|s| &s.events), 0);
}
