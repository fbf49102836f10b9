//! History pages. The primary key (channel_id, message_id) makes each page
//! one index range scan on the channel's shard.

use chatmesh_db::{DbError, ShardMap};
use chatmesh_ids::ChannelId;
use diesel::{ExpressionMethods as _, QueryDsl as _, SelectableHelper as _};
use diesel_async::RunQueryDsl as _;

use crate::rows::Row;
use crate::schema::messages;

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    /// The newest messages.
    Latest,
    /// Messages older than this ID.
    Before(i64),
    /// Messages newer than this ID.
    After(i64),
}

/// Up to `limit` messages of `channel`, oldest first, and whether more
/// exist beyond the page in its direction.
pub(crate) async fn page(
    shards: &ShardMap,
    channel: &ChannelId,
    page: Page,
    limit: usize,
) -> Result<(Vec<Row>, bool), DbError> {
    let shard = shards.shard_for(channel);
    let mut conn = shard.pool.get().await?;
    let base = messages::table
        .filter(messages::channel_id.eq(channel.as_str()))
        .select(Row::as_select())
        .into_boxed();
    let fetch = limit as i64 + 1;
    let mut rows: Vec<Row> = match page {
        Page::Latest => {
            base.order(messages::message_id.desc())
                .limit(fetch)
                .load(&mut *conn)
                .await?
        }
        Page::Before(id) => {
            base.filter(messages::message_id.lt(id))
                .order(messages::message_id.desc())
                .limit(fetch)
                .load(&mut *conn)
                .await?
        }
        Page::After(id) => {
            base.filter(messages::message_id.gt(id))
                .order(messages::message_id.asc())
                .limit(fetch)
                .load(&mut *conn)
                .await?
        }
    };
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    // Descending scans return newest first; pages are oldest first.
    if !matches!(page, Page::After(_)) {
        rows.reverse();
    }
    Ok((rows, has_more))
}

/// Messages of `channel` with a sequence number above `after_seq`, oldest
/// first, and whether more than `limit` exist.
pub(crate) async fn since(
    shards: &ShardMap,
    channel: &ChannelId,
    after_seq: i64,
    limit: usize,
) -> Result<(Vec<Row>, bool), DbError> {
    let shard = shards.shard_for(channel);
    let mut conn = shard.pool.get().await?;
    let mut rows: Vec<Row> = messages::table
        .filter(messages::channel_id.eq(channel.as_str()))
        .filter(messages::seq.gt(after_seq))
        .order(messages::seq.asc())
        .limit(limit as i64 + 1)
        .select(Row::as_select())
        .load(&mut *conn)
        .await?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, truncated))
}
