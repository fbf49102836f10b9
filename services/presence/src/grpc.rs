//! gRPC transport of the presence service.

use chatmesh_ids::{ChannelId, Clock as _, SystemClock, UserId};
use chatmesh_proto::presence::v1 as pb;
use chatmesh_redis::{Cluster, keys};
use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::scripts::USER_STATUS;

/// Most users `ListOnline` returns for one channel.
const MAX_ONLINE: usize = 10_000;

/// The presence service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct PresenceGrpc {
    redis: Cluster,
    max_batch_users: usize,
}

impl PresenceGrpc {
    pub(crate) fn new(redis: Cluster, max_batch_users: usize) -> Self {
        Self {
            redis,
            max_batch_users,
        }
    }
}

fn unavailable(err: &redis::RedisError) -> Status {
    tracing::warn!(error = %err, "presence query failed");
    Status::unavailable(format!("presence store unavailable: {err}"))
}

#[tonic::async_trait]
impl pb::presence_service_server::PresenceService for PresenceGrpc {
    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        let users = request.into_inner().user_ids;
        if users.len() > self.max_batch_users {
            return Err(Status::invalid_argument(format!(
                "at most {} user_ids per call, got {}",
                self.max_batch_users,
                users.len()
            )));
        }
        for user in &users {
            UserId::new(user.as_str())
                .map_err(|e| Status::invalid_argument(format!("user_ids: {e}")))?;
        }
        let now = SystemClock.now_ms();
        let conn = self.redis.conn().await.map_err(|e| unavailable(&e))?;
        let statuses: Vec<Result<pb::UserPresence, redis::RedisError>> =
            futures::stream::iter(users)
                .map(|user| {
                    let mut conn = conn.clone();
                    async move {
                        let (online, seen): (i64, i64) = USER_STATUS
                            .key(keys::user_sessions(&user))
                            .key(keys::last_seen(&user))
                            .arg(now)
                            .invoke_async(&mut conn)
                            .await?;
                        Ok(pb::UserPresence {
                            user_id: user,
                            online: online == 1,
                            last_seen_ms: seen,
                        })
                    }
                })
                .buffered(64)
                .collect()
                .await;
        let users = statuses
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unavailable(&e))?;
        Ok(Response::new(pb::GetPresenceResponse { users }))
    }

    async fn list_online(
        &self,
        request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        let channel = request.into_inner().channel_id;
        ChannelId::new(channel.as_str())
            .map_err(|e| Status::invalid_argument(format!("channel_id: {e}")))?;
        let mut conn = self.redis.conn().await.map_err(|e| unavailable(&e))?;
        let mut user_ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::online(&channel))
            .arg(format!("({}", SystemClock.now_ms()))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_ONLINE)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        user_ids.sort_unstable();
        Ok(Response::new(pb::ListOnlineResponse { user_ids }))
    }
}
