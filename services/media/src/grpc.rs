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
