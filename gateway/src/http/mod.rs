//! HTTP routes: the WebSocket upgrade, the route endpoint, history, dev
//! tokens, and (in their own files) channels, message changes, presence,
//! media and the OpenAPI document. Every error answer is rendered by
//! [`render`] from the error table.

mod channels;
mod connect;
mod layers;
mod media;
mod messages;
mod openapi;
mod presence;
mod reads;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{ChannelId, UserId};
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;
use crate::auth::AuthError;
use crate::ports::Access;
use chatmesh_upstream::retry::Retries;

pub use connect::ConnectRequest;
pub(crate) use layers::cors_origins;

/// Every client-facing route.
pub(crate) fn routes(gw: Arc<Gateway>) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/v1/ws", get(upgrade))
        .route("/v1/route/{channel}", get(route))
        .route("/v1/channels/{channel}/messages", get(history))
        .route("/v1/channels/{channel}/messages/{seq}/thread", get(thread))
        .route("/v1/openapi.json", get(openapi::serve))
        .merge(channels::routes())
        .merge(messages::routes())
        .merge(presence::routes())
        .merge(reads::routes())
        .merge(media::routes());
    if gw.config.auth.dev_tokens {
        router = router.route("/v1/dev/token", post(dev_token));
    }
    let settings = gw.config.http.clone();
    let router = router.fallback(|| async { fail(ErrorKind::NotFound, "no such route") });
    layers::apply(router.with_state(gw), &settings)
}

/// The HTTP answer for `err`: status and code from the error table.
pub(crate) fn render(err: &ClientError) -> Response {
    let spec = err.kind.spec();
    let status = StatusCode::from_u16(spec.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({ "error": {
        "code": spec.client_code,
        "message": err.message,
        "retryable": spec.retryable,
    } });
    (status, Json(body)).into_response()
}

/// `method` with `request` on a clone of `client`, retried by `retries` on
/// another instance (for reads and set-like changes), answered by
/// `answer`, or with the error as JSON.
pub(crate) async fn ask<C, Req, T, F, Fut>(
    retries: &Retries,
    client: &C,
    request: Req,
    method: F,
    answer: impl FnOnce(T) -> Response,
) -> Response
where
    C: Clone,
    Req: Clone,
    F: Fn(C, Req) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match retries.call(client, |c| method(c, request.clone())).await {
        Ok(r) => answer(r),
        Err(err) => render(&err),
    }
}

/// The answer for storage's `err` to a call about `channel`. Storage knows
/// members, not channels: only the directory can tell a channel that does
/// not exist from one the user is not in.
pub(crate) async fn storage_refusal(
    gw: &Gateway,
    channel: &ChannelId,
    user: &UserId,
    err: ClientError,
) -> Response {
    if err.kind == ErrorKind::NotMember
        && let Ok(Access::UnknownChannel) = gw.sessions.chat.access(channel, user).await
    {
        return fail(ErrorKind::UnknownChannel, "no such channel");
    }
    render(&err)
}

/// The HTTP answer for an error of `kind`.
pub(crate) fn fail(kind: ErrorKind, message: impl Into<String>) -> Response {
    render(&ClientError::new(kind, message))
}

/// The HTTP answer for a service's error status.
pub(crate) fn from_status(status: &tonic::Status) -> Response {
    render(&ClientError::from_status(status))
}

/// The user behind `token`, or the 401 answer to send.
pub(crate) fn authenticate(gw: &Gateway, token: Option<&str>) -> Result<UserId, Box<Response>> {
    token
        .ok_or(AuthError::Missing)
        .and_then(|t| gw.auth.verify(t))
        .map_err(|err| {
            let kind = if err == AuthError::Expired {
                ErrorKind::TokenExpired
            } else {
                ErrorKind::Unauthorized
            };
            Box::new(fail(kind, err.to_string()))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

/// The caller, from `Authorization: Bearer` or `?token=`.
pub(crate) fn caller(
    gw: &Gateway,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
) -> Result<UserId, Box<Response>> {
    let Query(q) = query.map_err(|e| Box::new(fail(ErrorKind::InvalidRequest, e.body_text())))?;
    let token = q.token.as_deref().or_else(|| bearer(headers));
    authenticate(gw, token)
}

/// The Authorization header's value, if it is text.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()
}

/// The bearer token of the Authorization header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    authorization(headers).and_then(crate::auth::bearer_token)
}

async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let query = query.unwrap_or_default();
    let request = ConnectRequest::parse(&query, authorization(&headers));
    let user = match authenticate(&gw, request.token.as_deref()) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let channel = match request.channel.map(ChannelId::new).transpose() {
        Ok(c) => c,
        Err(err) => return fail(ErrorKind::InvalidChannel, err.to_string()),
    };
    if let Some(channel) = &channel
        && let Some(base) = gw.sessions.placement.redirect_url(channel)
    {
        // The owner gets the query exactly as the client sent it.
        let location = format!("{}/v1/ws?{query}", base.trim_end_matches('/'));
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    if gw.shutdown.is_cancelled() {
        return fail(ErrorKind::ShuttingDown, "this node is shutting down");
    }
    let max = gw.config.limits.max_connections;
    if gw.connections.fetch_add(1, Ordering::Relaxed) >= max {
        gw.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::counter!("chatmesh_gateway_connections_refused_total").increment(1);
        return fail(
            ErrorKind::TooManyConnections,
            format!("this node serves at most {max} connections"),
        );
    }
    // Frames somewhat over the limit still arrive and get an error frame;
    // far larger ones are cut off by the socket layer.
    let hard_cap = gw.config.limits.max_frame_bytes * 4 + 1024;
    let session_gw = gw.clone();
    // The socket layer allocates its whole read buffer for every
    // connection up front. Chat frames are small, so a buffer of
    // `read_buffer_bytes` (1 KiB) instead of the library's 128 KiB default
    // or the frame limit keeps idle connections cheap: 8.8 KiB each where
    // a 16 KiB buffer cost 23.7 KiB.
    let ws = ws.protocols([crate::ws::JSON_SUBPROTOCOL, crate::ws::PROTO_SUBPROTOCOL]);
    let codec = crate::ws::Codec::negotiate(
        ws.selected_protocol().and_then(|p| p.to_str().ok()),
        request.format.as_deref(),
    );
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .read_buffer_size(gw.config.limits.read_buffer_bytes)
        .write_buffer_size(0)
        .on_failed_upgrade(move |_| {
            session_gw.connections.fetch_sub(1, Ordering::Relaxed);
        })
        .on_upgrade(move |socket| {
            let live = gw.live.clone();
            live.track_future(crate::ws::run(gw, socket, user, channel, codec))
        })
}

async fn route(State(gw): State<Arc<Gateway>>, Path(channel): Path<String>) -> Response {
    if let Err(err) = ChannelId::new(channel.as_str()) {
        return fail(ErrorKind::InvalidChannel, err.to_string());
    }
    let routes = gw.sessions.placement.routes.borrow().clone();
    match routes.owner(&channel) {
        Some((node, url)) => {
            Json(json!({ "channel_id": channel, "node": node, "url": url })).into_response()
        }
        None => fail(ErrorKind::NoNodes, "no gateway node is registered yet"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    user_id: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn dev_token(
    State(gw): State<Arc<Gateway>>,
    body: Result<Json<DevTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let user = match UserId::new(req.user_id) {
        Ok(u) => u,
        Err(e) => return fail(ErrorKind::InvalidUser, e.to_string()),
    };
    let ttl = Duration::from_secs(req.ttl_secs.unwrap_or(3600).clamp(1, 86_400));
    match gw.auth.issue(&user, ttl) {
        Some(token) => Json(json!({ "token": token, "expires_in": ttl.as_secs() })).into_response(),
        None => fail(
            ErrorKind::DevTokensDisabled,
            "dev tokens need an HS256 secret",
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    token: Option<String>,
}

/// A page of a channel's history, for members only: `?before=<id>` or
/// `?after=<id>` (message IDs as strings) and `?limit=` (capped by storage).
async fn history(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    read_page(&gw, channel, None, query, headers).await
}

/// A page of the replies in the thread of message `seq`, paged as history.
async fn thread(
    State(gw): State<Arc<Gateway>>,
    Path((channel, seq)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    read_page(&gw, channel, Some(seq), query, headers).await
}

/// A page of `channel`'s history, or of the thread of its message `root`
/// (a `seq`, as the path gave it), for the caller.
async fn read_page(
    gw: &Gateway,
    channel: String,
    root: Option<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    use chatmesh_proto::storage::v1 as pb;
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let token = q.token.as_deref().or_else(|| bearer(&headers));
    let user = match authenticate(gw, token) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let channel_id = match ChannelId::new(channel.as_str()) {
        Ok(c) => c,
        Err(err) => return fail(ErrorKind::InvalidChannel, err.to_string()),
    };
    let root = match root.map(|r| r.parse::<u64>().ok().filter(|r| *r > 0)) {
        None => None,
        Some(Some(root)) => Some(root),
        Some(None) => {
            return fail(
                ErrorKind::InvalidRequest,
                "seq must be a message's sequence number (from 1)",
            );
        }
    };
    let cursor = |raw: Option<String>| raw.map(|v| v.parse::<u64>()).transpose();
    let (before, after) = match (cursor(q.before), cursor(q.after)) {
        (Ok(b), Ok(a)) => (b, a),
        _ => {
            return fail(
                ErrorKind::InvalidRequest,
                "before and after must be message IDs",
            );
        }
    };
    let client = pb::storage_service_client::StorageServiceClient::new(gw.storage.clone());
    let (user_id, limit) = (user.as_str().to_owned(), q.limit.unwrap_or(0));
    let page = gw
        .reads
        .storage
        .call(&client, |mut c| {
            let channel_id = channel.clone();
            let user_id = user_id.clone();
            async move {
                match root {
                    None => {
                        let request = pb::GetHistoryRequest {
                            channel_id,
                            user_id,
                            before,
                            after,
                            limit,
                        };
                        c.get_history(request).await
                    }
                    Some(root_seq) => {
                        let request = pb::GetThreadRequest {
                            channel_id,
                            user_id,
                            root_seq,
                            before,
                            after,
                            limit,
                        };
                        c.get_thread(request).await
                    }
                }
            }
        })
        .await;
    match page {
        Ok(r) => {
            let messages: Vec<crate::ws::protocol::MessageBody> =
                r.messages.iter().map(Into::into).collect();
            Json(json!({ "messages": messages, "has_more": r.has_more })).into_response()
        }
        Err(err) => storage_refusal(gw, &channel_id, &user, err).await,
    }
}
