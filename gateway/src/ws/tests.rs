//! The session's rules against in-memory ports: frame handling, sends,
//! subscribe and gap replay, shutdown and ring changes. No network.

use std::collections::HashMap;
use std::sync::Arc;

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::ChannelId;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::config::{GatewayLimits, PinMode};
use crate::memory::{
    LivenessEvent, MemoryChat, MemoryFeed, MemoryGaps, MemoryLiveness, message, outbox,
};
use crate::ring::Ring;
use crate::ring::nodes::Routes;
use crate::ws::hub::Hub;
use crate::ws::outbound::Outgoing;
use crate::ws::replay::{MAX_REPLAY, STORAGE_CATCH_UP};
use crate::ws::session::{Placement, Session, SessionContext};

struct Harness {
    chat: Arc<MemoryChat>,
    feed: Arc<MemoryFeed>,
    gaps: Arc<MemoryGaps>,
    liveness: Arc<MemoryLiveness>,
    hub: Hub,
    ctx: Arc<SessionContext>,
    routes: watch::Sender<Arc<Routes>>,
}

fn harness_with(chat: MemoryChat, limits: GatewayLimits, mode: PinMode) -> Harness {
    let chat = Arc::new(chat);
    let feed = Arc::new(MemoryFeed::default());
    let gaps = Arc::new(MemoryGaps::default());
    let liveness = Arc::new(MemoryLiveness::default());
    let hub = Hub::new(feed.clone(), std::time::Duration::from_millis(500));
    let (routes, routes_rx) = watch::channel(Arc::new(Routes::default()));
    let ctx = Arc::new(SessionContext {
        chat: chat.clone(),
        hub: hub.clone(),
        gaps: gaps.clone(),
        liveness: liveness.clone(),
        limits,
        placement: Placement {
            node_id: "gw-0".into(),
            mode,
            routes: routes_rx,
        },
    });
    Harness {
        chat,
        feed,
        gaps,
        liveness,
        hub,
        ctx,
        routes,
    }
}

fn harness() -> Harness {
    let chat = MemoryChat::default()
        .with_channel("general", &["alice", "bob"])
        .with_channel("random", &["alice"])
        .with_channel("private", &["carol"]);
    harness_with(chat, GatewayLimits::default(), PinMode::Serve)
}

fn channel(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

struct Client {
    session: Session,
    rx: mpsc::Receiver<Arc<Outgoing>>,
}

impl Client {
    fn open(h: &Harness, id: u64, user: &str) -> Self {
        let (outbox, rx) = outbox(64);
        let (session, _expired) = Session::open(
            h.ctx.clone(),
            id,
            chatmesh_ids::UserId::new(user).unwrap(),
            outbox,
        );
        Self { session, rx }
    }

    async fn text(&mut self, frame: Value) {
        self.session.on_text(&frame.to_string()).await;
    }

    /// The next queued frame, as the client would read it.
    fn next(&mut self) -> Value {
        let out = self.rx.try_recv().expect("a frame was queued");
        serde_json::from_str(&out.json()).unwrap()
    }

    fn nothing_more(&mut self) {
        if let Ok(out) = self.rx.try_recv() {
            panic!("unexpected frame {}", out.json());
        }
    }

    async fn subscribe(&mut self, name: &str, last_seq: Option<u64>) -> Value {
        let mut frame =
            serde_json::json!({"type": "subscribe", "request_id": "s", "channel_id": name});
        if let Some(last) = last_seq {
            frame["last_seq"] = last.into();
        }
        self.text(frame).await;
        self.next()
    }
}

fn assert_error(frame: &Value, kind: ErrorKind) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], kind.client_code(), "{frame}");
    assert_eq!(frame["retryable"], kind.spec().retryable, "{frame}");
}

// ---------------------------------------------------------------- frames

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

// ---------------------------------------------------------------- send

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

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn unsubscribe_is_confirmed_and_leaves_the_hub() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice
        .text(
            serde_json::json!({"type": "unsubscribe", "request_id": "u", "channel_id": "general"}),
        )
        .await;
    let done = alice.next();
    assert_eq!(done["type"], "unsubscribed");
    assert_eq!(done["request_id"], "u");
    assert_eq!(h.hub.sessions_in(&channel("general")), 0);
    assert!(!h.feed.is_subscribed(&channel("general")));
    // Leaving a channel never joined is confirmed too.
    alice
        .text(serde_json::json!({"type": "unsubscribe", "channel_id": "random"}))
        .await;
    assert_eq!(alice.next()["type"], "unsubscribed");
}

#[tokio::test]
async fn a_node_going_away_asks_the_client_to_resubscribe_its_channels() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.subscribe("random", None).await;
    alice.session.going_away().await;
    let frame = alice.next();
    assert_eq!(frame["type"], "reconnect");
    assert_eq!(
        frame["channel_ids"],
        serde_json::json!(["general", "random"])
    );
    assert!(frame.get("url").is_none());
}

#[tokio::test]
async fn closing_a_session_leaves_presence_and_fan_out() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.session.close().await;
    assert_eq!(
        h.liveness.events().last(),
        Some(&LivenessEvent::Close(vec!["general".into()]))
    );
    assert_eq!(h.hub.sessions_in(&channel("general")), 0);
}

#[tokio::test]
async fn a_ring_change_sends_one_reconnect_per_destination() {
    let chat = MemoryChat::default()
        .with_channel("general", &["alice"])
        .with_channel("random", &["alice"]);
    let h = harness_with(chat, GatewayLimits::default(), PinMode::Redirect);
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.subscribe("random", None).await;
    let urls = HashMap::from([("gw-1".to_owned(), "ws://gw-1".to_owned())]);
    h.routes.send_replace(Arc::new(Routes {
        ring: Ring::new(["gw-1"], 16),
        urls,
    }));
    alice.session.on_ring_change().await;
    let frame = alice.next();
    assert_eq!(frame["type"], "reconnect");
    assert_eq!(frame["url"], "ws://gw-1");
    assert_eq!(
        frame["channel_ids"],
        serde_json::json!(["general", "random"])
    );
    alice.nothing_more();
}

// ---------------------------------------------------------------- subscribe

#[tokio::test]
async fn a_member_subscribes_and_learns_the_latest_sequence() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 41);
    let mut alice = Client::open(&h, 1, "alice");
    let frame = alice.subscribe("general", None).await;
    assert_eq!(frame["type"], "subscribed");
    assert_eq!(frame["request_id"], "s");
    assert_eq!(frame["seq"], 41);
    assert!(h.feed.is_subscribed(&channel("general")));
    assert_eq!(
        h.liveness.events().last(),
        Some(&LivenessEvent::Alive(vec!["general".into()]))
    );
    alice.nothing_more();
}

#[tokio::test]
async fn subscribers_receive_live_messages_in_order() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let mut bob = Client::open(&h, 2, "bob");
    alice.subscribe("general", None).await;
    bob.subscribe("general", None).await;
    h.hub.accept(&channel("general"), message("general", 2));
    h.hub.accept(&channel("general"), message("general", 1));
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.next()["seq"], 1);
        assert_eq!(client.next()["seq"], 2);
    }
    assert_eq!(h.feed.subscribe_calls(&channel("general")), 1);
}

#[tokio::test]
async fn non_members_unknown_and_malformed_channels_are_refused() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    assert_error(
        &alice.subscribe("private", None).await,
        ErrorKind::NotMember,
    );
    assert_error(
        &alice.subscribe("nowhere", None).await,
        ErrorKind::UnknownChannel,
    );
    assert_error(
        &alice.subscribe("bad channel", None).await,
        ErrorKind::InvalidChannel,
    );
    assert!(!h.feed.is_subscribed(&channel("private")));
}

#[tokio::test]
async fn a_connection_holds_at_most_max_subscriptions() {
    let mut chat = MemoryChat::default();
    for i in 0..3 {
        chat = chat.with_channel(&format!("c{i}"), &["alice"]);
    }
    let limits = GatewayLimits {
        max_subscriptions: 2,
        ..Default::default()
    };
    let h = harness_with(chat, limits, PinMode::Serve);
    let mut alice = Client::open(&h, 1, "alice");
    assert_eq!(alice.subscribe("c0", None).await["type"], "subscribed");
    assert_eq!(alice.subscribe("c1", None).await["type"], "subscribed");
    assert_error(
        &alice.subscribe("c2", None).await,
        ErrorKind::TooManySubscriptions,
    );
}

#[tokio::test]
async fn subscribing_twice_confirms_again_without_a_second_registration() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    h.feed.set_seq(&channel("general"), 9);
    let again = alice.subscribe("general", None).await;
    assert_eq!(again["type"], "subscribed");
    assert_eq!(again["seq"], 9);
    assert_eq!(h.hub.sessions_in(&channel("general")), 1);
    h.hub.accept(&channel("general"), message("general", 1));
    assert_eq!(alice.next()["seq"], 1);
    alice.nothing_more();
}

#[tokio::test]
async fn a_channel_owned_elsewhere_is_redirected() {
    let h = harness_with(
        MemoryChat::default().with_channel("general", &["alice"]),
        GatewayLimits::default(),
        PinMode::Redirect,
    );
    h.routes.send_replace(Arc::new(Routes {
        ring: Ring::new(["gw-1"], 16),
        urls: HashMap::from([("gw-1".to_owned(), "ws://gw-1".to_owned())]),
    }));
    let mut alice = Client::open(&h, 1, "alice");
    let frame = alice.subscribe("general", None).await;
    assert_eq!(frame["type"], "redirect");
    assert_eq!(frame["url"], "ws://gw-1");
    assert!(!h.feed.is_subscribed(&channel("general")));
}

#[tokio::test]
async fn chat_or_fan_out_down_is_a_retryable_unavailable() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    h.chat
        .fail_with(Some(ClientError::generic(ErrorKind::Unavailable)));
    assert_error(
        &alice.subscribe("general", None).await,
        ErrorKind::Unavailable,
    );
    h.chat.fail_with(None);
    h.feed.fail_next_subscribes(1);
    assert_error(
        &alice.subscribe("general", None).await,
        ErrorKind::Unavailable,
    );
    assert_eq!(h.hub.sessions_in(&channel("general")), 0);
    // The next try works: nothing was left half-subscribed.
    assert_eq!(alice.subscribe("general", None).await["type"], "subscribed");
}

// ---------------------------------------------------------------- replay

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
