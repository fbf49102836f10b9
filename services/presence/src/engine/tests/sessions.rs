//! Sessions joining and leaving channels, closing and expiring.

use super::*;

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
