//! The send path: validate, moderate, deduplicate, order, make durable in
//! Kafka, then fan out through Redis.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_ids::{ChannelId, Clock as _, SystemClock, UserId};
use chatmesh_proto::common::v1::Message;
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::config::SendLimits;
use crate::moderation::Filter;
use crate::{ChatError, Directory, Moderation};

/// A validated request to send a message.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Target channel.
    pub channel: ChannelId,
    /// Authenticated sender.
    pub sender: UserId,
    /// Message text.
    pub body: String,
    /// Media IDs of ready uploads.
    pub attachments: Vec<String>,
    /// Client-chosen key that makes retries idempotent.
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the caller, carried into the Kafka record.
    pub traceparent: Option<String>,
}

/// The outcome of a send.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The stored message with its ID and sequence number.
    pub message: Message,
    /// The moderation filter masked part of the body.
    pub masked: bool,
    /// The idempotency key was seen before; `message` is the original.
    pub duplicate: bool,
}

/// Marker stored under an idempotency key while its send is in flight.
const PENDING: &[u8] = b"pending";
/// How long an in-flight marker survives a crashed sender.
const PENDING_TTL: Duration = Duration::from_secs(30);

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

/// The Kafka producer, replaced after a failed delivery.
///
/// After delivery timeouts librdkafka bumps the epoch of an idempotent
/// producer, and some Kafka-API brokers (tansu 0.6) fail every request once
/// they see an epoch they never issued. A fresh producer starts a fresh
/// producer session instead; the old one is purged so it sends nothing more.
pub(crate) struct Producer {
    config: chatmesh_config::KafkaConfig,
    // (generation, producer); a std mutex for a clone or a swap.
    current: std::sync::Mutex<(u64, FutureProducer)>,
}

impl Producer {
    pub(crate) fn new(config: chatmesh_config::KafkaConfig, producer: FutureProducer) -> Self {
        Self {
            config,
            current: std::sync::Mutex::new((0, producer)),
        }
    }

    fn get(&self) -> (u64, FutureProducer) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the producer of `generation`, unless another failure already did.
    fn replace(&self, generation: u64) {
        let fresh = match chatmesh_kafka::producer(&self.config) {
            Ok(p) => p,
            Err(err) => return tracing::warn!(error = %err, "cannot create a new kafka producer"),
        };
        let old = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.0 != generation {
                return;
            }
            std::mem::replace(&mut *current, (generation + 1, fresh)).1
        };
        old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        tracing::info!(
            generation = generation + 1,
            "kafka producer replaced after a failed delivery"
        );
    }
}

/// Everything the send path needs, shared by all requests.
pub struct SendPath {
    pub(crate) directory: Directory,
    pub(crate) filter: Arc<Filter>,
    pub(crate) ids: crate::lease::WorkerLease,
    pub(crate) redis: Cluster,
    pub(crate) producer: Producer,
    pub(crate) limits: SendLimits,
}

impl std::fmt::Debug for SendPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendPath")
            .field("topic", &self.producer.config.topic)
            .finish_non_exhaustive()
    }
}

impl SendPath {
    /// Sends one message. On success the message is durable in Kafka; its
    /// fan-out through Redis is best effort and never undoes the send.
    pub async fn send(&self, req: SendRequest) -> Result<Sent, ChatError> {
        self.validate(&req)?;
        let policy = self
            .directory
            .policy_for_member(&req.channel, &req.sender)
            .await?;
        self.directory
            .check_attachments(&req.channel, &req.attachments)
            .await?;
        self.rate_limit(&req.channel, &req.sender).await?;
        let (body, masked) = match (policy, self.filter.mask(&req.body)) {
            (_, None) => (req.body.clone(), false),
            (Moderation::Reject, Some(_)) => return Err(ChatError::Blocked),
            (Moderation::Mask, Some(masked)) => (masked, true),
        };

        let idem = req
            .idempotency_key
            .as_deref()
            .map(|k| keys::idempotency(req.channel.as_str(), req.sender.as_str(), k));
        if let Some(key) = &idem
            && let Some(original) = self.claim(key).await?
        {
            return Ok(Sent {
                message: original,
                masked: false,
                duplicate: true,
            });
        }

        let result = self.make_durable(&req, body, idem.as_deref()).await;
        let message = match result {
            Ok(message) => message,
            Err(err) => {
                if let Some(key) = &idem {
                    let mut conn = self.redis.conn().await?;
                    let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
                }
                return Err(err);
            }
        };
        self.publish(&message).await;
        metrics::counter!("chatmesh_messages_sent_total").increment(1);
        Ok(Sent {
            message,
            masked,
            duplicate: false,
        })
    }

    fn validate(&self, req: &SendRequest) -> Result<(), ChatError> {
        let invalid = |field, reason: String| ChatError::InvalidArgument { field, reason };
        if req.body.len() > self.limits.max_body_bytes {
            return Err(ChatError::TooLarge {
                limit: self.limits.max_body_bytes,
            });
        }
        if req.body.trim().is_empty() && req.attachments.is_empty() {
            return Err(invalid("body", "must not be empty".into()));
        }
        if req
            .body
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(invalid(
                "body",
                "must not contain control characters".into(),
            ));
        }
        if req.attachments.len() > self.limits.max_attachments {
            return Err(invalid(
                "attachments",
                format!("at most {} per message", self.limits.max_attachments),
            ));
        }
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid(
                "idempotency_key",
                "must be 1 to 128 printable ASCII characters".into(),
            ));
        }
        Ok(())
    }

    /// Fixed one-second windows in Redis, so the limits hold across every
    /// chat instance.
    async fn rate_limit(&self, channel: &ChannelId, sender: &UserId) -> Result<(), ChatError> {
        let window = SystemClock.now_ms() / 1000;
        let mut conn = self.redis.conn().await?;
        for (key, limit, scope) in [
            (
                keys::user_rate(sender.as_str(), window),
                self.limits.user_per_second,
                "user",
            ),
            (
                keys::channel_rate(channel.as_str(), window),
                self.limits.channel_per_second,
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

    /// Claims an idempotency key. `Some` holds the original message when the
    /// key was used before.
    async fn claim(&self, key: &str) -> Result<Option<Message>, ChatError> {
        let mut conn = self.redis.conn().await?;
        let claimed: bool = redis::cmd("SET")
            .arg(key)
            .arg(PENDING)
            .arg("NX")
            .arg("PX")
            .arg(PENDING_TTL.as_millis() as u64)
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if claimed {
            return Ok(None);
        }
        let stored: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        match stored {
            Some(bytes) if bytes != PENDING => {
                Message::decode(bytes.as_slice()).map(Some).map_err(|e| {
                    ChatError::Redis(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "stored message",
                        e.to_string(),
                    )))
                })
            }
            // The first attempt is still in flight (or expired just now).
            _ => Err(ChatError::InFlight),
        }
    }

    /// Assigns the ID and sequence number and waits until Kafka has the
    /// record on every in-sync replica.
    async fn make_durable(
        &self,
        req: &SendRequest,
        body: String,
        idem: Option<&str>,
    ) -> Result<Message, ChatError> {
        let channel = req.channel.as_str();
        let mut conn = self.redis.conn().await?;
        let id = self.ids.ids().ok_or(ChatError::NoWorkerId)?.next_id();
        let seq: u64 = redis::cmd("INCR")
            .arg(keys::seq(channel))
            .query_async(&mut conn)
            .await?;
        let message = Message {
            message_id: id.get(),
            channel_id: channel.to_owned(),
            sender_id: req.sender.as_str().to_owned(),
            seq,
            body,
            attachments: req.attachments.clone(),
            created_at_ms: id.unix_ms() as i64,
            idempotency_key: req.idempotency_key.clone().unwrap_or_default(),
        };
        let payload = message.encode_to_vec();
        let mut headers = OwnedHeaders::new();
        if let Some(tp) = &req.traceparent {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(tp.as_str()),
            });
        }
        let (generation, producer) = self.producer.get();
        let record = FutureRecord::to(&self.producer.config.topic)
            .key(channel)
            .payload(&payload)
            .headers(headers);
        if let Err((err, _)) = producer.send(record, Duration::from_secs(0)).await {
            self.producer.replace(generation);
            tracing::warn!(channel, seq, error = %err, "message not made durable");
            let released: Result<i64, _> = redis::Script::new(RELEASE_SEQ)
                .key(keys::seq(channel))
                .key(keys::void_seqs(channel))
                .arg(seq)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = released {
                tracing::warn!(channel, seq, error = %e, "could not release sequence number");
            }
            metrics::counter!("chatmesh_send_failures_total", "reason" => "kafka").increment(1);
            return Err(ChatError::LogUnavailable);
        }
        if let Some(key) = idem {
            let ttl = self.limits.idempotency_ttl.as_millis() as u64;
            let stored: Result<(), _> = redis::cmd("SET")
                .arg(key)
                .arg(&payload)
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            if let Err(e) = stored {
                tracing::warn!(channel, error = %e, "could not record idempotency key");
            }
        }
        Ok(message)
    }

    /// Publishes to the channel's subscribers and keeps the recent-history
    /// window. Failures are logged: the message is already stored, and
    /// clients recover it through gap filling.
    async fn publish(&self, message: &Message) {
        let channel = message.channel_id.as_str();
        let payload = message.encode_to_vec();
        let recent = keys::recent(channel);
        let keep = self.limits.recent_history as i64;
        let result: Result<(), redis::RedisError> = async {
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
                .query_async(&mut conn)
                .await
        }
        .await;
        if let Err(err) = result {
            metrics::counter!("chatmesh_send_failures_total", "reason" => "fanout").increment(1);
            tracing::warn!(channel, seq = message.seq, error = %err, "message stored but not fanned out");
        }
    }
}
