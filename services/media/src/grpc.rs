//! gRPC transport of the media service.

use std::sync::Arc;

use chatmesh_db::Pool;
use chatmesh_proto::media::v1 as pb;
use object_store::ObjectStore;
use tonic::{Request, Response, Status};

/// The media service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct MediaGrpc {
    _store: Arc<dyn ObjectStore>,
    _directory: Pool,
}

impl MediaGrpc {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, directory: Pool) -> Self {
        Self {
            _store: store,
            _directory: directory,
        }
    }
}

const NOT_YET: &str = "media uploads are not available in this release";

#[tonic::async_trait]
impl pb::media_service_server::MediaService for MediaGrpc {
    async fn create_upload(
        &self,
        _request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::CreateUploadResponse>, Status> {
        Err(Status::unimplemented(NOT_YET))
    }

    async fn complete_upload(
        &self,
        _request: Request<pb::CompleteUploadRequest>,
    ) -> Result<Response<pb::CompleteUploadResponse>, Status> {
        Err(Status::unimplemented(NOT_YET))
    }

    async fn get_download_url(
        &self,
        _request: Request<pb::GetDownloadUrlRequest>,
    ) -> Result<Response<pb::GetDownloadUrlResponse>, Status> {
        Err(Status::unimplemented(NOT_YET))
    }

    async fn get_media(
        &self,
        _request: Request<pb::GetMediaRequest>,
    ) -> Result<Response<pb::GetMediaResponse>, Status> {
        Err(Status::unimplemented(NOT_YET))
    }
}
