//! Filling a reconnecting client's gap: the recent window in Redis first,
//! storage for what has aged out of it.

use std::collections::{BTreeMap, HashSet};

use chatmesh_proto::common::v1::Message;
use chatmesh_proto::storage::v1 as storage;
use chatmesh_redis::keys;
use prost::Message as _;

use crate::Gateway;

/// How long a gap fill waits for storage to catch up with Kafka.
const STORAGE_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// The largest gap replayed; beyond it the client reloads history instead.
pub(crate) const MAX_REPLAY: u64 = 1_000;

/// Every message of `channel` with `last < seq <= current`, in order, or
/// `None` when some could not be found.
pub(crate) async fn fill(
    gw: &Gateway,
    channel: &str,
    user: &str,
    last: u64,
    current: u64,
) -> Option<Vec<Message>> {
    if current - last > MAX_REPLAY {
        return None;
    }
    let mut found: BTreeMap<u64, Message> = BTreeMap::new();
    let mut void: HashSet<u64> = HashSet::new();
    if let Ok(mut conn) = gw.redis.conn().await {
        let recent: Result<Vec<Vec<u8>>, _> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::recent(channel))
            .arg(format!("({last}"))
            .arg(current)
            .query_async(&mut conn)
            .await;
        for payload in recent.unwrap_or_default() {
            if let Ok(m) = Message::decode(payload.as_slice()) {
                found.insert(m.seq, m);
            }
        }
        let voids: Result<Vec<u64>, _> = redis::cmd("SMEMBERS")
            .arg(keys::void_seqs(channel))
            .query_async(&mut conn)
            .await;
        void.extend(voids.unwrap_or_default());
    }
    tracing::debug!(
        channel,
        from_redis = found.len(),
        voids = void.len(),
        "gap fill from the recent window"
    );
    let complete = |found: &BTreeMap<u64, Message>| {
        (last + 1..=current).all(|s| found.contains_key(&s) || void.contains(&s))
    };
    // Older messages come from storage. Everything up to `current` is
    // durable in Kafka, so a miss means storage has not caught up yet: ask
    // again for a few seconds before telling the client to reload.
    let deadline = tokio::time::Instant::now() + STORAGE_CATCH_UP;
    let mut client = storage::storage_service_client::StorageServiceClient::new(gw.storage.clone());
    while !complete(&found) {
        let first_missing = (last + 1..=current)
            .find(|s| !found.contains_key(s) && !void.contains(s))
            .unwrap_or(current);
        let mut after = first_missing - 1;
        loop {
            let request = storage::GetSinceRequest {
                channel_id: channel.to_owned(),
                user_id: user.to_owned(),
                after_seq: after,
                limit: 0,
            };
            let page = match client.get_since(request).await {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    tracing::warn!(channel, error = %status.message(), "gap fill from storage failed");
                    break;
                }
            };
            tracing::debug!(
                channel,
                after,
                got = page.messages.len(),
                truncated = page.truncated,
                "gap fill page from storage"
            );
            let Some(newest) = page.messages.last().map(|m| m.seq) else {
                break;
            };
            for m in page.messages.into_iter().filter(|m| m.seq <= current) {
                found.entry(m.seq).or_insert(m);
            }
            if !page.truncated || newest >= current {
                break;
            }
            after = newest;
        }
        if complete(&found) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    complete(&found).then(|| {
        found
            .into_values()
            .filter(|m| m.seq > last && m.seq <= current)
            .collect()
    })
}
