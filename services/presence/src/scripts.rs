//! Lua scripts that keep presence state consistent. Each one touches the
//! keys of a single user or a single channel, which share a hash slot, so
//! it runs atomically on one node.

use std::sync::LazyLock;

use redis::Script;

/// A session's record in its user's session hash: when it expires, the
/// channels it is in, and the gateway holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    pub(crate) expires_ms: i64,
    pub(crate) channels: Vec<String>,
    pub(crate) node: String,
}

impl SessionRecord {
    /// `expiry|channel,channel|node`. Channel IDs never hold `|` or `,`;
    /// the node name comes last, so it may.
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.expires_ms,
            self.channels.join(","),
            self.node
        )
    }

    pub(crate) fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, '|');
        let expires_ms = parts.next()?.parse().ok()?;
        let channels = parts.next()?;
        let node = parts.next()?.to_owned();
        Some(Self {
            expires_ms,
            channels: channels
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            node,
        })
    }
}

/// Refreshes a live session.
///
/// KEYS: session TTL key, the user's session hash, the user's last-seen key.
/// ARGV: session ID, encoded record, TTL (ms), heartbeat time (ms), the hash's
/// TTL (ms), gateway node, now (ms) minus the grace for stale records.
///
/// The last-seen key has no TTL: it is one small key per user, and keeping
/// it out of the volatile set keeps Redis' expiry scan, and so the expiry
/// events of session keys, quick.
///
/// Returns the session's previous record (or false), followed by session
/// ID and record pairs of the user's other sessions that expired without
/// anyone noticing; those are removed here, so exactly one caller ends them.
pub(crate) static REFRESH_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[6], 'PX', ARGV[3])
local previous = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local seen = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[4]) > seen then
  redis.call('SET', KEYS[3], ARGV[4])
end
local out = { previous }
local cutoff = tonumber(ARGV[7])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%-?%d+)|'))
  if all[i] ~= ARGV[1] and expires and expires < cutoff then
    redis.call('HDEL', KEYS[2], all[i])
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
return out
",
    )
});

/// Ends a session: drops its TTL key and its record.
///
/// KEYS: session TTL key, the user's session hash, the user's last-seen key.
/// ARGV: session ID, end time (ms; 0 leaves last-seen alone).
///
/// Returns the removed record, or false if it was already gone.
pub(crate) static END_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
local previous = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local at = tonumber(ARGV[2])
if at > 0 and at > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[3], ARGV[2])
end
return previous
",
    )
});

/// Marks a session online in a channel.
///
/// KEYS: the channel's online set, the user's sessions in the channel.
/// ARGV: user ID, session ID, session expiry (ms), now (ms), the keys' TTL
/// (ms), now minus the grace for stale members (ms).
///
/// Returns whether the user just came online in the channel, the number of
/// users online there now, then users whose presence lapsed without an
/// event; they are removed here.
pub(crate) static JOIN_CHANNEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local expires = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
local joined = 0
if not old or tonumber(old) <= now then joined = 1 end
if not old or tonumber(old) < expires then
  redis.call('ZADD', KEYS[1], expires, ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[6], 'LIMIT', 0, 100)
for _, user in ipairs(stale) do
  redis.call('ZREM', KEYS[1], user)
end
local out = { joined, redis.call('ZCARD', KEYS[1]) }
for _, user in ipairs(stale) do
  table.insert(out, user)
end
return out
",
    )
});

/// Takes a session out of a channel; the user leaves the channel when it
/// was their last live session there.
///
/// KEYS: the channel's online set, the user's sessions in the channel.
/// ARGV: user ID, session ID, now (ms).
///
/// Returns {1 if the user left the channel, users online there now}.
pub(crate) static LEAVE_CHANNEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[2])
local best = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local e = tonumber(v)
  if e and e > now and e > best then best = e end
end
if best > 0 then
  redis.call('ZADD', KEYS[1], best, ARGV[1])
  return { 0, redis.call('ZCARD', KEYS[1]) }
end
redis.call('DEL', KEYS[2])
local left = redis.call('ZREM', KEYS[1], ARGV[1])
return { left, redis.call('ZCARD', KEYS[1]) }
",
    )
});

/// Removes users whose presence in a channel lapsed without an event.
///
/// KEYS: the channel's online set. ARGV: cutoff (ms).
/// Returns the number of users online there now, then the removed users.
pub(crate) static SWEEP_CHANNEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 500)
for _, user in ipairs(stale) do
  redis.call('ZREM', KEYS[1], user)
end
local out = { redis.call('ZCARD', KEYS[1]) }
for _, user in ipairs(stale) do
  table.insert(out, user)
end
return out
",
    )
});

/// A user's status.
///
/// KEYS: the user's session hash, the user's last-seen key. ARGV: now (ms).
/// Returns {online (0 or 1), last seen (ms)}.
pub(crate) static USER_STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local online = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local expires = tonumber(string.match(v, '^(%-?%d+)|'))
  if expires and expires > now then online = 1 break end
end
return { online, tonumber(redis.call('GET', KEYS[2]) or '0') }
",
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = SessionRecord {
            expires_ms: 1_700_000_000_123,
            channels: vec!["a".into(), "b.c:d".into()],
            node: "gw|0".into(),
        };
        assert_eq!(SessionRecord::decode(&r.encode()), Some(r));
        let empty = SessionRecord {
            expires_ms: 5,
            channels: vec![],
            node: "n".into(),
        };
        assert_eq!(SessionRecord::decode(&empty.encode()), Some(empty));
        assert_eq!(SessionRecord::decode("garbage"), None);
        assert_eq!(SessionRecord::decode("x|a|n"), None);
    }
}
