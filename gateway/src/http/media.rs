//! HTTP routes for media: create an upload, complete it, read its metadata
//! and get a download URL. Each calls the media service over gRPC as the
//! token's user; the bytes themselves never pass through the gateway.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chatmesh_ids::ChannelId;
use chatmesh_proto::media::v1 as pb;
use chatmesh_proto::media::v1::media_service_client::MediaServiceClient;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::http::{TokenQuery, ask, caller, fail, from_status};
use chatmesh_error::ErrorKind;

/// The media routes, merged into the gateway's router.
pub(crate) fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route("/v1/channels/{channel}/media", post(create_upload))
        .route("/v1/media/{media}", get(get_media))
        .route("/v1/media/{media}/complete", post(complete_upload))
        .route("/v1/media/{media}/download", get(download_url))
}

fn client(gw: &Gateway) -> MediaServiceClient<chatmesh_upstream::balance::Upstream> {
    MediaServiceClient::new(gw.media.clone())
}

fn media_json(media: Option<pb::Media>) -> Value {
    let Some(m) = media else {
        return Value::Null;
    };
    let state = match pb::MediaState::try_from(m.state) {
        Ok(pb::MediaState::Ready) => "ready",
        _ => "pending",
    };
    json!({
        "media_id": m.media_id,
        "channel_id": m.channel_id,
        "uploader_id": m.uploader_id,
        "filename": m.filename,
        "content_type": m.content_type,
        "size": m.size,
        "state": state,
        "created_at_ms": m.created_at_ms,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUploadBody {
    filename: String,
    content_type: String,
    size: u64,
}

/// `POST /v1/channels/<id>/media` with `{"filename", "content_type",
/// "size"}`: a pending media and the URL to PUT its bytes to.
async fn create_upload(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<CreateUploadBody>, JsonRejection>,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    if let Err(err) = ChannelId::new(channel.as_str()) {
        return fail(ErrorKind::InvalidChannel, err.to_string());
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let request = pb::CreateUploadRequest {
        channel_id: channel,
        user_id: user.into(),
        filename: body.filename,
        content_type: body.content_type,
        size: body.size,
    };
    match client(&gw).create_upload(request).await {
        Ok(r) => {
            let r = r.into_inner();
            (
                StatusCode::CREATED,
                Json(json!({
                    "media_id": r.media_id,
                    "upload_url": r.upload_url,
                    "upload_method": "PUT",
                    "upload_headers": r.upload_headers,
                    "expires_at_ms": r.expires_at_ms,
                })),
            )
                .into_response()
        }
        Err(status) => from_status(&status),
    }
}

/// `POST /v1/media/<id>/complete`: verifies the uploaded bytes and makes
/// the media attachable. Only the uploader may call it; repeating it is
/// harmless.
async fn complete_upload(
    State(gw): State<Arc<Gateway>>,
    Path(media_id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let request = pb::CompleteUploadRequest {
        media_id,
        user_id: user.into(),
    };
    match client(&gw).complete_upload(request).await {
        Ok(r) => Json(json!({ "media": media_json(r.into_inner().media) })).into_response(),
        Err(status) => from_status(&status),
    }
}

/// `GET /v1/media/<id>`: metadata, for members of the media's channel.
async fn get_media(
    State(gw): State<Arc<Gateway>>,
    Path(media_id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let request = pb::GetMediaRequest {
        media_id,
        user_id: user.into(),
    };
    ask(
        &gw.reads.media,
        &client(&gw),
        request,
        |mut c, r| async move { c.get_media(r).await },
        |r| Json(json!({ "media": media_json(r.media) })).into_response(),
    )
    .await
}

/// `GET /v1/media/<id>/download`: a short-lived URL to GET the bytes, for
/// members of the media's channel once the upload is complete.
async fn download_url(
    State(gw): State<Arc<Gateway>>,
    Path(media_id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let request = pb::GetDownloadUrlRequest {
        media_id,
        user_id: user.into(),
    };
    ask(
        &gw.reads.media,
        &client(&gw),
        request,
        |mut c, r| async move { c.get_download_url(r).await },
        |r| {
            Json(json!({
                "download_url": r.download_url,
                "expires_at_ms": r.expires_at_ms,
            }))
            .into_response()
        },
    )
    .await
}
