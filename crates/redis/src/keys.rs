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

/// The replication ID a channel's sequence counter was last written under.
pub fn seq_origin(channel: &str) -> String {
    format!("cm:{{{channel}}}:seq-origin")
}

/// Held, for a few seconds, by the one caller starting a channel's new
/// epoch, so callers racing on the same lost counter start one epoch, not
/// one each.
pub fn seq_starting(channel: &str) -> String {
    format!("cm:{{{channel}}}:seq-starting")
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

/// Buckets the users' send counters are spread over: each bucket's
/// counters for a window are one hash, so a chat instance adds its counts
/// of many users with one pipeline per bucket.
pub const USER_RATE_BUCKETS: u16 = 4;

/// The bucket of `user`'s send counter.
pub fn user_rate_bucket(user: &str) -> u16 {
    crate::key_slot(user.as_bytes()) % USER_RATE_BUCKETS
}

/// Hash of the send counters of a bucket's users for one rate-limit
/// window, a field per user.
pub fn user_rates(bucket: u16, window: u64) -> String {
    format!("cm:{{user-rates-{bucket}}}:{window}")
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

/// Pub/sub channel (not sharded) on which gateways publish heartbeat
/// batches for the presence service.
pub const HEARTBEAT: &str = "HEARTBEAT";

/// Pub/sub channel of keyspace expiry events; each master publishes only
/// the expiries of its own keys.
pub const EXPIRED_EVENTS: &str = "__keyevent@0__:expired";

/// Sharded pub/sub channel carrying a chat channel's join and leave events.
pub fn presence_events(channel: &str) -> String {
    format!("cm:{{{channel}}}:presence")
}

/// The chat channel ID named by a presence event channel, if it is one.
pub fn channel_of_presence_events(name: &str) -> Option<&str> {
    name.strip_prefix("cm:{")?.strip_suffix("}:presence")
}

/// A session's TTL key. It expires, and the gateway holding the session
/// hears of it, when the session stops heartbeating.
pub fn session(user: &str, session: &str) -> String {
    format!("cm:user:{{{user}}}:session:{session}")
}

/// The user and session ID named by a session TTL key, if it is one.
pub fn session_of_key(key: &str) -> Option<(&str, &str)> {
    let (head, session) = key.rsplit_once(":session:")?;
    let user = head.strip_prefix("cm:user:{")?.strip_suffix('}')?;
    (!user.is_empty() && !session.is_empty()).then_some((user, session))
}

/// Hash of a user's live sessions: session ID to its record (channels and
/// expiry).
pub fn user_sessions(user: &str) -> String {
    format!("cm:user:{{{user}}}:sessions")
}

/// A user's last heartbeat, in ms since the Unix epoch.
pub fn last_seen(user: &str) -> String {
    format!("cm:user:{{{user}}}:seen")
}

/// Sorted set of a channel's online users, scored by the expiry (ms) of
/// their longest-lived session in the channel.
pub fn online(channel: &str) -> String {
    format!("cm:{{{channel}}}:online")
}

/// Hash of one user's sessions in a channel: session ID to expiry (ms).
pub fn online_sessions(channel: &str, user: &str) -> String {
    format!("cm:{{{channel}}}:online-sessions:{user}")
}

/// Sorted set of live presence service instances, scored by registration
/// expiry (ms); they split heartbeat work between them.
pub fn presence_instances(group: &str) -> String {
    format!("cm:{{presence:{group}}}:instances")
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
        for key in [presence_events(c), online(c), online_sessions(c, "u:1}x")] {
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(channel_of_presence_events(&presence_events(c)), Some(c));
        assert_eq!(channel_of_presence_events(&fanout(c)), None);
        assert_eq!(channel_of_fanout("cm:{x}:seq"), None);
    }

    #[test]
    fn a_users_keys_share_a_slot_and_session_keys_parse() {
        for user in ["alice", "we:ird}user", "x:session:y"] {
            let slot = key_slot(user_sessions(user).as_bytes());
            for key in [session(user, "ab12"), last_seen(user)] {
                assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
            }
            assert_eq!(session_of_key(&session(user, "ab12")), Some((user, "ab12")));
            assert!(user_rate_bucket(user) < USER_RATE_BUCKETS);
        }
        assert_eq!(session_of_key("cm:{room}:seq"), None);
        assert_eq!(session_of_key("cm:user:{}:session:x"), None);
        assert_eq!(session_of_key("cm:user:{u}:session:"), None);
    }
}
