//! gRPC transport of the presence service.

use chatmesh_proto::presence::v1 as pb;
use tonic::{Request, Response, Status};

/// The presence service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct PresenceGrpc {
    _redis: chatmesh_redis::Cluster,
}

impl PresenceGrpc {
    pub(crate) fn new(redis: chatmesh_redis::Cluster) -> Self {
        Self { _redis: redis }
    }
}

#[tonic::async_trait]
impl pb::presence_service_server::PresenceService for PresenceGrpc {
    async fn get_presence(
        &self,
        _request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        Err(Status::unimplemented(
            "presence queries are not available in this release",
        ))
    }

    async fn list_online(
        &self,
        _request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        Err(Status::unimplemented(
            "presence queries are not available in this release",
        ))
    }
}
