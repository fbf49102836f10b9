//! HTTP routes for read state: move one's read position, see the
//! channel's read receipts, unread counts per channel and in total, and
//! the messages that mention one. The storage service keeps all of it;
//! every call is idempotent, so each is retried on another instance.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chatmesh_error::ErrorKind;
use chatmesh_ids::ChannelId;
use chatmesh_proto::storage::v1 as pb;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;
use crate::http::{TokenQuery, authenticate, bearer, caller, fail, render, storage_refusal};
use crate::ws::protocol::MessageBody;
use crate::ws::read::{MAX_UNREAD_CHANNELS, publish_receipt};

pub(crate) fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route("/v1/channels/{channel}/read", put(mark_read))
        .route("/v1/channels/{channel}/reads", get(receipts))
        .route("/v1/unread", get(unread))
        .route("/v1/mentions", get(mentions))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    seq: u64,
}

/// `PUT /v1/channels/{id}/read` with `{"seq"}`: the caller has read the
/// channel up to `seq`. Answers the position held now (never lower).
async fn mark_read(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<ReadBody>, JsonRejection>,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let channel = match ChannelId::new(channel) {
        Ok(c) => c,
        Err(err) => return fail(ErrorKind::InvalidChannel, err.to_string()),
    };
    let seq = match body {
        Ok(Json(ReadBody { seq })) if seq > 0 => seq,
        Ok(_) => return fail(ErrorKind::InvalidRequest, "seq must be from 1"),
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    match gw.sessions.reads.mark_read(&channel, &user, seq).await {
        Ok(held) => {
            if held == seq {
                publish_receipt(&gw.sessions.hub, &channel, &user, held).await;
            }
            Json(json!({ "channel_id": channel.as_str(), "seq": held })).into_response()
        }
        Err(err) => storage_refusal(&gw, &channel, &user, err).await,
    }
}

/// `GET /v1/channels/{id}/reads`: every member's read position (read
/// receipts), for members.
async fn receipts(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let channel = match ChannelId::new(channel) {
        Ok(c) => c,
        Err(err) => return fail(ErrorKind::InvalidChannel, err.to_string()),
    };
    let client = StorageServiceClient::new(gw.storage.clone());
    let request = pb::GetReadPositionsRequest {
        channel_id: channel.as_str().to_owned(),
        user_id: user.as_str().to_owned(),
    };
    let read = gw
        .reads
        .storage
        .call(&client, |mut c| {
            let request = request.clone();
            async move { c.get_read_positions(request).await }
        })
        .await;
    match read {
        Ok(r) => {
            let positions: Vec<_> = r
                .positions
                .into_iter()
                .map(|p| json!({"user_id": p.user_id, "seq": p.seq, "updated_at_ms": p.updated_at_ms}))
                .collect();
            Json(json!({ "channel_id": channel.as_str(), "positions": positions })).into_response()
        }
        Err(err) => storage_refusal(&gw, &channel, &user, err).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnreadQuery {
    /// Comma-separated channel IDs; every channel of the caller's when
    /// absent.
    #[serde(default)]
    channel_ids: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// `GET /v1/unread[?channel_ids=a,b]`: the caller's unread posts and
/// mentions per channel they belong to, and the sums.
async fn unread(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<UnreadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let user = match authenticate(&gw, q.token.as_deref().or_else(|| bearer(&headers))) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let named: Vec<&str> = q
        .channel_ids
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|c| !c.is_empty())
        .collect();
    if named.len() > MAX_UNREAD_CHANNELS {
        return fail(
            ErrorKind::InvalidRequest,
            format!("name at most {MAX_UNREAD_CHANNELS} channel_ids"),
        );
    }
    let channels: Vec<ChannelId> = match named.into_iter().map(ChannelId::new).collect() {
        Ok(channels) => channels,
        Err(err) => return fail(ErrorKind::InvalidChannel, err.to_string()),
    };
    match gw.sessions.reads.unread(&user, &channels).await {
        Ok(counts) => {
            let total: u64 = counts.iter().map(|c| c.unread).sum();
            let mentions: u64 = counts.iter().map(|c| c.mentions).sum();
            let channels: Vec<_> = counts
                .into_iter()
                .map(|c| {
                    json!({
                        "channel_id": c.channel_id,
                        "read_seq": c.read_seq,
                        "last_seq": c.last_seq,
                        "unread": c.unread,
                        "mentions": c.mentions,
                    })
                })
                .collect();
            Json(json!({ "channels": channels, "total": total, "mentions": mentions }))
                .into_response()
        }
        Err(err) => render(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MentionsQuery {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    token: Option<String>,
}

/// `GET /v1/mentions[?channel_id=&before=&limit=]`: the messages that
/// mention the caller, newest first, in their current state.
async fn mentions(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<MentionsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let user = match authenticate(&gw, q.token.as_deref().or_else(|| bearer(&headers))) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let channel = match q.channel_id.filter(|c| !c.is_empty()).map(ChannelId::new) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(err)) => return fail(ErrorKind::InvalidChannel, err.to_string()),
    };
    let before = match q.before.map(|b| b.parse::<u64>()).transpose() {
        Ok(b) => b,
        Err(_) => return fail(ErrorKind::InvalidRequest, "before must be a message ID"),
    };
    let client = StorageServiceClient::new(gw.storage.clone());
    let request = pb::ListMentionsRequest {
        user_id: user.as_str().to_owned(),
        channel_id: channel
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        before,
        limit: q.limit.unwrap_or(0),
    };
    let read = gw
        .reads
        .storage
        .call(&client, |mut c| {
            let request = request.clone();
            async move { c.list_mentions(request).await }
        })
        .await;
    match read {
        Ok(r) => {
            let messages: Vec<MessageBody> = r.messages.iter().map(Into::into).collect();
            Json(json!({ "messages": messages, "has_more": r.has_more })).into_response()
        }
        Err(err) => match &channel {
            Some(channel) => storage_refusal(&gw, channel, &user, err).await,
            None => render(&err),
        },
    }
}

/// The OpenAPI description of these routes.
pub(super) fn openapi_paths() -> Vec<(&'static str, serde_json::Value)> {
    use super::openapi::{answers, channel, object, op, query_param, schema_ref, with_body};
    let count = json!({ "type": "integer", "minimum": 0 });
    let unread = object(
        &["channel_id", "read_seq", "last_seq", "unread", "mentions"],
        json!({
            "channel_id": { "type": "string" },
            "read_seq": { "type": "integer", "minimum": 0, "description": "The caller's read position; 0 before they read anything." },
            "last_seq": { "type": "integer", "minimum": 0, "description": "The `seq` of the channel's newest stored event." },
            "unread": { "type": "integer", "minimum": 0, "description": "Posts after the read position that are not deleted." },
            "mentions": { "type": "integer", "minimum": 0, "description": "Those of them that mention the caller." },
        }),
    );
    vec![
        (
            "/v1/channels/{channel}/read",
            json!({ "put": with_body(
                op("The caller has read the channel up to `seq`: their read position moves forward, never back.",
                    vec![channel()],
                    answers("200", "The position held now.", object(&["channel_id", "seq"], json!({
                        "channel_id": { "type": "string" },
                        "seq": count,
                    })))),
                json!({
                    "type": "object", "required": ["seq"], "additionalProperties": false,
                    "properties": { "seq": { "type": "integer", "minimum": 1 } },
                }),
            ) }),
        ),
        (
            "/v1/channels/{channel}/reads",
            json!({ "get": op(
                "Every member's read position in the channel (read receipts), for members.",
                vec![channel()],
                answers("200", "Read positions by user.", object(&["channel_id", "positions"], json!({
                    "channel_id": { "type": "string" },
                    "positions": { "type": "array", "items": object(&["user_id", "seq", "updated_at_ms"], json!({
                        "user_id": { "type": "string" },
                        "seq": count,
                        "updated_at_ms": { "type": "integer" },
                    })) },
                }))),
            ) }),
        ),
        (
            "/v1/unread",
            json!({ "get": op(
                "The caller's unread posts and unread mentions per channel they belong to, and the sums.",
                vec![query_param("channel_ids", "Comma-separated channel IDs (at most 500); every channel of the caller's when absent.", json!({ "type": "string" }))],
                answers("200", "Unread counts.", object(&["channels", "total", "mentions"], json!({
                    "channels": { "type": "array", "items": unread },
                    "total": count,
                    "mentions": count,
                }))),
            ) }),
        ),
        (
            "/v1/mentions",
            json!({ "get": op(
                "The messages that mention the caller, newest first, in their current state.",
                vec![
                    query_param("channel_id", "Only this channel's; every channel of the caller's when absent.", schema_ref("ChannelId")),
                    query_param("before", "Messages before this message ID.", json!({ "type": "string" })),
                    query_param("limit", "Messages per page (capped by the storage service).", json!({ "type": "integer", "minimum": 0 })),
                ],
                answers("200", "A page, newest first.", object(&["messages", "has_more"], json!({
                    "messages": { "type": "array", "items": schema_ref("Message") },
                    "has_more": { "type": "boolean" },
                }))),
            ) }),
        ),
    ]
}
