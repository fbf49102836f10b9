//! The send path: validate, moderate, deduplicate, order, make durable in
//! the message log, then fan out. The rules live here; every store is one
//! of the traits in [`crate::ports`].

use std::sync::Arc;

use chatmesh_ids::{ChannelId, ChatMessage, UserId};

use crate::config::SendLimits;
use crate::moderation::Filter;
use crate::ports::{
    Claim, FanOut, IdSource, IdempotencyKey, IdempotencyStore, MemberDirectory, MessageLog,
    RateLimiter, Sequencer,
};
use crate::{ChatError, Moderation};

#[cfg(test)]
mod tests;

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
    /// W3C `traceparent` of the caller, carried into the log record.
    pub traceparent: Option<String>,
}

/// The outcome of a send.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The stored message with its ID and sequence number.
    pub message: ChatMessage,
    /// The moderation filter masked part of the body.
    pub masked: bool,
    /// The idempotency key was seen before; `message` is the original.
    pub duplicate: bool,
}

/// The stores and services the send path runs on.
#[derive(Clone)]
pub struct Backends {
    /// Memberships, moderation policies and uploads.
    pub directory: Arc<dyn MemberDirectory>,
    /// Message IDs.
    pub ids: Arc<dyn IdSource>,
    /// Per-channel sequence numbers.
    pub sequencer: Arc<dyn Sequencer>,
    /// The durable message log.
    pub log: Arc<dyn MessageLog>,
    /// Live delivery and the recent window.
    pub fanout: Arc<dyn FanOut>,
    /// Idempotency keys.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Cross-instance rate limits.
    pub limiter: Arc<dyn RateLimiter>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

/// Everything the send path needs, shared by all requests.
#[derive(Debug)]
pub struct SendPath {
    backends: Backends,
    filter: Arc<Filter>,
    limits: SendLimits,
}

impl SendPath {
    /// A send path on `backends`, moderating with `filter`.
    pub fn new(backends: Backends, filter: Arc<Filter>, limits: SendLimits) -> Self {
        Self {
            backends,
            filter,
            limits,
        }
    }

    /// Sends one message. On success the message is durable in the log; its
    /// fan-out is best effort and never undoes the send.
    pub async fn send(&self, req: SendRequest) -> Result<Sent, ChatError> {
        validate(&self.limits, &req)?;
        let b = &self.backends;
        let policy = b
            .directory
            .policy_for_member(&req.channel, &req.sender)
            .await?;
        b.directory
            .check_attachments(&req.channel, &req.attachments)
            .await?;
        b.limiter.check(&req.channel, &req.sender).await?;
        let (body, masked) = match (policy, self.filter.mask(&req.body)) {
            (_, None) => (req.body.clone(), false),
            (Moderation::Reject, Some(_)) => return Err(ChatError::Blocked),
            (Moderation::Mask, Some(masked)) => (masked, true),
        };

        let idem = req.idempotency_key.as_ref().map(|key| IdempotencyKey {
            channel: req.channel.clone(),
            sender: req.sender.clone(),
            key: key.clone(),
        });
        if let Some(key) = &idem {
            match b.idempotency.claim(key).await? {
                Claim::New => {}
                Claim::Duplicate(original) => {
                    return Ok(Sent {
                        message: original,
                        masked: false,
                        duplicate: true,
                    });
                }
                Claim::InFlight => return Err(ChatError::InFlight),
            }
        }

        let message = match self.make_durable(&req, body).await {
            Ok(message) => message,
            Err(err) => {
                if let Some(key) = &idem
                    && let Err(e) = b.idempotency.forget(key).await
                {
                    // The claim expires on its own; until then retries
                    // answer "in progress".
                    tracing::warn!(channel = req.channel.as_str(), error = %e, "could not free idempotency key");
                }
                return Err(err);
            }
        };
        if let Some(key) = &idem
            && let Err(e) = b
                .idempotency
                .record(key, &message, self.limits.idempotency_ttl)
                .await
        {
            tracing::warn!(channel = req.channel.as_str(), error = %e, "could not record idempotency key");
        }
        self.publish(&message).await;
        metrics::counter!("chatmesh_messages_sent_total").increment(1);
        Ok(Sent {
            message,
            masked,
            duplicate: false,
        })
    }

    /// Assigns the ID and sequence number and appends to the log. A number
    /// whose message never became durable is released, so the sequence
    /// readers see stays dense or names its holes.
    async fn make_durable(
        &self,
        req: &SendRequest,
        body: String,
    ) -> Result<ChatMessage, ChatError> {
        let b = &self.backends;
        let id = b.ids.next_id().ok_or(ChatError::NoWorkerId)?;
        let seq = b.sequencer.next(&req.channel).await?;
        let message = ChatMessage {
            id,
            channel: req.channel.clone(),
            sender: req.sender.clone(),
            seq,
            body,
            attachments: req.attachments.clone(),
            created_at_ms: id.unix_ms() as i64,
            idempotency_key: req.idempotency_key.clone(),
        };
        if let Err(err) = b.log.append(&message, req.traceparent.as_deref()).await {
            let channel = req.channel.as_str();
            tracing::warn!(channel, seq, error = %err, "message not made durable");
            match b.sequencer.release(&req.channel, seq).await {
                Ok(released) => {
                    tracing::debug!(channel, seq, ?released, "sequence number released")
                }
                Err(e) => {
                    tracing::warn!(channel, seq, error = %e, "could not release sequence number");
                }
            }
            metrics::counter!("chatmesh_send_failures_total", "reason" => "kafka").increment(1);
            return Err(ChatError::LogUnavailable);
        }
        Ok(message)
    }

    /// Fans out a durable message. Failures are logged: the message is
    /// already stored, and clients recover it through gap filling.
    async fn publish(&self, message: &ChatMessage) {
        if let Err(err) = self.backends.fanout.publish(message).await {
            metrics::counter!("chatmesh_send_failures_total", "reason" => "fanout").increment(1);
            tracing::warn!(
                channel = message.channel.as_str(),
                seq = message.seq,
                error = %err,
                "message stored but not fanned out"
            );
        }
    }
}

fn validate(limits: &SendLimits, req: &SendRequest) -> Result<(), ChatError> {
    let invalid = |field, reason: String| ChatError::InvalidArgument { field, reason };
    if req.body.len() > limits.max_body_bytes {
        return Err(ChatError::TooLarge {
            limit: limits.max_body_bytes,
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
    if req.attachments.len() > limits.max_attachments {
        return Err(invalid(
            "attachments",
            format!("at most {} per message", limits.max_attachments),
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
