//! Conversions between the wire types and the domain types. Domain code
//! never handles proto structs; these run once, at the edge.

use chatmesh_ids::{ChannelId, ChatMessage, IdError, MessageId, UserId};

use crate::common::v1::Message;

impl From<&ChatMessage> for Message {
    fn from(m: &ChatMessage) -> Self {
        Self {
            message_id: m.id.get(),
            channel_id: m.channel.as_str().to_owned(),
            sender_id: m.sender.as_str().to_owned(),
            seq: m.seq,
            body: m.body.clone(),
            attachments: m.attachments.clone(),
            created_at_ms: m.created_at_ms,
            idempotency_key: m.idempotency_key.clone().unwrap_or_default(),
        }
    }
}

impl From<ChatMessage> for Message {
    fn from(m: ChatMessage) -> Self {
        Self {
            message_id: m.id.get(),
            channel_id: m.channel.into(),
            sender_id: m.sender.into(),
            seq: m.seq,
            body: m.body,
            attachments: m.attachments,
            created_at_ms: m.created_at_ms,
            idempotency_key: m.idempotency_key.unwrap_or_default(),
        }
    }
}

impl TryFrom<Message> for ChatMessage {
    type Error = IdError;

    fn try_from(m: Message) -> Result<Self, IdError> {
        Ok(Self {
            id: MessageId::from_raw(m.message_id),
            channel: ChannelId::new(m.channel_id)?,
            sender: UserId::new(m.sender_id)?,
            seq: m.seq,
            body: m.body,
            attachments: m.attachments,
            created_at_ms: m.created_at_ms,
            idempotency_key: Some(m.idempotency_key).filter(|k| !k.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_wire() {
        let m = ChatMessage {
            id: MessageId::from_raw(42 << 22),
            channel: ChannelId::new("general").unwrap(),
            sender: UserId::new("alice").unwrap(),
            seq: 7,
            body: "hi".into(),
            attachments: vec!["m1".into()],
            created_at_ms: 1_800_000_000_000,
            idempotency_key: Some("k".into()),
        };
        assert_eq!(ChatMessage::try_from(Message::from(&m)), Ok(m.clone()));
        let none = ChatMessage {
            idempotency_key: None,
            ..m
        };
        assert_eq!(ChatMessage::try_from(Message::from(none.clone())), Ok(none));
    }

    #[test]
    fn a_bad_channel_is_refused() {
        let wire = Message {
            channel_id: "no spaces".into(),
            sender_id: "alice".into(),
            ..Default::default()
        };
        assert!(ChatMessage::try_from(wire).is_err());
    }
}
