//! The chat service over gRPC, as [`ChatApi`].

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{ChannelId, MessageId, UserId};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use tonic::transport::Channel;

use crate::ports::{Access, ChatApi, SendCommand, SendReceipt};

/// How long a send may take before the client is told to retry it with the
/// same idempotency key.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// A gRPC client of the chat service.
#[derive(Debug, Clone)]
pub(crate) struct GrpcChat {
    client: ChatServiceClient<Channel>,
}

impl GrpcChat {
    /// A client over `channel`.
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            client: ChatServiceClient::new(channel),
        }
    }
}

#[async_trait]
impl ChatApi for GrpcChat {
    async fn access(&self, channel: &ChannelId, user: &UserId) -> Result<Access, ClientError> {
        let mut client = self.client.clone();
        let member = client
            .check_membership(chat::CheckMembershipRequest {
                channel_id: channel.as_str().to_owned(),
                user_id: user.as_str().to_owned(),
            })
            .await
            .map_err(|s| ClientError::from_status(&s))?
            .into_inner()
            .member;
        if member {
            return Ok(Access::Member);
        }
        let exists = client
            .get_channel(chat::GetChannelRequest {
                channel_id: channel.as_str().to_owned(),
            })
            .await;
        match exists {
            Ok(_) => Ok(Access::NotMember),
            Err(status) => match ClientError::from_status(&status) {
                e if e.kind == ErrorKind::UnknownChannel || e.kind == ErrorKind::NotFound => {
                    Ok(Access::UnknownChannel)
                }
                e => Err(e),
            },
        }
    }

    async fn send(&self, command: SendCommand) -> Result<SendReceipt, ClientError> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(chat::SendMessageRequest {
            channel_id: command.channel.into(),
            sender_id: command.sender.into(),
            body: command.body,
            attachments: command.attachments,
            idempotency_key: command.idempotency_key.unwrap_or_default(),
        });
        chatmesh_telemetry::inject_trace_context(request.metadata_mut());
        let response = match tokio::time::timeout(SEND_TIMEOUT, client.send_message(request)).await
        {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(ClientError::from_status(&status)),
            Err(_) => {
                return Err(ClientError::new(
                    ErrorKind::Unavailable,
                    "send timed out; retry with the same idempotency_key",
                ));
            }
        };
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
}
