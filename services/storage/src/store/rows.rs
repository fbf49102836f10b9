//! Conversion between stored rows and domain messages.

use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};
use chrono::{DateTime, Utc};
use diesel::{Insertable, Queryable, Selectable};

use super::schema::messages;
use super::{check_storable, column};
use crate::error::StorageError;

/// A message as stored in a shard.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub(super) struct Row {
    pub(super) channel_id: String,
    pub(super) message_id: i64,
    pub(super) seq: i64,
    pub(super) sender_id: String,
    pub(super) body: String,
    pub(super) attachments: Vec<String>,
    pub(super) created_at: DateTime<Utc>,
}

impl Row {
    /// The row for `message`, refused when it does not fit the columns.
    pub(super) fn from_message(message: &ChatMessage) -> Result<Self, StorageError> {
        check_storable(message)?;
        Ok(Self {
            channel_id: message.channel.as_str().to_owned(),
            message_id: column("message_id", message.id.get())?,
            seq: column("seq", message.seq)?,
            sender_id: message.sender.as_str().to_owned(),
            body: message.body.clone(),
            attachments: message.attachments.clone(),
            created_at: DateTime::from_timestamp_millis(message.created_at_ms).ok_or(
                StorageError::InvalidArgument {
                    field: "created_at_ms",
                    reason: "not a time a message can have been sent",
                },
            )?,
        })
    }

    /// The message this row holds. Rows are written from valid messages,
    /// so a failure here means the row was changed behind our back.
    pub(super) fn into_message(self) -> Result<ChatMessage, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            channel: self.channel_id.clone(),
            message_id: self.message_id,
            reason,
        };
        let channel =
            ChannelId::new(self.channel_id.as_str()).map_err(|e| corrupt(e.to_string()))?;
        let sender = UserId::new(self.sender_id.as_str()).map_err(|e| corrupt(e.to_string()))?;
        let id = u64::try_from(self.message_id).map_err(|_| corrupt("negative ID".into()))?;
        let seq = u64::try_from(self.seq).map_err(|_| corrupt("negative seq".into()))?;
        Ok(ChatMessage {
            id: MessageId::from_raw(id),
            channel,
            sender,
            seq,
            body: self.body,
            attachments: self.attachments,
            created_at_ms: self.created_at.timestamp_millis(),
            idempotency_key: None,
        })
    }
}
