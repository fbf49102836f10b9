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

/// Who may find and join a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Only its members see it; owners add members.
    #[default]
    Private,
    /// Listed in the directory; anyone may join.
    Public,
}

impl Visibility {
    fn to_db(self) -> i16 {
        match self {
            Self::Private => 1,
            Self::Public => 2,
        }
    }

    fn from_db(raw: i16) -> Self {
        if raw == 2 {
            Self::Public
        } else {
            Self::Private
        }
    }
}

/// What a member may do in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads and writes.
    Member,
    /// Also adds and removes members.
    Owner,
}

impl Role {
    const MEMBER: i16 = 1;
    const OWNER: i16 = 2;

    fn from_db(raw: i16) -> Self {
        if raw == Self::OWNER {
            Self::Owner
        } else {
            Self::Member
        }
    }
}

/// A member of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
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
    /// Who may find and join it.
    pub visibility: Visibility,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = channels)]
struct ChannelRow {
    channel_id: String,
    name: String,
    created_by: String,
    moderation: i16,
    created_at: DateTime<Utc>,
    visibility: i16,
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
            visibility: Visibility::from_db(self.visibility),
        })
    }
}

/// Longest channel display name, in characters.
pub(crate) const MAX_CHANNEL_NAME: usize = 200;

/// Most public channels one listing returns.
pub(crate) const MAX_PUBLIC_PAGE: usize = 100;

/// Most members one listing returns, oldest first.
pub(crate) const MAX_MEMBERS_LISTED: usize = 1000;

/// Maps a failed statement, naming the channel as missing when a foreign
/// key says so.
fn store_error(e: DieselError) -> ChatError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            ChatError::ChannelNotFound
        }
        other => DbError::from(other).into(),
    }
}

/// A failure inside a transaction: a rule of the directory, or the store.
enum TxError {
    Rule(ChatError),
    Store(DieselError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Store(e)
    }
}

impl From<TxError> for ChatError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Rule(err) => err,
            TxError::Store(err) => store_error(err),
        }
    }
}

/// Locks `channel`'s row for the rest of the transaction, so membership
/// changes of one channel (the last owner leaving while another is
/// removed) happen one after another; its visibility.
async fn lock_channel(
    conn: &mut diesel_async::AsyncPgConnection,
    channel: &ChannelId,
) -> Result<Visibility, TxError> {
    let raw: Option<i16> = channels::table
        .find(channel.as_str())
        .select(channels::visibility)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    raw.map(Visibility::from_db)
        .ok_or(TxError::Rule(ChatError::ChannelNotFound))
}

/// `user`'s role in `channel`, if a member.
async fn role_of(
    conn: &mut diesel_async::AsyncPgConnection,
    channel: &ChannelId,
    user: &UserId,
) -> Result<Option<Role>, DieselError> {
    let raw: Option<i16> = memberships::table
        .find((channel.as_str(), user.as_str()))
        .select(memberships::role)
        .first(conn)
        .await
        .optional()?;
    Ok(raw.map(Role::from_db))
}

/// Fails unless `actor` owns `channel`: members and outsiders alike are
/// told only that they are not an owner.
async fn require_owner(
    conn: &mut diesel_async::AsyncPgConnection,
    channel: &ChannelId,
    actor: &UserId,
) -> Result<(), TxError> {
    match role_of(conn, channel, actor).await? {
        Some(Role::Owner) => Ok(()),
        Some(Role::Member) | None => Err(TxError::Rule(ChatError::NotOwner)),
    }
}

/// Adds `user` to `channel` (locked by the caller) as a member; false if
/// they were one already, whatever their role.
async fn insert_member(
    conn: &mut diesel_async::AsyncPgConnection,
    channel: &ChannelId,
    user: &UserId,
) -> Result<bool, DieselError> {
    let inserted = diesel::insert_into(memberships::table)
        .values((
            memberships::channel_id.eq(channel.as_str()),
            memberships::user_id.eq(user.as_str()),
            memberships::role.eq(Role::MEMBER),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Removes `user` from `channel` (locked by the caller); false if they
/// were not a member. When the last owner goes, the longest-standing
/// member left becomes the owner, so a channel with members always has one.
async fn remove(
    conn: &mut diesel_async::AsyncPgConnection,
    channel: &ChannelId,
    user: &UserId,
) -> Result<bool, DieselError> {
    let removed: Option<i16> =
        diesel::delete(memberships::table.find((channel.as_str(), user.as_str())))
            .returning(memberships::role)
            .get_result(conn)
            .await
            .optional()?;
    if removed != Some(Role::OWNER) {
        return Ok(removed.is_some());
    }
    let owners: i64 = memberships::table
        .filter(memberships::channel_id.eq(channel.as_str()))
        .filter(memberships::role.eq(Role::OWNER))
        .count()
        .get_result(conn)
        .await?;
    if owners == 0 {
        let heir: Option<String> = memberships::table
            .filter(memberships::channel_id.eq(channel.as_str()))
            .order((memberships::joined_at, memberships::user_id))
            .select(memberships::user_id)
            .first(conn)
            .await
            .optional()?;
        if let Some(heir) = heir {
            diesel::update(memberships::table.find((channel.as_str(), heir.as_str())))
                .set(memberships::role.eq(Role::OWNER))
                .execute(conn)
                .await?;
        }
    }
    Ok(true)
}

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

    /// Creates a channel; its creator becomes its first member and owner.
    pub async fn create_channel(
        &self,
        id: &ChannelId,
        name: &str,
        creator: &UserId,
        moderation: Moderation,
        visibility: Visibility,
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
                        channels::visibility.eq(visibility.to_db()),
                    ))
                    .returning(ChannelRow::as_returning())
                    .get_result(conn)
                    .await?;
                diesel::insert_into(memberships::table)
                    .values((
                        memberships::channel_id.eq(id.as_str()),
                        memberships::user_id.eq(creator.as_str()),
                        memberships::role.eq(Role::OWNER),
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

    /// `channel`, and `user`'s role in it if they are a member.
    pub async fn channel_for(
        &self,
        id: &ChannelId,
        user: &UserId,
    ) -> Result<(Channel, Option<Role>), ChatError> {
        let channel = self.channel(id).await?;
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let role = role_of(&mut conn, id, user).await.map_err(store_error)?;
        Ok((channel, role))
    }

    /// Adds `user` to `channel`; false if they were already a member. With
    /// `public_only` (the user asked to join on their own) a private
    /// channel refuses anyone not already in it.
    pub async fn join(
        &self,
        channel: &ChannelId,
        user: &UserId,
        public_only: bool,
    ) -> Result<bool, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let joined = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            let visibility = lock_channel(conn, channel).await?;
            if public_only && visibility == Visibility::Private {
                return match role_of(conn, channel, user).await? {
                    Some(_) => Ok(false),
                    None => Err(TxError::Rule(ChatError::PrivateChannel)),
                };
            }
            Ok::<_, TxError>(insert_member(conn, channel, user).await?)
        })
        .await?;
        Ok(joined)
    }

    /// Removes `user` from `channel`; false if they were not a member. The
    /// last owner to leave hands the channel to the longest-standing member.
    pub async fn leave(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let left = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            lock_channel(conn, channel).await?;
            Ok::<_, TxError>(remove(conn, channel, user).await?)
        })
        .await?;
        Ok(left)
    }

    /// `actor`, an owner, adds `user` to `channel` (any visibility); false
    /// if they were already a member.
    pub async fn add_member(
        &self,
        channel: &ChannelId,
        actor: &UserId,
        user: &UserId,
    ) -> Result<bool, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let added = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            lock_channel(conn, channel).await?;
            require_owner(conn, channel, actor).await?;
            Ok::<_, TxError>(insert_member(conn, channel, user).await?)
        })
        .await?;
        Ok(added)
    }

    /// `actor`, an owner, removes `user` from `channel`; false if they were
    /// not a member. An owner removing themselves leaves.
    pub async fn remove_member(
        &self,
        channel: &ChannelId,
        actor: &UserId,
        user: &UserId,
    ) -> Result<bool, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let removed = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            lock_channel(conn, channel).await?;
            require_owner(conn, channel, actor).await?;
            Ok::<_, TxError>(remove(conn, channel, user).await?)
        })
        .await?;
        Ok(removed)
    }

    /// The members of `channel`, longest-standing first (at most
    /// [`MAX_MEMBERS_LISTED`]), for `actor`, who must be one of them.
    pub async fn members(
        &self,
        channel: &ChannelId,
        actor: &UserId,
    ) -> Result<Vec<Member>, ChatError> {
        let (_, role) = self.channel_for(channel, actor).await?;
        if role.is_none() {
            return Err(ChatError::NotMember);
        }
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let rows: Vec<(String, i16, DateTime<Utc>)> = memberships::table
            .filter(memberships::channel_id.eq(channel.as_str()))
            .order((memberships::joined_at, memberships::user_id))
            .select((
                memberships::user_id,
                memberships::role,
                memberships::joined_at,
            ))
            .limit(MAX_MEMBERS_LISTED as i64)
            .load(&mut *conn)
            .await
            .map_err(DbError::from)?;
        rows.into_iter()
            .map(|(user, role, joined_at)| {
                Ok(Member {
                    user: UserId::new(user).map_err(|e| {
                        ChatError::Database(DbError::Migration(format!(
                            "stored membership row is invalid: {e}"
                        )))
                    })?,
                    role: Role::from_db(role),
                    joined_at,
                })
            })
            .collect()
    }

    /// The channels `user` belongs to, by channel ID, with their role.
    pub async fn channels_of(&self, user: &UserId) -> Result<Vec<(Channel, Role)>, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let rows: Vec<(ChannelRow, i16)> = memberships::table
            .inner_join(channels::table)
            .filter(memberships::user_id.eq(user.as_str()))
            .order(channels::channel_id)
            .select((ChannelRow::as_select(), memberships::role))
            .load(&mut *conn)
            .await
            .map_err(DbError::from)?;
        rows.into_iter()
            .map(|(row, role)| Ok((row.into_channel()?, Role::from_db(role))))
            .collect()
    }

    /// Public channels with IDs after `after`, in ID order, at most
    /// `limit` (1 to [`MAX_PUBLIC_PAGE`]), each with `user`'s role if they
    /// are a member; and whether more follow.
    pub async fn public_channels(
        &self,
        user: &UserId,
        after: Option<&ChannelId>,
        limit: usize,
    ) -> Result<(Vec<(Channel, Option<Role>)>, bool), ChatError> {
        use diesel::{BoolExpressionMethods as _, JoinOnDsl as _, NullableExpressionMethods as _};
        let limit = limit.clamp(1, MAX_PUBLIC_PAGE);
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let mut query = channels::table
            .left_join(
                memberships::table.on(memberships::channel_id
                    .eq(channels::channel_id)
                    .and(memberships::user_id.eq(user.as_str()))),
            )
            .filter(channels::visibility.eq(Visibility::Public.to_db()))
            .order(channels::channel_id)
            .select((ChannelRow::as_select(), memberships::role.nullable()))
            // One more than asked for says whether another page exists.
            .limit(limit as i64 + 1)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(channels::channel_id.gt(after.as_str().to_owned()));
        }
        let mut rows: Vec<(ChannelRow, Option<i16>)> =
            query.load(&mut *conn).await.map_err(DbError::from)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let page = rows
            .into_iter()
            .map(|(row, role)| Ok((row.into_channel()?, role.map(Role::from_db))))
            .collect::<Result<_, ChatError>>()?;
        Ok((page, more))
    }

    /// True if `user` is a member of `channel`.
    pub async fn is_member(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        Ok(chatmesh_db::directory::is_member(&self.pool, channel.as_str(), user.as_str()).await?)
    }
}
