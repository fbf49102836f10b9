//! The Redis Cluster adapters. Key names come from `chatmesh_redis::keys`:
//! the gateway reads the same sequence, void and recent keys. Stored and
//! published messages are the Protobuf `Message` bytes, which the gateway
//! decodes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::BackoffBuilder as _;
use chatmesh_ids::{ChannelId, ChatMessage, Clock, SystemClock, UserId, seq};
use chatmesh_proto::common::v1::Message;
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;

use super::user_windows::UserWindows;
use crate::ports::{
    Admission, Admitted, Claim, EpochSource, FanOut, IdempotencyKey, IdempotencyStore, RateLimiter,
    Sequencer, Settlement, Unsettled,
};
use crate::{ChatError, SendLimits};

/// The replication ID of the master running the script: it changes when a
/// replica is promoted and when a master restarts without its data, the two
/// ways a counter can lose numbers it already handed out.
const REPLICATION_ID: &str = r"
local info = redis.call('INFO', 'replication')
local rid = string.match(info, 'master_replid:(%w+)')
";

/// The next number while the counter can be trusted. When it cannot (it
/// is missing, or was last written under another replication ID), -1 if
/// this caller now holds the right to start the new epoch (token ARGV[1]
/// for ARGV[2] ms), or -2 while another caller holds it.
/// KEYS: seq, origin, starting.
const NEXT_SEQ: &str = r"
if redis.call('GET', KEYS[2]) == rid then
  return redis.call('INCR', KEYS[1])
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
return -2
";

/// Starts epoch ARGV[1] (its base) unless a trusted counter exists, which
/// another instance started meanwhile; then hands out the next number and
/// lets go of the right to start (token ARGV[2]). The counter never moves
/// down. KEYS: seq, origin, starting.
const START_EPOCH: &str = r"
if redis.call('GET', KEYS[2]) ~= rid then
  local base = tonumber(ARGV[1])
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  if current < base then
    redis.call('SET', KEYS[1], ARGV[1])
  end
  redis.call('SET', KEYS[2], rid)
end
if redis.call('GET', KEYS[3]) == ARGV[2] then
  redis.call('DEL', KEYS[3])
end
return redis.call('INCR', KEYS[1])
";

/// Lets go of the right to start an epoch, if still held with token
/// ARGV[1]. KEYS: starting.
const STOP_STARTING: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// How long the right to start an epoch lasts. Starting takes one upsert
/// in Postgres; if its holder dies, the next caller takes over after this.
const STARTING_TTL: Duration = Duration::from_secs(2);

/// Moves the counter back from ARGV[1] when that is still the newest
/// number; otherwise voids it. KEYS: seq, void.
const GIVE_BACK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DECR', KEYS[1])
  return 1
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], 604800)
return 0
";

/// Marks a number void for a week, far longer than any reader waits.
const VOID_SEQ: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 604800)
return 1
";

/// Tags of an idempotency key's value: the message held before its
/// append, the same held by [`ADMIT`] (`N`, the number in decimal, `:`, the
/// message without its number), or the message acknowledged.
const HELD: u8 = b'H';
const NUMBERED: u8 = b'N';
const SENT: u8 = b'S';

/// Holds ARGV[1] under KEYS[1] for ARGV[2] ms unless the key holds a
/// message already, which is returned instead.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  return held
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Admission in one round trip, in the channel's slot. Counts the send in
/// the channel's window (KEYS[4]) unless ARGV[3], the limit, is empty (a
/// repeat that was counted); returns what the idempotency key (KEYS[5], if
/// given) holds; else numbers the message as [`NEXT_SEQ`] does and holds
/// it under the key for ARGV[4] ms, ARGV[5] being the message without its
/// number. Replies {step, value}: `limited`, `found` with the key's value,
/// `start` or `wait` (the counter is untrusted; see [`NEXT_SEQ`]), or `new`
/// with the number.
/// KEYS: seq, origin, starting, rate[, idempotency].
const ADMIT: &str = r"
if ARGV[3] ~= '' then
  local count = redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], 2)
  if count > tonumber(ARGV[3]) then
    return {'limited', ''}
  end
end
if KEYS[5] then
  local held = redis.call('GET', KEYS[5])
  if held then
    return {'found', held}
  end
end
if redis.call('GET', KEYS[2]) ~= rid then
  if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {'start', ''}
  end
  return {'wait', ''}
end
local seq = string.format('%d', redis.call('INCR', KEYS[1]))
if KEYS[5] then
  redis.call('SET', KEYS[5], 'N' .. seq .. ':' .. ARGV[5], 'PX', ARGV[4])
end
return {'new', seq}
";

/// What an idempotency key holds, as a claim on it finds it: never
/// [`Claim::New`].
fn found_claim(value: &[u8]) -> Result<Claim, ChatError> {
    match value {
        [SENT, rest @ ..] => decode(rest).map(Claim::Duplicate),
        [HELD, rest @ ..] => decode(rest).map(Claim::Resume),
        [NUMBERED, rest @ ..] => {
            let colon = rest
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| corrupt("numbered idempotency value without its number".into()))?;
            let seq = std::str::from_utf8(&rest[..colon])
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("numbered idempotency value with a bad number".into()))?;
            let message = decode(&rest[colon + 1..])?;
            Ok(Claim::Resume(ChatMessage { seq, ..message }))
        }
        _ => Err(corrupt("untagged idempotency value".into())),
    }
}

/// How long a caller waits between looks at a counter another caller is
/// starting a new epoch of.
fn starting_waits() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(25))
        .with_max_times(usize::MAX)
        .build()
}

fn tagged(tag: u8, message: &ChatMessage) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend(encode(message));
    bytes
}

fn encode(message: &ChatMessage) -> Vec<u8> {
    Message::from(message).encode_to_vec()
}

/// The live copy of an encoded message, when it carries trace context:
/// the gateways' delivery spans join the send's trace through it.
fn published(payload: &[u8], traceparent: Option<&str>) -> Option<Vec<u8>> {
    let traceparent = traceparent?;
    let mut live = Vec::with_capacity(payload.len() + traceparent.len() + 2);
    live.extend_from_slice(payload);
    Message::append_traceparent(&mut live, traceparent);
    Some(live)
}

/// A stored message that does not decode: reported like a Redis reply of
/// the wrong type, since that is what it is.
fn corrupt(detail: String) -> ChatError {
    ChatError::Redis(redis::RedisError::from((
        redis::ErrorKind::Parse,
        "stored message",
        detail,
    )))
}

fn decode(bytes: &[u8]) -> Result<ChatMessage, ChatError> {
    let wire = Message::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    ChatMessage::try_from(wire).map_err(|e| corrupt(e.to_string()))
}

/// Sequence numbers in `cm:{channel}:seq`, the replication ID they were
/// written under in `cm:{channel}:seq-origin`, void ones in
/// `cm:{channel}:void`.
///
/// Redis replicates asynchronously, so a promoted replica can miss the last
/// increments its master acknowledged, and a master restarted without
/// persistence (or flushed) has no counters at all. Either way the counter
/// can no longer be trusted, and the channel continues in a new epoch from
/// the durable [`EpochSource`]: its numbers are above every number handed
/// out before, so none repeats, and readers holding an older position are
/// told to reload rather than served a wrong gap fill.
#[derive(Clone)]
pub struct RedisSequencer {
    redis: Cluster,
    epochs: Arc<dyn EpochSource>,
    next: redis::Script,
    start: redis::Script,
    stop_starting: redis::Script,
    void: redis::Script,
    give_back: redis::Script,
}

impl std::fmt::Debug for RedisSequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSequencer").finish_non_exhaustive()
    }
}

impl RedisSequencer {
    /// A sequencer on `redis` whose new epochs come from `epochs`.
    pub fn new(redis: Cluster, epochs: Arc<dyn EpochSource>) -> Self {
        Self {
            redis,
            epochs,
            next: redis::Script::new(&format!("{REPLICATION_ID}{NEXT_SEQ}")),
            start: redis::Script::new(&format!("{REPLICATION_ID}{START_EPOCH}")),
            stop_starting: redis::Script::new(STOP_STARTING),
            void: redis::Script::new(VOID_SEQ),
            give_back: redis::Script::new(GIVE_BACK),
        }
    }

    /// Starts the channel's next epoch, holding the right to (`token`),
    /// and hands out its first number.
    async fn start_epoch(
        &self,
        channel: &ChannelId,
        conn: &mut chatmesh_redis::Conn,
        token: &str,
    ) -> Result<u64, ChatError> {
        let epoch = self.epochs.next_epoch(channel).await?;
        if epoch > seq::MAX_EPOCH {
            return Err(ChatError::EpochsExhausted);
        }
        let seq: u64 = self
            .start
            .key(keys::seq(channel.as_str()))
            .key(keys::seq_origin(channel.as_str()))
            .key(keys::seq_starting(channel.as_str()))
            .arg(seq::epoch_base(epoch))
            .arg(token)
            .invoke_async(conn)
            .await?;
        tracing::info!(
            channel = channel.as_str(),
            epoch = seq::epoch_of(seq),
            seq,
            "sequence counter untrusted or missing; the channel continues in a new epoch"
        );
        metrics::counter!("chatmesh_chat_seq_epochs_started_total").increment(1);
        Ok(seq)
    }
}

impl RedisSequencer {
    /// Starts the channel's next epoch as [`Self::start_epoch`] does, and
    /// lets go of the right to if that fails.
    async fn start_or_let_go(
        &self,
        channel: &ChannelId,
        conn: &mut chatmesh_redis::Conn,
        token: &str,
    ) -> Result<u64, ChatError> {
        let started = self.start_epoch(channel, conn, token).await;
        if started.is_err() {
            // Best effort: the right expires on its own otherwise.
            let _ = self
                .stop_starting
                .key(keys::seq_starting(channel.as_str()))
                .arg(token)
                .invoke_async::<i64>(conn)
                .await;
        }
        started
    }
}

#[async_trait]
impl Sequencer for RedisSequencer {
    async fn next(&self, channel: &ChannelId) -> Result<u64, ChatError> {
        let (seq_key, origin, starting) = (
            keys::seq(channel.as_str()),
            keys::seq_origin(channel.as_str()),
            keys::seq_starting(channel.as_str()),
        );
        let token = uuid::Uuid::new_v4().to_string();
        let mut conn = self.redis.conn().await?;
        // Callers racing on an untrusted counter (every first send of a new
        // channel, every send right after a failover) wait for the one
        // starting the epoch rather than each starting their own: a wasted
        // epoch is harmless to correctness, but moves a fresh channel off
        // epoch 0 and sends its readers to reload for nothing.
        let mut waits = starting_waits();
        let deadline = tokio::time::Instant::now() + 2 * STARTING_TTL;
        loop {
            let seq: i64 = self
                .next
                .key(&seq_key)
                .key(&origin)
                .key(&starting)
                .arg(&token)
                .arg(STARTING_TTL.as_millis() as u64)
                .invoke_async(&mut conn)
                .await?;
            match seq {
                -1 => break,
                -2 if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(waits.next().unwrap_or(STARTING_TTL)).await;
                }
                -2 => return Err(ChatError::EpochStartStalled),
                seq => return u64::try_from(seq).map_err(|_| corrupt(format!("seq {seq}"))),
            }
        }
        self.start_or_let_go(channel, &mut conn, &token).await
    }

    async fn release(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError> {
        let mut conn = self.redis.conn().await?;
        self.void
            .key(keys::void_seqs(channel.as_str()))
            .arg(seq)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn give_back(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError> {
        let mut conn = self.redis.conn().await?;
        self.give_back
            .key(keys::seq(channel.as_str()))
            .key(keys::void_seqs(channel.as_str()))
            .arg(seq)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Idempotency keys: the message, tagged held or sent.
#[derive(Debug, Clone)]
pub struct RedisIdempotency {
    redis: Cluster,
    claim: redis::Script,
}

impl RedisIdempotency {
    /// An idempotency store on `redis`.
    pub fn new(redis: Cluster) -> Self {
        Self {
            redis,
            claim: redis::Script::new(CLAIM),
        }
    }
}

fn idem_key(key: &IdempotencyKey) -> String {
    keys::idempotency(key.channel.as_str(), key.sender.as_str(), &key.key)
}

#[async_trait]
impl IdempotencyStore for RedisIdempotency {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<Claim, ChatError> {
        let mut conn = self.redis.conn().await?;
        let found: Option<Vec<u8>> = self
            .claim
            .key(idem_key(key))
            .arg(tagged(HELD, message))
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        match found {
            None => Ok(Claim::New),
            Some(value) => found_claim(&value),
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
            .arg(tagged(SENT, message))
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Fixed one-second windows shared by every chat instance, so the limits
/// hold whichever instance a request lands on. A user's window is counted
/// by [`UserWindows`], off the send path; a channel's by one pipelined
/// INCR and EXPIRE in its slot (the admission script counts it too, in the
/// same round trip as the number, and is what the send path uses).
///
/// Hand-written on purpose: `governor` (used for the gateway's
/// per-connection budget) keeps its state in process memory, and these
/// limits must be shared by every instance.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter<C = SystemClock> {
    redis: Cluster,
    users: UserWindows<C>,
    channel_per_second: u32,
    clock: C,
}

impl RedisRateLimiter {
    /// A limiter on `redis` with the per-second limits of `limits`. Must
    /// be called within a Tokio runtime.
    pub fn new(redis: Cluster, limits: &SendLimits) -> Self {
        Self::with_clock(redis, limits, SystemClock)
    }
}

impl<C: Clock + Clone + 'static> RedisRateLimiter<C> {
    /// A limiter whose windows follow `clock`, so tests can hold one still.
    pub fn with_clock(redis: Cluster, limits: &SendLimits, clock: C) -> Self {
        Self {
            users: UserWindows::new(redis.clone(), limits.user_per_second, clock.clone()),
            redis,
            channel_per_second: limits.channel_per_second,
            clock,
        }
    }

    /// The users' windows, to share this instance's counts at once.
    pub fn user_windows(&self) -> &UserWindows<C> {
        &self.users
    }
}

/// Counts one send in `key`'s window; true while within `limit`.
async fn count_send(redis: &Cluster, key: &str, limit: u32) -> Result<bool, ChatError> {
    let mut conn = redis.conn().await?;
    let (count,): (u32,) = redis::pipe()
        .cmd("INCR")
        .arg(key)
        .cmd("EXPIRE")
        .arg(key)
        .arg(2)
        .ignore()
        .query_async(&mut conn)
        .await?;
    Ok(count <= limit)
}

#[async_trait]
impl<C: Clock + Clone + 'static> RateLimiter for RedisRateLimiter<C> {
    async fn check_user(&self, sender: &UserId) -> Result<(), ChatError> {
        if self.users.admit(sender) {
            Ok(())
        } else {
            Err(ChatError::RateLimited { scope: "user" })
        }
    }

    async fn check_channel(&self, channel: &ChannelId) -> Result<(), ChatError> {
        let key = keys::channel_rate(channel.as_str(), self.clock.now_ms() / 1000);
        if count_send(&self.redis, &key, self.channel_per_second).await? {
            Ok(())
        } else {
            Err(ChatError::RateLimited { scope: "channel" })
        }
    }
}

/// [`Admission`] as one script ([`ADMIT`]) in the channel's slot: the
/// channel's window, its counter and its idempotency keys share the
/// `{channel}` hash tag. Only a send that finds the counter untrusted
/// takes more round trips: it starts the new epoch as
/// [`RedisSequencer`] does, then claims the key on its own.
#[derive(Debug, Clone)]
pub struct RedisAdmission<C = SystemClock> {
    sequencer: RedisSequencer,
    idempotency: RedisIdempotency,
    channel_per_second: u32,
    clock: C,
    admit: redis::Script,
}

impl RedisAdmission {
    /// Admission through `sequencer` and `idempotency` (which must be on
    /// the same cluster), with the channel limit of `limits`.
    pub fn new(
        sequencer: RedisSequencer,
        idempotency: RedisIdempotency,
        limits: &SendLimits,
    ) -> Self {
        Self::with_clock(sequencer, idempotency, limits, SystemClock)
    }
}

impl<C: Clock> RedisAdmission<C> {
    /// Admission whose rate windows follow `clock`, so tests can hold one
    /// still.
    pub fn with_clock(
        sequencer: RedisSequencer,
        idempotency: RedisIdempotency,
        limits: &SendLimits,
        clock: C,
    ) -> Self {
        Self {
            sequencer,
            idempotency,
            channel_per_second: limits.channel_per_second,
            clock,
            admit: redis::Script::new(&format!("{REPLICATION_ID}{ADMIT}")),
        }
    }

    /// Admits `draft` into a channel whose counter this caller now starts
    /// a new epoch of (holding the right to with `token`).
    async fn admit_starting(
        &self,
        draft: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
        conn: &mut chatmesh_redis::Conn,
        token: &str,
    ) -> Result<Admitted, ChatError> {
        let seq = self
            .sequencer
            .start_or_let_go(&draft.channel, conn, token)
            .await?;
        let message = ChatMessage {
            seq,
            ..draft.clone()
        };
        crate::send::claim_numbered(&self.sequencer, &self.idempotency, key, message, ttl).await
    }
}

#[async_trait]
impl<C: Clock> Admission for RedisAdmission<C> {
    async fn admit(
        &self,
        draft: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
    ) -> Result<Admitted, ChatError> {
        let channel = draft.channel.as_str();
        let (seq_key, origin, starting) = (
            keys::seq(channel),
            keys::seq_origin(channel),
            keys::seq_starting(channel),
        );
        let rate = keys::channel_rate(channel, self.clock.now_ms() / 1000);
        let idem = key.map(idem_key);
        let unnumbered = encode(&ChatMessage {
            seq: 0,
            ..draft.clone()
        });
        let token = uuid::Uuid::new_v4().to_string();
        let mut limit = self.channel_per_second.to_string();
        let mut conn = self.sequencer.redis.conn().await?;
        // As in `RedisSequencer::next`: wait for whoever is starting the
        // channel's epoch rather than start another one.
        let mut waits = starting_waits();
        let deadline = tokio::time::Instant::now() + 2 * STARTING_TTL;
        loop {
            let mut admit = self.admit.prepare_invoke();
            admit.key(&seq_key).key(&origin).key(&starting).key(&rate);
            if let Some(idem) = &idem {
                admit.key(idem);
            }
            admit
                .arg(&token)
                .arg(STARTING_TTL.as_millis() as u64)
                .arg(&limit)
                .arg(ttl.as_millis() as u64)
                .arg(&unnumbered);
            let (step, value): (String, Vec<u8>) = admit.invoke_async(&mut conn).await?;
            // Counted once, however often the counter makes it wait.
            limit.clear();
            match step.as_str() {
                "new" => {
                    let seq = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| corrupt("admission without a number".into()))?;
                    return Ok(Admitted::New(ChatMessage {
                        seq,
                        ..draft.clone()
                    }));
                }
                // Never `Claim::New`: the key held something.
                "found" => return Ok(found_claim(&value)?.admitted(draft.clone())),
                "limited" => return Err(ChatError::RateLimited { scope: "channel" }),
                "start" => break,
                "wait" if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(waits.next().unwrap_or(STARTING_TTL)).await;
                }
                "wait" => return Err(ChatError::EpochStartStalled),
                other => return Err(corrupt(format!("admission step {other:?}"))),
            }
        }
        self.admit_starting(draft, key, ttl, &mut conn, &token)
            .await
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

    /// Adds the publish and the window's update to `pipe`; every key is in
    /// the channel's slot.
    fn add_publish(
        &self,
        pipe: &mut redis::Pipeline,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) {
        let channel = message.channel.as_str();
        let payload = encode(message);
        let live = published(&payload, traceparent);
        let recent = keys::recent(channel);
        let keep = self.keep as i64;
        pipe.cmd("SPUBLISH")
            .arg(keys::fanout(channel))
            .arg(live.as_deref().unwrap_or(&payload))
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
            .ignore();
    }
}

/// The key's mark and the fan-out in one pipeline: the idempotency key
/// shares the channel's hash tag, so both go to the same node in one round
/// trip. They succeed or fail together.
#[async_trait]
impl Settlement for RedisFanOut {
    async fn settle(
        &self,
        message: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
        traceparent: Option<&str>,
    ) -> Result<(), Unsettled> {
        let mut pipe = redis::pipe();
        if let Some(key) = key {
            pipe.cmd("SET")
                .arg(idem_key(key))
                .arg(tagged(SENT, message))
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        self.add_publish(&mut pipe, message, traceparent);
        let sent = async {
            let mut conn = self.redis.conn().await?;
            pipe.query_async::<()>(&mut conn).await?;
            Ok::<_, ChatError>(())
        };
        sent.await.map_err(|error| Unsettled {
            recorded: false,
            published: false,
            error,
        })
    }
}

#[async_trait]
impl FanOut for RedisFanOut {
    async fn publish(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError> {
        let mut pipe = redis::pipe();
        self.add_publish(&mut pipe, message, traceparent);
        let mut conn = self.redis.conn().await?;
        pipe.query_async::<()>(&mut conn).await?;
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

#[cfg(test)]
mod tests {
    use chatmesh_ids::MessageId;

    use super::*;

    #[test]
    fn the_live_copy_carries_the_traceparent_and_the_same_message() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let message = ChatMessage {
            id: MessageId::from_raw(7 << 22),
            channel: ChannelId::new("general").unwrap(),
            sender: UserId::new("alice").unwrap(),
            seq: 3,
            body: "hi".into(),
            attachments: Vec::new(),
            created_at_ms: 1_800_000_000_000,
            idempotency_key: None,
            change: Default::default(),
            reply_to: None,
            state: Default::default(),
        };
        let payload = encode(&message);
        assert_eq!(published(&payload, None), None);
        let live = published(&payload, Some(traceparent)).expect("a live copy");
        let mut wire = Message::decode(live.as_slice()).unwrap();
        assert_eq!(wire.take_traceparent().as_deref(), Some(traceparent));
        assert_eq!(ChatMessage::try_from(wire), Ok(message));
    }
}
