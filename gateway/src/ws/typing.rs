//! `typing`: the user is typing in a subscribed channel, or stopped. The
//! event goes to every node serving the channel (see `hub/typing.rs`) and
//! is never stored. A success is not answered; a refusal is.

use std::collections::HashMap;

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::ChannelId;
use tokio::time::Instant;

use crate::ports::TypingEvent;
use crate::ws::hub::{TYPING_INTERVAL, TYPING_TTL};
use crate::ws::session::Session;

/// What a session said about its typing, per subscribed channel.
#[derive(Debug, Default)]
pub(crate) struct Typing {
    channels: HashMap<ChannelId, Started>,
}

/// A session's last typing start in a channel.
#[derive(Debug, Clone, Copy)]
struct Started {
    /// When it was taken, for the rate limit.
    at: Instant,
    /// A stop followed it.
    stopped: bool,
}

impl Started {
    /// Whether the other sessions may still see the user typing from it.
    fn shown(self, now: Instant) -> bool {
        !self.stopped && now < self.at + TYPING_TTL
    }
}

impl Session {
    pub(super) async fn typing(
        &mut self,
        request_id: Option<String>,
        channel_id: String,
        stop: bool,
    ) {
        let channel = match ChannelId::new(channel_id) {
            Ok(channel) => channel,
            Err(err) => {
                let err = ClientError::new(ErrorKind::InvalidChannel, err.to_string());
                return self.fail(request_id, err).await;
            }
        };
        if !self.channels.contains(&channel) {
            let err = ClientError::new(
                ErrorKind::FailedPrecondition,
                "subscribe to the channel before typing in it",
            );
            return self.fail(request_id, err).await;
        }
        let now = Instant::now();
        if stop {
            // Only a typer others may see has anything to take back, so
            // repeated stops cost nothing beyond the frame budget.
            match self.typing.channels.get_mut(&channel) {
                Some(started) if started.shown(now) => started.stopped = true,
                _ => return,
            }
        } else {
            // Stops are never limited: a refused one would leave the user
            // shown typing for seconds after they sent.
            let last = self.typing.channels.get(&channel);
            if last.is_some_and(|s| now < s.at + TYPING_INTERVAL) {
                metrics::counter!("chatmesh_gateway_rate_limited_total").increment(1);
                let msg = format!(
                    "at most one typing frame per {}s per channel",
                    TYPING_INTERVAL.as_secs_f64()
                );
                return self
                    .fail(request_id, ClientError::new(ErrorKind::RateLimited, msg))
                    .await;
            }
            self.typing.channels.insert(
                channel.clone(),
                Started {
                    at: now,
                    stopped: false,
                },
            );
        }
        if let Err(err) = self.publish_typing(channel.clone(), stop).await {
            tracing::warn!(channel = %channel, error = %err, "typing event not published");
            let err = ClientError::new(ErrorKind::Unavailable, "typing unavailable, retry");
            self.fail(request_id, err).await;
        }
    }

    /// Forgets the session's typing in `channel`, which it leaves. If the
    /// user may still be shown typing there, the other sessions are told
    /// they stopped (even if another session of theirs is typing: that one
    /// is shown again on its next typing frame).
    pub(super) async fn leave_typing(&mut self, channel: &ChannelId) {
        let Some(started) = self.typing.channels.remove(channel) else {
            return;
        };
        if started.shown(Instant::now())
            && let Err(err) = self.publish_typing(channel.clone(), true).await
        {
            tracing::debug!(channel = %channel, error = %err, "typing stop of a leaving session not published");
        }
    }

    async fn publish_typing(
        &self,
        channel: ChannelId,
        stop: bool,
    ) -> Result<(), crate::ports::FeedError> {
        let event = TypingEvent {
            channel,
            user: self.user.clone(),
            stop,
        };
        self.ctx.hub.publish_typing(&event).await
    }
}
