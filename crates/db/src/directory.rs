//! Schema of the directory database, shared by every service that checks
//! channel membership.

use diesel::{ExpressionMethods as _, OptionalExtension as _, QueryDsl as _};
use diesel_async::RunQueryDsl as _;

use crate::{DbError, Pool};

diesel::table! {
    /// Chat channels.
    channels (channel_id) {
        /// Channel ID.
        channel_id -> Text,
        /// Display name.
        name -> Text,
        /// Creator's user ID.
        created_by -> Text,
        /// Moderation policy: 1 reject, 2 mask, 3 flag.
        moderation -> SmallInt,
        /// Phrases the channel allows although they hold a blocked word.
        moderation_allow -> Array<Text>,
        /// Creation time.
        created_at -> Timestamptz,
        /// 1 private, 2 public.
        visibility -> SmallInt,
    }
}

diesel::table! {
    /// Which users belong to which channels.
    memberships (channel_id, user_id) {
        /// Channel ID.
        channel_id -> Text,
        /// Member's user ID.
        user_id -> Text,
        /// When the user joined.
        joined_at -> Timestamptz,
        /// 1 member, 2 owner.
        role -> SmallInt,
    }
}

diesel::table! {
    /// Uploaded media and its state.
    media (media_id) {
        /// Media ID.
        media_id -> Text,
        /// Channel the media was uploaded to.
        channel_id -> Text,
        /// Uploader's user ID.
        uploader_id -> Text,
        /// Client's file name, metadata only.
        filename -> Text,
        /// Declared content type.
        content_type -> Text,
        /// Declared size in bytes.
        size -> BigInt,
        /// Server-generated object key.
        object_key -> Text,
        /// 1 pending, 2 ready.
        state -> SmallInt,
        /// Creation time.
        created_at -> Timestamptz,
        /// When the upload was verified.
        completed_at -> Nullable<Timestamptz>,
    }
}

/// `media.state` of an upload that has been verified.
pub const MEDIA_READY: i16 = 2;

diesel::table! {
    /// Sequence epochs started per channel.
    channel_seq_epochs (channel_id) {
        /// Channel ID.
        channel_id -> Text,
        /// Epochs started so far; the newest is `started - 1`.
        started -> BigInt,
    }
}

diesel::joinable!(memberships -> channels (channel_id));
diesel::joinable!(media -> channels (channel_id));
diesel::allow_tables_to_appear_in_same_query!(channels, memberships, media);

/// Whether `user` belongs to `channel`, in one query: `None` if there is no
/// such channel.
pub async fn membership(pool: &Pool, channel: &str, user: &str) -> Result<Option<bool>, DbError> {
    let mut conn = pool.get().await?;
    let found = channels::table
        .find(channel)
        .select(diesel::dsl::exists(
            memberships::table
                .filter(memberships::channel_id.eq(channel))
                .filter(memberships::user_id.eq(user)),
        ))
        .first(&mut *conn)
        .await
        .optional()?;
    Ok(found)
}

/// True if `user` is a member of `channel`.
pub async fn is_member(pool: &Pool, channel: &str, user: &str) -> Result<bool, DbError> {
    let mut conn = pool.get().await?;
    let found = diesel::select(diesel::dsl::exists(
        memberships::table
            .filter(memberships::channel_id.eq(channel))
            .filter(memberships::user_id.eq(user)),
    ))
    .get_result(&mut *conn)
    .await?;
    Ok(found)
}

/// The channels `user` belongs to, by ID: one range of `memberships_by_user`.
pub async fn channels_of(pool: &Pool, user: &str) -> Result<Vec<String>, DbError> {
    let mut conn = pool.get().await?;
    let channels = memberships::table
        .filter(memberships::user_id.eq(user))
        .order(memberships::channel_id)
        .select(memberships::channel_id)
        .load(&mut *conn)
        .await?;
    Ok(channels)
}
