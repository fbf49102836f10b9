//! Posts read from the storage service, to check a change against the
//! message it names.

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage};
use chatmesh_proto::storage::v1::GetMessageRequest;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::ChatError;
use crate::ports::PostLookup;

/// The storage service's `GetMessage`, over one lazily connected channel.
#[derive(Debug, Clone)]
pub struct StorageLookup {
    client: StorageServiceClient<Channel>,
}

impl StorageLookup {
    /// A client of the storage service at `url` (`http://host:port`); it
    /// connects on first use and reconnects on its own.
    pub fn new(url: &str) -> Result<Self, ChatError> {
        let endpoint =
            Endpoint::from_shared(url.to_owned()).map_err(|e| ChatError::InvalidArgument {
                field: "storage",
                reason: e.to_string(),
            })?;
        Ok(Self {
            client: StorageServiceClient::new(
                endpoint
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .timeout(std::time::Duration::from_secs(5))
                    .connect_lazy(),
            ),
        })
    }
}

#[async_trait]
impl PostLookup for StorageLookup {
    async fn post(&self, channel: &ChannelId, seq: u64) -> Result<Option<ChatMessage>, ChatError> {
        let request = GetMessageRequest {
            channel_id: channel.as_str().to_owned(),
            seq,
        };
        match self.client.clone().get_message(request).await {
            Ok(answer) => answer
                .into_inner()
                .message
                .map(ChatMessage::try_from)
                .transpose()
                .map_err(|e| ChatError::StorageUnavailable(format!("unreadable message: {e}"))),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(ChatError::StorageUnavailable(status.to_string())),
        }
    }
}
