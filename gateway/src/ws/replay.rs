//! Filling a reconnecting client's gap: the recent window first, storage
//! for what has aged out of it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chatmesh_ids::{ChannelId, ChatMessage, UserId};

use crate::ports::GapSource;

/// How long a gap fill waits for storage to catch up with the log.
pub(crate) const STORAGE_CATCH_UP: Duration = Duration::from_secs(5);
/// How often storage is asked again while it catches up.
const CATCH_UP_POLL: Duration = Duration::from_millis(200);

/// The largest gap replayed; beyond it the client reloads history instead.
pub(crate) const MAX_REPLAY: u64 = 1_000;

/// Every message of `channel` with `last < seq <= current`, in order, or
/// `None` when some could not be found. Numbers that were never made
/// durable (void) count as found and are skipped.
pub(crate) async fn fill(
    gaps: &dyn GapSource,
    channel: &ChannelId,
    user: &UserId,
    last: u64,
    current: u64,
) -> Option<Vec<ChatMessage>> {
    if current <= last {
        return Some(Vec::new());
    }
    if current - last > MAX_REPLAY {
        return None;
    }
    let mut found: BTreeMap<u64, ChatMessage> = BTreeMap::new();
    let mut void: HashSet<u64> = HashSet::new();
    // The recent window is an optimisation: if Redis cannot answer,
    // storage still can.
    if let Ok((recent, voids)) = gaps.recent(channel, last, current).await {
        for m in recent {
            found.insert(m.seq, m);
        }
        void = voids;
    }
    tracing::debug!(
        channel = %channel,
        from_redis = found.len(),
        voids = void.len(),
        "gap fill from the recent window"
    );
    let missing = |found: &BTreeMap<u64, ChatMessage>| {
        (last + 1..=current).find(|s| !found.contains_key(s) && !void.contains(s))
    };
    // Everything up to `current` is durable in the log, so a miss means
    // storage has not caught up yet: ask again for a few seconds before
    // telling the client to reload.
    let deadline = tokio::time::Instant::now() + STORAGE_CATCH_UP;
    while let Some(first_missing) = missing(&found) {
        let mut after = first_missing - 1;
        loop {
            let (page, truncated) = match gaps.stored_since(channel, user, after).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(channel = %channel, error = %err, "gap fill from storage failed");
                    break;
                }
            };
            let Some(newest) = page.last().map(|m| m.seq) else {
                break;
            };
            for m in page.into_iter().filter(|m| m.seq <= current) {
                found.entry(m.seq).or_insert(m);
            }
            if !truncated || newest >= current {
                break;
            }
            after = newest;
        }
        if missing(&found).is_none() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
    missing(&found).is_none().then(|| {
        found
            .into_values()
            .filter(|m| m.seq > last && m.seq <= current)
            .collect()
    })
}
