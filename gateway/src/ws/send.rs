//! `send`, `edit`, `delete` and `react`: pass the message, or the change
//! to one, to the chat service as the session's user and answer with the
//! event's ID and sequence number, or the error. A change is a channel
//! event like a message, so all four travel the same way and are "sends"
//! below.
//!
//! Sends are pipelined: a connection may have up to
//! `limits.max_sends_in_flight` sends between its frame and its answer,
//! while the session goes on reading (pings, subscribes, more sends). Sends
//! to one channel go to chat one after another in the order they came, so
//! they take sequence numbers in that order; sends to different channels
//! run side by side. At the window the connection stops reading until an
//! answer frees a place, so a client that floods is slowed by its own
//! backlog rather than queued without bound.
//!
//! Each send is the root span of its message's trace (or continues the
//! client's, when the frame names one); the call to chat carries it on.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_ids::{ChannelId, UserId};
use tokio::task::{Id, JoinSet};
use tracing::Instrument as _;

use crate::ports::{ChangeCommand, ChangeRequest, ChatApi, SendCommand, SendReceipt};
use crate::ws::outbound::Outbox;
use crate::ws::protocol::ServerFrame;
use crate::ws::session::Session;

/// A send or change as the client framed it.
#[derive(Debug)]
pub(super) struct SendFrame {
    pub(super) request_id: Option<String>,
    pub(super) channel: ChannelId,
    pub(super) write: Write,
    pub(super) idempotency_key: Option<String>,
    /// The client's W3C `traceparent`, which the send's span continues.
    pub(super) traceparent: Option<String>,
}

/// What a frame asks to add to its channel.
#[derive(Debug)]
pub(super) enum Write {
    /// A new message.
    Post {
        body: String,
        attachments: Vec<String>,
        /// The `seq` of the message it replies to.
        reply_to: Option<u64>,
    },
    /// A change to message `target`.
    Change { target: u64, request: ChangeRequest },
}

/// A session's sends between frame and answer.
#[derive(Default)]
pub(crate) struct Sends {
    /// Channels with a send at chat, each with the sends waiting behind it.
    waiting: HashMap<ChannelId, VecDeque<SendFrame>>,
    /// The sends at chat, as tasks, so they run on any worker thread; a
    /// session that ends drops them (chat finishes what it was given).
    running: JoinSet<()>,
    /// The channel of each running send.
    channels: HashMap<Id, ChannelId>,
    /// Sends at chat or waiting.
    pending: usize,
}

impl std::fmt::Debug for Sends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sends")
            .field("running", &self.running.len())
            .field("pending", &self.pending)
            .finish()
    }
}

impl Sends {
    /// Sends at chat or waiting for one to their channel.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// The channel of the next send to be answered; pending forever while
    /// none is at chat, so it can sit in a `select!`.
    pub(crate) async fn answered(&mut self) -> ChannelId {
        match self.next().await {
            Some(channel) => channel,
            None => std::future::pending().await,
        }
    }

    /// The channel of the next send answered, `None` when none runs.
    async fn next(&mut self) -> Option<ChannelId> {
        let id = match self.running.join_next_with_id().await? {
            Ok((id, ())) => id,
            Err(err) => {
                // A send that panicked answered nothing: the client's retry
                // (same idempotency key) finds out what chat did.
                tracing::error!(error = %err, "a send task failed");
                err.id()
            }
        };
        self.channels.remove(&id)
    }
}

impl Session {
    /// Whether the session holds as many sends as it may: the connection
    /// reads no more frames until one is answered.
    pub(crate) fn sends_full(&self) -> bool {
        self.sends.pending() >= self.ctx.limits.max_sends_in_flight
    }

    /// Takes a send: to chat at once, or behind the one already at chat
    /// for the same channel.
    pub(super) fn send(&mut self, frame: SendFrame) {
        self.sends.pending += 1;
        metrics::gauge!("chatmesh_gateway_sends_in_flight").increment(1.0);
        match self.sends.waiting.get_mut(&frame.channel) {
            Some(queue) => queue.push_back(frame),
            None => {
                self.sends
                    .waiting
                    .insert(frame.channel.clone(), VecDeque::new());
                self.start(frame);
            }
        }
    }

    /// A send to `channel` was answered: the next one waiting for the
    /// channel goes to chat.
    pub(crate) fn on_send_answered(&mut self, channel: ChannelId) {
        self.sends.pending -= 1;
        metrics::gauge!("chatmesh_gateway_sends_in_flight").decrement(1.0);
        let next = match self.sends.waiting.get_mut(&channel) {
            Some(queue) => queue.pop_front(),
            None => None,
        };
        match next {
            Some(frame) => self.start(frame),
            None => {
                self.sends.waiting.remove(&channel);
            }
        }
    }

    /// Runs every send the session holds to its answer, for at most
    /// `limit`: before a draining node closes the connection, so what was
    /// sent is answered rather than left for the client to retry.
    pub(crate) async fn settle_sends(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.sends.pending() > 0 {
            match tokio::time::timeout_at(deadline, self.sends.next()).await {
                Ok(Some(channel)) => self.on_send_answered(channel),
                Ok(None) | Err(_) => break,
            }
        }
    }

    fn start(&mut self, frame: SendFrame) {
        // A root, never the child of whatever span the connection runs in.
        let span = match &frame.write {
            Write::Post { .. } => tracing::info_span!(
                parent: None,
                "gateway.send",
                channel = %frame.channel,
                user = %self.user,
                seq = tracing::field::Empty,
            ),
            Write::Change { target, .. } => tracing::info_span!(
                parent: None,
                "gateway.change",
                channel = %frame.channel,
                user = %self.user,
                target,
                seq = tracing::field::Empty,
            ),
        };
        if let Some(traceparent) = &frame.traceparent {
            chatmesh_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        let channel = frame.channel.clone();
        let call = send_one(
            self.ctx.chat.clone(),
            self.outbox.clone(),
            self.user.clone(),
            frame,
            span.clone(),
        );
        let task = self.sends.running.spawn(call.instrument(span));
        self.sends.channels.insert(task.id(), channel);
    }
}

/// One send to chat and its answer to the client.
async fn send_one(
    chat: Arc<dyn ChatApi>,
    outbox: Outbox,
    sender: UserId,
    frame: SendFrame,
    span: tracing::Span,
) {
    let SendFrame {
        request_id,
        channel,
        write,
        idempotency_key,
        traceparent: _,
    } = frame;
    let started = Instant::now();
    let result = match write {
        Write::Post {
            body,
            attachments,
            reply_to,
        } => {
            chat.send(SendCommand {
                channel: channel.clone(),
                sender,
                body,
                attachments,
                idempotency_key,
                reply_to,
            })
            .await
        }
        Write::Change { target, request } => chat
            .change(ChangeCommand {
                channel: channel.clone(),
                sender,
                target,
                request,
                idempotency_key,
            })
            .await
            .map(|r| SendReceipt {
                message_id: r.event.id,
                seq: r.event.seq,
                masked: r.masked,
                duplicate: r.duplicate,
            }),
    };
    metrics::histogram!("chatmesh_gateway_send_seconds").record(started.elapsed().as_secs_f64());
    let answer = match result {
        Ok(receipt) => {
            span.record("seq", receipt.seq);
            ServerFrame::Ack {
                request_id,
                channel_id: channel.as_str().to_owned(),
                message_id: receipt.message_id.get(),
                seq: receipt.seq,
                masked: receipt.masked,
                duplicate: receipt.duplicate,
            }
        }
        Err(err) => ServerFrame::from_error(request_id, &err),
    };
    outbox.reply(answer).await;
}
