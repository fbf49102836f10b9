//! JSON frames of the client protocol (see docs/protocol.md). Every frame
//! is an object with a `type`; message IDs travel as strings because they
//! exceed JavaScript's safe integers.

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{Change, ChatMessage};
use chatmesh_proto::common::v1::{Message, MessageKind};
use chatmesh_proto::presence::v1::{PresenceEvent, presence_event};
use serde::{Deserialize, Serialize};

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Start receiving a channel, replaying what was missed after `last_seq`.
    Subscribe {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        #[serde(default)]
        last_seq: Option<u64>,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
    },
    /// Send a message.
    Send {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        body: String,
        #[serde(default)]
        attachments: Vec<String>,
        #[serde(default)]
        idempotency_key: Option<String>,
        /// W3C trace context of the client's trace, continued by the send.
        #[serde(default)]
        traceparent: Option<String>,
        /// The `seq` of the message this one replies to; 0 is none, as in
        /// the binary form.
        #[serde(default, deserialize_with = "nonzero")]
        reply_to: Option<u64>,
    },
    /// Replace the text of one's own message `seq`.
    Edit {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        seq: u64,
        body: String,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Delete message `seq`: one's own, or any as a channel owner.
    Delete {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        seq: u64,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Add an emoji reaction to message `seq`, or take one's own back.
    React {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        seq: u64,
        emoji: String,
        #[serde(default)]
        remove: bool,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// The user has read a channel up to `seq`: their read position moves
    /// forward. Answered by `read` when it has a `request_id`.
    Ack {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        seq: u64,
    },
    /// The user's unread counts, in `channel_ids` or every channel of
    /// theirs; answered by `unread`.
    Unread {
        #[serde(default)]
        request_id: Option<String>,
        #[serde(default)]
        channel_ids: Vec<String>,
    },
    /// The user is typing in a subscribed channel, or with `stop` stopped.
    /// Answered only when refused.
    Typing {
        #[serde(default)]
        request_id: Option<String>,
        channel_id: String,
        #[serde(default)]
        stop: bool,
    },
    /// Keep-alive; answered with `pong`.
    Ping {
        #[serde(default)]
        request_id: Option<String>,
        #[serde(default)]
        client_time_ms: Option<i64>,
    },
}

const TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "send",
    "edit",
    "delete",
    "react",
    "ack",
    "ping",
    "typing",
    "unread",
];

impl ClientFrame {
    /// The `request_id` the reply echoes, if the frame has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Subscribe { request_id, .. }
            | Self::Unsubscribe { request_id, .. }
            | Self::Send { request_id, .. }
            | Self::Edit { request_id, .. }
            | Self::Delete { request_id, .. }
            | Self::React { request_id, .. }
            | Self::Typing { request_id, .. }
            | Self::Ack { request_id, .. }
            | Self::Unread { request_id, .. }
            | Self::Ping { request_id, .. } => request_id.as_deref(),
        }
    }
}

/// An optional number where 0 means absent, as Protobuf's zero default
/// does in the binary form.
fn nonzero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n: Option<u64> = serde::Deserialize::deserialize(d)?;
    Ok(n.filter(|&n| n != 0))
}

/// Why a text frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not a JSON object with a string `type`.
    Malformed(String),
    /// A `type` this server does not know.
    UnknownType(String),
    /// A known type with missing, extra or mistyped fields.
    Invalid(String),
}

impl FrameError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Malformed(_) => ErrorKind::MalformedFrame,
            Self::UnknownType(_) => ErrorKind::UnknownFrameType,
            Self::Invalid(_) => ErrorKind::InvalidFrame,
        }
    }

    /// The stable error code sent to the client.
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.kind().client_code()
    }

    /// A human-readable explanation.
    pub fn message(&self) -> String {
        match self {
            Self::Malformed(e) => format!("frame is not a JSON object with a \"type\": {e}"),
            Self::UnknownType(t) => format!("unknown frame type {t:?}; expected one of {TYPES:?}"),
            Self::Invalid(e) => e.clone(),
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(err: FrameError) -> Self {
        ClientError::new(err.kind(), err.message())
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(FrameError::Malformed(
            "missing string field \"type\"".into(),
        ));
    };
    if !TYPES.contains(&kind) {
        return Err(FrameError::UnknownType(kind.to_owned()));
    }
    serde_json::from_value(value).map_err(|e| FrameError::Invalid(e.to_string()))
}

/// A frame to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A message in a subscribed channel.
    Message(MessageBody),
    /// A send, edit, delete or reaction was stored.
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        channel_id: String,
        #[serde(serialize_with = "as_string")]
        message_id: u64,
        seq: u64,
        masked: bool,
        duplicate: bool,
    },
    /// A subscription is active; `seq` is the channel's latest sequence.
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        channel_id: String,
        seq: u64,
    },
    /// A subscription ended.
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        channel_id: String,
    },
    /// Answer to `ping`.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_time_ms: Option<i64>,
        server_time_ms: i64,
    },
    /// A request failed; the connection stays open.
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        code: &'static str,
        message: String,
        retryable: bool,
    },
    /// A user came online in a channel (`event` = `join`) or went offline
    /// there (`leave`).
    Presence {
        channel_id: String,
        user_id: String,
        event: &'static str,
        at_ms: i64,
    },
    /// Who is typing in a subscribed channel now, sorted; sent each time
    /// the set changes, empty once the last typer stopped.
    Typing {
        channel_id: String,
        user_ids: Vec<String>,
    },
    /// A member's read position moved: the answer to an `ack` with a
    /// `request_id`, or a receipt of any member's.
    Read {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        channel_id: String,
        user_id: String,
        seq: u64,
    },
    /// The user's read state per channel, and the sums.
    Unread {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        channels: Vec<ChannelUnreadBody>,
        total: u64,
        mentions: u64,
    },
    /// This node does not own the channel; connect to `url` for it.
    Redirect {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        channel_id: String,
        url: String,
    },
    /// The messages missed since `from_seq` cannot be replayed; reload the
    /// channel's history over HTTP or gRPC.
    ReloadRequired {
        channel_id: String,
        from_seq: u64,
        to_seq: u64,
    },
    /// Reconnect (to `url`, if given) and resubscribe these channels with
    /// their last sequence numbers.
    Reconnect {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        channel_ids: Vec<String>,
    },
}

/// Writes a 64-bit ID as a JSON string: JavaScript numbers lose precision
/// past 2^53.
fn as_string<S: serde::Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// The fields of a delivered message. A post's frame has only the first
/// seven; a change adds `kind`, `target_seq` and (for reactions) `emoji`,
/// and a post read from storage adds its state where it differs from a
/// fresh post's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageBody {
    pub channel_id: String,
    #[serde(serialize_with = "as_string")]
    pub message_id: u64,
    pub seq: u64,
    pub sender_id: String,
    pub body: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    pub created_at_ms: i64,
    /// What a change does; absent on posts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChangeKind>,
    /// The `seq` of the message a change applies to; 0 (absent) on posts.
    #[serde(skip_serializing_if = "is_zero")]
    pub target_seq: u64,
    /// A reaction's emoji.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub emoji: String,
    /// How often a stored post's text was edited.
    #[serde(skip_serializing_if = "is_zero")]
    pub edit_count: u32,
    /// When a stored post was last edited, in Unix milliseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub edited_at_ms: i64,
    /// A stored post was deleted: body and attachments are gone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// A stored post's reactions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionBody>,
    /// The `seq` of the last change a stored post's state includes.
    #[serde(skip_serializing_if = "is_zero")]
    pub version: u64,
    /// A reply: the `seq` of its thread's first post.
    #[serde(skip_serializing_if = "is_zero")]
    pub reply_to: u64,
    /// A stored thread's first post: how many replies were posted in it.
    #[serde(skip_serializing_if = "is_zero")]
    pub reply_count: u32,
    /// A stored thread's first post: when its last reply was posted.
    #[serde(skip_serializing_if = "is_zero")]
    pub last_reply_at_ms: i64,
    /// The users a post's or an edit's text mentions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// What a change event does, as `message.kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The author replaced the target's text with `body`.
    Edit,
    /// The target was deleted.
    Delete,
    /// The sender reacted to the target with `emoji`.
    ReactionAdd,
    /// The sender took back their `emoji` on the target.
    ReactionRemove,
}

impl ChangeKind {
    /// The wire enum.
    pub fn to_proto(self) -> MessageKind {
        match self {
            Self::Edit => MessageKind::Edit,
            Self::Delete => MessageKind::Delete,
            Self::ReactionAdd => MessageKind::ReactionAdd,
            Self::ReactionRemove => MessageKind::ReactionRemove,
        }
    }

    /// The kind of a wire enum value; `None` for a post, or a kind this
    /// build does not know.
    pub fn from_proto(raw: i32) -> Option<Self> {
        match MessageKind::try_from(raw) {
            Ok(MessageKind::Edit) => Some(Self::Edit),
            Ok(MessageKind::Delete) => Some(Self::Delete),
            Ok(MessageKind::ReactionAdd) => Some(Self::ReactionAdd),
            Ok(MessageKind::ReactionRemove) => Some(Self::ReactionRemove),
            Ok(MessageKind::Post) | Err(_) => None,
        }
    }
}

/// A user's read state in one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelUnreadBody {
    pub channel_id: String,
    /// Their read position; 0 before they read anything.
    pub read_seq: u64,
    /// The `seq` of the channel's newest stored event.
    pub last_seq: u64,
    /// Posts after the read position that are not deleted.
    pub unread: u64,
    /// Those of them that mention the user.
    pub mentions: u64,
}

/// One emoji's reactions on a stored post.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReactionBody {
    pub emoji: String,
    pub count: u32,
    /// Whether the user the post was read for is among them.
    pub me: bool,
}

impl From<&Message> for MessageBody {
    /// A stored message read over HTTP, straight from its wire form.
    fn from(m: &Message) -> Self {
        Self {
            channel_id: m.channel_id.clone(),
            message_id: m.message_id,
            seq: m.seq,
            sender_id: m.sender_id.clone(),
            body: m.body.clone(),
            attachments: m.attachments.clone(),
            created_at_ms: m.created_at_ms,
            kind: ChangeKind::from_proto(m.kind),
            target_seq: m.target_seq,
            emoji: m.emoji.clone(),
            edit_count: m.edit_count,
            edited_at_ms: m.edited_at_ms,
            deleted: m.deleted,
            reactions: m
                .reactions
                .iter()
                .map(|r| ReactionBody {
                    emoji: r.emoji.clone(),
                    count: r.count,
                    me: r.me,
                })
                .collect(),
            version: m.version,
            reply_to: m.reply_to,
            reply_count: m.reply_count,
            last_reply_at_ms: m.last_reply_at_ms,
            mentions: m.mentions.clone(),
        }
    }
}

impl From<&ChatMessage> for MessageBody {
    fn from(m: &ChatMessage) -> Self {
        let kind = match &m.change {
            Change::Post => None,
            Change::Edit { .. } => Some(ChangeKind::Edit),
            Change::Delete { .. } => Some(ChangeKind::Delete),
            Change::React { .. } => Some(ChangeKind::ReactionAdd),
            Change::Unreact { .. } => Some(ChangeKind::ReactionRemove),
        };
        Self {
            channel_id: m.channel.as_str().to_owned(),
            message_id: m.id.get(),
            seq: m.seq,
            sender_id: m.sender.as_str().to_owned(),
            body: m.body.clone(),
            attachments: m.attachments.clone(),
            created_at_ms: m.created_at_ms,
            kind,
            target_seq: m.change.target().unwrap_or(0),
            emoji: m.change.emoji().unwrap_or_default().to_owned(),
            edit_count: m.state.edit_count,
            edited_at_ms: m.state.edited_at_ms,
            deleted: m.state.deleted,
            reactions: m
                .state
                .reactions
                .iter()
                .map(|r| ReactionBody {
                    emoji: r.emoji.clone(),
                    count: r.count,
                    me: r.me,
                })
                .collect(),
            version: m.state.version,
            reply_to: m.reply_to.unwrap_or(0),
            reply_count: m.state.reply_count,
            last_reply_at_ms: m.state.last_reply_at_ms,
            mentions: m.mentions().into_iter().map(String::from).collect(),
        }
    }
}

impl ServerFrame {
    /// The frame for a presence event; `None` for an unknown kind.
    pub(crate) fn presence(event: &PresenceEvent) -> Option<Self> {
        let kind = match presence_event::Kind::try_from(event.kind) {
            Ok(presence_event::Kind::Join) => "join",
            Ok(presence_event::Kind::Leave) => "leave",
            _ => return None,
        };
        Some(Self::Presence {
            channel_id: event.channel_id.clone(),
            user_id: event.user_id.clone(),
            event: kind,
            at_ms: event.at_ms,
        })
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }

    /// The error frame for `err`: its code and retryability come from the
    /// error table.
    pub fn from_error(request_id: Option<String>, err: &ClientError) -> Self {
        Self::Error {
            request_id,
            code: err.kind.client_code(),
            message: err.message.clone(),
            retryable: err.retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_client_frame() {
        assert_eq!(
            parse(r#"{"type":"subscribe","channel_id":"general","last_seq":7}"#),
            Ok(ClientFrame::Subscribe {
                request_id: None,
                channel_id: "general".into(),
                last_seq: Some(7)
            })
        );
        assert!(matches!(
            parse(r#"{"type":"send","request_id":"1","channel_id":"g","body":"hi"}"#),
            Ok(ClientFrame::Send { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"ack","channel_id":"g","seq":3}"#),
            Ok(ClientFrame::Ack { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"unsubscribe","channel_id":"g"}"#),
            Ok(ClientFrame::Unsubscribe { .. })
        ));
    }

    #[test]
    fn parses_typing_frames() {
        assert_eq!(
            parse(r#"{"type":"typing","channel_id":"g"}"#),
            Ok(ClientFrame::Typing {
                request_id: None,
                channel_id: "g".into(),
                stop: false,
            })
        );
        assert_eq!(
            parse(r#"{"type":"typing","request_id":"t","channel_id":"g","stop":true}"#),
            Ok(ClientFrame::Typing {
                request_id: Some("t".into()),
                channel_id: "g".into(),
                stop: true,
            })
        );
        for bad in [
            r#"{"type":"typing"}"#,
            r#"{"type":"typing","channel_id":"g","stop":"yes"}"#,
            r#"{"type":"typing","channel_id":"g","user_id":"bob"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code(), "invalid_frame", "{bad}");
        }
        let frame = ServerFrame::Typing {
            channel_id: "g".into(),
            user_ids: vec!["alice".into(), "bob".into()],
        };
        assert_eq!(
            frame.to_json(),
            r#"{"type":"typing","channel_id":"g","user_ids":["alice","bob"]}"#
        );
    }

    #[test]
    fn parses_the_change_frames() {
        assert_eq!(
            parse(
                r#"{"type":"edit","request_id":"e","channel_id":"g","seq":4,"body":"fixed","idempotency_key":"k"}"#
            ),
            Ok(ClientFrame::Edit {
                request_id: Some("e".into()),
                channel_id: "g".into(),
                seq: 4,
                body: "fixed".into(),
                idempotency_key: Some("k".into()),
            })
        );
        assert_eq!(
            parse(r#"{"type":"delete","channel_id":"g","seq":4}"#),
            Ok(ClientFrame::Delete {
                request_id: None,
                channel_id: "g".into(),
                seq: 4,
                idempotency_key: None,
            })
        );
        assert_eq!(
            parse(r#"{"type":"react","channel_id":"g","seq":4,"emoji":"👍"}"#),
            Ok(ClientFrame::React {
                request_id: None,
                channel_id: "g".into(),
                seq: 4,
                emoji: "👍".into(),
                remove: false,
                idempotency_key: None,
            })
        );
        assert!(matches!(
            parse(r#"{"type":"react","channel_id":"g","seq":4,"emoji":"👍","remove":true}"#),
            Ok(ClientFrame::React { remove: true, .. })
        ));
    }

    #[test]
    fn bad_change_frames_are_invalid() {
        for bad in [
            r#"{"type":"edit","channel_id":"g","body":"no seq"}"#,
            r#"{"type":"edit","channel_id":"g","seq":1}"#,
            r#"{"type":"edit","channel_id":"g","seq":"1","body":"seq as text"}"#,
            r#"{"type":"delete","channel_id":"g"}"#,
            r#"{"type":"delete","channel_id":"g","seq":-1}"#,
            r#"{"type":"delete","channel_id":"g","seq":1,"body":"extra"}"#,
            r#"{"type":"react","channel_id":"g","seq":1}"#,
            r#"{"type":"react","channel_id":"g","seq":1,"emoji":5}"#,
            r#"{"type":"react","channel_id":"g","seq":1,"emoji":["👍"]}"#,
            r#"{"type":"react","channel_id":"g","seq":1,"emoji":"👍","remove":"yes"}"#,
            r#"{"type":"react","channel_id":"g","seq":1,"emoji":"👍","attachments":[]}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code(), "invalid_frame", "{bad}");
        }
    }

    #[test]
    fn classifies_bad_frames() {
        assert_eq!(parse("{not json").unwrap_err().code(), "malformed_frame");
        assert_eq!(parse("[1,2]").unwrap_err().code(), "malformed_frame");
        assert_eq!(
            parse(r#"{"type":7}"#).unwrap_err().code(),
            "malformed_frame"
        );
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().code(),
            "unknown_frame_type"
        );
        assert_eq!(
            parse(r#"{"type":"send","channel_id":"g"}"#)
                .unwrap_err()
                .code(),
            "invalid_frame"
        );
        assert_eq!(
            parse(r#"{"type":"ping","extra":1}"#).unwrap_err().code(),
            "invalid_frame"
        );
    }

    #[test]
    fn message_ids_are_strings() {
        let m = ChatMessage {
            id: chatmesh_ids::MessageId::from_raw(u64::MAX >> 1),
            ..crate::memory::message("general", 1)
        };
        let json = ServerFrame::Message(MessageBody::from(&m)).to_json();
        assert!(
            json.contains(r#""message_id":"9223372036854775807""#),
            "{json}"
        );
        assert!(json.starts_with(r#"{"type":"message""#), "{json}");
    }

    #[test]
    fn a_post_renders_as_it_always_has() {
        let json = ServerFrame::Message(MessageBody::from(&crate::memory::message("general", 3)))
            .to_json();
        assert_eq!(
            json,
            r#"{"type":"message","channel_id":"general","message_id":"4206886912","seq":3,"sender_id":"alice","body":"message 3","created_at_ms":1800000000003}"#
        );
    }

    fn event(change: Change, body: &str) -> serde_json::Value {
        let m = ChatMessage {
            change,
            reply_to: None,
            body: body.into(),
            ..crate::memory::message("general", 9)
        };
        serde_json::from_str(&ServerFrame::Message(MessageBody::from(&m)).to_json()).unwrap()
    }

    #[test]
    fn a_change_names_its_kind_and_target() {
        let edit = event(Change::Edit { target: 3 }, "fixed");
        assert_eq!(
            (&edit["kind"], &edit["target_seq"], &edit["body"]),
            (&"edit".into(), &3.into(), &"fixed".into())
        );
        assert!(edit.get("emoji").is_none(), "{edit}");
        let delete = event(Change::Delete { target: 3 }, "");
        assert_eq!(
            (&delete["kind"], &delete["target_seq"]),
            (&"delete".into(), &3.into())
        );
        let emoji = || "👍".to_owned();
        for (change, kind) in [
            (
                Change::React {
                    target: 3,
                    emoji: emoji(),
                },
                "reaction_add",
            ),
            (
                Change::Unreact {
                    target: 3,
                    emoji: emoji(),
                },
                "reaction_remove",
            ),
        ] {
            let frame = event(change, "");
            assert_eq!(frame["kind"], kind, "{frame}");
            assert_eq!(frame["emoji"], "👍", "{frame}");
            assert_eq!(frame["target_seq"], 3, "{frame}");
            assert_eq!(frame["seq"], 9, "{frame}");
        }
    }

    #[test]
    fn a_stored_post_carries_its_state() {
        let m = ChatMessage {
            body: String::new(),
            state: chatmesh_ids::MessageState {
                edit_count: 2,
                edited_at_ms: 1_800_000_000_100,
                edited_seq: 11,
                deleted: true,
                reactions: vec![chatmesh_ids::Reaction {
                    emoji: "🎉".into(),
                    count: 3,
                    me: true,
                }],
                version: 12,
                ..Default::default()
            },
            ..crate::memory::message("general", 3)
        };
        let from_domain: serde_json::Value = serde_json::to_value(MessageBody::from(&m)).unwrap();
        assert_eq!(from_domain["edit_count"], 2);
        assert_eq!(from_domain["edited_at_ms"], 1_800_000_000_100_i64);
        assert_eq!(from_domain["deleted"], true);
        assert_eq!(
            from_domain["reactions"],
            serde_json::json!([{"emoji": "🎉", "count": 3, "me": true}])
        );
        assert_eq!(from_domain["version"], 12);
        assert!(from_domain.get("kind").is_none(), "a post names no kind");
        // History reads the wire form: it renders the same.
        let wire = Message::from(&m);
        assert_eq!(MessageBody::from(&wire), MessageBody::from(&m));
    }
}
