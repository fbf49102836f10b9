//! `send`: pass the message to the chat service as the session's user and
//! answer with its ID and sequence number, or the error.
//!
//! Each send is the root span of its message's trace (or continues the
//! client's, when the frame names one); the call to chat carries it on.

use std::time::Instant;

use chatmesh_ids::ChannelId;
use tracing::Instrument as _;

use crate::ports::SendCommand;
use crate::ws::protocol::ServerFrame;
use crate::ws::session::Session;

/// A send as the client framed it.
#[derive(Debug)]
pub(super) struct SendFrame {
    pub(super) request_id: Option<String>,
    pub(super) channel: ChannelId,
    pub(super) body: String,
    pub(super) attachments: Vec<String>,
    pub(super) idempotency_key: Option<String>,
    /// The client's W3C `traceparent`, which the send's span continues.
    pub(super) traceparent: Option<String>,
}

impl Session {
    pub(super) async fn send(&mut self, frame: SendFrame) {
        // A root, never the child of whatever span the connection runs in.
        let span = tracing::info_span!(
            parent: None,
            "gateway.send",
            channel = %frame.channel,
            user = %self.user,
            seq = tracing::field::Empty,
        );
        if let Some(traceparent) = &frame.traceparent {
            chatmesh_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        self.send_in(frame, &span).instrument(span.clone()).await;
    }

    async fn send_in(&mut self, frame: SendFrame, span: &tracing::Span) {
        let SendFrame {
            request_id,
            channel,
            body,
            attachments,
            idempotency_key,
            traceparent: _,
        } = frame;
        let command = SendCommand {
            channel: channel.clone(),
            sender: self.user.clone(),
            body,
            attachments,
            idempotency_key,
        };
        let started = Instant::now();
        let result = self.ctx.chat.send(command).await;
        metrics::histogram!("chatmesh_gateway_send_seconds")
            .record(started.elapsed().as_secs_f64());
        let frame = match result {
            Ok(receipt) => {
                span.record("seq", receipt.seq);
                ServerFrame::Ack {
                    request_id,
                    channel_id: channel.into(),
                    message_id: receipt.message_id.get(),
                    seq: receipt.seq,
                    masked: receipt.masked,
                    duplicate: receipt.duplicate,
                }
            }
            Err(err) => ServerFrame::from_error(request_id, &err),
        };
        self.reply(frame).await;
    }
}
