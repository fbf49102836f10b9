//! Bad or foreign input: malformed IDs, undecodable batches, sessions owned elsewhere.

use super::*;

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
