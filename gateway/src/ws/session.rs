//! One client session's state and frame dispatch. The connection task
//! (`connection.rs`) reads the socket and calls in here; each frame kind is
//! handled in its own file (`subscribe.rs`, `send.rs`, `control.rs`).
//! Nothing here touches a socket or a network client directly, so the
//! session's rules are unit-tested against in-memory ports.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{ChannelId, UserId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{GatewayLimits, PinMode};
use crate::ports::{ChangeRequest, ChatApi, GapSource, Liveness, ReadState};
use crate::ring::nodes::Routes;
use crate::ws::codec;
use crate::ws::hub::Hub;
use crate::ws::limits::FrameBudget;
use crate::ws::outbound::Outbox;
use crate::ws::protocol::{self, ClientFrame, ServerFrame};
use crate::ws::send::{SendFrame, Sends, Write};
use crate::ws::typing::Typing;

/// Which node serves which channel, as this node sees it.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// This node's ID.
    pub(crate) node_id: String,
    /// Whether clients are redirected to the owner.
    pub(crate) mode: PinMode,
    /// The current ring.
    pub(crate) routes: watch::Receiver<Arc<Routes>>,
}

impl Placement {
    /// The URL of the node owning `channel`, when that is another node and
    /// this node redirects.
    pub(crate) fn redirect_url(&self, channel: &ChannelId) -> Option<String> {
        if self.mode != PinMode::Redirect {
            return None;
        }
        let routes = self.routes.borrow();
        match routes.owner(channel.as_str()) {
            Some((node, Some(url))) if node != self.node_id => Some(url.to_owned()),
            _ => None,
        }
    }
}

/// What every session of a node shares.
pub(crate) struct SessionContext {
    /// The chat service.
    pub(crate) chat: Arc<dyn ChatApi>,
    /// Fan-out to local sessions.
    pub(crate) hub: Hub,
    /// Missed messages, for replay.
    pub(crate) gaps: Arc<dyn GapSource>,
    /// Read positions and unread counts.
    pub(crate) reads: Arc<dyn ReadState>,
    /// Session liveness for presence.
    pub(crate) liveness: Arc<dyn Liveness>,
    /// Per-connection limits.
    pub(crate) limits: GatewayLimits,
    /// Channel ownership.
    pub(crate) placement: Placement,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("node_id", &self.placement.node_id)
            .finish_non_exhaustive()
    }
}

/// One client session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(super) ctx: Arc<SessionContext>,
    pub(super) id: u64,
    pub(super) user: UserId,
    pub(super) outbox: Outbox,
    pub(super) channels: BTreeSet<ChannelId>,
    /// Sends between frame and answer.
    pub(crate) sends: Sends,
    budget: FrameBudget,
    /// The session's ID in presence state.
    pub(super) presence_id: String,
    /// Its typing starts and stops, per channel.
    pub(super) typing: Typing,
    /// The read position last stored per channel, so repeated acks of one
    /// position cost no call.
    pub(super) read_marks: HashMap<ChannelId, u64>,
}

impl Session {
    /// Opens a session of `user` writing to `outbox`. The token fires when
    /// the session's presence expires.
    pub(crate) fn open(
        ctx: Arc<SessionContext>,
        id: u64,
        user: UserId,
        outbox: Outbox,
    ) -> (Self, CancellationToken) {
        let (presence_id, expired) = ctx.liveness.open(&user);
        let budget = FrameBudget::new(ctx.limits.frames_per_second, ctx.limits.frame_burst);
        let session = Self {
            ctx,
            id,
            user,
            outbox,
            channels: BTreeSet::new(),
            sends: Sends::default(),
            budget,
            presence_id,
            typing: Typing::default(),
            read_marks: HashMap::new(),
        };
        (session, expired)
    }

    /// Subscribes the channel named in the upgrade request.
    pub(crate) async fn on_initial_channel(&mut self, channel: ChannelId) {
        self.subscribe(None, channel, None).await;
    }

    /// Queues a reply.
    pub(super) async fn reply(&self, frame: ServerFrame) {
        self.outbox.reply(frame).await;
    }

    /// Queues an error frame for `request_id`.
    pub(super) async fn fail(&self, request_id: Option<String>, err: ClientError) {
        self.reply(ServerFrame::from_error(request_id, &err)).await;
    }

    /// Handles one text frame: JSON.
    pub(crate) async fn on_text(&mut self, text: &str) {
        if self.fits(text.len()).await {
            self.on_frame(protocol::parse(text)).await;
        }
    }

    /// Handles one binary frame: Protobuf.
    pub(crate) async fn on_binary(&mut self, bytes: &[u8]) {
        if self.fits(bytes.len()).await {
            self.on_frame(codec::decode(bytes)).await;
        }
    }

    /// Checks a frame of `len` bytes against the size limit; answers the
    /// client when it is over.
    async fn fits(&mut self, len: usize) -> bool {
        let max = self.ctx.limits.max_frame_bytes;
        if len > max {
            let msg = format!("frame is {len} bytes; the limit is {max}");
            self.fail(None, ClientError::new(ErrorKind::FrameTooLarge, msg))
                .await;
            return false;
        }
        true
    }

    /// Spends the frame budget on a decoded frame, then handles it. The
    /// frame is decoded first, bounded by the size limit, so that even a
    /// `rate_limited` answer carries its `request_id`; what the budget
    /// protects is the work behind the frames.
    async fn on_frame(&mut self, frame: Result<ClientFrame, protocol::FrameError>) {
        if !self.budget.take() {
            metrics::counter!("chatmesh_gateway_rate_limited_total").increment(1);
            let msg = format!(
                "more than {} frames per second; slow down",
                self.ctx.limits.frames_per_second
            );
            let request_id = frame.ok().and_then(|f| f.request_id().map(str::to_owned));
            self.fail(request_id, ClientError::new(ErrorKind::RateLimited, msg))
                .await;
            return;
        }
        match frame {
            Ok(frame) => self.dispatch(frame).await,
            Err(err) => self.fail(None, err.into()).await,
        }
    }

    async fn dispatch(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Subscribe {
                request_id,
                channel_id,
                last_seq,
            } => match ChannelId::new(channel_id) {
                Ok(channel) => self.subscribe(request_id, channel, last_seq).await,
                Err(err) => {
                    let err = ClientError::new(ErrorKind::InvalidChannel, err.to_string());
                    self.fail(request_id, err).await
                }
            },
            ClientFrame::Unsubscribe {
                request_id,
                channel_id,
            } => self.unsubscribe(request_id, channel_id).await,
            ClientFrame::Send {
                request_id,
                channel_id,
                body,
                attachments,
                idempotency_key,
                traceparent,
                reply_to,
            } => {
                let write = Write::Post {
                    body,
                    attachments,
                    reply_to,
                };
                self.write(request_id, channel_id, write, idempotency_key, traceparent)
                    .await
            }
            ClientFrame::Edit {
                request_id,
                channel_id,
                seq,
                body,
                idempotency_key,
            } => {
                let write = change(seq, ChangeRequest::Edit { body });
                self.write(request_id, channel_id, write, idempotency_key, None)
                    .await
            }
            ClientFrame::Delete {
                request_id,
                channel_id,
                seq,
                idempotency_key,
            } => {
                let write = change(seq, ChangeRequest::Delete);
                self.write(request_id, channel_id, write, idempotency_key, None)
                    .await
            }
            ClientFrame::React {
                request_id,
                channel_id,
                seq,
                emoji,
                remove,
                idempotency_key,
            } => {
                let write = change(seq, ChangeRequest::React { emoji, remove });
                self.write(request_id, channel_id, write, idempotency_key, None)
                    .await
            }
            ClientFrame::Ack {
                request_id,
                channel_id,
                seq,
            } => self.ack(request_id, channel_id, seq).await,
            ClientFrame::Unread {
                request_id,
                channel_ids,
            } => self.unread(request_id, channel_ids).await,
            ClientFrame::Typing {
                request_id,
                channel_id,
                stop,
            } => self.typing(request_id, channel_id, stop).await,
            ClientFrame::Ping {
                request_id,
                client_time_ms,
            } => self.ping(request_id, client_time_ms).await,
        }
    }

    /// Takes a send or change after checking what the gateway can check
    /// itself: the channel ID, and that a change names a message.
    async fn write(
        &mut self,
        request_id: Option<String>,
        channel_id: String,
        write: Write,
        idempotency_key: Option<String>,
        traceparent: Option<String>,
    ) {
        let channel = match ChannelId::new(channel_id) {
            Ok(channel) => channel,
            Err(err) => {
                let err = ClientError::new(ErrorKind::InvalidChannel, err.to_string());
                return self.fail(request_id, err).await;
            }
        };
        if let Write::Change { target: 0, .. } = write {
            // Sequence numbers start at 1; a binary frame's absent `seq` is 0.
            let err = ClientError::new(ErrorKind::InvalidFrame, "seq must name a message (from 1)");
            return self.fail(request_id, err).await;
        }
        self.send(SendFrame {
            request_id,
            channel,
            write,
            idempotency_key,
            traceparent,
        });
    }

    /// Reports the session alive, in its current channels.
    pub(crate) fn alive(&self) {
        self.ctx
            .liveness
            .alive(&self.presence_id, self.channel_names());
    }

    pub(super) fn channel_names(&self) -> Vec<String> {
        self.channels
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    /// Tells the client to move the channels the ring now gives to another
    /// node, one `reconnect` frame per destination.
    pub(crate) async fn on_ring_change(&mut self) {
        let mut moved: Vec<(String, String)> = self
            .channels
            .iter()
            .filter_map(|c| {
                let url = self.ctx.placement.redirect_url(c)?;
                Some((c.as_str().to_owned(), url))
            })
            .collect();
        moved.sort_by(|a, b| a.1.cmp(&b.1));
        for group in moved.chunk_by(|a, b| a.1 == b.1) {
            let url = group[0].1.clone();
            let channel_ids = group.iter().map(|(c, _)| c.clone()).collect();
            self.reply(ServerFrame::Reconnect {
                reason: "channel moved to another node".into(),
                url: Some(url),
                channel_ids,
            })
            .await;
        }
    }

    /// The node is going away: tell the client to reconnect and resubscribe.
    pub(crate) async fn going_away(&mut self) {
        self.reply(ServerFrame::Reconnect {
            reason: "node shutting down".into(),
            url: None,
            channel_ids: self.channel_names(),
        })
        .await;
    }

    /// The reason given when the session's presence expired.
    pub(crate) fn expiry_reason(ttl: Duration) -> String {
        format!("session expired: no ping for {}s", ttl.as_secs_f64())
    }

    /// Ends the session: presence sees it leave and the hub drops it.
    pub(crate) async fn close(mut self) {
        // Sends still at chat finish there; their answers have no one to go to.
        metrics::gauge!("chatmesh_gateway_sends_in_flight").decrement(self.sends.pending() as f64);
        self.ctx
            .liveness
            .close(&self.presence_id, self.channel_names());
        for channel in std::mem::take(&mut self.channels) {
            self.leave_typing(&channel).await;
            self.ctx.hub.unsubscribe(&channel, self.id).await;
        }
    }
}

/// A change to message `target`.
fn change(target: u64, request: ChangeRequest) -> Write {
    Write::Change { target, request }
}
