//! The binary form of the client protocol: the Protobuf messages of
//! `proto/chatmesh/gateway/v1/client.proto`, carried in binary WebSocket
//! frames. A client asks for it with the `chatmesh.v1.proto` subprotocol
//! (or `?format=proto`); the server then writes binary frames to it. Both
//! forms decode to the same [`ClientFrame`] and encode the same
//! [`ServerFrame`], so a rule written once holds for both.

use chatmesh_proto::common::v1::{Message, Reaction};
use chatmesh_proto::gateway::v1 as pb;
use chatmesh_proto::presence::v1::{PresenceEvent, presence_event};
use prost::Message as _;

use crate::ws::protocol::{ClientFrame, FrameError, ServerFrame};

/// The subprotocol of JSON text frames (the default).
pub(crate) const JSON_SUBPROTOCOL: &str = "chatmesh.v1.json";
/// The subprotocol of Protobuf binary frames.
pub(crate) const PROTO_SUBPROTOCOL: &str = "chatmesh.v1.proto";

/// How the server writes to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Codec {
    /// JSON text frames.
    #[default]
    Json,
    /// Protobuf binary frames.
    Proto,
}

impl Codec {
    /// The codec a connection asked for with its subprotocol or `format`.
    pub(crate) fn negotiate(subprotocol: Option<&str>, format: Option<&str>) -> Self {
        match (subprotocol, format) {
            (Some(PROTO_SUBPROTOCOL), _) | (None, Some("proto" | "protobuf")) => Self::Proto,
            _ => Self::Json,
        }
    }
}

fn some(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

/// Decodes one binary frame.
pub fn decode(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
    let frame = pb::ClientFrame::decode(bytes).map_err(|e| {
        FrameError::Malformed(format!("not a chatmesh.gateway.v1.ClientFrame: {e}"))
    })?;
    let request_id = some(frame.request_id);
    use pb::client_frame::Frame;
    match frame.frame {
        Some(Frame::Subscribe(s)) => Ok(ClientFrame::Subscribe {
            request_id,
            channel_id: s.channel_id,
            last_seq: s.last_seq,
        }),
        Some(Frame::Unsubscribe(u)) => Ok(ClientFrame::Unsubscribe {
            request_id,
            channel_id: u.channel_id,
        }),
        Some(Frame::Send(s)) => Ok(ClientFrame::Send {
            request_id,
            channel_id: s.channel_id,
            body: s.body,
            attachments: s.attachments,
            idempotency_key: some(s.idempotency_key),
            traceparent: some(s.traceparent),
            reply_to: Some(s.reply_to).filter(|&r| r != 0),
        }),
        Some(Frame::Edit(e)) => Ok(ClientFrame::Edit {
            request_id,
            channel_id: e.channel_id,
            seq: e.seq,
            body: e.body,
            idempotency_key: some(e.idempotency_key),
        }),
        Some(Frame::Delete(d)) => Ok(ClientFrame::Delete {
            request_id,
            channel_id: d.channel_id,
            seq: d.seq,
            idempotency_key: some(d.idempotency_key),
        }),
        Some(Frame::React(r)) => Ok(ClientFrame::React {
            request_id,
            channel_id: r.channel_id,
            seq: r.seq,
            emoji: r.emoji,
            remove: r.remove,
            idempotency_key: some(r.idempotency_key),
        }),
        Some(Frame::Ack(a)) => Ok(ClientFrame::Ack {
            request_id,
            channel_id: a.channel_id,
            seq: a.seq,
        }),
        Some(Frame::Unread(u)) => Ok(ClientFrame::Unread {
            request_id,
            channel_ids: u.channel_ids,
        }),
        Some(Frame::Ping(p)) => Ok(ClientFrame::Ping {
            request_id,
            client_time_ms: Some(p.client_time_ms).filter(|t| *t != 0),
        }),
        Some(Frame::Typing(t)) => Ok(ClientFrame::Typing {
            request_id,
            channel_id: t.channel_id,
            stop: t.stop,
        }),
        None => Err(FrameError::Invalid("the frame names no kind".into())),
    }
}

/// The frame as a Protobuf message.
pub fn encode(frame: &ServerFrame) -> Vec<u8> {
    use pb::server_frame::Frame;
    let (request_id, frame) = match frame.clone() {
        ServerFrame::Message(m) => (
            None,
            Frame::Message(Message {
                message_id: m.message_id,
                channel_id: m.channel_id,
                sender_id: m.sender_id,
                seq: m.seq,
                body: m.body,
                attachments: m.attachments,
                created_at_ms: m.created_at_ms,
                kind: m.kind.map_or(0, |k| k.to_proto() as i32),
                target_seq: m.target_seq,
                emoji: m.emoji,
                edit_count: m.edit_count,
                edited_at_ms: m.edited_at_ms,
                deleted: m.deleted,
                reactions: m
                    .reactions
                    .into_iter()
                    .map(|r| Reaction {
                        emoji: r.emoji,
                        count: r.count,
                        me: r.me,
                    })
                    .collect(),
                version: m.version,
                reply_to: m.reply_to,
                reply_count: m.reply_count,
                last_reply_at_ms: m.last_reply_at_ms,
                mentions: m.mentions,
                idempotency_key: String::new(),
                traceparent: String::new(),
            }),
        ),
        ServerFrame::Ack {
            request_id,
            channel_id,
            message_id,
            seq,
            masked,
            duplicate,
        } => (
            request_id,
            Frame::SendAck(pb::SendAck {
                channel_id,
                message_id,
                seq,
                masked,
                duplicate,
            }),
        ),
        ServerFrame::Subscribed {
            request_id,
            channel_id,
            seq,
        } => (
            request_id,
            Frame::Subscribed(pb::Subscribed { channel_id, seq }),
        ),
        ServerFrame::Unsubscribed {
            request_id,
            channel_id,
        } => (
            request_id,
            Frame::Unsubscribed(pb::Unsubscribed { channel_id }),
        ),
        ServerFrame::Pong {
            request_id,
            client_time_ms,
            server_time_ms,
        } => (
            request_id,
            Frame::Pong(pb::Pong {
                client_time_ms: client_time_ms.unwrap_or(0),
                server_time_ms,
            }),
        ),
        ServerFrame::Error {
            request_id,
            code,
            message,
            retryable,
        } => (
            request_id,
            Frame::Error(pb::Error {
                code: code.to_owned(),
                message,
                retryable,
            }),
        ),
        ServerFrame::Presence {
            channel_id,
            user_id,
            event,
            at_ms,
        } => {
            let kind = if event == "join" {
                presence_event::Kind::Join
            } else {
                presence_event::Kind::Leave
            };
            (
                None,
                Frame::Presence(PresenceEvent {
                    kind: kind as i32,
                    channel_id,
                    user_id,
                    at_ms,
                }),
            )
        }
        ServerFrame::Read {
            request_id,
            channel_id,
            user_id,
            seq,
        } => (
            request_id,
            Frame::ReadPosition(pb::ReadPosition {
                channel_id,
                seq,
                user_id,
            }),
        ),
        ServerFrame::Unread {
            request_id,
            channels,
            total,
            mentions,
        } => (
            request_id,
            Frame::UnreadCounts(pb::UnreadCounts {
                channels: channels
                    .into_iter()
                    .map(|c| pb::ChannelUnread {
                        channel_id: c.channel_id,
                        read_seq: c.read_seq,
                        last_seq: c.last_seq,
                        unread: c.unread,
                        mentions: c.mentions,
                    })
                    .collect(),
                total,
                total_mentions: mentions,
            }),
        ),
        ServerFrame::Redirect {
            request_id,
            channel_id,
            url,
        } => (
            request_id,
            Frame::Redirect(pb::Redirect { channel_id, url }),
        ),
        ServerFrame::ReloadRequired {
            channel_id,
            from_seq,
            to_seq,
        } => (
            None,
            Frame::ReloadRequired(pb::ReloadRequired {
                channel_id,
                from_seq,
                to_seq,
            }),
        ),
        ServerFrame::Reconnect {
            reason,
            url,
            channel_ids,
        } => (
            None,
            Frame::Reconnect(pb::Reconnect {
                reason,
                url: url.unwrap_or_default(),
                channel_ids,
            }),
        ),
        ServerFrame::Typing {
            channel_id,
            user_ids,
        } => (
            None,
            Frame::TypingUsers(pb::TypingUsers {
                channel_id,
                user_ids,
            }),
        ),
    };
    pb::ServerFrame {
        request_id: request_id.unwrap_or_default(),
        frame: Some(frame),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::ws::protocol::{self, MessageBody};

    fn client(request_id: &str, frame: pb::client_frame::Frame) -> Vec<u8> {
        pb::ClientFrame {
            request_id: request_id.into(),
            frame: Some(frame),
        }
        .encode_to_vec()
    }

    /// Each client frame in both forms; they must decode alike.
    fn client_cases() -> Vec<(Value, Vec<u8>)> {
        use pb::client_frame::Frame;
        vec![
            (
                json!({"type": "subscribe", "request_id": "1", "channel_id": "general", "last_seq": 7}),
                client(
                    "1",
                    Frame::Subscribe(pb::Subscribe {
                        channel_id: "general".into(),
                        last_seq: Some(7),
                    }),
                ),
            ),
            (
                json!({"type": "subscribe", "channel_id": "general"}),
                client(
                    "",
                    Frame::Subscribe(pb::Subscribe {
                        channel_id: "general".into(),
                        last_seq: None,
                    }),
                ),
            ),
            (
                json!({"type": "unsubscribe", "request_id": "2", "channel_id": "general"}),
                client(
                    "2",
                    Frame::Unsubscribe(pb::Unsubscribe {
                        channel_id: "general".into(),
                    }),
                ),
            ),
            (
                json!({"type": "send", "request_id": "3", "channel_id": "general", "body": "hi", "attachments": ["m1"], "idempotency_key": "k", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "reply_to": 2}),
                client(
                    "3",
                    Frame::Send(pb::Send {
                        channel_id: "general".into(),
                        body: "hi".into(),
                        attachments: vec!["m1".into()],
                        idempotency_key: "k".into(),
                        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                            .into(),
                        reply_to: 2,
                    }),
                ),
            ),
            (
                json!({"type": "send", "channel_id": "general", "body": "hi"}),
                client(
                    "",
                    Frame::Send(pb::Send {
                        channel_id: "general".into(),
                        body: "hi".into(),
                        ..Default::default()
                    }),
                ),
            ),
            (
                json!({"type": "edit", "request_id": "5", "channel_id": "general", "seq": 3, "body": "fixed", "idempotency_key": "k"}),
                client(
                    "5",
                    Frame::Edit(pb::Edit {
                        channel_id: "general".into(),
                        seq: 3,
                        body: "fixed".into(),
                        idempotency_key: "k".into(),
                    }),
                ),
            ),
            (
                json!({"type": "delete", "request_id": "6", "channel_id": "general", "seq": 3}),
                client(
                    "6",
                    Frame::Delete(pb::Delete {
                        channel_id: "general".into(),
                        seq: 3,
                        idempotency_key: String::new(),
                    }),
                ),
            ),
            (
                json!({"type": "react", "request_id": "7", "channel_id": "general", "seq": 3, "emoji": "👍", "remove": true, "idempotency_key": "r"}),
                client(
                    "7",
                    Frame::React(pb::React {
                        channel_id: "general".into(),
                        seq: 3,
                        emoji: "👍".into(),
                        remove: true,
                        idempotency_key: "r".into(),
                    }),
                ),
            ),
            (
                json!({"type": "react", "channel_id": "general", "seq": 3, "emoji": "👍"}),
                client(
                    "",
                    Frame::React(pb::React {
                        channel_id: "general".into(),
                        seq: 3,
                        emoji: "👍".into(),
                        ..Default::default()
                    }),
                ),
            ),
            (
                json!({"type": "ack", "channel_id": "general", "seq": 9}),
                client(
                    "",
                    Frame::Ack(pb::Ack {
                        channel_id: "general".into(),
                        seq: 9,
                    }),
                ),
            ),
            (
                json!({"type": "ack", "request_id": "a", "channel_id": "general", "seq": 10}),
                client(
                    "a",
                    Frame::Ack(pb::Ack {
                        channel_id: "general".into(),
                        seq: 10,
                    }),
                ),
            ),
            (
                json!({"type": "unread", "request_id": "u", "channel_ids": ["general", "random"]}),
                client(
                    "u",
                    Frame::Unread(pb::Unread {
                        channel_ids: vec!["general".into(), "random".into()],
                    }),
                ),
            ),
            (
                json!({"type": "typing", "request_id": "8", "channel_id": "general", "stop": true}),
                client(
                    "8",
                    Frame::Typing(pb::Typing {
                        channel_id: "general".into(),
                        stop: true,
                    }),
                ),
            ),
            (
                json!({"type": "typing", "channel_id": "general"}),
                client(
                    "",
                    Frame::Typing(pb::Typing {
                        channel_id: "general".into(),
                        stop: false,
                    }),
                ),
            ),
            (
                json!({"type": "ping", "request_id": "4", "client_time_ms": 123}),
                client(
                    "4",
                    Frame::Ping(pb::Ping {
                        client_time_ms: 123,
                    }),
                ),
            ),
        ]
    }

    #[test]
    fn both_forms_of_every_client_frame_decode_alike() {
        for (json, binary) in client_cases() {
            let from_json = protocol::parse(&json.to_string()).unwrap();
            assert_eq!(decode(&binary).unwrap(), from_json, "{json}");
        }
    }

    #[test]
    fn bad_binary_frames_get_the_same_codes_as_bad_text() {
        assert_eq!(
            decode(&[0xff, 0xff, 0xff]).unwrap_err().code(),
            "malformed_frame"
        );
        let empty = pb::ClientFrame {
            request_id: "1".into(),
            frame: None,
        }
        .encode_to_vec();
        assert_eq!(decode(&empty).unwrap_err().code(), "invalid_frame");
    }

    /// Each server frame; its JSON and binary forms must carry the same
    /// fields.
    fn server_cases() -> Vec<ServerFrame> {
        use chatmesh_ids::{Change, ChatMessage, MessageState};
        let message = |change: Change, state: MessageState| {
            let m = ChatMessage {
                change,
                reply_to: None,
                state,
                ..crate::memory::message("general", 6)
            };
            ServerFrame::Message(MessageBody::from(&m))
        };
        let emoji = || "👍".to_owned();
        vec![
            ServerFrame::Message(MessageBody::from(&crate::memory::message("general", 5))),
            message(Change::Edit { target: 5 }, MessageState::default()),
            message(Change::Delete { target: 5 }, MessageState::default()),
            message(
                Change::React {
                    target: 5,
                    emoji: emoji(),
                },
                MessageState::default(),
            ),
            message(
                Change::Unreact {
                    target: 5,
                    emoji: emoji(),
                },
                MessageState::default(),
            ),
            message(
                Change::Post,
                MessageState {
                    edit_count: 1,
                    edited_at_ms: 1_800_000_000_100,
                    edited_seq: 8,
                    deleted: true,
                    reactions: vec![chatmesh_ids::Reaction {
                        emoji: emoji(),
                        count: 2,
                        me: true,
                    }],
                    version: 9,
                    reply_count: 4,
                    last_reply_at_ms: 1_800_000_000_200,
                },
            ),
            ServerFrame::Message(MessageBody {
                reply_to: 3,
                ..MessageBody::from(&crate::memory::message("general", 6))
            }),
            ServerFrame::Message(MessageBody {
                mentions: vec!["ana".into(), "bo b".into()],
                ..MessageBody::from(&crate::memory::message("general", 7))
            }),
            ServerFrame::Ack {
                request_id: Some("1".into()),
                channel_id: "general".into(),
                message_id: u64::MAX >> 1,
                seq: 5,
                masked: true,
                duplicate: false,
            },
            ServerFrame::Subscribed {
                request_id: Some("2".into()),
                channel_id: "general".into(),
                seq: 4,
            },
            ServerFrame::Read {
                request_id: Some("7".into()),
                channel_id: "general".into(),
                user_id: "ana".into(),
                seq: 12,
            },
            ServerFrame::Unread {
                request_id: Some("8".into()),
                channels: vec![crate::ws::protocol::ChannelUnreadBody {
                    channel_id: "general".into(),
                    read_seq: 3,
                    last_seq: 9,
                    unread: 4,
                    mentions: 1,
                }],
                total: 4,
                mentions: 1,
            },
            ServerFrame::Unsubscribed {
                request_id: None,
                channel_id: "general".into(),
            },
            ServerFrame::Pong {
                request_id: Some("3".into()),
                client_time_ms: Some(10),
                server_time_ms: 20,
            },
            ServerFrame::Error {
                request_id: Some("4".into()),
                code: "rate_limited",
                message: "slow down".into(),
                retryable: true,
            },
            ServerFrame::Presence {
                channel_id: "general".into(),
                user_id: "bob".into(),
                event: "join",
                at_ms: 30,
            },
            ServerFrame::Redirect {
                request_id: Some("5".into()),
                channel_id: "general".into(),
                url: "ws://gw-1".into(),
            },
            ServerFrame::ReloadRequired {
                channel_id: "general".into(),
                from_seq: 1,
                to_seq: 9,
            },
            ServerFrame::Reconnect {
                reason: "bye".into(),
                url: Some("ws://gw-1".into()),
                channel_ids: vec!["general".into()],
            },
            ServerFrame::Typing {
                channel_id: "general".into(),
                user_ids: vec!["alice".into(), "bob".into()],
            },
            ServerFrame::Typing {
                channel_id: "general".into(),
                user_ids: Vec::new(),
            },
        ]
    }

    /// The binary form read back as the JSON form's fields, for comparison.
    fn binary_as_json(bytes: &[u8]) -> Value {
        use pb::server_frame::Frame;
        let frame = pb::ServerFrame::decode(bytes).unwrap();
        let mut v = match frame.frame.unwrap() {
            Frame::Message(m) => {
                let mut v = json!({"type": "message", "channel_id": m.channel_id, "message_id": m.message_id.to_string(), "seq": m.seq, "sender_id": m.sender_id, "body": m.body, "created_at_ms": m.created_at_ms});
                let kinds = ["post", "edit", "delete", "reaction_add", "reaction_remove"];
                if m.kind != 0 {
                    v["kind"] = kinds[m.kind as usize].into();
                    v["target_seq"] = m.target_seq.into();
                }
                if !m.emoji.is_empty() {
                    v["emoji"] = m.emoji.into();
                }
                if m.edit_count != 0 {
                    v["edit_count"] = m.edit_count.into();
                    v["edited_at_ms"] = m.edited_at_ms.into();
                }
                if m.deleted {
                    v["deleted"] = true.into();
                }
                if !m.reactions.is_empty() {
                    v["reactions"] = m
                        .reactions
                        .iter()
                        .map(|r| json!({"emoji": r.emoji, "count": r.count, "me": r.me}))
                        .collect();
                }
                if m.version != 0 {
                    v["version"] = m.version.into();
                }
                for (field, value) in [
                    ("reply_to", m.reply_to as i64),
                    ("reply_count", i64::from(m.reply_count)),
                    ("last_reply_at_ms", m.last_reply_at_ms),
                ] {
                    if value != 0 {
                        v[field] = value.into();
                    }
                }
                if !m.mentions.is_empty() {
                    v["mentions"] = m.mentions.into();
                }
                v
            }
            Frame::SendAck(a) => {
                json!({"type": "ack", "channel_id": a.channel_id, "message_id": a.message_id.to_string(), "seq": a.seq, "masked": a.masked, "duplicate": a.duplicate})
            }
            Frame::Subscribed(s) => {
                json!({"type": "subscribed", "channel_id": s.channel_id, "seq": s.seq})
            }
            Frame::Unsubscribed(u) => json!({"type": "unsubscribed", "channel_id": u.channel_id}),
            Frame::Pong(p) => {
                json!({"type": "pong", "client_time_ms": p.client_time_ms, "server_time_ms": p.server_time_ms})
            }
            Frame::Error(e) => {
                json!({"type": "error", "code": e.code, "message": e.message, "retryable": e.retryable})
            }
            Frame::Presence(p) => {
                json!({"type": "presence", "channel_id": p.channel_id, "user_id": p.user_id, "event": if p.kind == 1 { "join" } else { "leave" }, "at_ms": p.at_ms})
            }
            Frame::Redirect(r) => {
                json!({"type": "redirect", "channel_id": r.channel_id, "url": r.url})
            }
            Frame::ReloadRequired(r) => {
                json!({"type": "reload_required", "channel_id": r.channel_id, "from_seq": r.from_seq, "to_seq": r.to_seq})
            }
            Frame::Reconnect(r) => {
                json!({"type": "reconnect", "reason": r.reason, "url": r.url, "channel_ids": r.channel_ids})
            }
            Frame::ReadPosition(r) => {
                json!({"type": "read", "channel_id": r.channel_id, "user_id": r.user_id, "seq": r.seq})
            }
            Frame::UnreadCounts(u) => {
                let channels: Vec<Value> = u
                    .channels
                    .iter()
                    .map(|c| json!({"channel_id": c.channel_id, "read_seq": c.read_seq, "last_seq": c.last_seq, "unread": c.unread, "mentions": c.mentions}))
                    .collect();
                json!({"type": "unread", "channels": channels, "total": u.total, "mentions": u.total_mentions})
            }
            Frame::TypingUsers(t) => {
                json!({"type": "typing", "channel_id": t.channel_id, "user_ids": t.user_ids})
            }
        };
        if !frame.request_id.is_empty() {
            v["request_id"] = frame.request_id.into();
        }
        v
    }

    #[test]
    fn both_forms_of_every_server_frame_carry_the_same_fields() {
        for frame in server_cases() {
            let json: Value = serde_json::from_str(&frame.to_json()).unwrap();
            assert_eq!(binary_as_json(&encode(&frame)), json, "{frame:?}");
        }
    }

    #[test]
    fn the_binary_form_is_smaller() {
        let frame = ServerFrame::Message(MessageBody::from(&crate::memory::message("general", 5)));
        assert!(encode(&frame).len() < frame.to_json().len());
    }

    #[test]
    fn the_codec_follows_the_subprotocol_then_the_query() {
        assert_eq!(
            Codec::negotiate(Some(PROTO_SUBPROTOCOL), None),
            Codec::Proto
        );
        assert_eq!(
            Codec::negotiate(Some(JSON_SUBPROTOCOL), Some("proto")),
            Codec::Json
        );
        assert_eq!(Codec::negotiate(None, Some("proto")), Codec::Proto);
        assert_eq!(Codec::negotiate(None, None), Codec::Json);
    }
}
