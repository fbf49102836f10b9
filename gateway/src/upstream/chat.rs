//! The chat service over gRPC, as [`ChatApi`].

use crate::ports::{
    Access, ChangeCommand, ChangeReceipt, ChangeRequest, ChatApi, SendCommand, SendReceipt,
};
use async_trait::async_trait;
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_upstream::UpstreamSettings;
use chatmesh_upstream::balance::Upstream;
use chatmesh_upstream::retry::Retries;

/// A gRPC client of the chat service. Membership reads, and sends and
/// changes that carry an idempotency key, are retried on another instance
/// when one fails in a way another may not.
#[derive(Debug, Clone)]
pub(crate) struct GrpcChat {
    client: ChatServiceClient<Upstream>,
    reads: Retries,
    sends: Retries,
}

impl GrpcChat {
    /// A client over `upstream`.
    pub(crate) fn new(upstream: Upstream, settings: &UpstreamSettings) -> Self {
        let sends = UpstreamSettings {
            call_timeout: settings.send_timeout,
            ..settings.clone()
        };
        Self {
            client: ChatServiceClient::new(upstream),
            reads: Retries::new("chat", settings),
            sends: Retries::new("chat", &sends),
        }
    }
}

#[async_trait]
impl ChatApi for GrpcChat {
    async fn access(&self, channel: &ChannelId, user: &UserId) -> Result<Access, ClientError> {
        let member = self
            .reads
            .run(|| {
                let mut client = self.client.clone();
                let request = chat::CheckMembershipRequest {
                    channel_id: channel.as_str().to_owned(),
                    user_id: user.as_str().to_owned(),
                };
                async move { client.check_membership(request).await }
            })
            .await?
            .into_inner()
            .member;
        if member {
            return Ok(Access::Member);
        }
        let exists = self
            .reads
            .run(|| {
                let mut client = self.client.clone();
                let request = chat::GetChannelRequest {
                    channel_id: channel.as_str().to_owned(),
                    user_id: String::new(),
                };
                async move { client.get_channel(request).await }
            })
            .await;
        match exists {
            Ok(_) => Ok(Access::NotMember),
            Err(e) if e.kind == ErrorKind::UnknownChannel || e.kind == ErrorKind::NotFound => {
                Ok(Access::UnknownChannel)
            }
            Err(e) => Err(e),
        }
    }

    async fn send(&self, command: SendCommand) -> Result<SendReceipt, ClientError> {
        let keyed = command.idempotency_key.is_some();
        let message = chat::SendMessageRequest {
            channel_id: command.channel.into(),
            sender_id: command.sender.into(),
            body: command.body,
            attachments: command.attachments,
            idempotency_key: command.idempotency_key.unwrap_or_default(),
            reply_to: command.reply_to.unwrap_or(0),
        };
        let attempt = || {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(message.clone());
            chatmesh_telemetry::inject_trace_context(request.metadata_mut());
            async move { client.send_message(request).await }
        };
        // Only a keyed send is safe to repeat: chat stores it once however
        // often it arrives. An unkeyed one is tried once and its error
        // goes to the client.
        let response = if keyed {
            self.sends.run(attempt).await
        } else {
            self.sends.once(attempt()).await
        }?
        .into_inner();
        let message = response.message.ok_or_else(|| {
            ClientError::new(ErrorKind::Internal, "chat service returned no message")
        })?;
        Ok(SendReceipt {
            message_id: MessageId::from_raw(message.message_id),
            seq: message.seq,
            masked: response.masked,
            duplicate: response.duplicate,
        })
    }

    async fn change(&self, command: ChangeCommand) -> Result<ChangeReceipt, ClientError> {
        let ChangeCommand {
            channel,
            sender,
            target,
            request,
            idempotency_key,
        } = command;
        let keyed = idempotency_key.is_some();
        let (channel_id, sender_id) = (String::from(channel), String::from(sender));
        let idempotency_key = idempotency_key.unwrap_or_default();
        let call = match request {
            ChangeRequest::Edit { body } => Call::Edit(chat::EditMessageRequest {
                channel_id,
                sender_id,
                target_seq: target,
                body,
                idempotency_key,
            }),
            ChangeRequest::Delete => Call::Delete(chat::DeleteMessageRequest {
                channel_id,
                sender_id,
                target_seq: target,
                idempotency_key,
            }),
            ChangeRequest::React { emoji, remove } => Call::React(chat::ReactRequest {
                channel_id,
                sender_id,
                target_seq: target,
                emoji,
                remove,
                idempotency_key,
            }),
        };
        let attempt = || {
            let mut client = self.client.clone();
            let call = call.clone();
            async move {
                match call {
                    Call::Edit(r) => client.edit_message(traced(r)).await,
                    Call::Delete(r) => client.delete_message(traced(r)).await,
                    Call::React(r) => client.react(traced(r)).await,
                }
            }
        };
        // As with sends: only a keyed change is safe to repeat.
        let response = if keyed {
            self.sends.run(attempt).await
        } else {
            self.sends.once(attempt()).await
        }?
        .into_inner();
        let event = response
            .event
            .ok_or_else(|| ClientError::new(ErrorKind::Internal, "chat service returned no event"))
            .and_then(|event| {
                ChatMessage::try_from(event).map_err(|e| {
                    tracing::warn!(error = %e, "chat service returned an unreadable event");
                    ClientError::new(
                        ErrorKind::Internal,
                        "chat service returned an unreadable event",
                    )
                })
            })?;
        Ok(ChangeReceipt {
            event,
            masked: response.masked,
            duplicate: response.duplicate,
        })
    }
}

/// One change RPC and its request.
#[derive(Debug, Clone)]
enum Call {
    Edit(chat::EditMessageRequest),
    Delete(chat::DeleteMessageRequest),
    React(chat::ReactRequest),
}

/// `message` as a request that carries the current trace.
fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    chatmesh_telemetry::inject_trace_context(request.metadata_mut());
    request
}
