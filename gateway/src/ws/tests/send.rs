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
