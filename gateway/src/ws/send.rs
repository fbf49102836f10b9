//! `send`: pass the message to the chat service as the session's user and
//! answer with its ID and sequence number, or the error.

use std::time::Instant;

use chatmesh_ids::ChannelId;

use crate::ports::SendCommand;
use crate::ws::protocol::ServerFrame;
use crate::ws::session::Session;

impl Session {
    #[tracing::instrument(name = "gateway.send", skip_all, fields(channel = %channel, user = %self.user))]
    pub(super) async fn send(
        &mut self,
        request_id: Option<String>,
        channel: ChannelId,
        body: String,
        attachments: Vec<String>,
        idempotency_key: Option<String>,
    ) {
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
            Ok(receipt) => ServerFrame::Ack {
                request_id,
                channel_id: channel.into(),
                message_id: receipt.message_id.get(),
                seq: receipt.seq,
                masked: receipt.masked,
                duplicate: receipt.duplicate,
            },
            Err(err) => ServerFrame::from_error(request_id, &err),
        };
        self.reply(frame).await;
    }
}
