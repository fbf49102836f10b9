//! Read positions and unread counts: the storage service, as
//! [`ReadState`]. Both calls are idempotent (a position only moves
//! forward), so both are retried on another instance.

use async_trait::async_trait;
use chatmesh_error::ClientError;
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::storage::v1 as storage;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;
use chatmesh_upstream::balance::Upstream;
use chatmesh_upstream::retry::Retries;

use crate::ports::{ChannelUnread, ReadState};

/// The storage service's read state.
#[derive(Debug, Clone)]
pub(crate) struct StoredReads {
    storage: StorageServiceClient<Upstream>,
    retries: Retries,
}

impl StoredReads {
    /// Read state of the storage service at `storage`, retried as
    /// `retries` allow.
    pub(crate) fn new(storage: Upstream, retries: Retries) -> Self {
        Self {
            storage: StorageServiceClient::new(storage),
            retries,
        }
    }
}

#[async_trait]
impl ReadState for StoredReads {
    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, ClientError> {
        let request = storage::MarkReadRequest {
            channel_id: channel.as_str().to_owned(),
            user_id: user.as_str().to_owned(),
            seq,
        };
        let answer = self
            .retries
            .call(&self.storage, |mut c| {
                let request = request.clone();
                async move { c.mark_read(request).await }
            })
            .await?;
        Ok(answer.seq)
    }

    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<ChannelUnread>, ClientError> {
        let request = storage::GetUnreadRequest {
            user_id: user.as_str().to_owned(),
            channel_ids: channels.iter().map(|c| c.as_str().to_owned()).collect(),
        };
        let answer = self
            .retries
            .call(&self.storage, |mut c| {
                let request = request.clone();
                async move { c.get_unread(request).await }
            })
            .await?;
        Ok(answer
            .channels
            .into_iter()
            .map(|c| ChannelUnread {
                channel_id: c.channel_id,
                read_seq: c.read_seq,
                last_seq: c.last_seq,
                unread: c.unread,
                mentions: c.mentions,
            })
            .collect())
    }
}
