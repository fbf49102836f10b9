//! Gap replay from the recent window and storage.

use super::*;

fn seqs_until_quiet(client: &mut Client) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Ok(out) = client.rx.try_recv() {
        let v: Value = serde_json::from_str(&out.json()).unwrap();
        assert_eq!(v["type"], "message", "{v}");
        seqs.push(v["seq"].as_u64().unwrap());
    }
    seqs
}

#[tokio::test]
async fn a_gap_is_replayed_from_the_recent_window() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 5);
    for seq in 1..=5 {
        h.gaps.recent(message("general", seq));
    }
    let mut alice = Client::open(&h, 1, "alice");
    assert_eq!(alice.subscribe("general", Some(2)).await["seq"], 5);
    assert_eq!(seqs_until_quiet(&mut alice), vec![3, 4, 5]);
    assert_eq!(h.gaps.store_calls(), 0);
}

#[tokio::test]
async fn older_messages_come_from_storage_in_pages() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 10);
    for seq in 1..=7 {
        h.gaps.store(message("general", seq));
    }
    for seq in 8..=10 {
        h.gaps.recent(message("general", seq));
    }
    h.gaps.page_size(2);
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", Some(0)).await;
    assert_eq!(seqs_until_quiet(&mut alice), (1..=10).collect::<Vec<_>>());
    assert!(h.gaps.store_calls() >= 4, "pages were followed");
}

#[tokio::test]
async fn numbers_never_made_durable_are_skipped() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 4);
    h.gaps.recent(message("general", 1));
    h.gaps.void(&channel("general"), 2);
    h.gaps.recent(message("general", 3));
    h.gaps.recent(message("general", 4));
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", Some(0)).await;
    assert_eq!(seqs_until_quiet(&mut alice), vec![1, 3, 4]);
}

#[tokio::test]
async fn a_gap_too_large_asks_the_client_to_reload() {
    let h = harness();
    let current = MAX_REPLAY + 10;
    h.feed.set_seq(&channel("general"), current);
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", Some(5)).await;
    let frame = alice.next();
    assert_eq!(frame["type"], "reload_required");
    assert_eq!(frame["from_seq"], 6);
    assert_eq!(frame["to_seq"], current);
    assert_eq!(h.gaps.store_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn storage_that_never_catches_up_ends_in_a_reload_after_the_wait() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 3);
    h.gaps.recent(message("general", 3));
    let mut alice = Client::open(&h, 1, "alice");
    let started = tokio::time::Instant::now();
    alice.subscribe("general", Some(0)).await;
    assert!(started.elapsed() >= STORAGE_CATCH_UP);
    let frame = alice.next();
    assert_eq!(frame["type"], "reload_required");
    assert_eq!(frame["from_seq"], 1);
    assert!(
        h.gaps.store_calls() > 5,
        "storage was asked again while it caught up"
    );
}

#[tokio::test]
async fn with_the_recent_window_down_storage_fills_the_gap() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 2);
    h.gaps.recent_down();
    h.gaps.store(message("general", 1));
    h.gaps.store(message("general", 2));
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", Some(0)).await;
    assert_eq!(seqs_until_quiet(&mut alice), vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn live_messages_wait_behind_the_replay() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 2);
    h.gaps.recent(message("general", 1));
    h.gaps.recent(message("general", 2));
    // Another session keeps the channel subscribed, so live messages flow.
    let mut bob = Client::open(&h, 2, "bob");
    bob.subscribe("general", None).await;
    let mut alice = Client::open(&h, 1, "alice");
    // A message published while alice's subscribe is in flight is held for
    // her and released after the replay: simulate it arriving first.
    let sub = crate::ws::hub::Subscriber {
        user: chatmesh_ids::UserId::new("alice").unwrap(),
        outbox: alice.session.outbox.clone(),
        held: Some(Vec::new()),
    };
    h.hub.subscribe(&channel("general"), 99, sub).await.unwrap();
    h.hub.accept(&channel("general"), message("general", 3));
    assert!(alice.rx.try_recv().is_err(), "held while replaying");
    h.hub.release(&channel("general"), 99);
    assert_eq!(seqs_until_quiet(&mut alice), vec![3]);
    // And through the session itself: replay first, then what is live.
    h.gaps.recent(message("general", 3));
    let mut carol_chat = Client::open(&h, 3, "alice");
    carol_chat.subscribe("general", Some(0)).await;
    h.hub.accept(&channel("general"), message("general", 4));
    assert_eq!(seqs_until_quiet(&mut carol_chat), vec![1, 2, 3, 4]);
    assert_eq!(bob.next()["seq"], 3);
}

#[tokio::test]
async fn a_client_already_up_to_date_gets_no_replay() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 7);
    let mut alice = Client::open(&h, 1, "alice");
    assert_eq!(alice.subscribe("general", Some(7)).await["seq"], 7);
    alice.nothing_more();
    assert_eq!(h.gaps.store_calls(), 0);
}
