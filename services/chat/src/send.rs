//! The send path: validate, moderate, deduplicate, order, make durable in
//! the message log, then fan out. The rules live here; every store is one
//! of the traits in [`crate::ports`].

use std::sync::Arc;

use std::time::Duration;

use chatmesh_ids::{Change, ChannelId, ChatMessage, UserId};

use crate::config::SendLimits;
use crate::moderation::{self, SharedFilter, Verdict};
use crate::ports::{
    Admission, Admitted, IdSource, IdempotencyKey, MemberDirectory, MessageLog, PostLookup,
    RateLimiter, Sequencer, Settlement,
};
use crate::{ChatError, Moderation};

mod stepwise;
#[cfg(test)]
mod tests;
mod visible;

pub(crate) use stepwise::claim_numbered;
pub use stepwise::{Stepwise, StepwiseSettlement};

/// A request to add an event to a channel: a new message, or a change to
/// one (see [`Change`]).
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Target channel.
    pub channel: ChannelId,
    /// Authenticated sender.
    pub sender: UserId,
    /// What the event does: [`Change::Post`] for a new message.
    pub change: Change,
    /// Message text: a post's, or an edit's new text; empty otherwise.
    pub body: String,
    /// A post's reply: the `seq` of the post it answers in the same
    /// channel. The post joins that post's thread, or the thread it is in.
    pub reply_to: Option<u64>,
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
    /// Marks a durable message's key acknowledged and fans it out.
    pub settlement: Arc<dyn Settlement>,
    /// Cross-instance per-user rate limits (the channel's are counted on
    /// admission).
    pub limiter: Arc<dyn RateLimiter>,
    /// Stored posts, which changes are checked against.
    pub posts: Arc<dyn PostLookup>,
}

/// How long a change waits for storage to catch up with the post it names,
/// which may have been sent an instant before.
const TARGET_WAIT: Duration = Duration::from_millis(1500);

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
        let mut thread = None;
        if req.change == Change::Post {
            b.directory
                .check_attachments(&req.channel, &req.attachments)
                .await?;
            if let Some(to) = req.reply_to {
                thread = Some(self.thread_of(&req.channel, to).await?);
            }
        } else {
            self.check_target(&req).await?;
        }
        b.limiter.check_user(&req.sender).await?;
        // Posts and edits carry text; the other changes have none to judge.
        let verdict = match req.change {
            Change::Post | Change::Edit { .. } => {
                moderation::judge(&self.filter, &*b.directory, &req.channel, policy, &req.body)
                    .await?
            }
            _ => Verdict::Clean,
        };
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
        let (message, duplicate) = self.make_durable(&req, body, thread, idem.as_ref()).await?;
        if duplicate {
            return Ok(Sent {
                message,
                masked: false,
                duplicate: true,
            });
        }
        self.settle(&message, idem.as_ref(), req.traceparent.as_deref())
            .await;
        metrics::counter!("chatmesh_messages_sent_total").increment(1);
        if let Verdict::Flag(hits) = verdict {
            moderation::record_flagged(&message, hits);
        }
        // A resumed send carries the body moderated on its first attempt.
        let masked = masked || message.body != req.body;
        if let Some(target) = message.change.target() {
            tracing::debug!(
                channel = req.channel.as_str(),
                seq = message.seq,
                target,
                "message changed"
            );
        }
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
        thread: Option<u64>,
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
            change: req.change.clone(),
            reply_to: thread,
            state: Default::default(),
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

    /// Checks a change against the post it names: the post must be stored
    /// (waiting briefly for storage to catch up with a fresh one), only its
    /// author edits it, its author or an owner deletes it, and a deleted
    /// post takes no edit or reaction. Deleting a deleted post is allowed,
    /// so a retried delete succeeds; the repeat changes nothing.
    async fn check_target(&self, req: &SendRequest) -> Result<(), ChatError> {
        let b = &self.backends;
        let Some(target) = req.change.target() else {
            return Ok(());
        };
        let post = self.find_post(&req.channel, target).await?;
        let own = post.sender == req.sender;
        if matches!(req.change, Change::Delete { .. }) {
            if !own && !b.directory.is_owner(&req.channel, &req.sender).await? {
                return Err(ChatError::Forbidden(
                    "only the author or an owner of the channel may delete a message",
                ));
            }
            return Ok(());
        }
        if post.state.deleted {
            return Err(ChatError::MessageNotFound);
        }
        if matches!(req.change, Change::Edit { .. }) && !own {
            return Err(ChatError::Forbidden("only its author may edit a message"));
        }
        Ok(())
    }

    /// The thread a reply to post `to` joins: the thread `to` is in, or the
    /// one it starts. A deleted post takes no reply.
    async fn thread_of(&self, channel: &ChannelId, to: u64) -> Result<u64, ChatError> {
        let post = self.find_post(channel, to).await?;
        if post.state.deleted {
            return Err(ChatError::MessageNotFound);
        }
        Ok(post.reply_to.unwrap_or(post.seq))
    }

    /// The stored post `seq` of `channel`. A post sent an instant ago may
    /// not be stored yet: the lookup is retried for [`TARGET_WAIT`] before
    /// the number counts as naming no post.
    async fn find_post(&self, channel: &ChannelId, seq: u64) -> Result<ChatMessage, ChatError> {
        use backon::{ExponentialBuilder, Retryable as _};
        let lookup = || async {
            match self.backends.posts.post(channel, seq).await? {
                Some(post) => Ok(post),
                None => Err(ChatError::MessageNotFound),
            }
        };
        lookup
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(250))
                    .with_total_delay(Some(TARGET_WAIT))
                    .without_max_times(),
            )
            .when(|e| matches!(e, ChatError::MessageNotFound))
            .await
    }

    /// Voids a number whose message may or may not be in the log.
    async fn void(&self, channel: &ChannelId, seq: u64) {
        if let Err(e) = self.backends.sequencer.release(channel, seq).await {
            tracing::warn!(channel = channel.as_str(), seq, error = %e, "could not void sequence number");
        }
    }

    /// Marks a durable message's key acknowledged and fans it out.
    /// Failures are logged: the message is already stored, a key left
    /// holding it makes a retry send it again (kept once downstream), and
    /// clients recover a message not fanned out through gap filling.
    async fn settle(
        &self,
        message: &ChatMessage,
        key: Option<&IdempotencyKey>,
        traceparent: Option<&str>,
    ) {
        let ttl = self.limits.idempotency_ttl;
        let Err(unsettled) = self
            .backends
            .settlement
            .settle(message, key, ttl, traceparent)
            .await
        else {
            return;
        };
        let (channel, seq, error) = (message.channel.as_str(), message.seq, &unsettled.error);
        if key.is_some() && !unsettled.recorded {
            tracing::warn!(channel, seq, %error, "could not record idempotency key");
        }
        if !unsettled.published {
            metrics::counter!("chatmesh_send_failures_total", "reason" => "fanout").increment(1);
            tracing::warn!(channel, seq, %error, "message stored but not fanned out");
        }
    }
}

/// The longest reaction, in bytes of UTF-8: room for emoji sequences
/// (skin tones, flags, joined families), not for sentences.
const MAX_EMOJI_BYTES: usize = 32;

fn validate(limits: &SendLimits, req: &SendRequest) -> Result<(), ChatError> {
    let invalid = |field, reason: String| ChatError::InvalidArgument { field, reason };
    if req.reply_to.is_some() && req.change != Change::Post {
        return Err(invalid("reply_to", "only a new message replies".into()));
    }
    if req.reply_to == Some(0) {
        return Err(invalid("reply_to", "must name a message (from 1)".into()));
    }
    if let Some(target) = req.change.target() {
        if target == 0 {
            return Err(invalid("target_seq", "must name a message (from 1)".into()));
        }
        if !req.attachments.is_empty() {
            return Err(invalid(
                "attachments",
                "a change carries no attachments".into(),
            ));
        }
    }
    if let Some(emoji) = req.change.emoji()
        && (emoji.is_empty()
            || emoji.len() > MAX_EMOJI_BYTES
            || emoji.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(invalid(
            "emoji",
            format!("must be 1 to {MAX_EMOJI_BYTES} bytes with no spaces or control characters"),
        ));
    }
    if !matches!(req.change, Change::Post | Change::Edit { .. }) {
        if !req.body.is_empty() {
            return Err(invalid(
                "body",
                "a delete or reaction carries no text".into(),
            ));
        }
        return validate_key(req);
    }
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
    validate_key(req)
}

fn validate_key(req: &SendRequest) -> Result<(), ChatError> {
    if let Some(key) = &req.idempotency_key
        && (key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ChatError::InvalidArgument {
            field: "idempotency_key",
            reason: "must be 1 to 128 printable ASCII characters".into(),
        });
    }
    Ok(())
}
