//! Conversion between stored rows and domain messages.

use chatmesh_ids::{Change, ChannelId, ChatMessage, MessageId, MessageState, Reaction, UserId};
use chrono::{DateTime, Utc};
use diesel::{Insertable, Queryable, QueryableByName, Selectable};
use serde::{Deserialize, Serialize};

use super::schema::messages;
use super::{check_storable, column};
use crate::error::StorageError;

/// The `kind` column of each change, as the wire's `MessageKind` numbers it.
pub(super) const POST: i16 = 0;
const EDIT: i16 = 1;
const DELETE: i16 = 2;
const REACT: i16 = 3;
const UNREACT: i16 = 4;

/// An event as stored in a shard, with a post's state.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
pub(super) struct Row {
    pub(super) channel_id: String,
    pub(super) message_id: i64,
    pub(super) seq: i64,
    pub(super) sender_id: String,
    pub(super) body: String,
    pub(super) attachments: Vec<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) kind: i16,
    pub(super) target_seq: Option<i64>,
    pub(super) emoji: Option<String>,
    pub(super) edit_count: i32,
    pub(super) edited_at: Option<DateTime<Utc>>,
    pub(super) edited_seq: i64,
    pub(super) deleted: bool,
    pub(super) reactions: serde_json::Value,
    pub(super) version: i64,
    pub(super) reply_to: Option<i64>,
    pub(super) reply_count: i32,
    pub(super) last_reply_at: Option<DateTime<Utc>>,
}

/// The columns an event is written with; a post's state starts at the
/// columns' defaults, whatever state the event carried.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = messages)]
pub(super) struct NewRow {
    pub(super) channel_id: String,
    pub(super) message_id: i64,
    pub(super) seq: i64,
    pub(super) sender_id: String,
    pub(super) body: String,
    pub(super) attachments: Vec<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) kind: i16,
    pub(super) target_seq: Option<i64>,
    pub(super) emoji: Option<String>,
    pub(super) reply_to: Option<i64>,
    /// A post's number, when it is known to be new at insert time (see
    /// `reads::number_new_posts`); numbered after the insert otherwise.
    pub(super) post_no: Option<i64>,
}

/// One emoji's count in the `reactions` column.
#[derive(Debug, Serialize, Deserialize)]
struct Counted {
    emoji: String,
    count: u32,
}

/// The `reactions` column for `reactions`; `me` is per reader, not stored.
pub(super) fn reactions_json(reactions: &[Reaction]) -> serde_json::Value {
    let counted: Vec<_> = reactions
        .iter()
        .map(|r| Counted {
            emoji: r.emoji.clone(),
            count: r.count,
        })
        .collect();
    serde_json::to_value(counted).unwrap_or_default()
}

/// `ms` as a timestamp column, refused when no timestamp holds it.
pub(super) fn timestamp(field: &'static str, ms: i64) -> Result<DateTime<Utc>, StorageError> {
    DateTime::from_timestamp_millis(ms).ok_or(StorageError::InvalidArgument {
        field,
        reason: "not a time a message can have been sent",
    })
}

impl NewRow {
    /// The row for `message`, refused when it does not fit the columns.
    pub(super) fn from_message(message: &ChatMessage) -> Result<Self, StorageError> {
        check_storable(message)?;
        let kind = match message.change {
            Change::Post => POST,
            Change::Edit { .. } => EDIT,
            Change::Delete { .. } => DELETE,
            Change::React { .. } => REACT,
            Change::Unreact { .. } => UNREACT,
        };
        Ok(Self {
            channel_id: message.channel.as_str().to_owned(),
            message_id: column("message_id", message.id.get())?,
            seq: column("seq", message.seq)?,
            sender_id: message.sender.as_str().to_owned(),
            body: message.body.clone(),
            attachments: message.attachments.clone(),
            created_at: timestamp("created_at_ms", message.created_at_ms)?,
            kind,
            target_seq: message
                .change
                .target()
                .map(|t| column("target_seq", t))
                .transpose()?,
            emoji: message.change.emoji().map(str::to_owned),
            reply_to: message
                .reply_to
                .map(|r| column("reply_to", r))
                .transpose()?,
            post_no: None,
        })
    }
}

impl Row {
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
        let target = || {
            self.target_seq
                .and_then(|t| u64::try_from(t).ok())
                .ok_or_else(|| corrupt("a change without a target".into()))
        };
        let emoji = || {
            self.emoji
                .clone()
                .ok_or_else(|| corrupt("a reaction without an emoji".into()))
        };
        let change = match self.kind {
            POST => Change::Post,
            EDIT => Change::Edit { target: target()? },
            DELETE => Change::Delete { target: target()? },
            REACT => Change::React {
                target: target()?,
                emoji: emoji()?,
            },
            UNREACT => Change::Unreact {
                target: target()?,
                emoji: emoji()?,
            },
            other => return Err(corrupt(format!("unknown kind {other}"))),
        };
        let counted: Vec<Counted> = serde_json::from_value(self.reactions.clone())
            .map_err(|e| corrupt(format!("reactions: {e}")))?;
        let state = MessageState {
            edit_count: u32::try_from(self.edit_count)
                .map_err(|_| corrupt("negative edit count".into()))?,
            edited_at_ms: self.edited_at.map_or(0, |t| t.timestamp_millis()),
            edited_seq: u64::try_from(self.edited_seq)
                .map_err(|_| corrupt("negative edited seq".into()))?,
            deleted: self.deleted,
            reactions: counted
                .into_iter()
                .map(|c| Reaction {
                    emoji: c.emoji,
                    count: c.count,
                    me: false,
                })
                .collect(),
            version: u64::try_from(self.version).map_err(|_| corrupt("negative version".into()))?,
            reply_count: u32::try_from(self.reply_count)
                .map_err(|_| corrupt("negative reply count".into()))?,
            last_reply_at_ms: self.last_reply_at.map_or(0, |t| t.timestamp_millis()),
        };
        let reply_to = self
            .reply_to
            .map(u64::try_from)
            .transpose()
            .map_err(|_| corrupt("negative reply_to".into()))?;
        Ok(ChatMessage {
            id: MessageId::from_raw(id),
            channel,
            sender,
            seq,
            body: self.body,
            attachments: self.attachments,
            created_at_ms: self.created_at.timestamp_millis(),
            idempotency_key: None,
            change,
            reply_to,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaction_counts_keep_their_order_through_the_column() {
        let reactions = vec![
            Reaction {
                emoji: "👍".into(),
                count: 2,
                me: true,
            },
            Reaction {
                emoji: "🎉".into(),
                count: 1,
                me: false,
            },
        ];
        let json = reactions_json(&reactions);
        assert_eq!(
            json,
            serde_json::json!([{"emoji": "👍", "count": 2}, {"emoji": "🎉", "count": 1}])
        );
        let back: Vec<Counted> = serde_json::from_value(json).unwrap();
        let emojis: Vec<_> = back.iter().map(|c| (c.emoji.as_str(), c.count)).collect();
        assert_eq!(emojis, vec![("👍", 2), ("🎉", 1)]);
    }
}
