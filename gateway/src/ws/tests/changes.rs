//! `edit`, `delete` and `react`: acked like sends, refused through the
//! error table, and kept in order with the sends to their channel.

use serde_json::json;

use super::*;
use crate::ports::ChangeRequest;

/// Alice posts to `general`: its sequence number.
async fn post(client: &mut Client) -> u64 {
    client
        .text(json!({"type": "send", "channel_id": "general", "body": "hi"}))
        .await;
    client.next()["seq"].as_u64().expect("an ack")
}

#[tokio::test]
async fn each_change_is_acked_with_the_number_of_its_event() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let mut bob = Client::open(&h, 2, "bob");
    let seq = post(&mut alice).await;
    let frames = [
        (
            false,
            json!({"type": "edit", "request_id": "e", "channel_id": "general", "seq": seq, "body": "hello"}),
        ),
        (
            true,
            json!({"type": "react", "request_id": "r", "channel_id": "general", "seq": seq, "emoji": "👍"}),
        ),
        (
            true,
            json!({"type": "react", "request_id": "u", "channel_id": "general", "seq": seq, "emoji": "👍", "remove": true}),
        ),
        (
            false,
            json!({"type": "delete", "request_id": "d", "channel_id": "general", "seq": seq}),
        ),
    ];
    for (expected, (by_bob, frame)) in (seq + 1..).zip(frames) {
        let client = if by_bob { &mut bob } else { &mut alice };
        client.text(frame.clone()).await;
        let ack = client.next();
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["request_id"], frame["request_id"], "{ack}");
        assert_eq!(ack["channel_id"], "general", "{ack}");
        assert_eq!(ack["seq"], expected, "{ack}");
        assert!(ack["message_id"].is_string(), "{ack}");
        assert_eq!(
            (&ack["masked"], &ack["duplicate"]),
            (&false.into(), &false.into())
        );
    }
    let changes = h.chat.changes();
    let made: Vec<(&str, u64, &ChangeRequest)> = changes
        .iter()
        .map(|c| (c.sender.as_str(), c.target, &c.request))
        .collect();
    let thumbs = |remove| ChangeRequest::React {
        emoji: "👍".into(),
        remove,
    };
    assert_eq!(
        made,
        [
            (
                "alice",
                seq,
                &ChangeRequest::Edit {
                    body: "hello".into()
                }
            ),
            ("bob", seq, &thumbs(false)),
            ("bob", seq, &thumbs(true)),
            ("alice", seq, &ChangeRequest::Delete),
        ]
    );
}

#[tokio::test]
async fn a_retried_change_with_its_key_is_answered_as_a_duplicate() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let seq = post(&mut alice).await;
    let edit = json!({"type": "edit", "channel_id": "general", "seq": seq, "body": "again", "idempotency_key": "e1"});
    alice.text(edit.clone()).await;
    let first = alice.next();
    alice.text(edit).await;
    let again = alice.next();
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(
        (&again["seq"], &again["message_id"]),
        (&first["seq"], &first["message_id"])
    );
    assert_eq!(h.chat.changes()[1].idempotency_key.as_deref(), Some("e1"));
}

#[tokio::test]
async fn chat_refusals_reach_the_client_through_the_table() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let mut bob = Client::open(&h, 2, "bob");
    let seq = post(&mut alice).await;
    bob.text(json!({"type": "edit", "request_id": "x", "channel_id": "general", "seq": seq, "body": "mine now"}))
        .await;
    let refused = bob.next();
    assert_error(&refused, ErrorKind::Forbidden);
    assert_eq!(refused["request_id"], "x");
    bob.text(json!({"type": "delete", "channel_id": "general", "seq": seq}))
        .await;
    assert_error(&bob.next(), ErrorKind::Forbidden);
    alice
        .text(json!({"type": "react", "channel_id": "general", "seq": 99, "emoji": "👍"}))
        .await;
    assert_error(&alice.next(), ErrorKind::NotFound);
    alice
        .text(json!({"type": "delete", "channel_id": "private", "seq": 1}))
        .await;
    assert_error(&alice.next(), ErrorKind::NotMember);
    for kind in [
        ErrorKind::Blocked,
        ErrorKind::InvalidMessage,
        ErrorKind::InvalidRequest,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
    ] {
        h.chat.fail_with(Some(ClientError::new(kind, "why")));
        alice
            .text(json!({"type": "edit", "request_id": "e", "channel_id": "general", "seq": seq, "body": "x"}))
            .await;
        let err = alice.next();
        assert_error(&err, kind);
        assert_eq!(
            (&err["request_id"], &err["message"]),
            (&"e".into(), &"why".into())
        );
    }
}

#[tokio::test]
async fn a_change_naming_no_message_or_a_bad_channel_never_reaches_chat() {
    use chatmesh_proto::gateway::v1 as pb;
    use prost::Message as _;
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    // A binary frame without `seq` carries 0, which no message has.
    let delete = pb::ClientFrame {
        request_id: "z".into(),
        frame: Some(pb::client_frame::Frame::Delete(pb::Delete {
            channel_id: "general".into(),
            ..Default::default()
        })),
    };
    alice.session.on_binary(&delete.encode_to_vec()).await;
    let refused = alice.next();
    assert_error(&refused, ErrorKind::InvalidFrame);
    assert_eq!(refused["request_id"], "z");
    alice
        .text(json!({"type": "react", "channel_id": "no spaces", "seq": 1, "emoji": "👍"}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidChannel);
    alice
        .text(json!({"type": "react", "channel_id": "general", "seq": 1, "emoji": 7}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidFrame);
    assert!(h.chat.changes().is_empty());
}

#[tokio::test]
async fn binary_change_frames_are_acked_in_binary_form_too() {
    use chatmesh_proto::gateway::v1 as pb;
    use prost::Message as _;
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let seq = post(&mut alice).await;
    let react = pb::ClientFrame {
        request_id: "b".into(),
        frame: Some(pb::client_frame::Frame::React(pb::React {
            channel_id: "general".into(),
            seq,
            emoji: "🎉".into(),
            ..Default::default()
        })),
    };
    alice.session.on_binary(&react.encode_to_vec()).await;
    alice
        .session
        .settle_sends(std::time::Duration::from_secs(5))
        .await;
    let out = alice.rx.try_recv().expect("an answer");
    let ack = pb::ServerFrame::decode(out.proto()).unwrap();
    assert_eq!(ack.request_id, "b");
    match ack.frame {
        Some(pb::server_frame::Frame::SendAck(a)) => assert_eq!(a.seq, seq + 1),
        other => panic!("expected an ack, got {other:?}"),
    }
}

#[tokio::test]
async fn changes_wait_behind_the_sends_to_their_channel_in_order() {
    let h = harness();
    h.chat.hold("general");
    let mut alice = Client::open(&h, 1, "alice");
    let frames = [
        json!({"type": "send", "request_id": "0", "channel_id": "general", "body": "m0"}),
        json!({"type": "edit", "request_id": "1", "channel_id": "general", "seq": 1, "body": "m0!"}),
        json!({"type": "send", "request_id": "2", "channel_id": "general", "body": "m1"}),
        json!({"type": "react", "request_id": "3", "channel_id": "general", "seq": 3, "emoji": "👍"}),
    ];
    for frame in &frames {
        alice.session.on_text(&frame.to_string()).await;
    }
    assert_eq!(alice.session.sends.pending(), 4);
    tokio::task::yield_now().await;
    assert!(
        h.chat.changes().is_empty(),
        "changes wait behind the first send"
    );
    h.chat.release("general", 4);
    alice
        .session
        .settle_sends(std::time::Duration::from_secs(5))
        .await;
    for i in 0..4 {
        let ack = alice.next();
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["request_id"], i.to_string(), "{ack}");
        assert_eq!(ack["seq"], i + 1, "{ack}");
    }
    assert_eq!(h.chat.peak_in_flight("general"), 1);
}
