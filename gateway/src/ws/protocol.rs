//! JSON frames of the client protocol (see docs/protocol.md). Every frame
//! is an object with a `type`; message IDs travel as strings because they
//! exceed JavaScript's safe integers.

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::ChatMessage;
use chatmesh_proto::common::v1::Message;
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
    },
    /// The client has processed a channel up to `seq`.
    Ack { channel_id: String, seq: u64 },
    /// Keep-alive; answered with `pong`.
    Ping {
        #[serde(default)]
        request_id: Option<String>,
        #[serde(default)]
        client_time_ms: Option<i64>,
    },
}

const TYPES: &[&str] = &["subscribe", "unsubscribe", "send", "ack", "ping"];

impl ClientFrame {
    /// The `request_id` the reply echoes, if the frame has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Subscribe { request_id, .. }
            | Self::Unsubscribe { request_id, .. }
            | Self::Send { request_id, .. }
            | Self::Ping { request_id, .. } => request_id.as_deref(),
            Self::Ack { .. } => None,
        }
    }
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
    /// A send was stored.
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

/// The fields of a delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        }
    }
}

impl From<&ChatMessage> for MessageBody {
    fn from(m: &ChatMessage) -> Self {
        Self {
            channel_id: m.channel.as_str().to_owned(),
            message_id: m.id.get(),
            seq: m.seq,
            sender_id: m.sender.as_str().to_owned(),
            body: m.body.clone(),
            attachments: m.attachments.clone(),
            created_at_ms: m.created_at_ms,
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
}
