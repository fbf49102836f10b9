//! gRPC transport: converts requests to domain types and errors to statuses.

use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::media::v1 as pb;
use tonic::{Request, Response, Status};

use crate::store::SignedUrl;
use crate::{Media, MediaError, MediaId, MediaState, NewUpload, Uploads};

/// The media service's gRPC front.
#[derive(Debug, Clone)]
pub(crate) struct MediaGrpc {
    uploads: Uploads,
}

impl MediaGrpc {
    pub(crate) fn new(uploads: Uploads) -> Self {
        Self { uploads }
    }
}

fn invalid(field: &'static str, reason: impl ToString) -> MediaError {
    MediaError::InvalidArgument {
        field,
        reason: reason.to_string(),
    }
}

fn media_id(raw: &str) -> Result<MediaId, MediaError> {
    MediaId::new(raw).map_err(|e| invalid("media_id", e))
}

fn user_id(raw: String) -> Result<UserId, MediaError> {
    UserId::new(raw).map_err(|e| invalid("user_id", e))
}

fn to_pb(media: Media) -> pb::Media {
    pb::Media {
        media_id: media.id.to_string(),
        channel_id: media.channel.into(),
        uploader_id: media.uploader.into(),
        filename: media.filename,
        content_type: media.content_type,
        size: media.size,
        state: match media.state {
            MediaState::Pending => pb::MediaState::Pending,
            MediaState::Ready => pb::MediaState::Ready,
        } as i32,
        created_at_ms: media.created_at.timestamp_millis(),
    }
}

fn expires_ms(url: &SignedUrl) -> i64 {
    url.expires_at.timestamp_millis()
}

#[tonic::async_trait]
impl pb::media_service_server::MediaService for MediaGrpc {
    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::CreateUploadResponse>, Status> {
        let req = request.into_inner();
        let upload = self
            .uploads
            .create(NewUpload {
                channel: ChannelId::new(req.channel_id).map_err(|e| invalid("channel_id", e))?,
                user: user_id(req.user_id)?,
                filename: req.filename,
                content_type: req.content_type,
                size: req.size,
            })
            .await?;
        Ok(Response::new(pb::CreateUploadResponse {
            media_id: upload.media.id.to_string(),
            expires_at_ms: expires_ms(&upload.url),
            upload_url: upload.url.url,
            upload_headers: upload.url.headers.into_iter().collect(),
        }))
    }

    async fn complete_upload(
        &self,
        request: Request<pb::CompleteUploadRequest>,
    ) -> Result<Response<pb::CompleteUploadResponse>, Status> {
        let req = request.into_inner();
        let media = self
            .uploads
            .complete(&media_id(&req.media_id)?, &user_id(req.user_id)?)
            .await?;
        Ok(Response::new(pb::CompleteUploadResponse {
            media: Some(to_pb(media)),
        }))
    }

    async fn get_download_url(
        &self,
        request: Request<pb::GetDownloadUrlRequest>,
    ) -> Result<Response<pb::GetDownloadUrlResponse>, Status> {
        let req = request.into_inner();
        let url = self
            .uploads
            .download_url(&media_id(&req.media_id)?, &user_id(req.user_id)?)
            .await?;
        Ok(Response::new(pb::GetDownloadUrlResponse {
            expires_at_ms: expires_ms(&url),
            download_url: url.url,
        }))
    }

    async fn get_media(
        &self,
        request: Request<pb::GetMediaRequest>,
    ) -> Result<Response<pb::GetMediaResponse>, Status> {
        let req = request.into_inner();
        let media = self
            .uploads
            .get(&media_id(&req.media_id)?, &user_id(req.user_id)?)
            .await?;
        Ok(Response::new(pb::GetMediaResponse {
            media: Some(to_pb(media)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chatmesh_db::DbError;
    use pb::media_service_server::MediaService as _;

    use super::*;
    use crate::MediaLimits;
    use crate::catalog::{Catalog, Membership, MemoryCatalog};
    use crate::store::MemoryBlobs;

    /// A directory database that cannot be reached, and says where it is.
    #[derive(Debug)]
    struct Unreachable;

    fn unreachable() -> MediaError {
        DbError::Connection("connection to 10.9.8.7:5432 (db.internal) refused".into()).into()
    }

    #[async_trait::async_trait]
    impl Catalog for Unreachable {
        async fn membership(&self, _: &ChannelId, _: &UserId) -> Result<Membership, MediaError> {
            Err(unreachable())
        }
        async fn insert(&self, _: &Media) -> Result<(), MediaError> {
            Err(unreachable())
        }
        async fn get(&self, _: &MediaId) -> Result<Option<Media>, MediaError> {
            Err(unreachable())
        }
        async fn mark_ready(&self, _: &MediaId) -> Result<Option<Media>, MediaError> {
            Err(unreachable())
        }
    }

    fn create_request() -> Request<pb::CreateUploadRequest> {
        Request::new(pb::CreateUploadRequest {
            channel_id: "room".into(),
            user_id: "alice".into(),
            filename: "a.png".into(),
            content_type: "image/png".into(),
            size: 10,
        })
    }

    fn assert_generic(status: &Status, code: tonic::Code) {
        assert_eq!(status.code(), code, "{status:?}");
        let message = status.message();
        for secret in ["10.9.8.7", "5432", "db.internal", "switched off"] {
            assert!(!message.contains(secret), "{secret:?} leaked: {message}");
        }
        let kind = chatmesh_error::ClientError::from_status(status).kind;
        assert_eq!(message, kind.spec().message);
    }

    #[tokio::test]
    async fn database_failures_reach_clients_as_the_generic_message() {
        let limits = MediaLimits::default();
        let grpc = MediaGrpc::new(Uploads::new(
            Arc::new(Unreachable),
            Arc::new(MemoryBlobs::new()),
            limits,
        ));
        let status = grpc.create_upload(create_request()).await.unwrap_err();
        assert_generic(&status, tonic::Code::Unavailable);
        let status = grpc
            .get_media(Request::new(pb::GetMediaRequest {
                media_id: MediaId::generate().to_string(),
                user_id: "alice".into(),
            }))
            .await
            .unwrap_err();
        assert_generic(&status, tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn store_failures_reach_clients_as_the_generic_message() {
        let catalog = MemoryCatalog::new();
        let room = ChannelId::new("room").unwrap();
        catalog.add_channel(&room, &[&UserId::new("alice").unwrap()]);
        let blobs = Arc::new(MemoryBlobs::new());
        blobs.set_unavailable(true);
        let grpc = MediaGrpc::new(Uploads::new(
            Arc::new(catalog),
            blobs,
            MediaLimits::default(),
        ));
        let status = grpc.create_upload(create_request()).await.unwrap_err();
        assert_generic(&status, tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn rule_violations_are_explained() {
        let grpc = MediaGrpc::new(Uploads::new(
            Arc::new(MemoryCatalog::new()),
            Arc::new(MemoryBlobs::new()),
            MediaLimits::default(),
        ));
        let status = grpc.create_upload(create_request()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "channel not found");
        let bad = Request::new(pb::GetMediaRequest {
            media_id: "../../etc/passwd".into(),
            user_id: "alice".into(),
        });
        let status = grpc.get_media(bad).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with("invalid media_id"),
            "{status:?}"
        );
    }
}
