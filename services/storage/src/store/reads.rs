//! Read state on the shard databases: post numbers, per-channel counters,
//! read positions and mentions, kept in the insert's transaction, and the
//! reads that answer unread counts from them.
//!
//! A channel's unread count for a member is
//! `posts − post_no(last post at or before the read position) − deleted
//! posts after it`: a counter, one probe of `messages_post_no` and a range
//! of `messages_deleted`, which holds deleted posts only. No query counts
//! a channel's messages.

use std::collections::{BTreeMap, HashMap, HashSet};

use chatmesh_ids::{Change, ChannelId, ChatMessage, MessageId, UserId};
use diesel::sql_types::{Array, BigInt, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};

use super::column;
use super::rows::{NewRow, POST, Row};
use super::{ReadPosition, Unread};
use crate::error::StorageError;

/// Creates the counters of the batch's channels where missing and locks
/// them until the transaction ends, in channel order; returns them.
const LOCK_COUNTS: &str = "\
    INSERT INTO channel_counts AS c (channel_id) \
    SELECT * FROM unnest($1::text[]) ORDER BY 1 \
    ON CONFLICT (channel_id) DO UPDATE SET posts = c.posts \
    RETURNING c.channel_id, c.posts, c.last_post_seq";

const WRITE_COUNTS: &str = "\
    UPDATE channel_counts c SET \
      posts = t.posts, last_post_seq = t.last_post_seq, \
      last_seq = GREATEST(c.last_seq, t.last_seq) \
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
      AS t (channel_id, posts, last_post_seq, last_seq) \
    WHERE c.channel_id = t.channel_id";

/// Numbers again a channel's posts from seq $2 on, after a post stored
/// late (below the channel's newest stored post) took its place among
/// them. Late posts are rare (two chat instances' sends to one channel
/// reaching the log out of order), and so are the rows this touches.
const RENUMBER_POSTS: &str = "\
    WITH base AS ( \
      SELECT coalesce((SELECT post_no FROM messages \
        WHERE channel_id = $1 AND kind = 0 AND seq < $2 \
        ORDER BY seq DESC LIMIT 1), 0) AS n), \
    ranked AS ( \
      SELECT message_id, row_number() OVER (ORDER BY seq, message_id) AS n \
      FROM messages WHERE channel_id = $1 AND kind = 0 AND seq >= $2) \
    UPDATE messages m SET post_no = base.n + ranked.n FROM base, ranked \
    WHERE m.channel_id = $1 AND m.message_id = ranked.message_id";

/// Posting moves the author's read position to the post.
const AUTHORS_READ: &str = "\
    INSERT INTO read_positions (channel_id, user_id, seq, updated_at) \
    SELECT t.channel_id, t.user_id, t.seq, now() \
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t (channel_id, user_id, seq) \
    ORDER BY 1, 2 \
    ON CONFLICT (channel_id, user_id) DO UPDATE \
      SET seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at \
      WHERE read_positions.seq < EXCLUDED.seq";

const WRITE_MENTIONS: &str = "\
    INSERT INTO mentions (channel_id, user_id, seq, message_id) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
    ON CONFLICT DO NOTHING";

const CLEAR_MENTIONS: &str = "\
    DELETE FROM mentions x USING unnest($1::text[], $2::bigint[]) AS t (channel_id, seq) \
    WHERE x.channel_id = t.channel_id AND x.seq = t.seq";

const READ_TARGETS: &str = "\
    SELECT m.* FROM messages m \
    JOIN unnest($1::text[], $2::bigint[]) AS t (channel_id, seq) \
      ON m.channel_id = t.channel_id AND m.seq = t.seq \
    WHERE m.kind = 0";

const MARK_READ: &str = "\
    INSERT INTO read_positions AS r (channel_id, user_id, seq, updated_at) \
    VALUES ($1, $2, $3, now()) \
    ON CONFLICT (channel_id, user_id) DO UPDATE \
      SET seq = GREATEST(r.seq, EXCLUDED.seq), \
          updated_at = CASE WHEN EXCLUDED.seq > r.seq THEN EXCLUDED.updated_at \
                            ELSE r.updated_at END \
    RETURNING r.seq";

const READ_POSITIONS: &str = "\
    SELECT user_id, seq, (extract(epoch FROM updated_at) * 1000)::bigint AS updated_at_ms \
    FROM read_positions WHERE channel_id = $1 ORDER BY user_id";

/// One member's read state in each of $1's channels. Each count is an
/// index probe or a range over deleted posts or mentions only; the plan
/// is in `docs/storage.md`.
const UNREAD: &str = "\
    SELECT t.channel_id, \
      coalesce(r.seq, 0) AS read_seq, \
      coalesce(c.last_seq, 0) AS last_seq, \
      coalesce(c.posts, 0) \
      - coalesce((SELECT p.post_no FROM messages p \
          WHERE p.channel_id = t.channel_id AND p.kind = 0 AND p.seq <= coalesce(r.seq, 0) \
          ORDER BY p.seq DESC LIMIT 1), 0) \
      - (SELECT count(*) FROM messages d \
          WHERE d.channel_id = t.channel_id AND d.kind = 0 AND d.deleted \
            AND d.seq > coalesce(r.seq, 0)) AS unread, \
      (SELECT count(*) FROM mentions x \
          WHERE x.channel_id = t.channel_id AND x.user_id = $2 \
            AND x.seq > coalesce(r.seq, 0)) AS mentions \
    FROM unnest($1::text[]) AS t (channel_id) \
    LEFT JOIN channel_counts c ON c.channel_id = t.channel_id \
    LEFT JOIN read_positions r ON r.channel_id = t.channel_id AND r.user_id = $2";

/// A user's mentions in $2's channels, newest first, older than $3.
const MENTIONS: &str = "\
    SELECT m.* FROM mentions x \
    JOIN messages m ON m.channel_id = x.channel_id AND m.message_id = x.message_id \
    WHERE x.user_id = $1 AND x.channel_id = ANY($2::text[]) AND x.message_id < $3 \
    ORDER BY x.message_id DESC LIMIT $4";

#[derive(Debug, QueryableByName)]
struct CountsRow {
    #[diesel(sql_type = Text)]
    channel_id: String,
    #[diesel(sql_type = BigInt)]
    posts: i64,
    #[diesel(sql_type = BigInt)]
    last_post_seq: i64,
}

#[derive(Debug, QueryableByName)]
struct SeqRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

#[derive(Debug, QueryableByName)]
struct PositionRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    updated_at_ms: i64,
}

#[derive(Debug, QueryableByName)]
struct UnreadRow {
    #[diesel(sql_type = Text)]
    channel_id: String,
    #[diesel(sql_type = BigInt)]
    read_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
    #[diesel(sql_type = BigInt)]
    unread: i64,
    #[diesel(sql_type = BigInt)]
    mentions: i64,
}

/// A channel's counters as the batch's transaction locked them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counted {
    posts: i64,
    last_post_seq: i64,
}

/// The locked counters of a batch's channels.
pub(super) type Counts = HashMap<String, Counted>;

/// Creates the counters of the channels `batch` names where missing and
/// locks them until the transaction ends (a second writer of a channel
/// waits here, then sees this batch's posts as stored).
pub(super) async fn lock_counts(
    conn: &mut AsyncPgConnection,
    batch: &[ChatMessage],
) -> Result<Counts, StorageError> {
    let mut channels: Vec<&str> = batch.iter().map(|m| m.channel.as_str()).collect();
    channels.sort_unstable();
    channels.dedup();
    if channels.is_empty() {
        return Ok(Counts::new());
    }
    let locked: Vec<CountsRow> = sql_query(LOCK_COUNTS)
        .bind::<Array<Text>, _>(channels)
        .load(conn)
        .await?;
    Ok(locked
        .into_iter()
        .map(|r| {
            let counted = Counted {
                posts: r.posts,
                last_post_seq: r.last_post_seq,
            };
            (r.channel_id, counted)
        })
        .collect())
}

/// Numbers the posts of `rows` above their channel's newest stored post:
/// no such post can be stored yet (the counters are locked and move in
/// the same transaction as the rows), so each is new, and its number is
/// written with it. A post at or below the newest stored one is a replay
/// or a late arrival; it is inserted unnumbered and, if new, numbered
/// after the insert.
pub(super) fn number_new_posts(rows: &mut [NewRow], counts: &Counts) {
    let mut fresh: BTreeMap<&str, Vec<(i64, i64, usize)>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let floor = counts.get(&row.channel_id).map_or(0, |c| c.last_post_seq);
        if row.kind == POST && row.seq > floor {
            fresh
                .entry(row.channel_id.as_str())
                .or_default()
                .push((row.seq, row.message_id, i));
        }
    }
    let mut numbers: Vec<(usize, i64)> = Vec::new();
    for (channel, mut posts) in fresh {
        posts.sort_unstable();
        let mut next = counts.get(channel).map_or(0, |c| c.posts);
        let mut previous = None;
        for (seq, id, i) in posts {
            // A post listed twice in one batch keeps one number.
            if previous != Some((seq, id)) {
                next += 1;
                previous = Some((seq, id));
            }
            numbers.push((i, next));
        }
    }
    for (i, n) in numbers {
        rows[i].post_no = Some(n);
    }
}

/// What a channel's new events of one batch add to its counters.
#[derive(Debug, Default)]
struct ChannelBatch {
    /// New posts' sequence numbers.
    posts: Vec<i64>,
    last_seq: i64,
}

/// Updates the counters of the channels of the batch's new events, numbers
/// the new posts stored late, moves each author's read position to their
/// newest new post and records the posts' mentions. `new` holds the
/// (channel, ID) keys this transaction stored, so a replayed batch changes
/// nothing. Returns the posts the new edits and deletes name, whose
/// mentions change with them.
pub(super) async fn record(
    conn: &mut AsyncPgConnection,
    batch: &[ChatMessage],
    new: &HashSet<(String, i64)>,
    counts: Counts,
) -> Result<Vec<(String, i64)>, StorageError> {
    let mut channels: BTreeMap<String, ChannelBatch> = BTreeMap::new();
    let mut authors: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut mentions: Vec<(String, String, i64, i64)> = Vec::new();
    let mut retargeted: Vec<(String, i64)> = Vec::new();
    let mut seen = HashSet::new();
    for m in batch {
        let key = (
            m.channel.as_str().to_owned(),
            column("message_id", m.id.get())?,
        );
        if !new.contains(&key) || !seen.insert(key.clone()) {
            continue;
        }
        let (channel, id) = key;
        let seq = column("seq", m.seq)?;
        let counted = channels.entry(channel.clone()).or_default();
        counted.last_seq = counted.last_seq.max(seq);
        match &m.change {
            Change::Post => {
                counted.posts.push(seq);
                let read = authors
                    .entry((channel.clone(), m.sender.as_str().to_owned()))
                    .or_default();
                *read = (*read).max(seq);
                for user in m.mentions() {
                    mentions.push((channel.clone(), user.into(), seq, id));
                }
            }
            Change::Edit { target } | Change::Delete { target } => {
                retargeted.push((channel, column("target_seq", *target)?));
            }
            Change::React { .. } | Change::Unreact { .. } => {}
        }
    }
    if channels.is_empty() {
        return Ok(retargeted);
    }
    write_counts(conn, channels, &counts).await?;
    let ((readers, users), seqs): ((Vec<String>, Vec<String>), Vec<i64>) =
        authors.into_iter().unzip();
    if !readers.is_empty() {
        sql_query(AUTHORS_READ)
            .bind::<Array<Text>, _>(readers)
            .bind::<Array<Text>, _>(users)
            .bind::<Array<BigInt>, _>(seqs)
            .execute(conn)
            .await?;
    }
    write_mentions(conn, mentions).await?;
    Ok(retargeted)
}

/// Numbers again the posts after any new post stored below its channel's
/// newest one, and writes the channels' counters: one statement for the
/// batch, plus one per channel that got such a late post.
async fn write_counts(
    conn: &mut AsyncPgConnection,
    channels: BTreeMap<String, ChannelBatch>,
    counts: &Counts,
) -> Result<(), StorageError> {
    let (mut counted, mut posts, mut last_posts, mut last_seqs) = (vec![], vec![], vec![], vec![]);
    for (channel, batch) in channels {
        let before = counts.get(&channel).copied().unwrap_or_default();
        if let Some(&late) = batch
            .posts
            .iter()
            .filter(|s| **s <= before.last_post_seq)
            .min()
        {
            sql_query(RENUMBER_POSTS)
                .bind::<Text, _>(&channel)
                .bind::<BigInt, _>(late)
                .execute(conn)
                .await?;
        }
        let newest = batch.posts.iter().copied().max().unwrap_or(0);
        counted.push(channel);
        posts.push(before.posts + batch.posts.len() as i64);
        last_posts.push(before.last_post_seq.max(newest));
        last_seqs.push(batch.last_seq);
    }
    sql_query(WRITE_COUNTS)
        .bind::<Array<Text>, _>(counted)
        .bind::<Array<BigInt>, _>(posts)
        .bind::<Array<BigInt>, _>(last_posts)
        .bind::<Array<BigInt>, _>(last_seqs)
        .execute(conn)
        .await?;
    Ok(())
}

async fn write_mentions(
    conn: &mut AsyncPgConnection,
    mentions: Vec<(String, String, i64, i64)>,
) -> Result<(), StorageError> {
    if mentions.is_empty() {
        return Ok(());
    }
    let (mut channels, mut users, mut seqs, mut ids) = (vec![], vec![], vec![], vec![]);
    for (channel, user, seq, id) in mentions {
        channels.push(channel);
        users.push(user);
        seqs.push(seq);
        ids.push(id);
    }
    sql_query(WRITE_MENTIONS)
        .bind::<Array<Text>, _>(channels)
        .bind::<Array<Text>, _>(users)
        .bind::<Array<BigInt>, _>(seqs)
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Rewrites the mentions of the posts edits and deletes changed, from
/// their text after the changes were applied: an edit's mentions replace
/// the old ones, a deleted post mentions nobody.
pub(super) async fn refresh_mentions(
    conn: &mut AsyncPgConnection,
    mut posts: Vec<(String, i64)>,
) -> Result<(), StorageError> {
    if posts.is_empty() {
        return Ok(());
    }
    posts.sort();
    posts.dedup();
    let (channels, seqs): (Vec<String>, Vec<i64>) = posts.into_iter().unzip();
    sql_query(CLEAR_MENTIONS)
        .bind::<Array<Text>, _>(channels.clone())
        .bind::<Array<BigInt>, _>(seqs.clone())
        .execute(conn)
        .await?;
    let rows: Vec<Row> = sql_query(READ_TARGETS)
        .bind::<Array<Text>, _>(channels)
        .bind::<Array<BigInt>, _>(seqs)
        .load(conn)
        .await?;
    let mut mentions = Vec::new();
    for row in rows {
        let post = row.into_message()?;
        let (seq, id) = (
            column("seq", post.seq)?,
            column("message_id", post.id.get())?,
        );
        for user in post.mentions() {
            mentions.push((post.channel.as_str().to_owned(), user.into(), seq, id));
        }
    }
    write_mentions(conn, mentions).await
}

pub(super) async fn mark_read(
    conn: &mut AsyncPgConnection,
    channel: &ChannelId,
    user: &UserId,
    seq: u64,
) -> Result<u64, StorageError> {
    let row: SeqRow = sql_query(MARK_READ)
        .bind::<Text, _>(channel.as_str())
        .bind::<Text, _>(user.as_str())
        .bind::<BigInt, _>(column("seq", seq)?)
        .get_result(conn)
        .await?;
    Ok(row.seq.max(0) as u64)
}

pub(super) async fn read_positions(
    conn: &mut AsyncPgConnection,
    channel: &ChannelId,
) -> Result<Vec<ReadPosition>, StorageError> {
    let rows: Vec<PositionRow> = sql_query(READ_POSITIONS)
        .bind::<Text, _>(channel.as_str())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(ReadPosition {
                user: UserId::new(r.user_id).ok()?,
                seq: u64::try_from(r.seq).ok()?,
                updated_at_ms: r.updated_at_ms,
            })
        })
        .collect())
}

/// `user`'s read state in `channels`, all on the shard `conn` is on.
pub(super) async fn unread(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    channels: &[ChannelId],
) -> Result<HashMap<ChannelId, Unread>, StorageError> {
    let rows: Vec<UnreadRow> = sql_query(UNREAD)
        .bind::<Array<Text>, _>(channels.iter().map(|c| c.as_str()).collect::<Vec<_>>())
        .bind::<Text, _>(user.as_str())
        .load(conn)
        .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let channel = ChannelId::new(r.channel_id).ok()?;
            Some((
                channel.clone(),
                Unread {
                    channel,
                    read_seq: count(r.read_seq),
                    last_seq: count(r.last_seq),
                    unread: count(r.unread),
                    mentions: count(r.mentions),
                },
            ))
        })
        .collect())
}

/// Up to `limit` rows of posts mentioning `user` in `channels` (all on
/// the shard `conn` is on), newest first, older than `before`.
pub(super) async fn mentions(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    channels: &[ChannelId],
    before: Option<MessageId>,
    limit: usize,
) -> Result<Vec<ChatMessage>, StorageError> {
    let before = match before {
        Some(id) => column("before", id.get())?,
        None => i64::MAX,
    };
    let rows: Vec<Row> = sql_query(MENTIONS)
        .bind::<Text, _>(user.as_str())
        .bind::<Array<Text>, _>(channels.iter().map(|c| c.as_str()).collect::<Vec<_>>())
        .bind::<BigInt, _>(before)
        .bind::<BigInt, _>(limit as i64)
        .load(conn)
        .await?;
    rows.into_iter().map(Row::into_message).collect()
}
