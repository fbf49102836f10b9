//! HTTP routes for the channel directory: the caller's channels, public
//! channels, creating, joining and leaving, and an owner's member
//! management. Each calls the chat service as the token's user, which
//! enforces visibility and roles; reads and the set-like changes (join,
//! leave, add, remove) are retried on another instance, creation is not.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chatmesh_error::ErrorKind;
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::chat::v1 as pb;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::http::{TokenQuery, ask, bearer, caller, fail, render};
use chatmesh_upstream::balance::Upstream;

/// The directory routes, merged into the gateway's router.
pub(crate) fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route("/v1/channels", get(my_channels).post(create))
        .route("/v1/public-channels", get(public_channels))
        .route("/v1/channels/{channel}", get(channel))
        .route("/v1/channels/{channel}/join", post(join))
        .route("/v1/channels/{channel}/leave", post(leave))
        .route(
            "/v1/channels/{channel}/members",
            get(members).post(add_member),
        )
        .route(
            "/v1/channels/{channel}/members/{user}",
            delete(remove_member),
        )
}

fn client(gw: &Gateway) -> ChatServiceClient<Upstream> {
    ChatServiceClient::new(gw.chat.clone())
}

/// A change's answer: `{"<name>": changed}`.
fn changed(name: &str, changed: bool) -> Response {
    Json(json!({ name: changed })).into_response()
}

fn role_name(raw: i32) -> Value {
    match pb::MemberRole::try_from(raw) {
        Ok(pb::MemberRole::Owner) => json!("owner"),
        Ok(pb::MemberRole::Member) => json!("member"),
        _ => Value::Null,
    }
}

fn channel_json(c: &pb::Channel) -> Value {
    let visibility = match pb::ChannelVisibility::try_from(c.visibility) {
        Ok(pb::ChannelVisibility::Public) => "public",
        _ => "private",
    };
    json!({
        "channel_id": c.channel_id,
        "name": c.name,
        "visibility": visibility,
        "created_by": c.created_by,
        "created_at_ms": c.created_at_ms,
        "role": role_name(c.role),
    })
}

/// The caller and the channel of a `/v1/channels/{channel}/...` route, or
/// the answer to send.
fn caller_in(
    gw: &Gateway,
    channel: &str,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<(UserId, ChannelId), Box<Response>> {
    let user = caller(gw, query, headers)?;
    let channel = ChannelId::new(channel)
        .map_err(|e| Box::new(fail(ErrorKind::InvalidChannel, e.to_string())))?;
    Ok((user, channel))
}

/// `GET /v1/channels`: the caller's channels with their role in each.
async fn my_channels(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let request = pb::ListUserChannelsRequest {
        user_id: user.into(),
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.list_user_channels(r).await },
        |r| {
            let channels: Vec<Value> = r.channels.iter().map(channel_json).collect();
            Json(json!({ "channels": channels })).into_response()
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    token: Option<String>,
}

/// `GET /v1/public-channels?after=&limit=`: public channels in ID order.
async fn public_channels(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<PublicQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let user = match crate::http::authenticate(&gw, q.token.as_deref().or_else(|| bearer(&headers)))
    {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return fail(ErrorKind::InvalidRequest, "limit must be between 1 and 100");
    }
    let after = q.after.unwrap_or_default();
    if !after.is_empty()
        && let Err(e) = ChannelId::new(after.as_str())
    {
        return fail(ErrorKind::InvalidChannel, format!("after: {e}"));
    }
    let request = pb::ListPublicChannelsRequest {
        user_id: user.into(),
        after,
        limit,
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.list_public_channels(r).await },
        |r| {
            let channels: Vec<Value> = r.channels.iter().map(channel_json).collect();
            let next = Some(r.next_after).filter(|n| !n.is_empty());
            Json(json!({ "channels": channels, "next_after": next })).into_response()
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    channel_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    visibility: Option<VisibilityName>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum VisibilityName {
    Public,
    Private,
}

/// `POST /v1/channels`: a new channel, owned by the caller.
async fn create(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let user = match caller(&gw, query, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    if let Err(e) = ChannelId::new(body.channel_id.as_str()) {
        return fail(ErrorKind::InvalidChannel, e.to_string());
    }
    let visibility = match body.visibility.unwrap_or(VisibilityName::Private) {
        VisibilityName::Public => pb::ChannelVisibility::Public,
        VisibilityName::Private => pb::ChannelVisibility::Private,
    };
    let request = pb::CreateChannelRequest {
        channel_id: body.channel_id,
        name: body.name.unwrap_or_default(),
        created_by: user.into(),
        moderation: chatmesh_proto::common::v1::ModerationPolicy::Reject as i32,
        visibility: visibility as i32,
    };
    // A retry of a creation that landed would answer `already_exists`.
    let mut client = client(&gw);
    match gw.reads.chat.once(client.create_channel(request)).await {
        Ok(r) => {
            let channel = r.into_inner().channel.unwrap_or_default();
            (
                StatusCode::CREATED,
                Json(json!({ "channel": channel_json(&channel) })),
            )
                .into_response()
        }
        Err(err) => render(&err),
    }
}

/// `GET /v1/channels/{id}`: the channel, for its members, or for anyone
/// when it is public.
async fn channel(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (user, channel) = match caller_in(&gw, &channel, query, &headers) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let request = pb::GetChannelRequest {
        channel_id: channel.into(),
        user_id: user.into(),
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.get_channel(r).await },
        |r| {
            let channel = r.channel.unwrap_or_default();
            let member = channel.role != pb::MemberRole::Unspecified as i32;
            let public = channel.visibility == pb::ChannelVisibility::Public as i32;
            if !member && !public {
                return fail(
                    ErrorKind::NotMember,
                    "this channel is private and you are not a member",
                );
            }
            Json(json!({ "channel": channel_json(&channel) })).into_response()
        },
    )
    .await
}

/// `POST /v1/channels/{id}/join`: joins a public channel.
async fn join(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (user, channel) = match caller_in(&gw, &channel, query, &headers) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let request = pb::JoinChannelRequest {
        channel_id: channel.into(),
        user_id: user.into(),
        public_only: true,
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.join_channel(r).await },
        |r| changed("joined", r.joined),
    )
    .await
}

/// `POST /v1/channels/{id}/leave`: leaves a channel.
async fn leave(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (user, channel) = match caller_in(&gw, &channel, query, &headers) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let request = pb::LeaveChannelRequest {
        channel_id: channel.into(),
        user_id: user.into(),
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.leave_channel(r).await },
        |r| changed("left", r.left),
    )
    .await
}

/// `GET /v1/channels/{id}/members`: the members and their roles, for members.
async fn members(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (user, channel) = match caller_in(&gw, &channel, query, &headers) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let request = pb::ListMembersRequest {
        channel_id: channel.into(),
        actor_id: user.into(),
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.list_members(r).await },
        |r| {
            let members: Vec<Value> = r
                .members
                .iter()
                .map(|m| {
                    json!({
                        "user_id": m.user_id,
                        "role": role_name(m.role),
                        "joined_at_ms": m.joined_at_ms,
                    })
                })
                .collect();
            Json(json!({ "members": members })).into_response()
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    user_id: String,
}

/// `POST /v1/channels/{id}/members` with `{"user_id"}`: an owner adds a member.
async fn add_member(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<AddBody>, JsonRejection>,
) -> Response {
    let (actor, channel) = match caller_in(&gw, &channel, query, &headers) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let user = match UserId::new(body.user_id) {
        Ok(u) => u,
        Err(e) => return fail(ErrorKind::InvalidUser, e.to_string()),
    };
    let request = pb::AddMemberRequest {
        channel_id: channel.into(),
        actor_id: actor.into(),
        user_id: user.into(),
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.add_member(r).await },
        |r| changed("added", r.added),
    )
    .await
}

/// `DELETE /v1/channels/{id}/members/{user}`: an owner removes a member.
async fn remove_member(
    State(gw): State<Arc<Gateway>>,
    Path((channel, user)): Path<(String, String)>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (actor, channel) = match caller_in(&gw, &channel, query, &headers) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let user = match UserId::new(user) {
        Ok(u) => u,
        Err(e) => return fail(ErrorKind::InvalidUser, e.to_string()),
    };
    let request = pb::RemoveMemberRequest {
        channel_id: channel.into(),
        actor_id: actor.into(),
        user_id: user.into(),
    };
    ask(
        &gw.reads.chat,
        &client(&gw),
        request,
        |mut c, r| async move { c.remove_member(r).await },
        |r| changed("removed", r.removed),
    )
    .await
}
