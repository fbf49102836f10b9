//! HTTP routes that change a posted message: edit its text, delete it,
//! add or take back a reaction. Each is a channel event, made by the chat
//! service as the token's user exactly as the WebSocket's `edit`, `delete`
//! and `react` frames make it, and answered with the event. A change with
//! an idempotency key (in the body or the `Idempotency-Key` header) is
//! retried on another chat instance; one without is tried once.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, put};
use chatmesh_error::ErrorKind;
use chatmesh_ids::{ChannelId, UserId};
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;
use crate::http::{TokenQuery, caller, fail, render};
use crate::ports::{ChangeCommand, ChangeRequest};
use crate::ws::protocol::MessageBody;

/// The header that may carry a change's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The message-change routes, merged into the gateway's router.
pub(crate) fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route(
            "/v1/channels/{channel}/messages/{seq}",
            patch(edit).delete(delete),
        )
        .route(
            "/v1/channels/{channel}/messages/{seq}/reactions/{emoji}",
            put(react).delete(unreact),
        )
}

/// What the routes read before the call: the caller, the channel, the
/// message and the `Idempotency-Key` header.
struct Target {
    sender: UserId,
    channel: ChannelId,
    seq: u64,
    key: Option<String>,
}

impl Target {
    /// Reads the caller (a refusal answers 401 first, as on every route),
    /// the channel, the message's `seq` and the key header, or the answer
    /// to send.
    fn read(
        gw: &Gateway,
        channel: &str,
        seq: &str,
        query: Result<Query<TokenQuery>, QueryRejection>,
        headers: &HeaderMap,
    ) -> Result<Self, Box<Response>> {
        let sender = caller(gw, query, headers)?;
        let channel = ChannelId::new(channel)
            .map_err(|e| Box::new(fail(ErrorKind::InvalidChannel, e.to_string())))?;
        let seq = seq.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            Box::new(fail(
                ErrorKind::InvalidRequest,
                "seq must be a message's sequence number (from 1)",
            ))
        })?;
        let key = match headers.get(IDEMPOTENCY_KEY) {
            None => None,
            Some(value) => Some(value.to_str().map(str::to_owned).map_err(|_| {
                Box::new(fail(
                    ErrorKind::InvalidRequest,
                    "Idempotency-Key must be printable ASCII",
                ))
            })?),
        };
        Ok(Self {
            sender,
            channel,
            seq,
            key,
        })
    }

    /// The command to make `request` with key `key`.
    fn command(self, request: ChangeRequest, key: Option<String>) -> ChangeCommand {
        ChangeCommand {
            channel: self.channel,
            sender: self.sender,
            target: self.seq,
            request,
            idempotency_key: key,
        }
    }
}

/// Makes the change and answers `{"event", "masked", "duplicate"}`.
async fn change(gw: &Gateway, command: ChangeCommand) -> Response {
    match gw.sessions.chat.change(command).await {
        Ok(receipt) => Json(json!({
            "event": MessageBody::from(&receipt.event),
            "masked": receipt.masked,
            "duplicate": receipt.duplicate,
        }))
        .into_response(),
        Err(err) => render(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    body: String,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `PATCH /v1/channels/{id}/messages/{seq}` with `{"body",
/// "idempotency_key"?}`: the author replaces the message's text.
async fn edit(
    State(gw): State<Arc<Gateway>>,
    Path((channel, seq)): Path<(String, String)>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<EditBody>, JsonRejection>,
) -> Response {
    let target = match Target::read(&gw, &channel, &seq, query, &headers) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return fail(ErrorKind::InvalidRequest, e.body_text()),
    };
    let key = match (target.key.clone(), body.idempotency_key) {
        (Some(header), Some(field)) if header != field => {
            return fail(
                ErrorKind::InvalidRequest,
                "the Idempotency-Key header and the body's idempotency_key differ",
            );
        }
        (header, field) => header.or(field),
    };
    let request = ChangeRequest::Edit { body: body.body };
    change(&gw, target.command(request, key)).await
}

/// `DELETE /v1/channels/{id}/messages/{seq}`: the author or an owner
/// deletes the message.
async fn delete(
    State(gw): State<Arc<Gateway>>,
    Path((channel, seq)): Path<(String, String)>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    match Target::read(&gw, &channel, &seq, query, &headers) {
        Ok(target) => {
            let key = target.key.clone();
            change(&gw, target.command(ChangeRequest::Delete, key)).await
        }
        Err(response) => *response,
    }
}

/// A reaction route: `remove` takes the caller's `emoji` back.
async fn reaction(
    gw: &Gateway,
    (channel, seq, emoji): (String, String, String),
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: &HeaderMap,
    remove: bool,
) -> Response {
    match Target::read(gw, &channel, &seq, query, headers) {
        Ok(target) => {
            let key = target.key.clone();
            let request = ChangeRequest::React { emoji, remove };
            change(gw, target.command(request, key)).await
        }
        Err(response) => *response,
    }
}

/// `PUT /v1/channels/{id}/messages/{seq}/reactions/{emoji}`: a member
/// reacts.
async fn react(
    State(gw): State<Arc<Gateway>>,
    Path(path): Path<(String, String, String)>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    reaction(&gw, path, query, &headers, false).await
}

/// `DELETE /v1/channels/{id}/messages/{seq}/reactions/{emoji}`: a member
/// takes their reaction back.
async fn unreact(
    State(gw): State<Arc<Gateway>>,
    Path(path): Path<(String, String, String)>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    reaction(&gw, path, query, &headers, true).await
}
