//! Channels and members set up through the chat service's gRPC API.

use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;

use crate::Sandbox;
use crate::sandbox::channel;

/// A fresh channel ID with `prefix`, unique per call.
pub fn channel_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates `id` owned by `members[0]` with `policy`, and joins the rest.
pub async fn create_channel(
    sandbox: &Sandbox,
    id: &str,
    policy: ModerationPolicy,
    members: &[&str],
) -> anyhow::Result<()> {
    create_channel_at(sandbox.chat.grpc, id, policy, members).await
}

/// Creates `id` through the chat service at `chat`, owned by `members[0]`
/// with `policy`, and joins the rest.
pub async fn create_channel_at(
    chat: std::net::SocketAddr,
    id: &str,
    policy: ModerationPolicy,
    members: &[&str],
) -> anyhow::Result<()> {
    let mut client = ChatServiceClient::new(channel(chat));
    client
        .create_channel(chat::CreateChannelRequest {
            channel_id: id.to_owned(),
            name: id.to_owned(),
            created_by: members[0].to_owned(),
            moderation: policy as i32,
            visibility: chat::ChannelVisibility::Private as i32,
        })
        .await?;
    for user in &members[1..] {
        client
            .join_channel(chat::JoinChannelRequest {
                channel_id: id.to_owned(),
                user_id: (*user).to_owned(),
                public_only: false,
            })
            .await?;
    }
    Ok(())
}
