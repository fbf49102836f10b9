//! The message path across two gateway nodes: acks, exactly-once in-order
//! delivery, moderation, and clear errors for bad input.

use std::collections::BTreeMap;

use chatmesh_gateway::GatewayLimits;
use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, SANDBOX_SECRET};
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_every_message_once_in_order() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let room = channel_id("two-nodes");
    create_channel(
        &sb,
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob", "carol", "dave"],
    )
    .await?;

    // Two clients on each node; one node does not own the channel and
    // serves it anyway.
    let mut clients = Vec::new();
    for (user, gw) in [("alice", gw0), ("bob", gw0), ("carol", gw1), ("dave", gw1)] {
        let mut c = Client::connect(gw, &dev_token(gw, user).await?, None).await?;
        c.subscribe(&room).await?;
        clients.push((user, c));
    }

    // Two senders on different nodes, interleaved, each waiting for its
    // acks: the chat service orders them into one sequence.
    const PER_SENDER: usize = 40;
    let mut senders = Vec::new();
    for (user, gw) in [("erin", gw0), ("frank", gw1)] {
        let mut chat = chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient::new(
            chatmesh_integration_tests::sandbox::channel(sb.chat.grpc),
        );
        chat.join_channel(chatmesh_proto::chat::v1::JoinChannelRequest {
            channel_id: room.clone(),
            user_id: user.into(),
            ..Default::default()
        })
        .await?;
        let mut c = Client::connect(gw, &dev_token(gw, user).await?, None).await?;
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            let mut acks = BTreeMap::new();
            for i in 0..PER_SENDER {
                c.send(json!({"type": "send", "request_id": format!("{user}-{i}"), "channel_id": room, "body": format!("{user} {i}")}))
                    .await?;
                let ack = c.expect("ack").await?;
                assert_eq!(ack["request_id"], format!("{user}-{i}"));
                let id: u64 = ack["message_id"].as_str().expect("string id").parse()?;
                let seq = ack["seq"].as_u64().expect("seq");
                acks.insert(seq, id);
            }
            Ok::<_, anyhow::Error>(acks)
        }));
    }
    let mut acked = BTreeMap::new();
    for s in senders {
        acked.extend(s.await??);
    }
    assert_eq!(
        acked.len(),
        2 * PER_SENDER,
        "every send acked with a distinct seq"
    );
    let first = *acked.keys().next().unwrap();
    assert!(
        acked
            .keys()
            .copied()
            .eq(first..first + 2 * PER_SENDER as u64),
        "seqs are dense: {:?}",
        acked.keys()
    );

    for (user, c) in &mut clients {
        let mut seen = Vec::new();
        while seen.len() < acked.len() {
            let m = c.expect("message").await?;
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(
                m["message_id"].as_str().unwrap().parse::<u64>()?,
                acked[&seq],
                "{user}: id of seq {seq}"
            );
            seen.push(seq);
        }
        let expected: Vec<u64> = acked.keys().copied().collect();
        assert_eq!(seen, expected, "{user} got every message once, in order");
    }
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moderation_rejects_or_masks_per_channel() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        blocked_words: vec!["darn".into(), "heck".into()],
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let strict = channel_id("strict");
    let lenient = channel_id("lenient");
    create_channel(&sb, &strict, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    create_channel(&sb, &lenient, ModerationPolicy::Mask, &["alice", "bob"]).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    bob.subscribe(&lenient).await?;

    alice
        .send(json!({"type": "send", "channel_id": strict, "body": "oh D4RN it"}))
        .await?;
    let err = alice.expect_error().await?;
    assert_eq!(err["code"], "blocked");
    assert_eq!(err["retryable"], false);

    alice
        .send(json!({"type": "send", "channel_id": strict, "body": "Scunthorpe darnell hecktic"}))
        .await?;
    assert!(alice.expect("ack").await?["masked"] == false);

    alice
        .send(json!({"type": "send", "channel_id": lenient, "body": "what the HECK"}))
        .await?;
    assert_eq!(alice.expect("ack").await?["masked"], true);
    let m = bob.expect("message").await?;
    assert_eq!(m["body"], "what the ****");
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_clear_errors_and_others_are_still_served() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateway_limits: GatewayLimits {
            max_frame_bytes: 2048,
            frames_per_second: 5,
            frame_burst: 10,
            ..GatewayLimits::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("bad-input");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    let other = channel_id("not-joined");
    create_channel(&sb, &other, ModerationPolicy::Reject, &["carol"]).await?;

    // A well-behaved client on the same node, subscribed throughout.
    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    bob.subscribe(&room).await?;

    let mut mallory = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    let cases: [(String, &str); 5] = [
        ("{this is not json".into(), "malformed_frame"),
        (
            json!({"type": "teleport", "channel_id": room}).to_string(),
            "unknown_frame_type",
        ),
        (
            json!({"type": "send", "channel_id": room, "body": "x".repeat(4000)}).to_string(),
            "frame_too_large",
        ),
        (
            json!({"type": "send", "channel_id": other, "body": "hi"}).to_string(),
            "not_member",
        ),
        (
            json!({"type": "subscribe", "channel_id": channel_id("missing")}).to_string(),
            "unknown_channel",
        ),
    ];
    for (frame, code) in &cases {
        mallory.send_text(frame).await?;
        let err = mallory.expect_error().await?;
        assert_eq!(err["code"], *code, "for {frame:.60}: {err}");
    }

    // A flood: the bucket allows a burst, then answers rate_limited.
    let mut limited = 0;
    for _ in 0..30 {
        mallory.send(json!({"type": "ping"})).await?;
    }
    for _ in 0..30 {
        let f = mallory.next().await?;
        if f["type"] == "error" {
            assert_eq!(f["code"], "rate_limited");
            assert_eq!(f["retryable"], true);
            limited += 1;
        }
    }
    assert!(
        limited >= 15,
        "only {limited} of 30 flooded frames were limited"
    );

    // Bad tokens are refused before the upgrade.
    for token in ["garbage", &expired_token()] {
        let err = Client::connect(gw, token, None)
            .await
            .expect_err("bad token accepted");
        assert!(err.to_string().contains("401"), "{err}");
    }

    // The well-behaved client is still served.
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    alice
        .send(json!({"type": "send", "channel_id": room, "body": "still here"}))
        .await?;
    let seq = alice.expect("ack").await?["seq"].as_u64().unwrap();
    let m = bob.expect("message").await?;
    assert_eq!(
        (m["seq"].as_u64(), m["body"].as_str()),
        (Some(seq), Some("still here"))
    );
    sb.stop().await
}

fn expired_token() -> String {
    use jsonwebtoken::{EncodingKey, Header};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "alice", "exp": exp}),
        &EncodingKey::from_secret(SANDBOX_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_client_is_closed_and_never_stalls_the_others() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateway_limits: GatewayLimits {
            outbound_queue: 8,
            frames_per_second: 100_000,
            frame_burst: 100_000,
            ..GatewayLimits::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("slow");
    create_channel(
        &sb,
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob", "snail"],
    )
    .await?;
    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    bob.subscribe(&room).await?;
    let mut snail = Client::connect_small_buffer(gw, &dev_token(gw, "snail").await?).await?;
    snail.subscribe(&room).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;

    // The snail reads nothing; messages pile up in its socket and then its
    // queue until the gateway gives up on it. Bob keeps reading throughout.
    let evicted =
        || async move {
            let text = reqwest::get(format!("http://{gw}/metrics"))
                .await?
                .text()
                .await?;
            Ok::<_, anyhow::Error>(text.lines().any(|l| {
                l.starts_with("chatmesh_gateway_slow_consumers_total") && !l.ends_with(" 0")
            }))
        };
    let body = "x".repeat(4000);
    let mut sent = 0;
    while !evicted().await? {
        anyhow::ensure!(sent < 20_000, "the snail was never closed");
        alice
            .send(json!({"type": "send", "channel_id": room, "body": body}))
            .await?;
        alice.expect("ack").await?;
        sent += 1;
    }
    for _ in 0..sent {
        bob.expect("message").await?;
    }
    let (code, reason) = snail.closed().await?;
    assert_eq!(code, chatmesh_gateway::CLOSE_SLOW_CONSUMER, "{reason}");
    assert!(reason.contains("slow consumer"), "{reason}");
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_wide_connection_cap_holds_and_frees_up() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateway_limits: GatewayLimits {
            max_connections: 2,
            ..GatewayLimits::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let token = dev_token(gw, "alice").await?;
    let first = Client::connect(gw, &token, None).await?;
    let _second = Client::connect(gw, &token, None).await?;
    let err = Client::connect(gw, &token, None)
        .await
        .expect_err("third connection accepted");
    assert!(err.to_string().contains("503"), "{err}");

    // Closing one connection frees its slot.
    drop(first);
    chatmesh_integration_tests::wait::until(
        "a free slot",
        std::time::Duration::from_secs(10),
        || {
            let token = token.clone();
            async move { Client::connect(gw, &token, None).await.map(drop) }
        },
    )
    .await?;
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_sends_are_answered_and_ordered_per_channel() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let (left, right) = (channel_id("pipe-left"), channel_id("pipe-right"));
    for room in [&left, &right] {
        create_channel(&sb, room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    }
    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    bob.subscribe(&left).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    // Thirty sends written back to back, none waiting for its ack.
    let rooms = [&left, &right];
    for i in 0..30 {
        let room = rooms[i % 2];
        alice
            .send(json!({"type": "send", "request_id": i.to_string(), "channel_id": room, "body": format!("m{i}")}))
            .await?;
    }
    let mut seqs: BTreeMap<usize, u64> = BTreeMap::new();
    while seqs.len() < 30 {
        let ack = alice.expect("ack").await?;
        let i: usize = ack["request_id"].as_str().unwrap_or_default().parse()?;
        seqs.insert(i, ack["seq"].as_u64().unwrap_or_default());
    }
    // Per channel, the sequence follows the order the sends were written.
    for parity in 0..2 {
        let in_order: Vec<u64> = seqs
            .iter()
            .filter(|(i, _)| *i % 2 == parity)
            .map(|(_, seq)| *seq)
            .collect();
        assert!(
            in_order.windows(2).all(|w| w[0] < w[1]),
            "channel {parity}: {in_order:?}"
        );
    }
    let mut bodies = Vec::new();
    while bodies.len() < 15 {
        bodies.push(
            bob.expect("message").await?["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let expected: Vec<String> = (0..30).step_by(2).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
    sb.stop().await
}
