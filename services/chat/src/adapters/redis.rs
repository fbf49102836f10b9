//! The Redis Cluster adapters. Key names come from `chatmesh_redis::keys`:
//! the gateway reads the same sequence, void and recent keys. Stored and
//! published messages are the Protobuf `Message` bytes, which the gateway
//! decodes.

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, Clock, SystemClock, UserId};
use chatmesh_proto::common::v1::Message;
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;

use crate::ports::{
    Claim, FanOut, IN_FLIGHT_TTL, IdempotencyKey, IdempotencyStore, RateLimiter, Released,
    Sequencer,
};
use crate::{ChatError, SendLimits};

/// Rolls a channel's counter back when the failed send holds the newest
/// number; otherwise marks the number void so readers skip it.
const RELEASE_SEQ: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DECR', KEYS[1])
  return 1
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], 604800)
return 0
";

/// Marker stored under an idempotency key while its send is in flight.
const PENDING: &[u8] = b"pending";

fn encode(message: &ChatMessage) -> Vec<u8> {
    Message::from(message).encode_to_vec()
}

/// A stored message that does not decode: reported like a Redis reply of
/// the wrong type, since that is what it is.
fn decode(bytes: &[u8]) -> Result<ChatMessage, ChatError> {
    let corrupt = |detail: String| {
        ChatError::Redis(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "stored message",
            detail,
        )))
    };
    let wire = Message::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    ChatMessage::try_from(wire).map_err(|e| corrupt(e.to_string()))
}

/// Sequence numbers in `cm:{channel}:seq`, void ones in `cm:{channel}:void`.
#[derive(Debug, Clone)]
pub struct RedisSequencer {
    redis: Cluster,
}

impl RedisSequencer {
    /// A sequencer on `redis`.
    pub fn new(redis: Cluster) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl Sequencer for RedisSequencer {
    async fn next(&self, channel: &ChannelId) -> Result<u64, ChatError> {
        let mut conn = self.redis.conn().await?;
        Ok(redis::cmd("INCR")
            .arg(keys::seq(channel.as_str()))
            .query_async(&mut conn)
            .await?)
    }

    async fn release(&self, channel: &ChannelId, seq: u64) -> Result<Released, ChatError> {
        let mut conn = self.redis.conn().await?;
        let rolled_back: i64 = redis::Script::new(RELEASE_SEQ)
            .key(keys::seq(channel.as_str()))
            .key(keys::void_seqs(channel.as_str()))
            .arg(seq)
            .invoke_async(&mut conn)
            .await?;
        Ok(if rolled_back == 1 {
            Released::RolledBack
        } else {
            Released::Voided
        })
    }
}

/// Idempotency keys: a pending marker while the send is in flight, then the
/// encoded message.
#[derive(Debug, Clone)]
pub struct RedisIdempotency {
    redis: Cluster,
}

impl RedisIdempotency {
    /// An idempotency store on `redis`.
    pub fn new(redis: Cluster) -> Self {
        Self { redis }
    }
}

fn idem_key(key: &IdempotencyKey) -> String {
    keys::idempotency(key.channel.as_str(), key.sender.as_str(), &key.key)
}

#[async_trait]
impl IdempotencyStore for RedisIdempotency {
    async fn claim(&self, key: &IdempotencyKey) -> Result<Claim, ChatError> {
        let key = idem_key(key);
        let mut conn = self.redis.conn().await?;
        let claimed: bool = redis::cmd("SET")
            .arg(&key)
            .arg(PENDING)
            .arg("NX")
            .arg("PX")
            .arg(IN_FLIGHT_TTL.as_millis() as u64)
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if claimed {
            return Ok(Claim::New);
        }
        let stored: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        match stored {
            Some(bytes) if bytes != PENDING => decode(&bytes).map(Claim::Duplicate),
            // The first attempt is still in flight (or expired just now).
            _ => Ok(Claim::InFlight),
        }
    }

    async fn record(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<(), ChatError> {
        let mut conn = self.redis.conn().await?;
        redis::cmd("SET")
            .arg(idem_key(key))
            .arg(encode(message))
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn forget(&self, key: &IdempotencyKey) -> Result<(), ChatError> {
        let mut conn = self.redis.conn().await?;
        redis::cmd("DEL")
            .arg(idem_key(key))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Fixed one-second windows counted in Redis, so the limits hold across
/// every chat instance.
///
/// Hand-written on purpose: `governor` (used for the gateway's
/// per-connection budget) keeps its state in process memory, and a limit
/// per user or per channel must be shared by every chat instance a request
/// may land on. One pipelined INCR and EXPIRE per scope is the cheapest
/// shared counter Redis offers, and the keys live in the channel's or the
/// user's slot.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter<C = SystemClock> {
    redis: Cluster,
    user_per_second: u32,
    channel_per_second: u32,
    clock: C,
}

impl RedisRateLimiter {
    /// A limiter on `redis` with the per-second limits of `limits`.
    pub fn new(redis: Cluster, limits: &SendLimits) -> Self {
        Self::with_clock(redis, limits, SystemClock)
    }
}

impl<C: Clock> RedisRateLimiter<C> {
    /// A limiter whose windows follow `clock`, so tests can hold one still.
    pub fn with_clock(redis: Cluster, limits: &SendLimits, clock: C) -> Self {
        Self {
            redis,
            user_per_second: limits.user_per_second,
            channel_per_second: limits.channel_per_second,
            clock,
        }
    }
}

#[async_trait]
impl<C: Clock> RateLimiter for RedisRateLimiter<C> {
    async fn check(&self, channel: &ChannelId, sender: &UserId) -> Result<(), ChatError> {
        let window = self.clock.now_ms() / 1000;
        let mut conn = self.redis.conn().await?;
        for (key, limit, scope) in [
            (
                keys::user_rate(sender.as_str(), window),
                self.user_per_second,
                "user",
            ),
            (
                keys::channel_rate(channel.as_str(), window),
                self.channel_per_second,
                "channel",
            ),
        ] {
            let (count,): (u32,) = redis::pipe()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(2)
                .ignore()
                .query_async(&mut conn)
                .await?;
            if count > limit {
                return Err(ChatError::RateLimited { scope });
            }
        }
        Ok(())
    }
}

/// Sharded pub/sub on `cm:{channel}:fanout` and the recent window in the
/// sorted set `cm:{channel}:recent`, scored by sequence number.
#[derive(Debug, Clone)]
pub struct RedisFanOut {
    redis: Cluster,
    keep: usize,
}

impl RedisFanOut {
    /// A fan-out on `redis` whose recent windows keep `keep` messages.
    pub fn new(redis: Cluster, keep: usize) -> Self {
        Self { redis, keep }
    }
}

#[async_trait]
impl FanOut for RedisFanOut {
    async fn publish(&self, message: &ChatMessage) -> Result<(), ChatError> {
        let channel = message.channel.as_str();
        let payload = encode(message);
        let recent = keys::recent(channel);
        let keep = self.keep as i64;
        let mut conn = self.redis.conn().await?;
        redis::pipe()
            .cmd("SPUBLISH")
            .arg(keys::fanout(channel))
            .arg(&payload)
            .ignore()
            .cmd("ZADD")
            .arg(&recent)
            .arg(message.seq)
            .arg(&payload)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&recent)
            .arg(0)
            .arg(-keep - 1)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn recent(&self, channel: &ChannelId) -> Result<Vec<ChatMessage>, ChatError> {
        let mut conn = self.redis.conn().await?;
        let stored: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(keys::recent(channel.as_str()))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        stored.iter().map(|bytes| decode(bytes)).collect()
    }
}
