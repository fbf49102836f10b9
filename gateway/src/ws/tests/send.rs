//! `send`: acks, idempotent retries, errors from chat through the table.

use super::*;

#[tokio::test]
async fn a_send_is_acked_with_its_id_and_sequence_as_the_session_user() {
    let h = harness();
    let mut bob = Client::open(&h, 1, "bob");
    for expected in 1..=2 {
        bob.text(serde_json::json!({"type": "send", "request_id": "r", "channel_id": "general", "body": "hi"})).await;
        let ack = bob.next();
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["request_id"], "r");
        assert_eq!(ack["seq"], expected);
        assert!(
            ack["message_id"].is_string(),
            "message IDs travel as strings"
        );
    }
    let sends = h.chat.sends();
    assert!(sends.iter().all(|s| s.sender.as_str() == "bob"));
}

#[tokio::test]
async fn a_retried_send_with_its_key_is_answered_as_a_duplicate() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let send = serde_json::json!({"type": "send", "channel_id": "general", "body": "hi", "idempotency_key": "k1"});
    alice.text(send.clone()).await;
    let first = alice.next();
    alice.text(send).await;
    let again = alice.next();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["message_id"], first["message_id"]);
}

#[tokio::test]
async fn chat_errors_reach_the_client_through_the_table() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    for kind in [
        ErrorKind::Blocked,
        ErrorKind::InvalidMessage,
        ErrorKind::RateLimited,
        ErrorKind::InProgress,
        ErrorKind::Unavailable,
    ] {
        h.chat.fail_with(Some(ClientError::new(kind, "why")));
        alice.text(serde_json::json!({"type": "send", "request_id": "e", "channel_id": "general", "body": "x"})).await;
        let err = alice.next();
        assert_error(&err, kind);
        assert_eq!(err["request_id"], "e");
        assert_eq!(err["message"], "why");
    }
}

#[tokio::test]
async fn a_send_to_a_malformed_channel_never_reaches_chat() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(serde_json::json!({"type": "send", "channel_id": "no spaces", "body": "x"}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidChannel);
    assert!(h.chat.sends().is_empty());
}

#[tokio::test]
async fn a_send_by_a_non_member_is_refused() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(serde_json::json!({"type": "send", "channel_id": "private", "body": "x"}))
        .await;
    assert_error(&alice.next(), ErrorKind::NotMember);
}

/// The next frame the session queues, waiting for it: answers to
/// pipelined sends arrive from their own tasks.
async fn answer(client: &mut Client) -> Value {
    let out = tokio::time::timeout(std::time::Duration::from_secs(5), client.rx.recv())
        .await
        .expect("a frame within 5 s")
        .expect("the outbox is open");
    serde_json::from_str(&out.json()).unwrap()
}

#[tokio::test]
async fn a_send_waiting_on_one_channel_does_not_hold_up_another() {
    let h = harness();
    h.chat.hold("general");
    let mut alice = Client::open(&h, 1, "alice");
    let send = |id: &str, channel: &str| serde_json::json!({"type": "send", "request_id": id, "channel_id": channel, "body": id});
    alice
        .session
        .on_text(&send("slow", "general").to_string())
        .await;
    alice
        .session
        .on_text(&send("fast", "random").to_string())
        .await;
    // A ping is answered while the first send still waits.
    alice
        .session
        .on_text(&serde_json::json!({"type": "ping", "request_id": "p"}).to_string())
        .await;
    let first = answer(&mut alice).await;
    let second = answer(&mut alice).await;
    let mut ids = [
        first["request_id"].as_str().unwrap_or_default().to_owned(),
        second["request_id"].as_str().unwrap_or_default().to_owned(),
    ];
    ids.sort();
    assert_eq!(ids, ["fast", "p"]);
    assert_eq!(alice.session.sends.pending(), 2, "two sends until answered");

    h.chat.release("general", 1);
    let ack = answer(&mut alice).await;
    assert_eq!(
        (ack["type"].as_str(), ack["request_id"].as_str()),
        (Some("ack"), Some("slow"))
    );
    let channel = alice.session.sends.answered().await;
    alice.session.on_send_answered(channel);
    let channel = alice.session.sends.answered().await;
    alice.session.on_send_answered(channel);
    assert_eq!(alice.session.sends.pending(), 0);
}

#[tokio::test]
async fn sends_to_one_channel_reach_chat_one_at_a_time_in_their_order() {
    let h = harness();
    h.chat.hold("general");
    let mut alice = Client::open(&h, 1, "alice");
    for i in 0..5 {
        let frame = serde_json::json!({"type": "send", "request_id": i.to_string(), "channel_id": "general", "body": format!("m{i}")});
        alice.session.on_text(&frame.to_string()).await;
    }
    tokio::task::yield_now().await;
    assert!(h.chat.sends().len() <= 1, "only the first send is at chat");
    h.chat.release("general", 5);
    alice
        .session
        .settle_sends(std::time::Duration::from_secs(5))
        .await;
    for i in 0..5 {
        let ack = alice.next();
        assert_eq!(ack["request_id"], i.to_string(), "{ack}");
        assert_eq!(ack["seq"], i + 1, "{ack}");
    }
    let bodies: Vec<String> = h.chat.sends().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(h.chat.peak_in_flight("general"), 1);
}

#[tokio::test]
async fn at_its_send_window_a_connection_reads_no_more_until_an_answer() {
    let chat = MemoryChat::default().with_channel("general", &["alice"]);
    let limits = GatewayLimits {
        max_sends_in_flight: 3,
        ..GatewayLimits::default()
    };
    let h = harness_with(chat, limits, PinMode::Serve);
    h.chat.hold("general");
    let mut alice = Client::open(&h, 1, "alice");
    for i in 0..3 {
        assert!(!alice.session.sends_full(), "full after {i}");
        let frame = serde_json::json!({"type": "send", "request_id": i.to_string(), "channel_id": "general", "body": "x"});
        alice.session.on_text(&frame.to_string()).await;
    }
    assert!(alice.session.sends_full());
    h.chat.release("general", 1);
    let channel = alice.session.sends.answered().await;
    alice.session.on_send_answered(channel);
    assert!(!alice.session.sends_full(), "an answer frees a place");
    assert_eq!(alice.next()["request_id"], "0");
}
