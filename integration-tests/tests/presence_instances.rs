//! Several presence instances split the heartbeat work: every instance
//! hears every batch, but each session is refreshed by exactly one of them.
//! Runs alone in its binary because it reads process-wide counters.

use std::time::Duration;

use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as pb;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use chatmesh_redis::keys;
use serde_json::json;

const SESSIONS: usize = 60;

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_heartbeats_without_doubling_work() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let mut sb = Sandbox::start(
        &infra,
        Options {
            gateways: 1,
            presence: chatmesh_presence::PresenceSettings {
                instance_refresh: Duration::from_millis(100),
                instance_ttl: Duration::from_secs(1),
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await?;
    let extra = [
        sb.add_presence_instance().await?,
        sb.add_presence_instance().await?,
    ];
    sb.wait_ready(Duration::from_secs(60)).await?;
    for addrs in extra {
        wait::until(
            "extra instance ready",
            Duration::from_secs(30),
            || async move {
                reqwest::get(format!("http://{}/readyz", addrs.admin))
                    .await?
                    .error_for_status()
            },
        )
        .await?;
    }
    let mut redis = infra.redis()?.conn().await?;
    let registered: usize = redis::cmd("ZCARD")
        .arg(keys::presence_instances(&sb.presence_group))
        .query_async(&mut redis)
        .await?;
    assert_eq!(registered, 3);

    let gw = sb.gateways[0];
    let metrics_url = format!("http://{gw}/metrics");
    let room = channel_id("crowd");
    let users: Vec<String> = (0..SESSIONS).map(|i| format!("crowd-{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    create_channel(&sb, &room, ModerationPolicy::Reject, &names).await?;
    let mut clients = Vec::new();
    for user in &users {
        let mut client = Client::connect(gw, &dev_token(gw, user).await?, None).await?;
        client.subscribe(&room).await?;
        clients.push(client);
    }
    let mut presence = PresenceServiceClient::new(channel(sb.presence.grpc));
    wait::until("everyone online", Duration::from_secs(15), || {
        let (mut presence, room) = (presence.clone(), room.clone());
        async move {
            let n = presence
                .list_online(pb::ListOnlineRequest { channel_id: room })
                .await?
                .into_inner()
                .user_ids
                .len();
            anyhow::ensure!(n == SESSIONS, "{n} online");
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;

    // A round of pings, counted once every instance has heard all of it.
    let before = reqwest::get(&metrics_url).await?.text().await?;
    for client in &mut clients {
        client.send(json!({ "type": "ping" })).await?;
        client.expect("pong").await?;
    }
    let published_before = counter(&before, "chatmesh_gateway_heartbeats_published_total");
    let handled_before = counter(&before, "chatmesh_presence_heartbeats_total");
    let skipped_before = counter(&before, "chatmesh_presence_heartbeats_skipped_total");
    let (published, handled, skipped) = wait::until(
        "every instance heard the round",
        Duration::from_secs(15),
        || {
            let url = metrics_url.clone();
            async move {
                let m = reqwest::get(url).await?.text().await?;
                let published =
                    counter(&m, "chatmesh_gateway_heartbeats_published_total") - published_before;
                let handled = counter(&m, "chatmesh_presence_heartbeats_total") - handled_before;
                let skipped =
                    counter(&m, "chatmesh_presence_heartbeats_skipped_total") - skipped_before;
                anyhow::ensure!(
                    published >= SESSIONS as u64 && handled + skipped == 3 * published,
                    "published {published}, handled {handled}, skipped {skipped}"
                );
                Ok::<_, anyhow::Error>((published, handled, skipped))
            }
        },
    )
    .await?;
    assert_eq!(handled, published, "each heartbeat handled exactly once");
    assert_eq!(skipped, 2 * published);

    // And no instance fights another: everyone is still online, then
    // everyone goes offline once disconnected.
    let statuses = presence
        .get_presence(pb::GetPresenceRequest {
            user_ids: users.clone(),
        })
        .await?
        .into_inner()
        .users;
    assert!(statuses.iter().all(|u| u.online));
    drop(clients);
    wait::until("everyone offline", Duration::from_secs(15), || {
        let (mut presence, users) = (presence.clone(), users.clone());
        async move {
            let r = presence
                .get_presence(pb::GetPresenceRequest { user_ids: users })
                .await?
                .into_inner();
            let online = r.users.iter().filter(|u| u.online).count();
            anyhow::ensure!(online == 0, "{online} still online");
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;
    let left = presence
        .list_online(pb::ListOnlineRequest {
            channel_id: room.clone(),
        })
        .await?
        .into_inner()
        .user_ids;
    assert!(left.is_empty(), "{left:?}");
    sb.stop().await
}
