//! Names of every Redis key and channel chatmesh uses. A channel's keys
//! share the `{channel_id}` hash tag, so they live in one slot and can be
//! read and written together in a pipeline or script.

/// Sharded pub/sub channel carrying a chat channel's messages.
pub fn fanout(channel: &str) -> String {
    format!("cm:{{{channel}}}:fanout")
}

/// The chat channel ID named by a fan-out channel, if it is one.
pub fn channel_of_fanout(name: &str) -> Option<&str> {
    name.strip_prefix("cm:{")?.strip_suffix("}:fanout")
}

/// Counter holding a channel's latest sequence number.
pub fn seq(channel: &str) -> String {
    format!("cm:{{{channel}}}:seq")
}

/// Sequence numbers that were assigned but never made durable, so gap
/// recovery can skip them instead of asking the client to reload.
pub fn void_seqs(channel: &str) -> String {
    format!("cm:{{{channel}}}:void")
}

/// Sorted set of a channel's most recent messages, scored by sequence.
pub fn recent(channel: &str) -> String {
    format!("cm:{{{channel}}}:recent")
}

/// Result of a send made with an idempotency key.
pub fn idempotency(channel: &str, sender: &str, key: &str) -> String {
    format!("cm:{{{channel}}}:idem:{sender}:{key}")
}

/// Per-channel send counter for one rate-limit window.
pub fn channel_rate(channel: &str, window: u64) -> String {
    format!("cm:{{{channel}}}:rate:{window}")
}

/// Per-user send counter for one rate-limit window.
pub fn user_rate(user: &str, window: u64) -> String {
    format!("cm:user:{{{user}}}:rate:{window}")
}

/// Sorted set of a gateway cluster's live nodes, scored by registration
/// expiry (ms).
pub fn gateway_nodes(cluster: &str) -> String {
    format!("cm:{{gateways:{cluster}}}:nodes")
}

/// Hash of a gateway cluster's node IDs to the URLs clients use.
pub fn gateway_urls(cluster: &str) -> String {
    format!("cm:{{gateways:{cluster}}}:urls")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_slot;

    #[test]
    fn a_channels_keys_share_a_slot() {
        let c = "room-42";
        let slot = key_slot(fanout(c).as_bytes());
        for key in [
            seq(c),
            void_seqs(c),
            recent(c),
            idempotency(c, "u", "k"),
            channel_rate(c, 7),
        ] {
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(
            key_slot(gateway_nodes("a").as_bytes()),
            key_slot(gateway_urls("a").as_bytes())
        );
        assert_eq!(channel_of_fanout(&fanout(c)), Some(c));
        assert_eq!(channel_of_fanout("cm:{x}:seq"), None);
    }
}
