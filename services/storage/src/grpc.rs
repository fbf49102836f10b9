//! gRPC transport of the storage service.

use chatmesh_db::{Pool, ShardMap};
use chatmesh_proto::storage::v1 as pb;
use tonic::{Request, Response, Status};

/// The storage service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct StorageGrpc {
    _shards: ShardMap,
    _directory: Pool,
}

impl StorageGrpc {
    pub(crate) fn new(shards: ShardMap, directory: Pool) -> Self {
        Self {
            _shards: shards,
            _directory: directory,
        }
    }
}

#[tonic::async_trait]
impl pb::storage_service_server::StorageService for StorageGrpc {
    async fn get_history(
        &self,
        _request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        Err(Status::unimplemented(
            "history is not available in this release",
        ))
    }

    async fn get_since(
        &self,
        _request: Request<pb::GetSinceRequest>,
    ) -> Result<Response<pb::GetSinceResponse>, Status> {
        Err(Status::unimplemented(
            "history is not available in this release",
        ))
    }
}
