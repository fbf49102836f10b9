//! gRPC transport of the storage service.

use chatmesh_db::{DbError, Pool, ShardMap};
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::storage::v1 as pb;
use tonic::{Request, Response, Status};

use crate::history::{self, Page};
use crate::rows::Row;

/// Page size when the request asks for none.
const DEFAULT_PAGE: u32 = 50;

/// The storage service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct StorageGrpc {
    shards: ShardMap,
    directory: Pool,
    max_page: u32,
}

impl StorageGrpc {
    pub(crate) fn new(shards: ShardMap, directory: Pool, max_page: u32) -> Self {
        Self {
            shards,
            directory,
            max_page,
        }
    }

    /// The channel, once `user` is known to be a member of it.
    async fn authorize(&self, channel: String, user: String) -> Result<ChannelId, Status> {
        let channel = ChannelId::new(channel)
            .map_err(|e| Status::invalid_argument(format!("channel_id: {e}")))?;
        let user =
            UserId::new(user).map_err(|e| Status::invalid_argument(format!("user_id: {e}")))?;
        let member =
            chatmesh_db::directory::is_member(&self.directory, channel.as_str(), user.as_str())
                .await
                .map_err(unavailable)?;
        if !member {
            return Err(Status::permission_denied("not a member of this channel"));
        }
        Ok(channel)
    }

    fn limit(&self, requested: u32) -> usize {
        (if requested == 0 {
            DEFAULT_PAGE
        } else {
            requested
        })
        .min(self.max_page) as usize
    }
}

/// Store failures go to the log; clients get a generic retryable error.
fn unavailable(err: DbError) -> Status {
    tracing::error!(error = %err, "history query failed");
    Status::unavailable("history temporarily unavailable, retry later")
}

fn id(field: &str, raw: u64) -> Result<i64, Status> {
    i64::try_from(raw).map_err(|_| Status::invalid_argument(format!("{field} is not a message ID")))
}

#[tonic::async_trait]
impl pb::storage_service_server::StorageService for StorageGrpc {
    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = request.into_inner();
        let page = match (req.before, req.after) {
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument("give before or after, not both"));
            }
            (Some(b), None) => Page::Before(id("before", b)?),
            (None, Some(a)) => Page::After(id("after", a)?),
            (None, None) => Page::Latest,
        };
        let limit = self.limit(req.limit);
        let channel = self.authorize(req.channel_id, req.user_id).await?;
        let (rows, has_more) = history::page(&self.shards, &channel, page, limit)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::GetHistoryResponse {
            messages: rows.into_iter().map(Row::into_message).collect(),
            has_more,
        }))
    }

    async fn get_since(
        &self,
        request: Request<pb::GetSinceRequest>,
    ) -> Result<Response<pb::GetSinceResponse>, Status> {
        let req = request.into_inner();
        let limit = self.limit(req.limit);
        let after = i64::try_from(req.after_seq)
            .map_err(|_| Status::invalid_argument("after_seq is too large"))?;
        let channel = self.authorize(req.channel_id, req.user_id).await?;
        let (rows, truncated) = history::since(&self.shards, &channel, after, limit)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::GetSinceResponse {
            messages: rows.into_iter().map(Row::into_message).collect(),
            truncated,
        }))
    }
}
