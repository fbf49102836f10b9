//! Conversion between stored rows and wire messages.

use chatmesh_proto::common::v1::Message;
use chrono::{DateTime, Utc};
use diesel::{Insertable, Queryable, Selectable};

use crate::schema::messages;

/// A message as stored in a shard.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub(crate) struct Row {
    pub(crate) channel_id: String,
    pub(crate) message_id: i64,
    pub(crate) seq: i64,
    pub(crate) sender_id: String,
    pub(crate) body: String,
    pub(crate) attachments: Vec<String>,
    pub(crate) created_at: DateTime<Utc>,
}

impl Row {
    /// The row for `message`; `None` when an ID or sequence does not fit the
    /// signed columns, which a valid Snowflake never does.
    pub(crate) fn from_message(message: Message) -> Option<Self> {
        Some(Self {
            message_id: i64::try_from(message.message_id).ok()?,
            seq: i64::try_from(message.seq).ok()?,
            created_at: DateTime::from_timestamp_millis(message.created_at_ms)?,
            channel_id: message.channel_id,
            sender_id: message.sender_id,
            body: message.body,
            attachments: message.attachments,
        })
    }

    /// The wire form.
    pub(crate) fn into_message(self) -> Message {
        Message {
            message_id: self.message_id as u64,
            channel_id: self.channel_id,
            sender_id: self.sender_id,
            seq: self.seq as u64,
            body: self.body,
            attachments: self.attachments,
            created_at_ms: self.created_at.timestamp_millis(),
            idempotency_key: String::new(),
        }
    }
}
