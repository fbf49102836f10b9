//! Send rights cached in each chat instance: repeated sends ask the
//! directory nothing, and a member who leaves or is removed through one
//! instance is refused by every other one, which learns of it over Redis.
//! Real chat processes on the real Redis Cluster and Postgres.

use std::net::SocketAddr;
use std::time::Duration;

use chatmesh_integration_tests::fixtures::create_channel_at;
use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::wait;
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use tonic_types::StatusExt as _;

async fn client(addr: SocketAddr) -> anyhow::Result<ChatServiceClient<tonic::transport::Channel>> {
    Ok(ChatServiceClient::connect(format!("http://{addr}")).await?)
}

async fn send(
    addr: SocketAddr,
    channel: &str,
    user: &str,
    body: &str,
) -> Result<(), tonic::Status> {
    let mut client = client(addr)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client
        .send_message(chat::SendMessageRequest {
            channel_id: channel.to_owned(),
            sender_id: user.to_owned(),
            body: body.to_owned(),
            attachments: Vec::new(),
            idempotency_key: String::new(),
            reply_to: 0,
        })
        .await
        .map(|_| ())
}

fn reason(status: &tonic::Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
}

/// An instance's hits and misses, from its own metrics.
async fn cache_counts(admin: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let count = |result: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("chatmesh_chat_member_cache_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Ok((count("hit"), count("miss")))
}

/// Waits until `addr` refuses `user`'s sends to `channel` as not a member.
async fn refused_at(addr: SocketAddr, channel: &str, user: &str) -> anyhow::Result<()> {
    wait::until("the send refused", Duration::from_secs(3), || async move {
        match send(addr, channel, user, "still here?").await {
            Err(status) if reason(&status).as_deref() == Some("not_member") => Ok(()),
            other => anyhow::bail!("answered {other:?}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_who_leaves_through_one_instance_is_refused_by_the_others() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mesh = Mesh::start(MeshOptions {
        chats: 2,
        gateways: 1,
        ..MeshOptions::default()
    })
    .await?;
    let (a, b) = (mesh.chats[0], mesh.chats[1]);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let channel = format!("rights-{run}");
    let (owner, removed, leaver) = (
        format!("owner-{run}"),
        format!("removed-{run}"),
        format!("leaver-{run}"),
    );
    create_channel_at(
        a,
        &channel,
        ModerationPolicy::Reject,
        &[&owner, &removed, &leaver],
    )
    .await?;

    // Both instances come to hold both members' rights.
    let (hits_before, _) = cache_counts(mesh.chat_admins[0]).await?;
    for i in 0..5 {
        for addr in [a, b] {
            send(addr, &channel, &removed, &format!("r{i}")).await?;
            send(addr, &channel, &leaver, &format!("l{i}")).await?;
        }
    }
    let (hits, misses) = cache_counts(mesh.chat_admins[0]).await?;
    assert!(
        hits - hits_before >= 8,
        "repeated sends were not answered from the cache: {hits} hits, {misses} misses"
    );

    // Removed by the owner through b: a refuses too, once it hears.
    let mut at_b = client(b).await?;
    let answer = at_b
        .remove_member(chat::RemoveMemberRequest {
            channel_id: channel.clone(),
            actor_id: owner.clone(),
            user_id: removed.clone(),
        })
        .await?
        .into_inner();
    assert!(answer.removed);
    let status = send(b, &channel, &removed, "at b").await.unwrap_err();
    assert_eq!(reason(&status).as_deref(), Some("not_member"), "{status:?}");
    refused_at(a, &channel, &removed).await?;

    // Left through a: b refuses too.
    let mut at_a = client(a).await?;
    let answer = at_a
        .leave_channel(chat::LeaveChannelRequest {
            channel_id: channel.clone(),
            user_id: leaver.clone(),
        })
        .await?
        .into_inner();
    assert!(answer.left);
    refused_at(b, &channel, &leaver).await?;

    // Members who stayed still send through both.
    for addr in [a, b] {
        send(addr, &channel, &owner, "still a member").await?;
    }
    // A rejoin counts at once: refusals are never cached.
    at_b.join_channel(chat::JoinChannelRequest {
        channel_id: channel.clone(),
        user_id: leaver.clone(),
        public_only: false,
    })
    .await?;
    send(a, &channel, &leaver, "back").await?;
    Ok(())
}
