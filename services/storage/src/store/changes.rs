//! Applying a batch's new changes on a shard database, inside the insert's
//! transaction. The statements do not grow in number with the batch: the
//! targets, the reaction registers the changes name and those of the posts
//! they clear are read in one query each, the changes applied in memory
//! (`apply`), and the results written back in two array-bound statements.

use std::collections::{HashMap, HashSet};

use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};

use super::apply::{ReactionKey, ReactionSet, Register, apply, new_changes};
use super::column;
use super::rows::{Row, reactions_json, timestamp};
use crate::error::StorageError;

/// The target posts of a batch's changes, locked until the transaction
/// ends: a second writer of the same channel (a consumer fenced too late)
/// waits, then sees the changes as stored and applies none.
const LOCK_TARGETS: &str = "\
    SELECT m.* FROM messages m \
    JOIN unnest($1::text[], $2::bigint[]) AS t (channel_id, seq) \
      ON m.channel_id = t.channel_id AND m.seq = t.seq \
    WHERE m.kind = 0 \
    ORDER BY m.channel_id, m.message_id \
    FOR UPDATE OF m";

/// The registers of the reactions a batch's reaction changes name.
const READ_REACTIONS: &str = "\
    SELECT r.channel_id, r.target_seq, r.emoji, r.user_id, r.seq, r.present FROM reactions r \
    JOIN unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) \
      AS t (channel_id, target_seq, emoji, user_id) \
      USING (channel_id, target_seq, emoji, user_id)";

/// Every register of the posts a batch's edits and deletes name, which
/// they clear.
const READ_POST_REACTIONS: &str = "\
    SELECT r.channel_id, r.target_seq, r.emoji, r.user_id, r.seq, r.present FROM reactions r \
    JOIN unnest($1::text[], $2::bigint[]) AS t (channel_id, target_seq) \
      USING (channel_id, target_seq)";

const WRITE_REACTIONS: &str = "\
    INSERT INTO reactions (channel_id, target_seq, emoji, user_id, seq, present) \
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], \
                         $5::bigint[], $6::bool[]) \
    ON CONFLICT (channel_id, target_seq, emoji, user_id) \
    DO UPDATE SET seq = EXCLUDED.seq, present = EXCLUDED.present";

const UPDATE_TARGETS: &str = "\
    UPDATE messages m SET \
      body = t.body, \
      attachments = CASE WHEN t.deleted THEN '{}' ELSE m.attachments END, \
      edit_count = t.edit_count, \
      edited_at = t.edited_at, \
      edited_seq = t.edited_seq, \
      deleted = t.deleted, \
      reactions = t.reactions, \
      version = t.version \
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], \
                $5::timestamptz[], $6::bigint[], $7::bool[], $8::jsonb[], $9::bigint[]) \
      AS t (channel_id, message_id, body, edit_count, edited_at, edited_seq, deleted, \
            reactions, version) \
    WHERE m.channel_id = t.channel_id AND m.message_id = t.message_id";

/// A row of `reactions`.
#[derive(Debug, QueryableByName)]
struct ReactionRow {
    #[diesel(sql_type = Text)]
    channel_id: String,
    #[diesel(sql_type = BigInt)]
    target_seq: i64,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Bool)]
    present: bool,
}

impl ReactionRow {
    /// The register this row holds; `None` for a row no reaction change
    /// could have written (a bad ID or a negative number).
    fn into_register(self) -> Option<(ReactionKey, Register)> {
        let key = ReactionKey {
            channel: ChannelId::new(self.channel_id).ok()?,
            target: u64::try_from(self.target_seq).ok()?,
            emoji: self.emoji,
            user: UserId::new(self.user_id).ok()?,
        };
        let seq = u64::try_from(self.seq).ok()?;
        Some((
            key,
            Register {
                seq,
                present: self.present,
            },
        ))
    }
}

/// The registers a batch's changes read and write: those it names, and
/// every register of the posts its edits and deletes clear.
#[derive(Debug, Default)]
struct Overlay {
    registers: HashMap<ReactionKey, Register>,
    /// Set by this batch, to write back.
    changed: HashSet<ReactionKey>,
}

impl ReactionSet for Overlay {
    fn get(&self, key: &ReactionKey) -> Option<Register> {
        self.registers.get(key).copied()
    }

    fn set(&mut self, key: ReactionKey, register: Register) {
        self.registers.insert(key.clone(), register);
        self.changed.insert(key);
    }

    fn of_post(&self, channel: &ChannelId, target: u64) -> Vec<(ReactionKey, Register)> {
        self.registers
            .iter()
            .filter(|(k, _)| &k.channel == channel && k.target == target)
            .map(|(k, r)| (k.clone(), *r))
            .collect()
    }
}

impl Overlay {
    fn extend(&mut self, rows: Vec<ReactionRow>) {
        self.registers
            .extend(rows.into_iter().filter_map(ReactionRow::into_register));
    }

    /// Writes the registers this batch set, in one statement.
    async fn write(self, conn: &mut AsyncPgConnection) -> Result<(), StorageError> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let (mut channels, mut targets, mut emojis, mut users, mut seqs, mut present) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for key in &self.changed {
            let register = self.registers[key];
            channels.push(key.channel.as_str().to_owned());
            targets.push(column("target_seq", key.target)?);
            emojis.push(key.emoji.clone());
            users.push(key.user.as_str().to_owned());
            seqs.push(column("seq", register.seq)?);
            present.push(register.present);
        }
        sql_query(WRITE_REACTIONS)
            .bind::<Array<Text>, _>(channels)
            .bind::<Array<BigInt>, _>(targets)
            .bind::<Array<Text>, _>(emojis)
            .bind::<Array<Text>, _>(users)
            .bind::<Array<BigInt>, _>(seqs)
            .bind::<Array<Bool>, _>(present)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Applies the changes of `batch` whose (channel, ID) is in `new`, the
/// keys the insert just wrote, to their targets. Changes stored before
/// this transaction are not in `new`, so a replay applies nothing twice.
pub(super) async fn apply_changes(
    conn: &mut AsyncPgConnection,
    batch: &[ChatMessage],
    mut new: HashSet<(String, i64)>,
) -> Result<(), StorageError> {
    let changes = new_changes(batch, |channel, id: MessageId| {
        i64::try_from(id.get()).is_ok_and(|id| new.remove(&(channel.as_str().to_owned(), id)))
    });
    if changes.is_empty() {
        return Ok(());
    }

    let mut wanted: Vec<(String, i64)> = changes
        .iter()
        .filter_map(|c| c.change.target().map(|t| (c, t)))
        .map(|(c, t)| Ok((c.channel.as_str().to_owned(), column("target_seq", t)?)))
        .collect::<Result<_, StorageError>>()?;
    wanted.sort();
    wanted.dedup();
    let (channels, seqs): (Vec<String>, Vec<i64>) = wanted.into_iter().unzip();
    let rows: Vec<Row> = sql_query(LOCK_TARGETS)
        .bind::<Array<Text>, _>(channels)
        .bind::<Array<BigInt>, _>(seqs)
        .load(conn)
        .await?;
    // Two posts never share a seq; were they to, the first by ID counts.
    let mut targets: HashMap<(ChannelId, u64), ChatMessage> = HashMap::new();
    for row in rows {
        let post = row.into_message()?;
        targets
            .entry((post.channel.clone(), post.seq))
            .or_insert(post);
    }

    let mut overlay = Overlay::default();
    let mut named = (vec![], vec![], vec![], vec![]);
    let mut cleared = (vec![], vec![]);
    for change in &changes {
        let Some(target) = change.change.target() else {
            continue;
        };
        if !targets.contains_key(&(change.channel.clone(), target)) {
            continue;
        }
        let (channel, target) = (
            change.channel.as_str().to_owned(),
            column("target_seq", target)?,
        );
        match change.change.emoji() {
            Some(emoji) => {
                named.0.push(channel);
                named.1.push(target);
                named.2.push(emoji.to_owned());
                named.3.push(change.sender.as_str().to_owned());
            }
            None => {
                cleared.0.push(channel);
                cleared.1.push(target);
            }
        }
    }
    if !named.0.is_empty() {
        let rows = sql_query(READ_REACTIONS)
            .bind::<Array<Text>, _>(named.0)
            .bind::<Array<BigInt>, _>(named.1)
            .bind::<Array<Text>, _>(named.2)
            .bind::<Array<Text>, _>(named.3)
            .load::<ReactionRow>(conn)
            .await?;
        overlay.extend(rows);
    }
    if !cleared.0.is_empty() {
        let rows = sql_query(READ_POST_REACTIONS)
            .bind::<Array<Text>, _>(cleared.0)
            .bind::<Array<BigInt>, _>(cleared.1)
            .load::<ReactionRow>(conn)
            .await?;
        overlay.extend(rows);
    }

    for change in &changes {
        let Some(target) = change.change.target() else {
            continue;
        };
        if let Some(post) = targets.get_mut(&(change.channel.clone(), target)) {
            apply(change, post, &mut overlay);
        }
    }

    overlay.write(conn).await?;
    update_targets(conn, targets.into_values()).await
}

/// Writes the state of `posts` back to their rows.
async fn update_targets(
    conn: &mut AsyncPgConnection,
    posts: impl Iterator<Item = ChatMessage>,
) -> Result<(), StorageError> {
    let mut channels = Vec::new();
    let mut ids = Vec::new();
    let mut bodies = Vec::new();
    let mut edit_counts = Vec::new();
    let mut edited_at = Vec::new();
    let mut edited_seqs = Vec::new();
    let mut deleted = Vec::new();
    let mut reactions = Vec::new();
    let mut versions = Vec::new();
    for post in posts {
        let state = &post.state;
        channels.push(post.channel.as_str().to_owned());
        ids.push(column("message_id", post.id.get())?);
        bodies.push(post.body.clone());
        edit_counts.push(i32::try_from(state.edit_count).unwrap_or(i32::MAX));
        edited_at.push(match state.edited_at_ms {
            0 => None,
            ms => Some(timestamp("edited_at_ms", ms)?),
        });
        edited_seqs.push(column("edited_seq", state.edited_seq)?);
        deleted.push(state.deleted);
        reactions.push(reactions_json(&state.reactions));
        versions.push(column("version", state.version)?);
    }
    if channels.is_empty() {
        return Ok(());
    }
    sql_query(UPDATE_TARGETS)
        .bind::<Array<Text>, _>(channels)
        .bind::<Array<BigInt>, _>(ids)
        .bind::<Array<Text>, _>(bodies)
        .bind::<Array<Integer>, _>(edit_counts)
        .bind::<Array<Nullable<Timestamptz>>, _>(edited_at)
        .bind::<Array<BigInt>, _>(edited_seqs)
        .bind::<Array<Bool>, _>(deleted)
        .bind::<Array<Jsonb>, _>(reactions)
        .bind::<Array<BigInt>, _>(versions)
        .execute(conn)
        .await?;
    Ok(())
}
