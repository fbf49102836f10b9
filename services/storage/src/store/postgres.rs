//! The message store on the shard databases. The primary key
//! (channel_id, message_id) makes inserts idempotent and each history page
//! one index range scan on the channel's shard.

use async_trait::async_trait;
use chatmesh_db::{Shard, ShardMap};
use chatmesh_ids::{ChannelId, ChatMessage};
use diesel::{ExpressionMethods as _, QueryDsl as _, SelectableHelper as _};
use diesel_async::RunQueryDsl as _;

use super::rows::Row;
use super::schema::messages;
use super::{HistoryPage, MessageStore, Page, column};
use crate::error::StorageError;

/// Rows per INSERT: 7 columns each keeps a statement far below Postgres'
/// limit of 65,535 bind parameters.
pub(crate) const ROWS_PER_INSERT: usize = 2_000;

/// Messages in the Postgres shard databases of a [`ShardMap`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    shards: ShardMap,
}

impl PostgresStore {
    /// A store over the shards of `shards`, routed as `shards` routes them.
    /// The shards' schema must be migrated (`chatmesh_db::migrate`).
    pub fn new(shards: ShardMap) -> Self {
        Self { shards }
    }

    fn shard(&self, channel: &ChannelId) -> &Shard {
        self.shards.shard_for(channel)
    }
}

/// Rows as messages, in order; `more` when a row beyond `limit` was read.
fn into_page(
    mut rows: Vec<Row>,
    limit: usize,
    newest_first: bool,
) -> Result<HistoryPage, StorageError> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    if newest_first {
        rows.reverse();
    }
    Ok(HistoryPage {
        messages: rows
            .into_iter()
            .map(Row::into_message)
            .collect::<Result<_, _>>()?,
        more,
    })
}

#[async_trait]
impl MessageStore for PostgresStore {
    fn shard_count(&self) -> usize {
        self.shards.shards().len()
    }

    fn shard_name(&self, shard: usize) -> &str {
        &self.shards.shards()[shard].name
    }

    fn shard_of(&self, channel: &ChannelId) -> usize {
        self.shards.shard_index(channel)
    }

    async fn insert(&self, shard: usize, messages: &[ChatMessage]) -> Result<usize, StorageError> {
        let rows: Vec<Row> = messages
            .iter()
            .map(Row::from_message)
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let shard = &self.shards.shards()[shard];
        let mut conn = shard.pool.get().await.map_err(chatmesh_db::DbError::from)?;
        let inserted = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            let mut inserted = 0;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                inserted += diesel::insert_into(messages::table)
                    .values(chunk)
                    .on_conflict((messages::channel_id, messages::message_id))
                    .do_nothing()
                    .execute(conn)
                    .await?;
            }
            Ok::<_, diesel::result::Error>(inserted)
        })
        .await
        .map_err(chatmesh_db::DbError::from)?;
        Ok(inserted)
    }

    async fn page(
        &self,
        channel: &ChannelId,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        // Cursors are checked before a connection is taken.
        let cursor = match page {
            Page::Latest => 0,
            Page::Before(id) => column("before", id.get())?,
            Page::After(id) => column("after", id.get())?,
        };
        let mut conn = self
            .shard(channel)
            .pool
            .get()
            .await
            .map_err(chatmesh_db::DbError::from)?;
        let base = messages::table
            .filter(messages::channel_id.eq(channel.as_str()))
            .select(Row::as_select())
            .into_boxed();
        let fetch = limit as i64 + 1;
        let query = match page {
            Page::Latest => base.order(messages::message_id.desc()),
            Page::Before(_) => base
                .filter(messages::message_id.lt(cursor))
                .order(messages::message_id.desc()),
            Page::After(_) => base
                .filter(messages::message_id.gt(cursor))
                .order(messages::message_id.asc()),
        };
        let rows: Vec<Row> = query
            .limit(fetch)
            .load(&mut *conn)
            .await
            .map_err(chatmesh_db::DbError::from)?;
        // Descending scans return newest first; pages are oldest first.
        into_page(rows, limit, !matches!(page, Page::After(_)))
    }

    async fn since(
        &self,
        channel: &ChannelId,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        let after_seq = column("after_seq", after_seq)?;
        let mut conn = self
            .shard(channel)
            .pool
            .get()
            .await
            .map_err(chatmesh_db::DbError::from)?;
        let rows: Vec<Row> = messages::table
            .filter(messages::channel_id.eq(channel.as_str()))
            .filter(messages::seq.gt(after_seq))
            .order(messages::seq.asc())
            .limit(limit as i64 + 1)
            .select(Row::as_select())
            .load(&mut *conn)
            .await
            .map_err(chatmesh_db::DbError::from)?;
        into_page(rows, limit, false)
    }
}
