//! The in-memory message log, whose appends a test can hold or fail.

use std::sync::Mutex;

use async_trait::async_trait;
use chatmesh_ids::{Change, ChannelId, ChatMessage};
use tokio::sync::oneshot;

use super::{Failure, lock};
use crate::ChatError;
use crate::ports::{MessageLog, PostLookup};

/// One appended record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message.
    pub message: ChatMessage,
    /// The `traceparent` it was appended with.
    pub traceparent: Option<String>,
}

/// A message log in a vector.
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Vec<Appended>>,
    held: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<bool>)>>,
    /// Fails `append` while on.
    pub failure: Failure,
}

/// The next append, stopped until the test decides its outcome.
#[derive(Debug)]
pub struct HeldAppend {
    arrived: oneshot::Receiver<()>,
    verdict: oneshot::Sender<bool>,
}

impl HeldAppend {
    /// Waits until the held append has started.
    pub async fn arrived(&mut self) {
        // A dropped log never sends; the append cannot arrive then.
        let _ = (&mut self.arrived).await;
    }

    /// Lets the held append go on (and succeed unless the log is failing).
    pub fn proceed(self) {
        let _ = self.verdict.send(true);
    }

    /// Fails the held append.
    pub fn fail(self) {
        let _ = self.verdict.send(false);
    }
}

impl MemoryLog {
    /// Everything appended, in order.
    pub fn records(&self) -> Vec<Appended> {
        lock(&self.records).clone()
    }

    /// The messages appended, in order.
    pub fn messages(&self) -> Vec<ChatMessage> {
        lock(&self.records)
            .iter()
            .map(|r| r.message.clone())
            .collect()
    }

    /// Stops the next append until the returned handle says how it ends.
    pub fn hold_next(&self) -> HeldAppend {
        let (arrived_tx, arrived) = oneshot::channel();
        let (verdict, verdict_rx) = oneshot::channel();
        *lock(&self.held) = Some((arrived_tx, verdict_rx));
        HeldAppend { arrived, verdict }
    }
}

#[async_trait]
impl MessageLog for MemoryLog {
    async fn append(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError> {
        let held = lock(&self.held).take();
        let proceed = match held {
            Some((arrived, verdict)) => {
                let _ = arrived.send(());
                verdict.await.unwrap_or(false)
            }
            None => true,
        };
        if !proceed || self.failure.on() {
            return Err(ChatError::Kafka(
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
                ),
            ));
        }
        lock(&self.records).push(Appended {
            message: message.clone(),
            traceparent: traceparent.map(str::to_owned),
        });
        Ok(())
    }
}

/// The log read as storage would hold it: a post with the edits and the
/// delete applied to it. Changes apply in log order, as storage applies
/// them in sequence order.
#[async_trait]
impl PostLookup for MemoryLog {
    async fn post(&self, channel: &ChannelId, seq: u64) -> Result<Option<ChatMessage>, ChatError> {
        let records = lock(&self.records);
        let mine = records
            .iter()
            .map(|r| &r.message)
            .filter(|m| m.channel == *channel);
        let mut post: Option<ChatMessage> = None;
        for m in mine {
            match &m.change {
                Change::Post if m.seq == seq => post = Some(m.clone()),
                Change::Edit { target } if *target == seq => {
                    if let Some(p) = post.as_mut().filter(|p| !p.state.deleted) {
                        p.body.clone_from(&m.body);
                        p.state.edit_count += 1;
                        p.state.edited_at_ms = m.created_at_ms;
                    }
                }
                Change::Delete { target } if *target == seq => {
                    if let Some(p) = post.as_mut() {
                        p.body.clear();
                        p.attachments.clear();
                        p.state.deleted = true;
                    }
                }
                _ => continue,
            }
            if let Some(p) = post.as_mut().filter(|_| m.change.target().is_some()) {
                p.state.version = p.state.version.max(m.seq);
            }
        }
        Ok(post)
    }
}
