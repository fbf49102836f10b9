//! The presence store on Redis Cluster: the Lua scripts of `scripts`, on
//! the keys `docs/presence.md` lists. Gateways read the same keys, so their
//! names and shapes do not change here.

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_redis::{Cluster, keys};
use futures::StreamExt as _;
use redis::RedisError;

use crate::PresenceError;
use crate::scripts::{
    END_SESSION, JOIN_CHANNEL, LEAVE_CHANNEL, REFRESH_SESSION, SWEEP_CHANNEL, SessionRecord,
    USER_STATUS,
};
use crate::store::{
    ChannelJoin, Joined, LapsedSession, Left, PresenceStore, Refreshed, SessionRefresh, Swept,
    UserStatus,
};

/// Session hashes and channel sets outlive a session's TTL by this factor,
/// so a lapsed session's record is still there for the next heartbeat or
/// sweep to clean up, and then the keys vanish by themselves.
const KEY_TTL_FACTOR: u64 = 4;
/// `GetPresence` lookups in flight at once on the pipelined connection.
const STATUS_CONCURRENCY: usize = 64;

/// The presence store on a Redis Cluster.
#[derive(Debug, Clone)]
pub struct RedisStore {
    redis: Cluster,
}

impl RedisStore {
    /// A store on `redis`; it connects on first use.
    pub fn new(redis: Cluster) -> Self {
        Self { redis }
    }
}

/// An integer from a script's reply; a missing one counts as 0.
fn count(value: Option<redis::Value>) -> Result<u64, RedisError> {
    Ok(value.map(redis::from_redis_value).transpose()?.unwrap_or(0))
}

/// Users named in a script's reply. IDs were valid when written, so one
/// that no longer parses is skipped rather than failing the whole reply.
fn users(values: impl Iterator<Item = redis::Value>) -> Result<Vec<UserId>, RedisError> {
    let mut out = Vec::new();
    for value in values {
        let raw: String = redis::from_redis_value(value)?;
        if let Ok(user) = UserId::new(raw) {
            out.push(user);
        }
    }
    Ok(out)
}

/// The channels of an encoded session record.
fn channels_of(record: &SessionRecord) -> Vec<ChannelId> {
    record
        .channels
        .iter()
        .filter_map(|c| ChannelId::new(c.as_str()).ok())
        .collect()
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn refresh_session(
        &self,
        refresh: SessionRefresh<'_>,
    ) -> Result<Refreshed, PresenceError> {
        let ttl_ms = millis(refresh.ttl);
        let record = SessionRecord {
            expires_ms: (refresh.now_ms + ttl_ms) as i64,
            channels: refresh.channels.iter().map(|c| c.to_string()).collect(),
            node: refresh.node.to_owned(),
        };
        let user = refresh.user.as_str();
        let mut conn = self.redis.conn().await?;
        let reply: Vec<Option<String>> = REFRESH_SESSION
            .key(keys::session(user, refresh.session))
            .key(keys::user_sessions(user))
            .key(keys::last_seen(user))
            .arg(refresh.session)
            .arg(record.encode())
            .arg(ttl_ms)
            .arg(refresh.seen_ms)
            .arg(ttl_ms * KEY_TTL_FACTOR)
            .arg(refresh.node)
            .arg(refresh.stale_before_ms)
            .invoke_async(&mut conn)
            .await?;
        let mut reply = reply.into_iter();
        let previous = reply
            .next()
            .flatten()
            .and_then(|r| SessionRecord::decode(&r))
            .map(|r| channels_of(&r));
        let mut lapsed = Vec::new();
        while let (Some(Some(session)), Some(Some(raw))) = (reply.next(), reply.next()) {
            if let Some(r) = SessionRecord::decode(&raw) {
                lapsed.push(LapsedSession {
                    session,
                    channels: channels_of(&r),
                });
            }
        }
        Ok(Refreshed { previous, lapsed })
    }

    async fn end_session(
        &self,
        user: &UserId,
        session: &str,
        at_ms: u64,
    ) -> Result<Vec<ChannelId>, PresenceError> {
        let user = user.as_str();
        let mut conn = self.redis.conn().await?;
        let previous: Option<String> = END_SESSION
            .key(keys::session(user, session))
            .key(keys::user_sessions(user))
            .key(keys::last_seen(user))
            .arg(session)
            .arg(at_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(previous
            .and_then(|r| SessionRecord::decode(&r))
            .map(|r| channels_of(&r))
            .unwrap_or_default())
    }

    async fn join_channel(&self, join: ChannelJoin<'_>) -> Result<Joined, PresenceError> {
        let (channel, user) = (join.channel.as_str(), join.user.as_str());
        let key_ttl_ms = join.expires_ms.saturating_sub(join.now_ms) * KEY_TTL_FACTOR;
        let mut conn = self.redis.conn().await?;
        let reply: Vec<redis::Value> = JOIN_CHANNEL
            .key(keys::online(channel))
            .key(keys::online_sessions(channel, user))
            .arg(user)
            .arg(join.session)
            .arg(join.expires_ms)
            .arg(join.now_ms)
            .arg(key_ttl_ms.max(1))
            .arg(join.stale_before_ms)
            .invoke_async(&mut conn)
            .await?;
        let mut reply = reply.into_iter();
        let first = count(reply.next())? == 1;
        let online = count(reply.next())?;
        Ok(Joined {
            first,
            online,
            lapsed: users(reply)?,
        })
    }

    async fn leave_channel(
        &self,
        channel: &ChannelId,
        user: &UserId,
        session: &str,
        now_ms: u64,
    ) -> Result<Left, PresenceError> {
        let (channel, user) = (channel.as_str(), user.as_str());
        let mut conn = self.redis.conn().await?;
        let (left, online): (i64, u64) = LEAVE_CHANNEL
            .key(keys::online(channel))
            .key(keys::online_sessions(channel, user))
            .arg(user)
            .arg(session)
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(Left {
            last: left == 1,
            online,
        })
    }

    async fn sweep_channel(
        &self,
        channel: &ChannelId,
        cutoff_ms: u64,
    ) -> Result<Swept, PresenceError> {
        let mut conn = self.redis.conn().await?;
        let reply: Vec<redis::Value> = SWEEP_CHANNEL
            .key(keys::online(channel.as_str()))
            .arg(cutoff_ms)
            .invoke_async(&mut conn)
            .await?;
        let mut reply = reply.into_iter();
        let online = count(reply.next())?;
        Ok(Swept {
            online,
            left: users(reply)?,
        })
    }

    async fn user_status(
        &self,
        users: &[UserId],
        now_ms: u64,
    ) -> Result<Vec<UserStatus>, PresenceError> {
        let conn = self.redis.conn().await?;
        let statuses: Vec<Result<UserStatus, RedisError>> =
            futures::stream::iter(users.iter().cloned())
                .map(|user| {
                    let mut conn = conn.clone();
                    async move {
                        let (online, seen): (i64, i64) = USER_STATUS
                            .key(keys::user_sessions(user.as_str()))
                            .key(keys::last_seen(user.as_str()))
                            .arg(now_ms)
                            .invoke_async(&mut conn)
                            .await?;
                        Ok(UserStatus {
                            user,
                            online: online == 1,
                            last_seen_ms: u64::try_from(seen).unwrap_or(0),
                        })
                    }
                })
                .buffered(STATUS_CONCURRENCY)
                .collect()
                .await;
        Ok(statuses.into_iter().collect::<Result<Vec<_>, _>>()?)
    }

    async fn online_users(
        &self,
        channel: &ChannelId,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<UserId>, PresenceError> {
        let mut conn = self.redis.conn().await?;
        let raw: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::online(channel.as_str()))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|u| UserId::new(u).ok())
            .collect())
    }
}
