//! The send path: validate, moderate, deduplicate, order, make durable in
//! the message log, then fan out. The rules live here; every store is one
//! of the traits in [`crate::ports`].

use std::sync::Arc;

use chatmesh_ids::{ChannelId, ChatMessage, UserId};

use crate::config::SendLimits;
use crate::moderation::{self, SharedFilter, Verdict};
use crate::ports::{
    Admission, Admitted, FanOut, IdSource, IdempotencyKey, IdempotencyStore, MemberDirectory,
    MessageLog, RateLimiter, Sequencer,
};
use crate::{ChatError, Moderation};

mod stepwise;
#[cfg(test)]
mod tests;
mod visible;

pub use stepwise::Stepwise;
pub(crate) use stepwise::claim_numbered;

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
    /// W3C `traceparent` of the send's span, carried into the log record
    /// and the fan-out.
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
    /// The channel's limit, numbering and idempotency claim, in one step.
    pub admission: Arc<dyn Admission>,
    /// Per-channel sequence numbers, voided when a message is not durable.
    pub sequencer: Arc<dyn Sequencer>,
    /// The durable message log.
    pub log: Arc<dyn MessageLog>,
    /// Live delivery and the recent window.
    pub fanout: Arc<dyn FanOut>,
    /// Idempotency keys, marked acknowledged after the append.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Cross-instance per-user rate limits (the channel's are counted on
    /// admission).
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
    filter: SharedFilter,
    limits: SendLimits,
}

impl SendPath {
    /// A send path on `backends`, moderating with `filter`.
    pub fn new(backends: Backends, filter: impl Into<SharedFilter>, limits: SendLimits) -> Self {
        Self {
            backends,
            filter: filter.into(),
            limits,
        }
    }

    /// Sends one message. On success the message is durable in the log; its
    /// fan-out is best effort and never undoes the send.
    pub async fn send(&self, req: SendRequest) -> Result<Sent, ChatError> {
        validate(&self.limits, &req)?;
        let b = &self.backends;
        let policy: Moderation = b
            .directory
            .policy_for_member(&req.channel, &req.sender)
            .await?;
        b.directory
            .check_attachments(&req.channel, &req.attachments)
            .await?;
        b.limiter.check_user(&req.sender).await?;
        let verdict =
            moderation::judge(&self.filter, &*b.directory, &req.channel, policy, &req.body).await?;
        let (body, masked) = match &verdict {
            Verdict::Clean | Verdict::Flag(_) => (req.body.clone(), false),
            Verdict::Reject => return Err(ChatError::Blocked),
            Verdict::Mask(masked) => (masked.clone(), true),
        };

        let idem = req.idempotency_key.as_ref().map(|key| IdempotencyKey {
            channel: req.channel.clone(),
            sender: req.sender.clone(),
            key: key.clone(),
        });
        let (message, duplicate) = self.make_durable(&req, body, idem.as_ref()).await?;
        if duplicate {
            return Ok(Sent {
                message,
                masked: false,
                duplicate: true,
            });
        }
        // Marking the key sent and fanning out don't depend on each other,
        // so they share one round trip's wait.
        let record = async {
            if let Some(key) = &idem
                && let Err(e) = b
                    .idempotency
                    .record(key, &message, self.limits.idempotency_ttl)
                    .await
            {
                // The key keeps holding the message: a retry sends it
                // again, and storage and the gateways keep it once.
                tracing::warn!(channel = req.channel.as_str(), error = %e, "could not record idempotency key");
            }
        };
        tokio::join!(record, self.publish(&message, req.traceparent.as_deref()));
        metrics::counter!("chatmesh_messages_sent_total").increment(1);
        if let Verdict::Flag(hits) = verdict {
            moderation::record_flagged(&message, hits);
        }
        // A resumed send carries the body moderated on its first attempt.
        let masked = masked || message.body != req.body;
        Ok(Sent {
            message,
            masked,
            duplicate: false,
        })
    }

    /// Assigns the ID, admits the message (the channel's limit, its
    /// sequence number, the claim of its idempotency key), and appends it
    /// to the log. Returns the message and whether it is an acknowledged
    /// duplicate, which is not appended again.
    ///
    /// A keyed message is held under its key before the append, so a retry
    /// after any failure (the log's, or this instance dying) appends the
    /// very same message again rather than a second one. A number whose
    /// unkeyed message never became durable is voided, so readers skip it.
    async fn make_durable(
        &self,
        req: &SendRequest,
        body: String,
        idem: Option<&IdempotencyKey>,
    ) -> Result<(ChatMessage, bool), ChatError> {
        let b = &self.backends;
        let id = b.ids.next_id().ok_or(ChatError::NoWorkerId)?;
        let draft = ChatMessage {
            id,
            channel: req.channel.clone(),
            sender: req.sender.clone(),
            seq: 0,
            body,
            attachments: req.attachments.clone(),
            created_at_ms: id.unix_ms() as i64,
            idempotency_key: req.idempotency_key.clone(),
        };
        let message = match b
            .admission
            .admit(&draft, idem, self.limits.idempotency_ttl)
            .await?
        {
            Admitted::New(message) => message,
            Admitted::Duplicate(original) => return Ok((original, true)),
            Admitted::Resume(held) => {
                tracing::info!(
                    channel = req.channel.as_str(),
                    seq = held.seq,
                    "retry resumes a send whose outcome was unknown"
                );
                metrics::counter!("chatmesh_sends_resumed_total").increment(1);
                held
            }
        };
        if let Err(err) = b.log.append(&message, req.traceparent.as_deref()).await {
            let channel = req.channel.as_str();
            tracing::warn!(channel, seq = message.seq, error = %err, "message not made durable");
            // A keyed message keeps its number for the retry, which sends
            // it again; nobody retries an unkeyed one.
            if idem.is_none() {
                self.void(&req.channel, message.seq).await;
            }
            metrics::counter!("chatmesh_send_failures_total", "reason" => "kafka").increment(1);
            return Err(ChatError::LogUnavailable);
        }
        Ok((message, false))
    }

    /// Voids a number whose message may or may not be in the log.
    async fn void(&self, channel: &ChannelId, seq: u64) {
        if let Err(e) = self.backends.sequencer.release(channel, seq).await {
            tracing::warn!(channel = channel.as_str(), seq, error = %e, "could not void sequence number");
        }
    }

    /// Fans out a durable message. Failures are logged: the message is
    /// already stored, and clients recover it through gap filling.
    async fn publish(&self, message: &ChatMessage, traceparent: Option<&str>) {
        if let Err(err) = self.backends.fanout.publish(message, traceparent).await {
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
    if !visible::has_visible(&req.body) && req.attachments.is_empty() {
        return Err(invalid(
            "body",
            "must not be empty or only invisible characters".into(),
        ));
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
