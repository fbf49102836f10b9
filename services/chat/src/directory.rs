//! Channels and memberships, stored in the directory database.

use chatmesh_db::directory::{channels, memberships};
use chatmesh_db::{DbError, Pool};
use chatmesh_ids::{ChannelId, UserId};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{
    ExpressionMethods as _, OptionalExtension as _, QueryDsl as _, Queryable, Selectable,
    SelectableHelper as _,
};
use diesel_async::RunQueryDsl as _;

use crate::ChatError;

/// What the moderation filter does with a blocked word in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Moderation {
    /// Refuse the message.
    #[default]
    Reject,
    /// Mask the word and deliver the rest.
    Mask,
    /// Deliver the message unchanged and record the hit for review.
    Flag,
}

impl Moderation {
    fn to_db(self) -> i16 {
        match self {
            Self::Reject => 1,
            Self::Mask => 2,
            Self::Flag => 3,
        }
    }

    pub(crate) fn from_db(raw: i16) -> Self {
        match raw {
            2 => Self::Mask,
            3 => Self::Flag,
            _ => Self::Reject,
        }
    }
}

/// A channel as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel ID.
    pub id: ChannelId,
    /// Display name.
    pub name: String,
    /// Who created it.
    pub created_by: UserId,
    /// Moderation policy.
    pub moderation: Moderation,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = channels)]
struct ChannelRow {
    channel_id: String,
    name: String,
    created_by: String,
    moderation: i16,
    created_at: DateTime<Utc>,
}

impl ChannelRow {
    fn into_channel(self) -> Result<Channel, ChatError> {
        // Rows were validated on the way in; a failure here means the table
        // was edited by hand.
        let corrupt = |e: chatmesh_ids::IdError| {
            ChatError::Database(DbError::Migration(format!(
                "stored channel row is invalid: {e}"
            )))
        };
        Ok(Channel {
            id: ChannelId::new(self.channel_id).map_err(corrupt)?,
            name: self.name,
            created_by: UserId::new(self.created_by).map_err(corrupt)?,
            moderation: Moderation::from_db(self.moderation),
            created_at: self.created_at,
        })
    }
}

/// Longest channel display name, in characters.
pub(crate) const MAX_CHANNEL_NAME: usize = 200;

/// Channel and membership operations.
#[derive(Debug, Clone)]
pub struct Directory {
    pub(crate) pool: Pool,
}

impl Directory {
    /// A directory over the given pool.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Creates a channel; its creator becomes its first member.
    pub async fn create_channel(
        &self,
        id: &ChannelId,
        name: &str,
        creator: &UserId,
        moderation: Moderation,
    ) -> Result<Channel, ChatError> {
        let name = if name.is_empty() { id.as_str() } else { name };
        if name.chars().count() > MAX_CHANNEL_NAME || name.chars().any(char::is_control) {
            return Err(ChatError::InvalidArgument {
                field: "name",
                reason: format!("must be at most {MAX_CHANNEL_NAME} printable characters"),
            });
        }
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let row: ChannelRow =
            diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
                let row = diesel::insert_into(channels::table)
                    .values((
                        channels::channel_id.eq(id.as_str()),
                        channels::name.eq(name),
                        channels::created_by.eq(creator.as_str()),
                        channels::moderation.eq(moderation.to_db()),
                    ))
                    .returning(ChannelRow::as_returning())
                    .get_result(conn)
                    .await?;
                diesel::insert_into(memberships::table)
                    .values((
                        memberships::channel_id.eq(id.as_str()),
                        memberships::user_id.eq(creator.as_str()),
                    ))
                    .execute(conn)
                    .await?;
                Ok::<_, DieselError>(row)
            })
            .await
            .map_err(|e| match e {
                DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    ChatError::ChannelExists
                }
                other => DbError::from(other).into(),
            })?;
        row.into_channel()
    }

    /// Looks a channel up.
    pub async fn channel(&self, id: &ChannelId) -> Result<Channel, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let row: Option<ChannelRow> = channels::table
            .find(id.as_str())
            .select(ChannelRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(DbError::from)?;
        row.ok_or(ChatError::ChannelNotFound)?.into_channel()
    }

    /// Adds `user` to `channel`; false if they were already a member.
    pub async fn join(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let inserted = diesel::insert_into(memberships::table)
            .values((
                memberships::channel_id.eq(channel.as_str()),
                memberships::user_id.eq(user.as_str()),
            ))
            .on_conflict_do_nothing()
            .execute(&mut *conn)
            .await
            .map_err(|e| match e {
                DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                    ChatError::ChannelNotFound
                }
                other => DbError::from(other).into(),
            })?;
        Ok(inserted == 1)
    }

    /// Removes `user` from `channel`; false if they were not a member.
    pub async fn leave(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let deleted = diesel::delete(
            memberships::table
                .filter(memberships::channel_id.eq(channel.as_str()))
                .filter(memberships::user_id.eq(user.as_str())),
        )
        .execute(&mut *conn)
        .await
        .map_err(DbError::from)?;
        Ok(deleted == 1)
    }

    /// The channels `user` belongs to, by channel ID.
    pub async fn channels_of(&self, user: &UserId) -> Result<Vec<Channel>, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let rows: Vec<ChannelRow> = memberships::table
            .inner_join(channels::table)
            .filter(memberships::user_id.eq(user.as_str()))
            .order(channels::channel_id)
            .select(ChannelRow::as_select())
            .load(&mut *conn)
            .await
            .map_err(DbError::from)?;
        rows.into_iter().map(ChannelRow::into_channel).collect()
    }

    /// True if `user` is a member of `channel`.
    pub async fn is_member(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        Ok(chatmesh_db::directory::is_member(&self.pool, channel.as_str(), user.as_str()).await?)
    }
}
