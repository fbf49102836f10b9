//! The audit: acknowledged messages against stored rows and what each
//! watcher received.

use std::collections::{HashMap, HashSet};

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl as _;

use crate::messages::Shards;

use super::{Acked, Seen, SeenLog};

/// One stored row.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Row {
    /// Channel ID.
    #[diesel(sql_type = Text)]
    pub channel_id: String,
    /// Message ID.
    #[diesel(sql_type = BigInt)]
    pub message_id: i64,
    /// Sequence number.
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    /// Body.
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// Every stored row of `channels`, from every shard.
pub async fn stored(shards: &Shards, channels: &[String]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for shard in shards.map().shards() {
        let mut conn = shard.pool.get().await?;
        let found: Vec<Row> = diesel::sql_query(
            "SELECT channel_id, message_id, seq, body FROM messages WHERE channel_id = ANY($1)",
        )
        .bind::<Array<Text>, _>(channels)
        .load(&mut *conn)
        .await?;
        rows.extend(found);
    }
    Ok(rows)
}

/// What the audit found. Every list is empty when nothing was lost,
/// duplicated or silently skipped.
#[derive(Debug, Default)]
pub struct Report {
    /// Acknowledged messages.
    pub acked: usize,
    /// Stored rows.
    pub stored: usize,
    /// Messages delivered, summed over watchers.
    pub delivered: usize,
    /// `reload_required` frames, summed over watchers.
    pub reloads: usize,
    /// Acknowledged messages with no stored row.
    pub not_stored: Vec<Acked>,
    /// Message IDs stored more than once.
    pub stored_twice: Vec<i64>,
    /// Bodies (logical messages) stored under more than one ID.
    pub body_stored_twice: Vec<String>,
    /// (channel, seq) carried by more than one stored message.
    pub seq_reused: Vec<(String, i64)>,
    /// Stored rows no ack accounts for, among sends that were acked or
    /// given up on (a given-up send may be stored at most once).
    pub stored_unacked: usize,
    /// (watcher, message) an acknowledged message the watcher should have
    /// received and neither received nor was told to reload.
    pub missed: Vec<(usize, Acked)>,
    /// (watcher, message ID) received more than once.
    pub delivered_twice: Vec<(usize, u64)>,
    /// (watcher, seq) received after a higher number.
    pub out_of_order: Vec<(usize, u64)>,
}

impl Report {
    /// True when nothing was lost, duplicated, reordered or skipped.
    pub fn is_clean(&self) -> bool {
        self.not_stored.is_empty()
            && self.stored_twice.is_empty()
            && self.body_stored_twice.is_empty()
            && self.seq_reused.is_empty()
            && self.missed.is_empty()
            && self.delivered_twice.is_empty()
            && self.out_of_order.is_empty()
    }

    /// One line of figures.
    pub fn summary(&self) -> String {
        format!(
            "acked {}, stored {}, delivered {}, reloads {}, missing {}, not stored {}, stored twice {}, logical duplicates {}, seq reused {}, delivered twice {}, out of order {}",
            self.acked,
            self.stored,
            self.delivered,
            self.reloads,
            self.missed.len(),
            self.not_stored.len(),
            self.stored_twice.len(),
            self.body_stored_twice.len(),
            self.seq_reused.len(),
            self.delivered_twice.len(),
            self.out_of_order.len()
        )
    }
}

/// The IDs of the messages in `seen`.
fn received(seen: &[Seen]) -> HashSet<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// Which acknowledged messages of `channel` the watcher `seen` should have
/// and has not: neither received nor inside a range it was told to reload.
fn missing<'a>(seen: &[Seen], acked: impl Iterator<Item = &'a Acked>) -> Vec<&'a Acked> {
    let start = seen.iter().find_map(|s| match s {
        Seen::Start(start) => Some(*start),
        _ => None,
    });
    let Some(start) = start else {
        return Vec::new();
    };
    let received = received(seen);
    let reloads: Vec<(u64, u64)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Reload { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    acked
        .filter(|a| a.seq > start)
        .filter(|a| !received.contains(&a.id))
        .filter(|a| !reloads.iter().any(|&(f, t)| (f..=t).contains(&a.seq)))
        .collect()
}

/// (watcher, message) for each of `acked` that the watcher of its channel
/// did not receive as a message, reload ranges notwithstanding.
pub fn not_received(acked: &[Acked], watchers: &[(String, SeenLog)]) -> Vec<(usize, Acked)> {
    let mut out = Vec::new();
    for (w, (channel, seen)) in watchers.iter().enumerate() {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let received = received(&seen);
        out.extend(
            acked
                .iter()
                .filter(|a| &a.channel == channel && !received.contains(&a.id))
                .map(|a| (w, a.clone())),
        );
    }
    out
}

/// How many acknowledged messages the watchers still wait for.
pub fn outstanding(acked: &[Acked], watchers: &[(String, SeenLog)]) -> usize {
    watchers
        .iter()
        .map(|(channel, seen)| {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            missing(&seen, acked.iter().filter(|a| &a.channel == channel)).len()
        })
        .sum()
}

/// Holds the acknowledged messages against the stored rows and what each
/// watcher (its channel and log) saw.
pub fn audit(
    acked: &[Acked],
    unacked: &[(String, String)],
    rows: &[Row],
    watchers: &[(String, SeenLog)],
) -> Report {
    let mut report = Report {
        acked: acked.len(),
        stored: rows.len(),
        ..Report::default()
    };
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    let mut by_body: HashMap<&str, HashSet<i64>> = HashMap::new();
    let mut by_seq: HashMap<(&str, i64), HashSet<i64>> = HashMap::new();
    for row in rows {
        *by_id.entry(row.message_id).or_default() += 1;
        by_body.entry(&row.body).or_default().insert(row.message_id);
        by_seq
            .entry((&row.channel_id, row.seq))
            .or_default()
            .insert(row.message_id);
    }
    report.stored_twice = by_id
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    report.body_stored_twice = by_body
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(b, _)| (*b).to_owned())
        .collect();
    report.seq_reused = by_seq
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((c, s), _)| ((*c).to_owned(), *s))
        .collect();
    report.not_stored = acked
        .iter()
        .filter(|a| !by_id.contains_key(&(a.id as i64)))
        .cloned()
        .collect();
    let accounted: HashSet<&str> = acked
        .iter()
        .map(|a| a.body.as_str())
        .chain(unacked.iter().map(|(_, b)| b.as_str()))
        .collect();
    let acked_ids: HashSet<i64> = acked.iter().map(|a| a.id as i64).collect();
    report.stored_unacked = rows
        .iter()
        .filter(|r| !acked_ids.contains(&r.message_id) && accounted.contains(r.body.as_str()))
        .count();
    for (w, (channel, seen)) in watchers.iter().enumerate() {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut ids = HashSet::new();
        let mut highest = 0;
        for s in &seen {
            match s {
                Seen::Message { id, seq } => {
                    report.delivered += 1;
                    if !ids.insert(*id) {
                        report.delivered_twice.push((w, *id));
                    }
                    if *seq <= highest {
                        report.out_of_order.push((w, *seq));
                    }
                    highest = highest.max(*seq);
                }
                Seen::Reload { to, .. } => {
                    report.reloads += 1;
                    highest = highest.max(*to);
                }
                Seen::Start(start) => highest = highest.max(*start),
                Seen::Reconnected => {}
            }
        }
        for a in missing(&seen, acked.iter().filter(|a| &a.channel == channel)) {
            report.missed.push((w, a.clone()));
        }
    }
    report
}
