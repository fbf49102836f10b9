//! Posts read from the storage service, to check a change against the
//! message it names.

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage};
use chatmesh_proto::storage::v1::GetMessageRequest;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;
use chatmesh_server::Tasks;
use chatmesh_upstream::UpstreamSettings;
use chatmesh_upstream::balance::{self, Upstream};
use chatmesh_upstream::retry::Retries;

use crate::ChatError;
use crate::ports::PostLookup;

/// The storage service's `GetMessage`, balanced over every instance and
/// retried on another one when an instance fails (it only reads, so it is
/// safe to repeat).
#[derive(Debug, Clone)]
pub struct StorageLookup {
    client: StorageServiceClient<Upstream>,
    retries: Retries,
}

impl StorageLookup {
    /// A client of the storage instances at `endpoints` (one URL, a
    /// comma-separated list, or `dns://name:port`; see
    /// [`chatmesh_upstream::endpoints`]). It connects on first use;
    /// discovery and health checks run on `tasks`.
    pub fn new(endpoints: &str, tasks: &Tasks) -> Result<Self, ChatError> {
        let settings = UpstreamSettings::default();
        let upstream = balance::channel("storage", endpoints, &settings, tasks).map_err(|e| {
            ChatError::InvalidArgument {
                field: "storage",
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            client: StorageServiceClient::new(upstream),
            retries: Retries::new("storage", &settings),
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
        let found = self
            .retries
            .run(|| {
                let mut client = self.client.clone();
                let request = request.clone();
                async move {
                    match client.get_message(request).await {
                        Ok(answer) => Ok(answer.into_inner().message),
                        // An answer, not a failure: not retried.
                        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
                        Err(status) => Err(status),
                    }
                }
            })
            .await
            .map_err(|e| ChatError::StorageUnavailable(e.to_string()))?;
        found
            .map(ChatMessage::try_from)
            .transpose()
            .map_err(|e| ChatError::StorageUnavailable(format!("unreadable message: {e}")))
    }
}
