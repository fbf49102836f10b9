//! gRPC transport of the presence service: converts requests to domain
//! types, asks [`Queries`], and converts back. Errors become statuses only
//! here, through [`PresenceError`]'s mapping.

use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::presence::v1 as pb;
use tonic::{Request, Response, Status};

use crate::PresenceError;
use crate::query::Queries;

/// The presence service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct PresenceGrpc {
    queries: Queries,
}

impl PresenceGrpc {
    pub(crate) fn new(queries: Queries) -> Self {
        Self { queries }
    }
}

#[tonic::async_trait]
impl pb::presence_service_server::PresenceService for PresenceGrpc {
    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        let users = request
            .into_inner()
            .user_ids
            .into_iter()
            .map(UserId::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(PresenceError::InvalidUser)?;
        let users = self
            .queries
            .presence(&users)
            .await?
            .into_iter()
            .map(|s| pb::UserPresence {
                user_id: s.user.into(),
                online: s.online,
                last_seen_ms: i64::try_from(s.last_seen_ms).unwrap_or(i64::MAX),
            })
            .collect();
        Ok(Response::new(pb::GetPresenceResponse { users }))
    }

    async fn list_online(
        &self,
        request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        let channel = ChannelId::new(request.into_inner().channel_id)
            .map_err(PresenceError::InvalidChannel)?;
        let user_ids = self
            .queries
            .online(&channel)
            .await?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Response::new(pb::ListOnlineResponse { user_ids }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chatmesh_error::{ClientError, ErrorKind};
    use chatmesh_ids::Clock;
    use pb::presence_service_server::PresenceService as _;
    use tonic::Code;

    use super::*;
    use crate::memory::{MemoryStore, TokioClock};
    use crate::store::{ChannelJoin, PresenceStore};
    use crate::test_support::DownStore;

    const NOW_MS: u64 = 1_750_000_000_000;

    fn grpc(store: Arc<dyn PresenceStore>) -> PresenceGrpc {
        PresenceGrpc::new(Queries::new(store, Arc::new(TokioClock::new(NOW_MS)), 3))
    }

    fn users(ids: &[&str]) -> Request<pb::GetPresenceRequest> {
        Request::new(pb::GetPresenceRequest {
            user_ids: ids.iter().map(|u| (*u).to_owned()).collect(),
        })
    }

    fn channel(id: &str) -> Request<pb::ListOnlineRequest> {
        Request::new(pb::ListOnlineRequest {
            channel_id: id.into(),
        })
    }

    #[tokio::test]
    async fn bad_requests_are_invalid_arguments_that_say_why() {
        let api = grpc(Arc::new(MemoryStore::new(Arc::new(TokioClock::new(
            NOW_MS,
        )))));
        let too_many = api
            .get_presence(users(&["a", "b", "c", "d"]))
            .await
            .expect_err("over the limit");
        assert_eq!(too_many.code(), Code::InvalidArgument);
        assert_eq!(too_many.message(), "at most 3 user_ids per call, got 4");
        let bad_user = api
            .get_presence(users(&["has space"]))
            .await
            .expect_err("bad user");
        assert_eq!(bad_user.code(), Code::InvalidArgument);
        assert_eq!(
            ClientError::from_status(&bad_user).kind,
            ErrorKind::InvalidUser
        );
        let bad_channel = api
            .list_online(channel("no/slashes"))
            .await
            .expect_err("bad channel");
        assert_eq!(bad_channel.code(), Code::InvalidArgument);
        assert!(bad_channel.message().contains("channel_id"));
    }

    #[tokio::test]
    async fn a_store_failure_is_unavailable_and_names_no_host() {
        let api = grpc(Arc::new(DownStore));
        let statuses = [
            api.get_presence(users(&["alice"])).await.expect_err("down"),
            api.list_online(channel("room")).await.expect_err("down"),
        ];
        for status in statuses {
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(
                status.message(),
                ErrorKind::Unavailable.spec().message,
                "only the table's text"
            );
            assert!(!status.message().contains("10.0.0.7"));
        }
    }

    #[tokio::test]
    async fn list_online_is_sorted_and_only_counts_live_users() {
        let clock = Arc::new(TokioClock::new(NOW_MS));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let room = ChannelId::new("room").expect("valid");
        for (name, expires_ms) in [
            ("carol", NOW_MS + 10),
            ("alice", NOW_MS + 20),
            ("bob", NOW_MS),
        ] {
            store
                .join_channel(ChannelJoin {
                    channel: &room,
                    user: &UserId::new(name).expect("valid"),
                    session: "s",
                    expires_ms,
                    now_ms: clock.now_ms() - 1,
                    stale_before_ms: 0,
                })
                .await
                .expect("memory store");
        }
        let listed = grpc(store)
            .list_online(channel("room"))
            .await
            .expect("listed")
            .into_inner()
            .user_ids;
        assert_eq!(listed, ["alice", "carol"], "bob expired just now");
    }
}
