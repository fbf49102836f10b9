//! The channel sweep and the event limit.

use super::*;

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
