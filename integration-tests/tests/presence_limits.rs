//! Large channels get no join and leave events. Runs alone in its binary:
//! every presence instance on the cluster hears every heartbeat, so a
//! concurrent sandbox with the default limit could announce the join first.

use std::time::Duration;

use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as pb;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channels_over_the_event_limit_get_no_join_events() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        presence: chatmesh_presence::PresenceSettings {
            events_max_online: 1,
            ..Default::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("crowded");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    alice.subscribe(&room).await?;
    // Alone in the channel: within the limit, so her join is announced.
    let joined = alice.expect("presence").await?;
    assert_eq!(joined["event"], "join");
    assert_eq!(joined["user_id"], "alice");

    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    bob.subscribe(&room).await?;
    let metrics_url = format!("http://{}/metrics", sb.presence.admin);
    wait::until("bob's join suppressed", Duration::from_secs(10), || {
        let url = metrics_url.clone();
        async move {
            let page = reqwest::get(url).await?.text().await?;
            anyhow::ensure!(
                page.lines().any(|l| {
                    l.starts_with("chatmesh_presence_events_suppressed_total") && !l.ends_with(" 0")
                }),
                "nothing suppressed yet"
            );
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;
    let listed = PresenceServiceClient::new(channel(sb.presence.grpc))
        .list_online(pb::ListOnlineRequest {
            channel_id: room.clone(),
        })
        .await?
        .into_inner()
        .user_ids;
    assert_eq!(listed, ["alice", "bob"]);

    // The next thing Alice hears in the channel is Bob's message, not his join.
    bob.send(json!({ "type": "send", "channel_id": room, "body": "hi" }))
        .await?;
    let heard = loop {
        let frame = alice.next().await?;
        if matches!(frame["type"].as_str(), Some("message" | "presence")) {
            break frame;
        }
    };
    assert_eq!(heard["type"], "message", "{heard}");
    assert_eq!(heard["body"], "hi");
    sb.stop().await
}
