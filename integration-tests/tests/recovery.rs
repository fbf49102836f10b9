//! Gap recovery: a client that reconnects with its last sequence number
//! gets exactly the messages it missed, in order, then live traffic. The
//! recent window in Redis is kept small here, so the older part of the gap
//! comes from storage.

use chatmesh_chat::SendLimits;
use chatmesh_gateway::GatewayLimits;
use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let sb = Sandbox::start_ready(Options {
        chat_limits: SendLimits {
            recent_history: 20,
            ..Options::default().chat_limits
        },
        gateway_limits: GatewayLimits {
            frames_per_second: 1000,
            frame_burst: 1000,
            ..GatewayLimits::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("recovery");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    let bob_token = dev_token(gw, "bob").await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;

    let mut bob = Client::connect(gw, &bob_token, None).await?;
    bob.subscribe(&room).await?;
    alice
        .send(json!({"type": "send", "channel_id": room, "body": "before"}))
        .await?;
    alice.expect("ack").await?;
    let last_seen = bob.expect("message").await?["seq"].as_u64().unwrap();
    drop(bob);

    let mut missed = Vec::new();
    for i in 0..50 {
        alice
            .send(json!({"type": "send", "channel_id": room, "body": format!("missed {i}")}))
            .await?;
        missed.push(alice.expect("ack").await?["seq"].as_u64().unwrap());
    }

    let mut bob = Client::connect(gw, &bob_token, None).await?;
    bob.send(json!({"type": "subscribe", "channel_id": room, "last_seq": last_seen}))
        .await?;
    bob.expect("subscribed").await?;
    let mut replayed = Vec::new();
    for i in 0..50 {
        let m = bob.expect("message").await?;
        assert_eq!(m["body"], format!("missed {i}"));
        replayed.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(replayed, missed, "exactly the missed messages, in order");

    alice
        .send(json!({"type": "send", "channel_id": room, "body": "live"}))
        .await?;
    let live_seq = alice.expect("ack").await?["seq"].as_u64().unwrap();
    let m = bob.expect("message").await?;
    assert_eq!(
        (m["seq"].as_u64(), m["body"].as_str()),
        (Some(live_seq), Some("live"))
    );

    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_too_large_to_replay_asks_the_client_to_reload() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateway_limits: GatewayLimits {
            frames_per_second: 100_000,
            frame_burst: 100_000,
            ..GatewayLimits::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("reload");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    // More messages than one replay may carry.
    let mut newest = 0;
    for i in 0..1_005 {
        alice
            .send(json!({"type": "send", "channel_id": room, "body": format!("m{i}")}))
            .await?;
        newest = alice.expect("ack").await?["seq"].as_u64().unwrap();
    }
    let mut late = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    late.send(json!({"type": "subscribe", "channel_id": room, "last_seq": 1}))
        .await?;
    late.expect("subscribed").await?;
    let reload = late.expect("reload_required").await?;
    assert_eq!(
        (reload["from_seq"].as_u64(), reload["to_seq"].as_u64()),
        (Some(2), Some(newest))
    );
    // Live traffic follows.
    alice
        .send(json!({"type": "send", "channel_id": room, "body": "live"}))
        .await?;
    let live = alice.expect("ack").await?["seq"].as_u64().unwrap();
    assert_eq!(late.expect("message").await?["seq"].as_u64(), Some(live));
    sb.stop().await
}
