//! `ack` and `unread`: read positions stored once per new position,
//! answered when asked, refused clearly, and unread counts per channel.

use serde_json::json;

use super::*;

#[tokio::test]
async fn an_ack_with_a_request_id_is_answered_with_the_position_held() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(json!({"type": "ack", "request_id": "a", "channel_id": "general", "seq": 7}))
        .await;
    let read = alice.next();
    assert_eq!(
        read,
        json!({"type": "read", "request_id": "a", "channel_id": "general", "user_id": "alice", "seq": 7})
    );
    // Backwards is answered with the position held, without a write.
    alice
        .text(json!({"type": "ack", "request_id": "b", "channel_id": "general", "seq": 3}))
        .await;
    assert_eq!(alice.next()["seq"], 7);
    assert_eq!(h.reads.writes(), 1);
    // Without a request_id nothing is answered, but the position moves.
    alice
        .text(json!({"type": "ack", "channel_id": "general", "seq": 9}))
        .await;
    alice.nothing_more();
    assert_eq!(h.reads.writes(), 2);
    alice
        .text(json!({"type": "ack", "request_id": "c", "channel_id": "general", "seq": 9}))
        .await;
    assert_eq!(alice.next()["seq"], 9);
    assert_eq!(h.reads.writes(), 2);
    // Each position that moved went out as a receipt, once.
    let receipts: Vec<(String, u64)> = h
        .feed
        .read_events()
        .into_iter()
        .map(|e| (e.user.as_str().to_owned(), e.seq))
        .collect();
    assert_eq!(receipts, [("alice".to_owned(), 7), ("alice".to_owned(), 9)]);
}

#[tokio::test]
async fn a_receipt_reaches_every_session_of_the_channel() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let mut bob = Client::open(&h, 2, "bob");
    alice.subscribe("general", None).await;
    bob.subscribe("general", None).await;
    h.hub.on_read(&crate::ports::ReadEvent {
        channel: channel("general"),
        user: chatmesh_ids::UserId::new("alice").unwrap(),
        seq: 4,
    });
    for client in [&mut alice, &mut bob] {
        assert_eq!(
            client.next(),
            json!({"type": "read", "channel_id": "general", "user_id": "alice", "seq": 4})
        );
    }
}

#[tokio::test]
async fn a_bad_or_failed_ack_is_refused_not_dropped() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(json!({"type": "ack", "request_id": "z", "channel_id": "general", "seq": 0}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidFrame);
    alice
        .text(json!({"type": "ack", "request_id": "x", "channel_id": "no spaces", "seq": 2}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidChannel);
    h.reads.set_down(true);
    // Even an ack that asked for no answer reports its failure.
    alice
        .text(json!({"type": "ack", "channel_id": "general", "seq": 2}))
        .await;
    assert_error(&alice.next(), ErrorKind::Unavailable);
    h.reads.set_down(false);
    alice
        .text(json!({"type": "ack", "request_id": "y", "channel_id": "general", "seq": 2}))
        .await;
    assert_eq!(alice.next()["type"], "read");
}

#[tokio::test]
async fn unread_counts_each_channel_and_sums_them() {
    let h = harness();
    for seq in [1, 2, 3] {
        h.reads.post(&channel("general"), seq);
    }
    h.reads.post(&channel("random"), 1);
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(json!({"type": "ack", "channel_id": "general", "seq": 1}))
        .await;
    alice
        .text(json!({"type": "unread", "request_id": "u", "channel_ids": ["general", "random"]}))
        .await;
    let unread = alice.next();
    assert_eq!(unread["type"], "unread", "{unread}");
    assert_eq!(unread["request_id"], "u");
    assert_eq!(unread["total"], 3, "{unread}");
    assert_eq!(unread["channels"][0]["channel_id"], "general");
    assert_eq!(unread["channels"][0]["unread"], 2);
    assert_eq!(unread["channels"][0]["read_seq"], 1);
    assert_eq!(unread["channels"][1]["unread"], 1);

    let many: Vec<String> = (0..=crate::ws::read::MAX_UNREAD_CHANNELS)
        .map(|i| format!("c{i}"))
        .collect();
    alice
        .text(json!({"type": "unread", "request_id": "m", "channel_ids": many}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidFrame);
}
