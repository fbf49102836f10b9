//! The small frames: `unsubscribe`, `ping` (and `ack`, accepted and ignored
//! until read positions are stored).

use chatmesh_ids::{ChannelId, Clock as _, SystemClock};

use crate::ws::protocol::ServerFrame;
use crate::ws::session::Session;

impl Session {
    pub(super) async fn unsubscribe(&mut self, request_id: Option<String>, channel_id: String) {
        // A malformed ID cannot be subscribed, so there is nothing to leave;
        // the client still gets its confirmation.
        if let Ok(channel) = ChannelId::new(channel_id.as_str())
            && self.channels.remove(&channel)
        {
            self.leave_typing(&channel).await;
            self.ctx.hub.unsubscribe(&channel, self.id).await;
            self.alive();
        }
        self.reply(ServerFrame::Unsubscribed {
            request_id,
            channel_id,
        })
        .await;
    }

    pub(super) async fn ping(&mut self, request_id: Option<String>, client_time_ms: Option<i64>) {
        self.alive();
        self.reply(ServerFrame::Pong {
            request_id,
            client_time_ms,
            server_time_ms: SystemClock.now_ms() as i64,
        })
        .await;
    }
}
