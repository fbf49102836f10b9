//! `subscribe`: check the channel and membership, redirect to the channel's
//! owner when that is another node, otherwise join the channel's
//! fan-out, confirm with the latest sequence number, and replay what the
//! client missed after its `last_seq`.

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::ChannelId;

use crate::ports::Access;
use crate::ws::hub::Subscriber;
use crate::ws::protocol::{MessageBody, ServerFrame};
use crate::ws::replay;
use crate::ws::session::Session;

impl Session {
    pub(super) async fn subscribe(
        &mut self,
        request_id: Option<String>,
        channel: ChannelId,
        last_seq: Option<u64>,
    ) {
        if self.channels.contains(&channel) {
            // Already subscribed: confirm again with the current number.
            let seq = self.ctx.hub.current_seq(&channel).await.unwrap_or(0);
            return self
                .reply(ServerFrame::Subscribed {
                    request_id,
                    channel_id: channel.into(),
                    seq,
                })
                .await;
        }
        let max = self.ctx.limits.max_subscriptions;
        if self.channels.len() >= max {
            let msg = format!("at most {max} channels per connection");
            return self
                .fail(
                    request_id,
                    ClientError::new(ErrorKind::TooManySubscriptions, msg),
                )
                .await;
        }
        // Access comes before ownership: a client is not sent to another
        // node only to hear there that the channel does not exist.
        match self.ctx.chat.access(&channel, &self.user).await {
            Ok(Access::Member) => {}
            Ok(Access::NotMember) => {
                let err =
                    ClientError::new(ErrorKind::NotMember, "join the channel before subscribing");
                return self.fail(request_id, err).await;
            }
            Ok(Access::UnknownChannel) => {
                let err = ClientError::new(ErrorKind::UnknownChannel, "no such channel");
                return self.fail(request_id, err).await;
            }
            Err(err) => return self.fail(request_id, err).await,
        }
        if let Some(url) = self.ctx.placement.redirect_url(&channel) {
            return self
                .reply(ServerFrame::Redirect {
                    request_id,
                    channel_id: channel.into(),
                    url,
                })
                .await;
        }
        let sub = Subscriber {
            user: self.user.clone(),
            outbox: self.outbox.clone(),
            held: last_seq.map(|_| Vec::new()),
        };
        let seq = match self.ctx.hub.subscribe(&channel, self.id, sub).await {
            Ok(seq) => seq,
            Err(err) => {
                tracing::warn!(channel = %channel, error = %err, "subscribe failed");
                let err = ClientError::new(
                    ErrorKind::Unavailable,
                    "fan-out temporarily unavailable, retry",
                );
                return self.fail(request_id, err).await;
            }
        };
        self.channels.insert(channel.clone());
        self.alive();
        self.reply(ServerFrame::Subscribed {
            request_id,
            channel_id: channel.as_str().to_owned(),
            seq,
        })
        .await;
        if let Some(last) = last_seq {
            self.replay(&channel, last, seq).await;
            self.ctx.hub.release(&channel, self.id);
        }
        // Typers renew quietly, so a newcomer would not see them otherwise.
        if let Some(typers) = self.ctx.hub.typers(&channel) {
            self.reply(typers).await;
        }
    }

    /// Sends the messages of `channel` after `last` up to `current`. When
    /// the gap cannot be filled the client is told to reload.
    async fn replay(&self, channel: &ChannelId, last: u64, current: u64) {
        if last >= current {
            return;
        }
        tracing::debug!(channel = %channel, last, current, "replaying a gap");
        match replay::fill(&*self.ctx.gaps, channel, &self.user, last, current).await {
            Some(messages) => {
                metrics::counter!("chatmesh_gateway_replayed_total")
                    .increment(messages.len() as u64);
                for m in &messages {
                    self.reply(ServerFrame::Message(MessageBody::from(m))).await;
                }
            }
            None => {
                metrics::counter!("chatmesh_gateway_reloads_total").increment(1);
                self.reply(ServerFrame::ReloadRequired {
                    channel_id: channel.as_str().to_owned(),
                    from_seq: last + 1,
                    to_seq: current,
                })
                .await;
            }
        }
    }
}
