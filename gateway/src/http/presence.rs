//! HTTP routes for presence: who is online, per user and per channel.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::presence::v1 as pb;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;
use crate::http::{TokenQuery, ask, authenticate, bearer, caller, fail, render};
use crate::ports::Access;
use chatmesh_error::ErrorKind;

/// Most users one presence request may name.
const MAX_USERS: usize = 100;

pub(crate) fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route("/v1/presence", get(presence))
        .route("/v1/channels/{channel}/online", get(online))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceQuery {
    /// Comma-separated user IDs.
    user_ids: String,
    #[serde(default)]
    token: Option<String>,
}

/// `GET /v1/presence?user_ids=a,b`: online status and last-seen time.
async fn presence(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<PresenceQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    if let Err(response) = authenticate(&gw, q.token.as_deref().or_else(|| bearer(&headers))) {
        return *response;
    }
    let users: Vec<String> = q
        .user_ids
        .split(',')
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if users.is_empty() || users.len() > MAX_USERS {
        return fail(
            ErrorKind::InvalidRequest,
            format!("name between 1 and {MAX_USERS} user_ids"),
        );
    }
    if let Some(err) = users.iter().find_map(|u| UserId::new(u.as_str()).err()) {
        return fail(ErrorKind::InvalidUser, err.to_string());
    }
    let client = PresenceServiceClient::new(gw.presence_api.clone());
    let request = pb::GetPresenceRequest { user_ids: users };
    ask(
        &gw.reads.presence,
        &client,
        request,
        |mut c, r| async move { c.get_presence(r).await },
        |r| {
            let users: Vec<_> = r
                .users
                .into_iter()
                .map(|u| {
                    json!({
                        "user_id": u.user_id,
                        "online": u.online,
                        "last_seen_ms": (u.last_seen_ms > 0).then_some(u.last_seen_ms),
                    })
                })
                .collect();
            Json(json!({ "users": users })).into_response()
        },
    )
    .await
}

/// `GET /v1/channels/{id}/online`: the channel's online users, for members.
async fn online(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
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
    match gw.sessions.chat.access(&channel, &user).await {
        Ok(Access::Member) => {}
        Ok(Access::NotMember) => {
            return fail(
                ErrorKind::NotMember,
                "only channel members see who is online",
            );
        }
        Ok(Access::UnknownChannel) => return fail(ErrorKind::UnknownChannel, "no such channel"),
        Err(err) => return render(&err),
    }
    let client = PresenceServiceClient::new(gw.presence_api.clone());
    let request = pb::ListOnlineRequest {
        channel_id: channel.as_str().to_owned(),
    };
    ask(
        &gw.reads.presence,
        &client,
        request,
        |mut c, r| async move { c.list_online(r).await },
        |r| Json(json!({ "channel_id": channel.as_str(), "user_ids": r.user_ids })).into_response(),
    )
    .await
}
