//! The whole mesh: every service SERVING with reflection, gateways ready,
//! the channel directory working end to end, and a clean shutdown.

use std::time::Duration;

use chatmesh_integration_tests::sandbox::{Options, channel, health};
use chatmesh_integration_tests::{Infra, Sandbox};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn list_services(addr: std::net::SocketAddr) -> anyhow::Result<Vec<String>> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel(addr))
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no reflection response"))??;
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => anyhow::bail!("unexpected reflection response {other:?}"),
    }
}

#[tokio::test]
async fn every_service_serves_health_and_reflection() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let sandbox = Sandbox::start(&infra, Options::default()).await?;
    sandbox.wait_ready(Duration::from_secs(60)).await?;

    let expected = [
        ("chat", "chatmesh.chat.v1.ChatService"),
        ("presence", "chatmesh.presence.v1.PresenceService"),
        ("storage", "chatmesh.storage.v1.StorageService"),
        ("media", "chatmesh.media.v1.MediaService"),
    ];
    for ((name, addrs), (_, service)) in sandbox.services().into_iter().zip(expected) {
        health(addrs.grpc, service)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let listed = list_services(addrs.grpc).await?;
        for want in [service, "grpc.health.v1.Health"] {
            assert!(
                listed.iter().any(|s| s == want),
                "{name} does not list {want}: {listed:?}"
            );
        }
        let foreign: Vec<_> = listed
            .iter()
            .filter(|s| s.starts_with("chatmesh.") && s.as_str() != service)
            .collect();
        assert!(
            foreign.is_empty(),
            "{name} advertises services it does not serve: {foreign:?}"
        );
        let metrics = reqwest::get(format!("http://{}/metrics", addrs.admin)).await?;
        assert!(metrics.status().is_success());
    }
    sandbox.stop().await
}

#[tokio::test]
async fn channel_directory_round_trip() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let sandbox = Sandbox::start(
        &infra,
        Options {
            gateways: 0,
            ..Options::default()
        },
    )
    .await?;
    sandbox.wait_ready(Duration::from_secs(60)).await?;
    let mut client = ChatServiceClient::new(channel(sandbox.chat.grpc));
    let id = format!("room-{}", uuid::Uuid::new_v4().simple());

    let created = client
        .create_channel(chat::CreateChannelRequest {
            channel_id: id.clone(),
            name: "Test room".into(),
            created_by: "alice".into(),
            moderation: 0,
            ..Default::default()
        })
        .await?
        .into_inner()
        .channel
        .expect("channel");
    assert_eq!(created.channel_id, id);

    let again = client
        .create_channel(chat::CreateChannelRequest {
            channel_id: id.clone(),
            created_by: "bob".into(),
            ..Default::default()
        })
        .await
        .expect_err("duplicate channel");
    assert_eq!(again.code(), Code::AlreadyExists);

    let joined = client
        .join_channel(chat::JoinChannelRequest {
            channel_id: id.clone(),
            user_id: "bob".into(),
            ..Default::default()
        })
        .await?;
    assert!(joined.into_inner().joined);
    let rejoined = client
        .join_channel(chat::JoinChannelRequest {
            channel_id: id.clone(),
            user_id: "bob".into(),
            ..Default::default()
        })
        .await?;
    assert!(!rejoined.into_inner().joined);

    let member = |user: &str| chat::CheckMembershipRequest {
        channel_id: id.clone(),
        user_id: user.into(),
    };
    assert!(
        client
            .check_membership(member("alice"))
            .await?
            .into_inner()
            .member
    );
    assert!(
        client
            .check_membership(member("bob"))
            .await?
            .into_inner()
            .member
    );
    assert!(
        !client
            .check_membership(member("carol"))
            .await?
            .into_inner()
            .member
    );

    let bobs = client
        .list_user_channels(chat::ListUserChannelsRequest {
            user_id: "bob".into(),
        })
        .await?
        .into_inner();
    assert!(bobs.channels.iter().any(|c| c.channel_id == id));

    assert!(
        client
            .leave_channel(chat::LeaveChannelRequest {
                channel_id: id.clone(),
                user_id: "bob".into()
            })
            .await?
            .into_inner()
            .left
    );
    assert!(
        !client
            .check_membership(member("bob"))
            .await?
            .into_inner()
            .member
    );

    let unknown = client
        .join_channel(chat::JoinChannelRequest {
            channel_id: format!("{id}-missing"),
            user_id: "bob".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown channel");
    assert_eq!(unknown.code(), Code::NotFound);
    let bad = client
        .get_channel(chat::GetChannelRequest {
            channel_id: "no spaces allowed".into(),
            ..Default::default()
        })
        .await
        .expect_err("invalid id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("channel_id"), "{}", bad.message());

    sandbox.stop().await
}
