//! The OpenAPI 3.1 document of the gateway's HTTP API, served at
//! `GET /v1/openapi.json`.
//!
//! Written out here rather than derived from the handlers: they answer with
//! `serde_json` values in the shapes `docs/protocol.md` describes, and a
//! derive would need a typed struct per answer for no other use. What keeps
//! the two from drifting is a test that every route the router serves is
//! in the document and every documented path is served, and the
//! schemathesis run of `make test`, which checks live answers against it.

use std::sync::OnceLock;

use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

/// `GET /v1/openapi.json`.
pub(crate) async fn serve() -> impl IntoResponse {
    Json(document().clone())
}

/// The document, built once.
pub(crate) fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

pub(super) fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A 200 (or `status`) JSON answer with `schema`, plus the error answers.
pub(super) fn answers(status: &str, description: &str, schema: Value) -> Value {
    json!({
        status: {
            "description": description,
            "content": { "application/json": { "schema": schema } },
        },
        "default": { "$ref": "#/components/responses/Error" },
    })
}

pub(super) fn object(required: &[&str], properties: Value) -> Value {
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
    })
}

pub(super) fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name, "in": "path", "required": true,
        "description": description,
        "schema": schema,
    })
}

pub(super) fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name, "in": "query", "required": false,
        "description": description, "schema": schema,
    })
}

fn token_param() -> Value {
    query_param(
        "token",
        "The JWT, for clients that cannot set headers; `Authorization: Bearer` otherwise.",
        json!({ "type": "string" }),
    )
}

/// An operation that needs a token.
pub(super) fn op(summary: &str, mut parameters: Vec<Value>, responses: Value) -> Value {
    parameters.push(token_param());
    json!({
        "summary": summary,
        "parameters": parameters,
        "responses": responses,
        "security": [{ "bearer": [] }],
    })
}

pub(super) fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": schema } },
    });
    operation
}

pub(super) fn channel() -> Value {
    path_param("channel", "Channel ID.", schema_ref("ChannelId"))
}

fn seq() -> Value {
    path_param(
        "seq",
        "The message's sequence number in its channel.",
        json!({ "type": "integer", "minimum": 1 }),
    )
}

fn emoji() -> Value {
    path_param(
        "emoji",
        "One emoji, percent-encoded: up to 32 bytes, no spaces or control characters.",
        json!({ "type": "string", "minLength": 1 }),
    )
}

fn idempotency_key() -> Value {
    json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Makes retries of the same change answer the original event (`duplicate`).",
        "schema": { "type": "string" },
    })
}

fn media() -> Value {
    path_param("media", "Media ID.", json!({ "type": "string" }))
}

fn schemas() -> Value {
    let id = json!({ "type": "string" });
    json!({
        "ChannelId": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._:-]{1,64}$",
            "description": "1 to 64 ASCII letters, digits, '-', '_', '.' and ':'; not \".\" or \"..\".",
        },
        "UserId": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^\\S+$",
            "description": "1 to 128 bytes of printable characters without spaces.",
        },
        "Error": object(&["error"], json!({
            "error": object(&["code", "message", "retryable"], json!({
                "code": { "type": "string", "description": "See the error table of docs/protocol.md." },
                "message": { "type": "string" },
                "retryable": { "type": "boolean" },
            })),
        })),
        "Channel": object(
            &["channel_id", "name", "visibility", "created_by", "created_at_ms", "role"],
            json!({
                "channel_id": id,
                "name": { "type": "string" },
                "visibility": { "enum": ["public", "private"] },
                "created_by": id,
                "created_at_ms": { "type": "integer" },
                "role": { "enum": ["owner", "member", null], "description": "The caller's role; null when not a member." },
            }),
        ),
        "Member": object(&["user_id", "role", "joined_at_ms"], json!({
            "user_id": id,
            "role": { "enum": ["owner", "member"] },
            "joined_at_ms": { "type": "integer" },
        })),
        "Message": object(
            &["channel_id", "message_id", "seq", "sender_id", "body", "created_at_ms"],
            json!({
                "channel_id": id,
                "message_id": { "type": "string", "description": "Snowflake ID as a string." },
                "seq": { "type": "integer" },
                "sender_id": id,
                "body": { "type": "string" },
                "created_at_ms": { "type": "integer" },
                "attachments": { "type": "array", "items": { "type": "string" } },
                "kind": {
                    "enum": ["edit", "delete", "reaction_add", "reaction_remove"],
                    "description": "What a change event does; absent on a post.",
                },
                "target_seq": { "type": "integer", "description": "The `seq` of the message a change applies to." },
                "emoji": { "type": "string", "description": "A reaction's emoji." },
                "edit_count": { "type": "integer", "minimum": 0, "description": "How often the text was edited; absent when never." },
                "edited_at_ms": { "type": "integer", "description": "When the text was last edited; absent when never." },
                "deleted": { "const": true, "description": "Present when the message was deleted: body and attachments are gone." },
                "reactions": { "type": "array", "items": schema_ref("Reaction") },
                "version": { "type": "integer", "description": "The `seq` of the last change applied: apply a later change only when its `seq` is above this." },
                "reply_to": { "type": "integer", "description": "A reply: the `seq` of its thread's first message." },
                "reply_count": { "type": "integer", "minimum": 1, "description": "A thread's first message: the replies posted in it; absent when none." },
                "last_reply_at_ms": { "type": "integer", "description": "A thread's first message: when its last reply was posted." },
                "mentions": { "type": "array", "items": { "type": "string" }, "description": "The users the text @-mentions, sender left out." },
            }),
        ),
        "Reaction": object(&["emoji", "count", "me"], json!({
            "emoji": { "type": "string" },
            "count": { "type": "integer", "minimum": 1 },
            "me": { "type": "boolean", "description": "Whether the caller reacted with it." },
        })),
        "Media": object(
            &["media_id", "channel_id", "uploader_id", "filename", "content_type", "size", "state", "created_at_ms"],
            json!({
                "media_id": id,
                "channel_id": id,
                "uploader_id": id,
                "filename": { "type": "string" },
                "content_type": { "type": "string" },
                "size": { "type": "integer", "minimum": 0 },
                "state": { "enum": ["pending", "ready"] },
                "created_at_ms": { "type": "integer" },
            }),
        ),
    })
}

fn build() -> Value {
    let channel_list = object(
        &["channels"],
        json!({ "channels": { "type": "array", "items": schema_ref("Channel") } }),
    );
    let one_channel = object(&["channel"], json!({ "channel": schema_ref("Channel") }));
    let flag = |name: &str| object(&[name], json!({ name: { "type": "boolean" } }));
    let text = |description: &str| {
        json!({ "200": {
            "description": description,
            "content": { "text/plain": { "schema": { "type": "string" } } },
        } })
    };
    let mut paths = Map::new();
    let mut add = |path: &str, item: Value| {
        paths.insert(path.to_owned(), item);
    };

    add(
        "/v1/ws",
        json!({ "get": {
        "summary": "The WebSocket of the client protocol (docs/protocol.md); `channel` routes the connection to the node that owns it.",
        "parameters": [
            token_param(),
            query_param("channel", "A channel the connection is for: a node that does not own it redirects.", json!({ "type": "string" })),
            query_param("format", "`json` (default) or `proto`, when no subprotocol is negotiated.", json!({ "enum": ["json", "proto"] })),
        ],
        "responses": {
            "101": { "description": "Switched to the WebSocket protocol." },
            "307": { "description": "Another node owns the channel: the same query at its URL (`Location`)." },
            "default": { "$ref": "#/components/responses/Error" },
        },
    } }),
    );
    add(
        "/v1/route/{channel}",
        json!({ "get": {
        "summary": "The gateway node that owns a channel.",
        "parameters": [channel()],
        "responses": answers("200", "The owner.", object(&["channel_id", "node", "url"], json!({
            "channel_id": { "type": "string" }, "node": { "type": "string" }, "url": { "type": "string" },
        }))),
    } }),
    );
    add(
        "/v1/dev/token",
        json!({ "post": with_body(json!({
        "summary": "A development token for any user (only when `auth.dev_tokens` is on).",
        "responses": answers("200", "A signed token.", object(&["token", "expires_in"], json!({
            "token": { "type": "string" }, "expires_in": { "type": "integer" },
        }))),
    }), json!({
        "type": "object", "required": ["user_id"], "additionalProperties": false,
        "properties": { "user_id": schema_ref("UserId"), "ttl_secs": { "type": "integer", "minimum": 0 } },
    })) }),
    );
    add(
        "/v1/channels",
        json!({
            "get": op("The caller's channels, with their role in each.", vec![], answers("200", "The channels.", channel_list.clone())),
            "post": with_body(
                op("Creates a channel; the caller becomes its owner.", vec![], answers("201", "The new channel.", one_channel.clone())),
                json!({
                    "type": "object", "required": ["channel_id"], "additionalProperties": false,
                    "properties": {
                        "channel_id": { "type": "string" },
                        "name": { "type": "string" },
                        "visibility": { "enum": ["public", "private"], "default": "private" },
                    },
                }),
            ),
        }),
    );
    add(
        "/v1/public-channels",
        json!({ "get": op(
        "Public channels in ID order, a page at a time.",
        vec![
            query_param("after", "The `next_after` of the previous page.", json!({ "type": "string" })),
            query_param("limit", "Channels per page.", json!({ "type": "integer", "minimum": 1, "maximum": 100, "default": 50 })),
        ],
        answers("200", "A page.", object(&["channels", "next_after"], json!({
            "channels": { "type": "array", "items": schema_ref("Channel") },
            "next_after": { "type": ["string", "null"] },
        }))),
    ) }),
    );
    add(
        "/v1/channels/{channel}",
        json!({ "get": op(
        "A channel, for its members, or for anyone when it is public.",
        vec![channel()],
        answers("200", "The channel.", one_channel),
    ) }),
    );
    add(
        "/v1/channels/{channel}/join",
        json!({ "post": op(
        "Joins a public channel (403 `private_channel` for a private one).",
        vec![channel()],
        answers("200", "`joined` is false when the caller was a member already.", flag("joined")),
    ) }),
    );
    add(
        "/v1/channels/{channel}/leave",
        json!({ "post": op(
        "Leaves a channel. When its last owner leaves, the longest-standing member becomes owner.",
        vec![channel()],
        answers("200", "`left` is false when the caller was not a member.", flag("left")),
    ) }),
    );
    add(
        "/v1/channels/{channel}/members",
        json!({
            "get": op("The members and their roles, longest-standing first (at most 1000), for members.", vec![channel()],
                answers("200", "The members.", object(&["members"], json!({ "members": { "type": "array", "items": schema_ref("Member") } })))),
            "post": with_body(
                op("An owner adds a user (403 `not_owner` otherwise).", vec![channel()],
                    answers("200", "`added` is false when they were a member already.", flag("added"))),
                json!({
                    "type": "object", "required": ["user_id"], "additionalProperties": false,
                    "properties": { "user_id": { "type": "string" } },
                }),
            ),
        }),
    );
    add(
        "/v1/channels/{channel}/members/{user}",
        json!({ "delete": op(
        "An owner removes a member (403 `not_owner` otherwise); removing oneself is leaving.",
        vec![channel(), path_param("user", "User ID.", schema_ref("UserId"))],
        answers("200", "`removed` is false when they were not a member.", flag("removed")),
    ) }),
    );
    add(
        "/v1/channels/{channel}/messages",
        json!({ "get": op(
        "A page of the channel's history, oldest first, for members.",
        vec![
            channel(),
            query_param("before", "Messages before this message ID.", json!({ "type": "string" })),
            query_param("after", "Messages after this message ID.", json!({ "type": "string" })),
            query_param("limit", "Messages per page (capped by the storage service).", json!({ "type": "integer", "minimum": 0 })),
        ],
        answers("200", "A page.", object(&["messages", "has_more"], json!({
            "messages": { "type": "array", "items": schema_ref("Message") },
            "has_more": { "type": "boolean" },
        }))),
    ) }),
    );
    add(
        "/v1/channels/{channel}/messages/{seq}/thread",
        json!({ "get": op(
        "A page of the replies in the thread of message `seq`, oldest first, for members; paged as the history.",
        vec![
            channel(),
            seq(),
            query_param("before", "Replies before this message ID.", json!({ "type": "string" })),
            query_param("after", "Replies after this message ID.", json!({ "type": "string" })),
            query_param("limit", "Replies per page (capped by the storage service).", json!({ "type": "integer", "minimum": 0 })),
        ],
        answers("200", "A page.", object(&["messages", "has_more"], json!({
            "messages": { "type": "array", "items": schema_ref("Message") },
            "has_more": { "type": "boolean" },
        }))),
    ) }),
    );
    let changed = answers(
        "200",
        "The change, stored as a channel event with its own `seq`.",
        object(
            &["event", "masked", "duplicate"],
            json!({
                "event": schema_ref("Message"),
                "masked": { "type": "boolean" },
                "duplicate": { "type": "boolean" },
            }),
        ),
    );
    add(
        "/v1/channels/{channel}/messages/{seq}",
        json!({
            "patch": with_body(
                op("The author replaces the message's text, moderated as a send; its reactions are cleared.",
                    vec![channel(), seq(), idempotency_key()], changed.clone()),
                json!({
                    "type": "object", "required": ["body"], "additionalProperties": false,
                    "properties": {
                        "body": { "type": "string" },
                        "idempotency_key": { "type": "string" },
                    },
                }),
            ),
            "delete": op("The author or a channel owner deletes the message; its number stays, as a tombstone.",
                vec![channel(), seq(), idempotency_key()], changed.clone()),
        }),
    );
    add(
        "/v1/channels/{channel}/messages/{seq}/reactions/{emoji}",
        json!({
            "put": op("A member adds their reaction to the message.",
                vec![channel(), seq(), emoji(), idempotency_key()], changed.clone()),
            "delete": op("A member takes their reaction back.",
                vec![channel(), seq(), emoji(), idempotency_key()], changed),
        }),
    );
    add(
        "/v1/presence",
        json!({ "get": op(
        "Online status and last-seen time of up to 100 users.",
        vec![json!({
            "name": "user_ids", "in": "query", "required": true,
            "description": "Comma-separated user IDs.", "schema": { "type": "string" },
        })],
        answers("200", "Each user's presence.", object(&["users"], json!({ "users": { "type": "array", "items": object(
            &["user_id", "online", "last_seen_ms"],
            json!({
                "user_id": { "type": "string" },
                "online": { "type": "boolean" },
                "last_seen_ms": { "type": ["integer", "null"] },
            }),
        ) } }))),
    ) }),
    );
    add(
        "/v1/channels/{channel}/online",
        json!({ "get": op(
        "The members with a live session subscribed to the channel, for members.",
        vec![channel()],
        answers("200", "Who is online.", object(&["channel_id", "user_ids"], json!({
            "channel_id": { "type": "string" },
            "user_ids": { "type": "array", "items": { "type": "string" } },
        }))),
    ) }),
    );
    add(
        "/v1/channels/{channel}/media",
        json!({ "post": with_body(
        op("Starts an upload: a pending media and a signed URL to PUT its bytes to.", vec![channel()],
            answers("201", "Where to upload.", object(
                &["media_id", "upload_url", "upload_method", "upload_headers", "expires_at_ms"],
                json!({
                    "media_id": { "type": "string" },
                    "upload_url": { "type": "string" },
                    "upload_method": { "const": "PUT" },
                    "upload_headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "expires_at_ms": { "type": "integer" },
                }),
            ))),
        json!({
            "type": "object", "required": ["filename", "content_type", "size"], "additionalProperties": false,
            "properties": {
                "filename": { "type": "string" },
                "content_type": { "type": "string" },
                "size": { "type": "integer", "minimum": 0 },
            },
        }),
    ) }),
    );
    let media_answer = object(&["media"], json!({ "media": schema_ref("Media") }));
    add(
        "/v1/media/{media}",
        json!({ "get": op(
        "A media's metadata, for members of its channel.", vec![media()],
        answers("200", "The media.", media_answer.clone()),
    ) }),
    );
    add(
        "/v1/media/{media}/complete",
        json!({ "post": op(
        "The uploader marks the upload complete; the bytes are checked against what was declared.",
        vec![media()],
        answers("200", "The media, now ready.", media_answer),
    ) }),
    );
    add(
        "/v1/media/{media}/download",
        json!({ "get": op(
        "A short-lived signed URL to GET a ready media's bytes, for members of its channel.",
        vec![media()],
        answers("200", "Where to download.", object(&["download_url", "expires_at_ms"], json!({
            "download_url": { "type": "string" }, "expires_at_ms": { "type": "integer" },
        }))),
    ) }),
    );
    add(
        "/v1/openapi.json",
        json!({ "get": {
        "summary": "This document.",
        "responses": { "200": { "description": "OpenAPI 3.1.", "content": { "application/json": { "schema": { "type": "object" } } } } },
    } }),
    );
    for (path, item) in super::reads::openapi_paths() {
        add(path, item);
    }
    add(
        "/livez",
        json!({ "get": { "summary": "Liveness: the process serves requests.", "responses": text("ok") } }),
    );
    add(
        "/readyz",
        json!({ "get": {
        "summary": "Readiness: every dependency answers; 503 with the failing ones otherwise.",
        "responses": {
            "200": { "description": "Ready.", "content": { "text/plain": { "schema": { "type": "string" } } } },
            "503": { "description": "Not ready.", "content": { "text/plain": { "schema": { "type": "string" } } } },
        },
    } }),
    );
    add(
        "/metrics",
        json!({ "get": { "summary": "Prometheus metrics.", "responses": text("Metrics in the text exposition format.") } }),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "chatmesh gateway HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Channels, history, presence and media for chatmesh clients. Real-time messages travel over the WebSocket at /v1/ws; see docs/protocol.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "responses": {
                "Error": {
                    "description": "An error: its code, a message safe to show, and whether retrying may help.",
                    "content": { "application/json": { "schema": schema_ref("Error") } },
                },
            },
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::document;

    /// Every `.route("...")` literal of the HTTP sources.
    fn served() -> BTreeSet<String> {
        let sources = [
            include_str!("mod.rs"),
            include_str!("channels.rs"),
            include_str!("media.rs"),
            include_str!("messages.rs"),
            include_str!("presence.rs"),
            include_str!("reads.rs"),
            include_str!("../../../crates/server/src/admin.rs"),
        ];
        let mut routes = BTreeSet::new();
        for source in sources {
            for piece in source.split(".route(").skip(1) {
                let rest = piece.trim_start();
                if let Some(rest) = rest.strip_prefix('"')
                    && let Some(end) = rest.find('"')
                {
                    routes.insert(rest[..end].to_owned());
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_names_every_route_and_only_those() {
        let documented: BTreeSet<String> = document()["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        let served = served();
        assert!(served.len() > 15, "found only {served:?}");
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "served but not documented"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "documented but not served"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/").skip(1) {
            let path = &piece[..piece.find('"').expect("closing quote")];
            let mut node = doc;
            for part in path.split('/') {
                node = node
                    .get(part)
                    .unwrap_or_else(|| panic!("#/{path} does not resolve"));
            }
        }
    }
}
