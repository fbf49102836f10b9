//! The catalog in the directory database.

use chatmesh_db::directory::media;
use chatmesh_db::{DbError, Pool};
use chatmesh_ids::{ChannelId, UserId};
use chrono::{DateTime, Utc};
use diesel::{
    ExpressionMethods as _, Insertable, OptionalExtension as _, QueryDsl as _, Queryable,
    Selectable, SelectableHelper as _,
};
use diesel_async::RunQueryDsl as _;

use super::{Catalog, Membership};
use crate::store::ObjectKey;
use crate::{Media, MediaError, MediaId, MediaState};

/// The `media`, `channels` and `memberships` tables.
#[derive(Debug, Clone)]
pub struct PostgresCatalog {
    pool: Pool,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = media)]
struct MediaRow {
    media_id: String,
    channel_id: String,
    uploader_id: String,
    filename: String,
    content_type: String,
    size: i64,
    object_key: String,
    state: i16,
    created_at: DateTime<Utc>,
}

impl MediaRow {
    fn from_media(m: &Media) -> Self {
        Self {
            media_id: m.id.to_string(),
            channel_id: m.channel.to_string(),
            uploader_id: m.uploader.to_string(),
            filename: m.filename.clone(),
            content_type: m.content_type.clone(),
            size: i64::try_from(m.size).unwrap_or(i64::MAX),
            object_key: m.key.to_string(),
            state: m.state.to_db(),
            created_at: m.created_at,
        }
    }

    fn into_media(self) -> Result<Media, MediaError> {
        // Rows were validated on the way in; a failure here means the table
        // was edited by hand.
        let corrupt = |what: &str| {
            MediaError::Database(DbError::Migration(format!(
                "stored media row {} has an invalid {what}",
                self.media_id
            )))
        };
        Ok(Media {
            id: MediaId::new(&self.media_id).map_err(|_| corrupt("media_id"))?,
            channel: ChannelId::new(self.channel_id.as_str()).map_err(|_| corrupt("channel_id"))?,
            uploader: UserId::new(self.uploader_id.as_str()).map_err(|_| corrupt("uploader_id"))?,
            key: ObjectKey::parse(&self.object_key).ok_or_else(|| corrupt("object_key"))?,
            size: u64::try_from(self.size).map_err(|_| corrupt("size"))?,
            state: MediaState::from_db(self.state),
            filename: self.filename,
            content_type: self.content_type,
            created_at: self.created_at,
        })
    }
}

impl PostgresCatalog {
    /// A catalog over the directory database.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl Catalog for PostgresCatalog {
    async fn membership(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Membership, MediaError> {
        let member =
            chatmesh_db::directory::membership(&self.pool, channel.as_str(), user.as_str()).await?;
        Ok(match member {
            None => Membership::NoChannel,
            Some(false) => Membership::Outsider,
            Some(true) => Membership::Member,
        })
    }

    async fn insert(&self, m: &Media) -> Result<(), MediaError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        diesel::insert_into(media::table)
            .values(MediaRow::from_media(m))
            .execute(&mut *conn)
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    async fn get(&self, id: &MediaId) -> Result<Option<Media>, MediaError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let row: Option<MediaRow> = media::table
            .find(id.as_str())
            .select(MediaRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(DbError::from)?;
        row.map(MediaRow::into_media).transpose()
    }

    async fn mark_ready(&self, id: &MediaId) -> Result<Option<Media>, MediaError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        diesel::update(media::table.find(id.as_str()))
            .filter(media::state.ne(MediaState::Ready.to_db()))
            .set((
                media::state.eq(MediaState::Ready.to_db()),
                media::completed_at.eq(Some(Utc::now())),
            ))
            .execute(&mut *conn)
            .await
            .map_err(DbError::from)?;
        drop(conn);
        self.get(id).await
    }
}
