//! Missed messages: the recent window in Redis and the storage service, as
//! [`GapSource`].

use std::collections::HashSet;

use async_trait::async_trait;
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{ChannelId, ChatMessage, UserId};
use chatmesh_proto::common::v1::Message;
use chatmesh_proto::storage::v1 as storage;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;

use crate::ports::GapSource;
use chatmesh_upstream::balance::Upstream;
use chatmesh_upstream::retry::Retries;

/// Redis for the recent window, storage for older messages.
#[derive(Debug, Clone)]
pub(crate) struct StoredGaps {
    redis: Cluster,
    storage: StorageServiceClient<Upstream>,
    retries: Retries,
}

impl StoredGaps {
    /// A source over `redis` and the storage service at `storage`, whose
    /// reads are retried as `retries` allow.
    pub(crate) fn new(redis: Cluster, storage: Upstream, retries: Retries) -> Self {
        Self {
            redis,
            storage: StorageServiceClient::new(storage),
            retries,
        }
    }
}

fn decode(m: Message) -> Option<ChatMessage> {
    ChatMessage::try_from(m).ok()
}

#[async_trait]
impl GapSource for StoredGaps {
    async fn recent(
        &self,
        channel: &ChannelId,
        after: u64,
        upto: u64,
    ) -> Result<(Vec<ChatMessage>, HashSet<u64>), ClientError> {
        let unavailable = |err: redis::RedisError| {
            tracing::warn!(channel = %channel, error = %err, "recent window unreadable");
            ClientError::generic(ErrorKind::Unavailable)
        };
        let mut conn = self.redis.conn().await.map_err(unavailable)?;
        let (recent, voids): (Vec<Vec<u8>>, Vec<u64>) = redis::pipe()
            .cmd("ZRANGEBYSCORE")
            .arg(keys::recent(channel.as_str()))
            .arg(format!("({after}"))
            .arg(upto)
            .cmd("SMEMBERS")
            .arg(keys::void_seqs(channel.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let messages = recent
            .iter()
            .filter_map(|p| Message::decode(p.as_slice()).ok())
            .filter_map(decode)
            .collect();
        Ok((messages, voids.into_iter().collect()))
    }

    async fn stored_since(
        &self,
        channel: &ChannelId,
        user: &UserId,
        after: u64,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        let request = storage::GetSinceRequest {
            channel_id: channel.as_str().to_owned(),
            user_id: user.as_str().to_owned(),
            after_seq: after,
            limit: 0,
        };
        let page = self
            .retries
            .call(&self.storage, |mut c| {
                let request = request.clone();
                async move { c.get_since(request).await }
            })
            .await?;
        let messages = page.messages.into_iter().filter_map(decode).collect();
        Ok((messages, page.truncated))
    }
}
