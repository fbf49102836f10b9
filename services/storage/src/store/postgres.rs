//! The message store on the shard databases. The primary key
//! (channel_id, message_id) makes inserts idempotent; the partial index of
//! posts makes each history page one index range scan on the channel's
//! shard.

use std::collections::HashSet;

use async_trait::async_trait;
use chatmesh_db::{Shard, ShardMap};
use chatmesh_ids::{Change, ChannelId, ChatMessage, MessageId, UserId};
use diesel::dsl::sql;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Timestamptz};
use diesel::{
    BoolExpressionMethods as _, ExpressionMethods as _, OptionalExtension as _, QueryDsl as _,
    SelectableHelper as _,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};

use super::apply::mark_mine;
use super::changes::apply_changes;
use super::reads;
use super::rows::{NewRow, Row, timestamp};
use super::schema::{messages, reactions};
use super::{HistoryPage, MessageStore, Page, ReadPosition, Unread, column};
use crate::error::StorageError;

/// Rows per INSERT: 12 columns each keeps a statement far below Postgres'
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

    async fn connect(
        &self,
        channel: &ChannelId,
    ) -> Result<
        diesel_async::pooled_connection::bb8::PooledConnection<'_, AsyncPgConnection>,
        StorageError,
    > {
        Ok(self
            .shard(channel)
            .pool
            .get()
            .await
            .map_err(chatmesh_db::DbError::from)?)
    }

    /// `channels` by the shard holding them, in shard order.
    fn by_shard<'a>(&self, channels: &'a [ChannelId]) -> Vec<Vec<&'a ChannelId>> {
        let mut shards: Vec<Vec<&ChannelId>> = vec![Vec::new(); self.shards.shards().len()];
        for channel in channels {
            shards[self.shards.shard_index(channel)].push(channel);
        }
        shards.retain(|s| !s.is_empty());
        shards
    }

    /// A page of `channel`'s posts, or of the replies in the thread of
    /// post `root`, for `reader`.
    async fn read_page(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        root: Option<i64>,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        // Cursors are checked before a connection is taken.
        let cursor = match page {
            Page::Latest => 0,
            Page::Before(id) => column("before", id.get())?,
            Page::After(id) => column("after", id.get())?,
        };
        let query = page_query(channel, root, page, cursor, limit);
        // Descending scans return newest first; pages are oldest first.
        let newest_first = !matches!(page, Page::After(_));
        self.read_rows(channel, reader, query, limit, newest_first)
            .await
    }

    /// The rows `query` reads (one more than `limit`, to tell whether there
    /// are more) as a page for `reader`, with their reactions marked.
    async fn read_rows(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        query: RowQuery<'_>,
        limit: usize,
        newest_first: bool,
    ) -> Result<HistoryPage, StorageError> {
        let mut conn = self
            .shard(channel)
            .pool
            .get()
            .await
            .map_err(chatmesh_db::DbError::from)?;
        let read = async |conn: &mut AsyncPgConnection| {
            let rows: Vec<Row> = query.load(conn).await?;
            let mut page = into_page(rows, limit, newest_first)?;
            if let Some(reader) = reader {
                mark_reader(conn, channel, reader, &mut page).await?;
            }
            Ok::<_, StorageError>(page)
        };
        match reader {
            // Counts and `me` from one snapshot, or a reaction landing
            // between the two reads would show in one and not the other.
            Some(_) => {
                conn.build_transaction()
                    .read_only()
                    .repeatable_read()
                    .run(read)
                    .await
            }
            None => read(&mut conn).await,
        }
    }
}

/// A boxed query of whole rows.
type RowQuery<'a> = messages::BoxedQuery<
    'a,
    diesel::pg::Pg,
    diesel::dsl::SqlTypeOf<diesel::dsl::AsSelect<Row, diesel::pg::Pg>>,
>;

/// Posts only. Spelled as a literal, not a bound parameter, so that the
/// planner matches it to the partial index `messages_posts` in generic
/// plans of prepared statements too.
fn is_post() -> diesel::expression::SqlLiteral<Bool> {
    sql::<Bool>("messages.kind = 0")
}

/// The posts of `channel` around `page` (whose cursor is `cursor`), or the
/// replies in the thread of post `root`, one more than `limit` to tell
/// whether there are more: one range scan of `messages_posts` (or of
/// `messages_threads`).
fn page_query(
    channel: &ChannelId,
    root: Option<i64>,
    page: Page,
    cursor: i64,
    limit: usize,
) -> RowQuery<'_> {
    let mut base = messages::table
        .filter(messages::channel_id.eq(channel.as_str()).and(is_post()))
        .select(Row::as_select())
        .into_boxed();
    // A thread's page is one range scan of `messages_threads`.
    if let Some(root) = root {
        base = base.filter(messages::reply_to.eq(root));
    }
    match page {
        Page::Latest => base.order(messages::message_id.desc()),
        Page::Before(_) => base
            .filter(messages::message_id.lt(cursor))
            .order(messages::message_id.desc()),
        Page::After(_) => base
            .filter(messages::message_id.gt(cursor))
            .order(messages::message_id.asc()),
    }
    .limit(limit as i64 + 1)
}

/// Adds the replies among `batch` that this insert stored (`new`) to their
/// threads' first posts: the count, and the time of the last. Only new
/// rows count, so a replayed batch counts nothing twice; a sum and a
/// maximum come out the same in any order.
async fn count_replies(
    conn: &mut AsyncPgConnection,
    batch: &[ChatMessage],
    new: &HashSet<(String, i64)>,
) -> Result<(), StorageError> {
    let mut threads: std::collections::BTreeMap<(String, i64), (i32, i64)> = Default::default();
    let mut seen = HashSet::new();
    for m in batch {
        let (Some(root), Change::Post) = (m.reply_to, &m.change) else {
            continue;
        };
        let key = (
            m.channel.as_str().to_owned(),
            column("message_id", m.id.get())?,
        );
        if !new.contains(&key) || !seen.insert(key) {
            continue;
        }
        let thread = threads
            .entry((m.channel.as_str().to_owned(), column("reply_to", root)?))
            .or_insert((0, 0));
        thread.0 += 1;
        thread.1 = thread.1.max(m.created_at_ms);
    }
    if threads.is_empty() {
        return Ok(());
    }
    let (mut channels, mut roots, mut counts, mut last) = (vec![], vec![], vec![], vec![]);
    for ((channel, root), (count, at)) in threads {
        channels.push(channel);
        roots.push(root);
        counts.push(count);
        last.push(timestamp("created_at_ms", at)?);
    }
    diesel::sql_query(COUNT_REPLIES)
        .bind::<Array<Text>, _>(channels)
        .bind::<Array<BigInt>, _>(roots)
        .bind::<Array<Integer>, _>(counts)
        .bind::<Array<Timestamptz>, _>(last)
        .execute(conn)
        .await?;
    Ok(())
}

const COUNT_REPLIES: &str = "\
    UPDATE messages m SET \
      reply_count = m.reply_count + t.n, \
      last_reply_at = GREATEST(m.last_reply_at, t.at) \
    FROM unnest($1::text[], $2::bigint[], $3::int[], $4::timestamptz[]) \
      AS t (channel_id, seq, n, at) \
    WHERE m.channel_id = t.channel_id AND m.seq = t.seq AND m.kind = 0";

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

/// Marks `reader`'s reactions on the posts of `page`: one range scan of
/// `reactions_reader` over the seq span of the posts that have any.
pub(super) async fn mark_reader(
    conn: &mut AsyncPgConnection,
    channel: &ChannelId,
    reader: &UserId,
    page: &mut HistoryPage,
) -> Result<(), StorageError> {
    let reacted = page
        .messages
        .iter()
        .filter(|m| !m.state.reactions.is_empty())
        .map(|m| m.seq);
    let (Some(low), Some(high)) = (reacted.clone().min(), reacted.max()) else {
        return Ok(());
    };
    let mine: HashSet<(i64, String)> = reactions::table
        .filter(reactions::channel_id.eq(channel.as_str()))
        .filter(reactions::user_id.eq(reader.as_str()))
        .filter(reactions::target_seq.between(column("seq", low)?, column("seq", high)?))
        .filter(reactions::present)
        .select((reactions::target_seq, reactions::emoji))
        .load::<(i64, String)>(conn)
        .await?
        .into_iter()
        .collect();
    for post in &mut page.messages {
        let seq = column("seq", post.seq)?;
        mark_mine(post, |emoji| mine.contains(&(seq, emoji.to_owned())));
    }
    Ok(())
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
        let mut rows: Vec<NewRow> = messages
            .iter()
            .map(NewRow::from_message)
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let shard = &self.shards.shards()[shard];
        let mut conn = shard.pool.get().await.map_err(chatmesh_db::DbError::from)?;
        diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            // The counters are locked first: posts above a channel's newest
            // stored one are new, and are inserted with their numbers.
            let counts = reads::lock_counts(conn, messages).await?;
            reads::number_new_posts(&mut rows, &counts);
            let mut new = HashSet::new();
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let keys: Vec<(String, i64)> = diesel::insert_into(messages::table)
                    .values(chunk)
                    .on_conflict((messages::channel_id, messages::message_id))
                    .do_nothing()
                    .returning((messages::channel_id, messages::message_id))
                    .get_results(conn)
                    .await?;
                new.extend(keys);
            }
            let inserted = new.len();
            count_replies(conn, messages, &new).await?;
            let retargeted = reads::record(conn, messages, &new, counts).await?;
            apply_changes(conn, messages, new).await?;
            reads::refresh_mentions(conn, retargeted).await?;
            Ok::<_, StorageError>(inserted)
        })
        .await
    }

    async fn page(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        self.read_page(channel, reader, None, page, limit).await
    }

    async fn thread(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        root: u64,
        page: Page,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        let root = column("root_seq", root)?;
        self.read_page(channel, reader, Some(root), page, limit)
            .await
    }

    async fn since(
        &self,
        channel: &ChannelId,
        reader: Option<&UserId>,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        let after_seq = column("after_seq", after_seq)?;
        let query = messages::table
            .filter(messages::channel_id.eq(channel.as_str()))
            .filter(messages::seq.gt(after_seq))
            .order(messages::seq.asc())
            .limit(limit as i64 + 1)
            .select(Row::as_select())
            .into_boxed();
        self.read_rows(channel, reader, query, limit, false).await
    }

    async fn get(
        &self,
        channel: &ChannelId,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StorageError> {
        let seq = column("seq", seq)?;
        let mut conn = self
            .shard(channel)
            .pool
            .get()
            .await
            .map_err(chatmesh_db::DbError::from)?;
        let row: Option<Row> = messages::table
            .filter(messages::channel_id.eq(channel.as_str()))
            .filter(messages::seq.eq(seq))
            .filter(is_post())
            .order(messages::message_id.asc())
            .select(Row::as_select())
            .first(&mut *conn)
            .await
            .optional()?;
        row.map(Row::into_message).transpose()
    }

    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, StorageError> {
        let mut conn = self.connect(channel).await?;
        reads::mark_read(&mut conn, channel, user, seq).await
    }

    async fn read_positions(&self, channel: &ChannelId) -> Result<Vec<ReadPosition>, StorageError> {
        let mut conn = self.connect(channel).await?;
        reads::read_positions(&mut conn, channel).await
    }

    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<Unread>, StorageError> {
        let reads = self.by_shard(channels).into_iter().map(|shard| async move {
            let owned: Vec<ChannelId> = shard.into_iter().cloned().collect();
            let mut conn = self.connect(&owned[0]).await?;
            reads::unread(&mut conn, user, &owned).await
        });
        let mut found = std::collections::HashMap::new();
        for shard in futures::future::try_join_all(reads).await? {
            found.extend(shard);
        }
        Ok(channels
            .iter()
            .map(|c| found.remove(c).unwrap_or_else(|| Unread::empty(c.clone())))
            .collect())
    }

    async fn mentions(
        &self,
        user: &UserId,
        channels: &[ChannelId],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, StorageError> {
        let reads = self.by_shard(channels).into_iter().map(|shard| async move {
            let owned: Vec<ChannelId> = shard.into_iter().cloned().collect();
            let mut conn = self.connect(&owned[0]).await?;
            let posts = reads::mentions(&mut conn, user, &owned, before, limit + 1).await?;
            // `me` per channel, as history marks it.
            let mut marked = Vec::with_capacity(posts.len());
            let mut by_channel: std::collections::BTreeMap<ChannelId, Vec<ChatMessage>> =
                Default::default();
            for post in posts {
                by_channel
                    .entry(post.channel.clone())
                    .or_default()
                    .push(post);
            }
            for (channel, messages) in by_channel {
                let mut page = HistoryPage {
                    messages,
                    more: false,
                };
                mark_reader(&mut conn, &channel, user, &mut page).await?;
                marked.extend(page.messages);
            }
            Ok::<_, StorageError>(marked)
        });
        let mut posts: Vec<ChatMessage> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        posts.sort_by_key(|m| std::cmp::Reverse(m.id));
        let more = posts.len() > limit;
        posts.truncate(limit);
        Ok(HistoryPage {
            messages: posts,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_query_names_the_partial_index_predicate_literally() {
        let channel = ChannelId::new("c").unwrap();
        for root in [None, Some(3)] {
            let query = page_query(
                &channel,
                root,
                Page::Before(chatmesh_ids::MessageId::from_raw(9)),
                9,
                50,
            );
            let sql = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
            assert!(sql.contains("messages.kind = 0"), "{sql}");
            assert!(!sql.contains("\"kind\" ="), "{sql}");
            assert_eq!(sql.contains("\"reply_to\" ="), root.is_some(), "{sql}");
        }
    }
}
