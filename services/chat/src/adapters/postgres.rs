//! Memberships and uploads from the directory database.

use async_trait::async_trait;
use chatmesh_db::DbError;
use chatmesh_db::directory::{MEDIA_READY, channel_seq_epochs, channels, media, memberships};
use chatmesh_ids::{ChannelId, UserId};
use diesel::{ExpressionMethods as _, OptionalExtension as _, QueryDsl as _};
use diesel_async::RunQueryDsl as _;

use crate::ports::{EpochSource, MemberDirectory};
use crate::{ChatError, Directory, Moderation};

/// Counts a directory query made for a send, so the cost of the send path
/// in database round trips can be read off the metrics.
fn queried(query: &'static str) {
    metrics::counter!("chatmesh_chat_directory_queries_total", "query" => query).increment(1);
}

#[async_trait]
impl MemberDirectory for Directory {
    /// One query answers both whether the channel exists and whether `user`
    /// belongs to it.
    async fn policy_for_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Moderation, ChatError> {
        queried("policy_for_member");
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
        queried("check_attachments");
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

    async fn is_owner(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        queried("is_owner");
        let (_, role) = self.channel_for(channel, user).await?;
        Ok(role == Some(crate::Role::Owner))
    }

    async fn moderation_allow(&self, channel: &ChannelId) -> Result<Vec<String>, ChatError> {
        queried("moderation_allow");
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let phrases: Option<Vec<String>> = channels::table
            .find(channel.as_str())
            .select(channels::moderation_allow)
            .first(&mut *conn)
            .await
            .optional()
            .map_err(DbError::from)?;
        Ok(phrases.unwrap_or_default())
    }
}

#[async_trait]
impl EpochSource for Directory {
    /// One upsert: the count of epochs started goes up by one, and the new
    /// epoch is the count before.
    async fn next_epoch(&self, channel: &ChannelId) -> Result<u64, ChatError> {
        use diesel::upsert::excluded;
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let started: i64 = diesel::insert_into(channel_seq_epochs::table)
            .values((
                channel_seq_epochs::channel_id.eq(channel.as_str()),
                channel_seq_epochs::started.eq(1_i64),
            ))
            .on_conflict(channel_seq_epochs::channel_id)
            .do_update()
            .set(
                channel_seq_epochs::started
                    .eq(channel_seq_epochs::started + excluded(channel_seq_epochs::started)),
            )
            .returning(channel_seq_epochs::started)
            .get_result(&mut *conn)
            .await
            .map_err(DbError::from)?;
        Ok(u64::try_from(started - 1).unwrap_or(0))
    }
}
