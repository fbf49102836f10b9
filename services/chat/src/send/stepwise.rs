//! [`Admission`] and [`Settlement`] composed from the separate seams, one
//! call each.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::ChatMessage;

use crate::ChatError;
use crate::ports::{
    Admission, Admitted, Claim, FanOut, IdempotencyKey, IdempotencyStore, RateLimiter, Sequencer,
    Settlement, Unsettled,
};

/// Admission as three steps: the channel's limit, the next number, then
/// the claim, giving the number back when the key already held a message.
/// The in-memory stores run the send path through it; a store that can do
/// the three at once (Redis, in the channel's slot) implements
/// [`Admission`] itself.
#[derive(Clone)]
pub struct Stepwise {
    /// Counts the channel's sends.
    pub limiter: Arc<dyn RateLimiter>,
    /// Numbers messages.
    pub sequencer: Arc<dyn Sequencer>,
    /// Holds keyed messages.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl std::fmt::Debug for Stepwise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stepwise").finish_non_exhaustive()
    }
}

/// Claims `key` for `message`, already numbered, and gives its number back
/// unless the claim is new (the key held a message, or the claim failed).
/// The last step of [`Stepwise`], and of any admission that numbers first.
pub(crate) async fn claim_numbered(
    sequencer: &dyn Sequencer,
    idempotency: &dyn IdempotencyStore,
    key: Option<&IdempotencyKey>,
    message: ChatMessage,
    ttl: Duration,
) -> Result<Admitted, ChatError> {
    let Some(key) = key else {
        return Ok(Admitted::New(message));
    };
    let claim = idempotency.claim(key, &message, ttl).await;
    let (channel, seq) = (&message.channel, message.seq);
    if !matches!(claim, Ok(Claim::New))
        && let Err(e) = sequencer.give_back(channel, seq).await
    {
        tracing::warn!(channel = channel.as_str(), seq, error = %e, "could not give back sequence number");
    }
    Ok(claim?.admitted(message))
}

#[async_trait]
impl Admission for Stepwise {
    async fn admit(
        &self,
        draft: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
    ) -> Result<Admitted, ChatError> {
        self.limiter.check_channel(&draft.channel).await?;
        let message = ChatMessage {
            seq: self.sequencer.next(&draft.channel).await?,
            ..draft.clone()
        };
        claim_numbered(&*self.sequencer, &*self.idempotency, key, message, ttl).await
    }
}

/// Settlement as two steps side by side: mark the key, fan out. The
/// in-memory stores run the send path through it; a store that can do both
/// at once (Redis, in the channel's slot) implements [`Settlement`] itself.
#[derive(Clone)]
pub struct StepwiseSettlement {
    /// Marks keyed messages acknowledged.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Publishes and keeps the recent window.
    pub fanout: Arc<dyn FanOut>,
}

impl std::fmt::Debug for StepwiseSettlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepwiseSettlement").finish_non_exhaustive()
    }
}

#[async_trait]
impl Settlement for StepwiseSettlement {
    async fn settle(
        &self,
        message: &ChatMessage,
        key: Option<&IdempotencyKey>,
        ttl: Duration,
        traceparent: Option<&str>,
    ) -> Result<(), Unsettled> {
        let record = async {
            match key {
                Some(key) => self.idempotency.record(key, message, ttl).await,
                None => Ok(()),
            }
        };
        let (recorded, published) = tokio::join!(record, self.fanout.publish(message, traceparent));
        let (recorded_ok, published_ok) = (recorded.is_ok(), published.is_ok());
        recorded.and(published).map_err(|error| Unsettled {
            recorded: recorded_ok,
            published: published_ok,
            error,
        })
    }
}
