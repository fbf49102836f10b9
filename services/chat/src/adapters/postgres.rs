//! Memberships and uploads from the directory database.

use async_trait::async_trait;
use chatmesh_db::DbError;
use chatmesh_db::directory::{MEDIA_READY, channels, media, memberships};
use chatmesh_ids::{ChannelId, UserId};
use diesel::{ExpressionMethods as _, OptionalExtension as _, QueryDsl as _};
use diesel_async::RunQueryDsl as _;

use crate::ports::MemberDirectory;
use crate::{ChatError, Directory, Moderation};

#[async_trait]
impl MemberDirectory for Directory {
    /// One query answers both whether the channel exists and whether `user`
    /// belongs to it.
    async fn policy_for_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Moderation, ChatError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let row: Option<(i16, bool)> = channels::table
            .find(channel.as_str())
            .select((
                channels::moderation,
                diesel::dsl::exists(
                    memberships::table
                        .filter(memberships::channel_id.eq(channel.as_str()))
                        .filter(memberships::user_id.eq(user.as_str())),
                ),
            ))
            .first(&mut *conn)
            .await
            .optional()
            .map_err(DbError::from)?;
        match row {
            None => Err(ChatError::ChannelNotFound),
            Some((_, false)) => Err(ChatError::NotMember),
            Some((policy, true)) => Ok(Moderation::from_db(policy)),
        }
    }

    async fn check_attachments(
        &self,
        channel: &ChannelId,
        ids: &[String],
    ) -> Result<(), ChatError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let ready: Vec<String> = media::table
            .filter(media::media_id.eq_any(ids))
            .filter(media::channel_id.eq(channel.as_str()))
            .filter(media::state.eq(MEDIA_READY))
            .select(media::media_id)
            .load(&mut *conn)
            .await
            .map_err(DbError::from)?;
        match ids.iter().find(|id| !ready.contains(id)) {
            Some(missing) => Err(ChatError::Attachment(missing.clone())),
            None => Ok(()),
        }
    }
}
