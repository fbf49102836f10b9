//! Conversions between the wire types and the domain types. Domain code
//! never handles proto structs; these run once, at the edge.

use chatmesh_ids::{
    Change, ChannelId, ChatMessage, IdError, MessageId, MessageState, Reaction, UserId,
};

use crate::common::v1::{Message, MessageKind, Reaction as WireReaction};

/// The kind, target and emoji fields of `change`.
fn change_fields(change: &Change) -> (MessageKind, u64, String) {
    let target = change.target().unwrap_or(0);
    let emoji = change.emoji().unwrap_or_default().to_owned();
    let kind = match change {
        Change::Post => MessageKind::Post,
        Change::Edit { .. } => MessageKind::Edit,
        Change::Delete { .. } => MessageKind::Delete,
        Change::React { .. } => MessageKind::ReactionAdd,
        Change::Unreact { .. } => MessageKind::ReactionRemove,
    };
    (kind, target, emoji)
}

/// The change a wire message's kind, target and emoji describe. A kind
/// this build does not know is refused rather than taken for a post.
fn change_of(m: &Message) -> Result<Change, IdError> {
    let target = m.target_seq;
    let emoji = || m.emoji.clone();
    Ok(match MessageKind::try_from(m.kind) {
        Ok(MessageKind::Post) => Change::Post,
        Ok(MessageKind::Edit) => Change::Edit { target },
        Ok(MessageKind::Delete) => Change::Delete { target },
        Ok(MessageKind::ReactionAdd) => Change::React {
            target,
            emoji: emoji(),
        },
        Ok(MessageKind::ReactionRemove) => Change::Unreact {
            target,
            emoji: emoji(),
        },
        Err(_) => return Err(IdError::UnknownKind(m.kind)),
    })
}

impl Message {
    /// Sets the change and state fields from `m`.
    fn fill_change(&mut self, change: &Change, state: &MessageState) {
        let (kind, target, emoji) = change_fields(change);
        self.kind = kind as i32;
        self.target_seq = target;
        self.emoji = emoji;
        self.edit_count = state.edit_count;
        self.edited_at_ms = state.edited_at_ms;
        self.deleted = state.deleted;
        self.reactions = state
            .reactions
            .iter()
            .map(|r| WireReaction {
                emoji: r.emoji.clone(),
                count: r.count,
                me: r.me,
            })
            .collect();
        self.version = state.version;
        self.reply_count = state.reply_count;
        self.last_reply_at_ms = state.last_reply_at_ms;
    }
}

impl From<&ChatMessage> for Message {
    fn from(m: &ChatMessage) -> Self {
        let mut wire = Self {
            message_id: m.id.get(),
            channel_id: m.channel.as_str().to_owned(),
            sender_id: m.sender.as_str().to_owned(),
            seq: m.seq,
            body: m.body.clone(),
            attachments: m.attachments.clone(),
            created_at_ms: m.created_at_ms,
            idempotency_key: m.idempotency_key.clone().unwrap_or_default(),
            ..Self::default()
        };
        wire.fill_change(&m.change, &m.state);
        wire.reply_to = m.reply_to.unwrap_or(0);
        wire.mentions = m.mentions().into_iter().map(String::from).collect();
        wire
    }
}

impl From<ChatMessage> for Message {
    fn from(m: ChatMessage) -> Self {
        let mentions = m.mentions().into_iter().map(String::from).collect();
        let mut wire = Self {
            message_id: m.id.get(),
            channel_id: m.channel.into(),
            sender_id: m.sender.into(),
            seq: m.seq,
            body: m.body,
            attachments: m.attachments,
            created_at_ms: m.created_at_ms,
            idempotency_key: m.idempotency_key.unwrap_or_default(),
            ..Self::default()
        };
        wire.fill_change(&m.change, &m.state);
        wire.reply_to = m.reply_to.unwrap_or(0);
        wire.mentions = mentions;
        wire
    }
}

impl Message {
    /// Appends `traceparent` to `encoded`, an encoded `Message`. Protobuf
    /// merges concatenated encodings, so the result decodes as the same
    /// message carrying the trace context, without encoding it again.
    pub fn append_traceparent(encoded: &mut Vec<u8>, traceparent: &str) {
        let field = Self {
            traceparent: traceparent.to_owned(),
            ..Self::default()
        };
        encoded.extend(prost::Message::encode_to_vec(&field));
    }

    /// Takes the trace context out of the message, if it carries one.
    pub fn take_traceparent(&mut self) -> Option<String> {
        Some(std::mem::take(&mut self.traceparent)).filter(|t| !t.is_empty())
    }
}

impl TryFrom<Message> for ChatMessage {
    type Error = IdError;

    fn try_from(m: Message) -> Result<Self, IdError> {
        let change = change_of(&m)?;
        let state = MessageState {
            edit_count: m.edit_count,
            edited_at_ms: m.edited_at_ms,
            // Storage's own bookkeeping; readers go by `version`.
            edited_seq: 0,
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
            reply_count: m.reply_count,
            last_reply_at_ms: m.last_reply_at_ms,
        };
        Ok(Self {
            id: MessageId::from_raw(m.message_id),
            channel: ChannelId::new(m.channel_id)?,
            sender: UserId::new(m.sender_id)?,
            seq: m.seq,
            body: m.body,
            attachments: m.attachments,
            created_at_ms: m.created_at_ms,
            idempotency_key: Some(m.idempotency_key).filter(|k| !k.is_empty()),
            change,
            reply_to: Some(m.reply_to).filter(|&r| r != 0),
            state,
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
            change: Default::default(),
            reply_to: None,
            state: Default::default(),
        };
        assert_eq!(ChatMessage::try_from(Message::from(&m)), Ok(m.clone()));
        let none = ChatMessage {
            idempotency_key: None,
            ..m
        };
        assert_eq!(ChatMessage::try_from(Message::from(none.clone())), Ok(none));
    }

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn sample() -> ChatMessage {
        ChatMessage {
            id: MessageId::from_raw(42 << 22),
            channel: ChannelId::new("general").unwrap(),
            sender: UserId::new("alice").unwrap(),
            seq: 7,
            body: "hi".into(),
            attachments: vec!["m1".into()],
            created_at_ms: 1_800_000_000_000,
            idempotency_key: None,
            change: Default::default(),
            reply_to: None,
            state: Default::default(),
        }
    }

    #[test]
    fn an_appended_traceparent_travels_with_the_message() {
        use prost::Message as _;
        let m = sample();
        let mut bytes = Message::from(&m).encode_to_vec();
        Message::append_traceparent(&mut bytes, TRACEPARENT);
        let mut wire = Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(wire.take_traceparent().as_deref(), Some(TRACEPARENT));
        assert_eq!(ChatMessage::try_from(wire), Ok(m));
    }

    #[test]
    fn a_message_without_a_traceparent_has_none() {
        use prost::Message as _;
        let bytes = Message::from(sample()).encode_to_vec();
        let mut wire = Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(wire.take_traceparent(), None);
    }

    /// `Message` as it was before `traceparent`, as an older gateway or
    /// storage node decodes it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct OlderMessage {
        #[prost(uint64, tag = "1")]
        message_id: u64,
        #[prost(string, tag = "2")]
        channel_id: String,
        #[prost(uint64, tag = "4")]
        seq: u64,
        #[prost(string, tag = "5")]
        body: String,
    }

    #[test]
    fn older_readers_skip_the_traceparent() {
        use prost::Message as _;
        let m = sample();
        let mut bytes = Message::from(&m).encode_to_vec();
        Message::append_traceparent(&mut bytes, TRACEPARENT);
        let old = OlderMessage::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            (
                old.message_id,
                old.channel_id.as_str(),
                old.seq,
                old.body.as_str()
            ),
            (m.id.get(), "general", 7, "hi")
        );
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
