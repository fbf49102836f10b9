//! gRPC transport: converts requests to domain types and errors to statuses.

use crate::member_cache::Announcer;
use chatmesh_ids::{Change, ChannelId, UserId};
use chatmesh_proto::chat::v1 as pb;
use chatmesh_proto::common::v1::{Message, ModerationPolicy};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use std::sync::Arc;

use crate::directory::MAX_PUBLIC_PAGE;
use crate::{
    Channel, ChatError, Directory, Moderation, Role, SendPath, SendRequest, Sent, Visibility,
};

/// The chat service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct ChatGrpc {
    directory: Directory,
    send: Arc<SendPath>,
    /// Tells every instance's send-rights cache that a member left.
    announcer: Announcer,
}

impl ChatGrpc {
    pub(crate) fn new(directory: Directory, send: Arc<SendPath>, announcer: Announcer) -> Self {
        Self {
            directory,
            send,
            announcer,
        }
    }
}

impl ChatGrpc {
    /// Runs `event` through the send path under `span`, which continues the
    /// caller's trace. The send runs to its end even when the caller goes
    /// away mid-call (a gateway that died): stopped between taking a number
    /// and the log, it would leave a hole every reader has to wait out.
    async fn run(
        &self,
        span: tracing::Span,
        metadata: &tonic::metadata::MetadataMap,
        mut event: SendRequest,
    ) -> Result<Sent, Status> {
        chatmesh_telemetry::set_parent_from_metadata(&span, metadata);
        // The log record and the fan-out carry this span's context, or the
        // caller's as it came while this process exports no traces.
        event.traceparent = chatmesh_telemetry::traceparent(&span).or_else(|| {
            metadata
                .get(chatmesh_telemetry::TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        let path = self.send.clone();
        let sent = tokio::spawn(async move { path.send(event).await }.instrument(span.clone()))
            .await
            .map_err(|e| {
                tracing::error!(parent: &span, error = %e, "send task failed");
                Status::from(chatmesh_error::ClientError::generic(
                    chatmesh_error::ErrorKind::Internal,
                ))
            })??;
        span.record("seq", sent.message.seq);
        Ok(sent)
    }
}

/// The span of one channel event (`$name` says which kind), for the
/// request `$req`.
macro_rules! event_span {
    ($name:literal, $req:expr) => {
        tracing::info_span!(
            $name,
            channel = %$req.channel_id,
            sender = %$req.sender_id,
            seq = tracing::field::Empty,
        )
    };
}

fn key(raw: String) -> Option<String> {
    Some(raw).filter(|k| !k.is_empty())
}

/// The answer to a change.
fn changed(sent: Sent) -> Response<pb::ChangeMessageResponse> {
    Response::new(pb::ChangeMessageResponse {
        event: Some(Message::from(sent.message)),
        masked: sent.masked,
        duplicate: sent.duplicate,
    })
}

fn channel_id(raw: String) -> Result<ChannelId, ChatError> {
    ChannelId::new(raw).map_err(|e| ChatError::invalid_id("channel_id", e))
}

fn user_id(field: &'static str, raw: String) -> Result<UserId, ChatError> {
    UserId::new(raw).map_err(|e| ChatError::invalid_id(field, e))
}

fn role_pb(role: Option<Role>) -> i32 {
    let role = match role {
        Some(Role::Owner) => pb::MemberRole::Owner,
        Some(Role::Member) => pb::MemberRole::Member,
        None => pb::MemberRole::Unspecified,
    };
    role as i32
}

fn to_pb(channel: Channel, role: Option<Role>) -> pb::Channel {
    pb::Channel {
        visibility: match channel.visibility {
            Visibility::Private => pb::ChannelVisibility::Private,
            Visibility::Public => pb::ChannelVisibility::Public,
        } as i32,
        role: role_pb(role),
        channel_id: channel.id.into(),
        name: channel.name,
        created_by: channel.created_by.into(),
        moderation: match channel.moderation {
            Moderation::Reject => ModerationPolicy::Reject,
            Moderation::Mask => ModerationPolicy::Mask,
            Moderation::Flag => ModerationPolicy::Flag,
        } as i32,
        created_at_ms: channel.created_at.timestamp_millis(),
    }
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatGrpc {
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let span = event_span!("chat.send", req);
        let send = SendRequest {
            channel: channel_id(req.channel_id)?,
            sender: user_id("sender_id", req.sender_id)?,
            change: Change::Post,
            body: req.body,
            reply_to: Some(req.reply_to).filter(|&r| r != 0),
            attachments: req.attachments,
            idempotency_key: key(req.idempotency_key),
            traceparent: None,
        };
        let sent = self.run(span, &metadata, send).await?;
        Ok(Response::new(pb::SendMessageResponse {
            message: Some(Message::from(sent.message)),
            masked: sent.masked,
            duplicate: sent.duplicate,
        }))
    }

    async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::ChangeMessageResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let span = event_span!("chat.edit", req);
        let edit = SendRequest {
            channel: channel_id(req.channel_id)?,
            sender: user_id("sender_id", req.sender_id)?,
            change: Change::Edit {
                target: req.target_seq,
            },
            body: req.body,
            reply_to: None,
            attachments: Vec::new(),
            idempotency_key: key(req.idempotency_key),
            traceparent: None,
        };
        Ok(changed(self.run(span, &metadata, edit).await?))
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::ChangeMessageResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let span = event_span!("chat.delete", req);
        let delete = SendRequest {
            channel: channel_id(req.channel_id)?,
            sender: user_id("sender_id", req.sender_id)?,
            change: Change::Delete {
                target: req.target_seq,
            },
            body: String::new(),
            reply_to: None,
            attachments: Vec::new(),
            idempotency_key: key(req.idempotency_key),
            traceparent: None,
        };
        Ok(changed(self.run(span, &metadata, delete).await?))
    }

    async fn react(
        &self,
        request: Request<pb::ReactRequest>,
    ) -> Result<Response<pb::ChangeMessageResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let span = event_span!("chat.react", req);
        let (target, emoji) = (req.target_seq, req.emoji);
        let react = SendRequest {
            channel: channel_id(req.channel_id)?,
            sender: user_id("sender_id", req.sender_id)?,
            change: if req.remove {
                Change::Unreact { target, emoji }
            } else {
                Change::React { target, emoji }
            },
            body: String::new(),
            reply_to: None,
            attachments: Vec::new(),
            idempotency_key: key(req.idempotency_key),
            traceparent: None,
        };
        Ok(changed(self.run(span, &metadata, react).await?))
    }

    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::CreateChannelResponse>, Status> {
        let req = request.into_inner();
        let moderation = match ModerationPolicy::try_from(req.moderation) {
            Ok(ModerationPolicy::Mask) => Moderation::Mask,
            Ok(ModerationPolicy::Flag) => Moderation::Flag,
            Ok(ModerationPolicy::Reject | ModerationPolicy::Unspecified) => Moderation::Reject,
            Err(_) => {
                return Err(ChatError::InvalidArgument {
                    field: "moderation",
                    reason: format!("unknown policy {}", req.moderation),
                }
                .into());
            }
        };
        let visibility = match pb::ChannelVisibility::try_from(req.visibility) {
            Ok(pb::ChannelVisibility::Public) => Visibility::Public,
            Ok(pb::ChannelVisibility::Private | pb::ChannelVisibility::Unspecified) => {
                Visibility::Private
            }
            Err(_) => {
                return Err(ChatError::InvalidArgument {
                    field: "visibility",
                    reason: format!("unknown visibility {}", req.visibility),
                }
                .into());
            }
        };
        let id = channel_id(req.channel_id)?;
        let creator = user_id("created_by", req.created_by)?;
        let channel = self
            .directory
            .create_channel(&id, &req.name, &creator, moderation, visibility)
            .await?;
        Ok(Response::new(pb::CreateChannelResponse {
            channel: Some(to_pb(channel, Some(Role::Owner))),
        }))
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelResponse>, Status> {
        let req = request.into_inner();
        let id = channel_id(req.channel_id)?;
        let (channel, role) = if req.user_id.is_empty() {
            (self.directory.channel(&id).await?, None)
        } else {
            let user = user_id("user_id", req.user_id)?;
            self.directory.channel_for(&id, &user).await?
        };
        Ok(Response::new(pb::GetChannelResponse {
            channel: Some(to_pb(channel, role)),
        }))
    }

    async fn join_channel(
        &self,
        request: Request<pb::JoinChannelRequest>,
    ) -> Result<Response<pb::JoinChannelResponse>, Status> {
        let req = request.into_inner();
        let (channel, user) = (
            channel_id(req.channel_id)?,
            user_id("user_id", req.user_id)?,
        );
        let joined = self
            .directory
            .join(&channel, &user, req.public_only)
            .await?;
        Ok(Response::new(pb::JoinChannelResponse { joined }))
    }

    async fn leave_channel(
        &self,
        request: Request<pb::LeaveChannelRequest>,
    ) -> Result<Response<pb::LeaveChannelResponse>, Status> {
        let req = request.into_inner();
        let (channel, user) = (
            channel_id(req.channel_id)?,
            user_id("user_id", req.user_id)?,
        );
        let left = self.directory.leave(&channel, &user).await?;
        if left {
            self.announcer.member_left(&channel).await;
        }
        Ok(Response::new(pb::LeaveChannelResponse { left }))
    }

    async fn list_user_channels(
        &self,
        request: Request<pb::ListUserChannelsRequest>,
    ) -> Result<Response<pb::ListUserChannelsResponse>, Status> {
        let user = user_id("user_id", request.into_inner().user_id)?;
        let channels = self
            .directory
            .channels_of(&user)
            .await?
            .into_iter()
            .map(|(channel, role)| to_pb(channel, Some(role)))
            .collect();
        Ok(Response::new(pb::ListUserChannelsResponse { channels }))
    }

    async fn check_membership(
        &self,
        request: Request<pb::CheckMembershipRequest>,
    ) -> Result<Response<pb::CheckMembershipResponse>, Status> {
        let req = request.into_inner();
        let (channel, user) = (
            channel_id(req.channel_id)?,
            user_id("user_id", req.user_id)?,
        );
        let member = self.directory.is_member(&channel, &user).await?;
        Ok(Response::new(pb::CheckMembershipResponse { member }))
    }

    async fn list_public_channels(
        &self,
        request: Request<pb::ListPublicChannelsRequest>,
    ) -> Result<Response<pb::ListPublicChannelsResponse>, Status> {
        let req = request.into_inner();
        let user = user_id("user_id", req.user_id)?;
        let after = Some(req.after)
            .filter(|a| !a.is_empty())
            .map(|a| ChannelId::new(a).map_err(|e| ChatError::invalid_id("after", e)))
            .transpose()?;
        let limit = match req.limit {
            0 => 50,
            n => (n as usize).min(MAX_PUBLIC_PAGE),
        };
        let (page, more) = self
            .directory
            .public_channels(&user, after.as_ref(), limit)
            .await?;
        let next_after = if more {
            page.last().map(|(c, _)| c.id.as_str().to_owned())
        } else {
            None
        };
        Ok(Response::new(pb::ListPublicChannelsResponse {
            channels: page
                .into_iter()
                .map(|(channel, role)| to_pb(channel, role))
                .collect(),
            next_after: next_after.unwrap_or_default(),
        }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let req = request.into_inner();
        let (channel, actor) = (
            channel_id(req.channel_id)?,
            user_id("actor_id", req.actor_id)?,
        );
        let members = self
            .directory
            .members(&channel, &actor)
            .await?
            .into_iter()
            .map(|m| pb::Member {
                user_id: m.user.into(),
                role: role_pb(Some(m.role)),
                joined_at_ms: m.joined_at.timestamp_millis(),
            })
            .collect();
        Ok(Response::new(pb::ListMembersResponse { members }))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let req = request.into_inner();
        let (channel, actor, user) = (
            channel_id(req.channel_id)?,
            user_id("actor_id", req.actor_id)?,
            user_id("user_id", req.user_id)?,
        );
        let added = self.directory.add_member(&channel, &actor, &user).await?;
        Ok(Response::new(pb::AddMemberResponse { added }))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let req = request.into_inner();
        let (channel, actor, user) = (
            channel_id(req.channel_id)?,
            user_id("actor_id", req.actor_id)?,
            user_id("user_id", req.user_id)?,
        );
        let removed = self
            .directory
            .remove_member(&channel, &actor, &user)
            .await?;
        if removed {
            self.announcer.member_left(&channel).await;
        }
        Ok(Response::new(pb::RemoveMemberResponse { removed }))
    }
}
