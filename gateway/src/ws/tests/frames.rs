//! Frame handling: pings, bad frames, size and rate limits, binary frames.

use super::*;

#[tokio::test]
async fn a_ping_is_answered_and_marks_the_session_alive() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(serde_json::json!({"type": "ping", "request_id": "p", "client_time_ms": 42}))
        .await;
    let pong = alice.next();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["request_id"], "p");
    assert_eq!(pong["client_time_ms"], 42);
    assert!(pong["server_time_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        h.liveness.events(),
        vec![
            LivenessEvent::Open("alice".into()),
            LivenessEvent::Alive(vec![])
        ]
    );
}

#[tokio::test]
async fn malformed_unknown_and_invalid_frames_get_their_own_codes() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    for (text, kind) in [
        ("{not json", ErrorKind::MalformedFrame),
        ("[1,2]", ErrorKind::MalformedFrame),
        (r#"{"type":"dance"}"#, ErrorKind::UnknownFrameType),
        (r#"{"type":"ping","extra":1}"#, ErrorKind::InvalidFrame),
        (
            r#"{"type":"send","channel_id":"general"}"#,
            ErrorKind::InvalidFrame,
        ),
    ] {
        alice.session.on_text(text).await;
        assert_error(&alice.next(), kind);
    }
    assert!(h.chat.sends().is_empty());
}

#[tokio::test]
async fn an_oversized_frame_is_refused_without_being_parsed() {
    let limits = GatewayLimits {
        max_frame_bytes: 64,
        ..Default::default()
    };
    let h = harness_with(MemoryChat::default(), limits, PinMode::Serve);
    let mut alice = Client::open(&h, 1, "alice");
    alice.session.on_text(&"x".repeat(65)).await;
    let err = alice.next();
    assert_error(&err, ErrorKind::FrameTooLarge);
    assert!(err["message"].as_str().unwrap().contains("64"), "{err}");
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_retryable() {
    let limits = GatewayLimits {
        frames_per_second: 5,
        frame_burst: 5,
        ..Default::default()
    };
    let h = harness_with(MemoryChat::default(), limits, PinMode::Serve);
    let mut alice = Client::open(&h, 1, "alice");
    let mut limited = 0;
    for _ in 0..8 {
        alice.text(serde_json::json!({"type": "ping"})).await;
        let frame = alice.next();
        if frame["type"] == "error" {
            assert_error(&frame, ErrorKind::RateLimited);
            limited += 1;
        }
    }
    assert_eq!(limited, 3);
}

#[tokio::test]
async fn rate_limited_answers_echo_the_request_id_in_both_forms() {
    use chatmesh_proto::gateway::v1 as pb;
    use prost::Message as _;
    let limits = GatewayLimits {
        frames_per_second: 1,
        frame_burst: 1,
        ..Default::default()
    };
    let h = harness_with(MemoryChat::default(), limits, PinMode::Serve);
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(serde_json::json!({"type": "ping", "request_id": "first"}))
        .await;
    assert_eq!(alice.next()["type"], "pong");
    alice
        .text(
            serde_json::json!({"type": "send", "request_id": "j", "channel_id": "g", "body": "x"}),
        )
        .await;
    let err = alice.next();
    assert_error(&err, ErrorKind::RateLimited);
    assert_eq!(err["request_id"], "j");
    let ping = pb::ClientFrame {
        request_id: "b".into(),
        frame: Some(pb::client_frame::Frame::Ping(pb::Ping {
            client_time_ms: 1,
        })),
    };
    alice.session.on_binary(&ping.encode_to_vec()).await;
    let err = alice.next();
    assert_error(&err, ErrorKind::RateLimited);
    assert_eq!(err["request_id"], "b");
    // A frame that cannot be read has no request_id to echo.
    alice.session.on_text("{not json").await;
    let err = alice.next();
    assert_error(&err, ErrorKind::RateLimited);
    assert!(err.get("request_id").is_none(), "{err}");
    assert!(h.chat.sends().is_empty());
}

#[tokio::test]
async fn binary_frames_are_read_as_protobuf() {
    use chatmesh_proto::gateway::v1 as pb;
    use prost::Message as _;
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let ping = pb::ClientFrame {
        request_id: "b".into(),
        frame: Some(pb::client_frame::Frame::Ping(pb::Ping {
            client_time_ms: 5,
        })),
    };
    alice.session.on_binary(&ping.encode_to_vec()).await;
    let pong = alice.next();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["request_id"], "b");
    alice.session.on_binary(&[0xff, 0x01]).await;
    assert_error(&alice.next(), ErrorKind::MalformedFrame);
}
