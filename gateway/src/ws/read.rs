//! `ack` and `unread`: the user's read positions and unread counts, kept
//! by the storage service. An `ack` that would not move the position (its
//! `seq` is at or below the last one this session stored) is answered
//! without a call, so a client acking every message it shows costs one
//! write per new position, not one per frame.

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{ChannelId, UserId};

use crate::ports::ReadEvent;
use crate::ws::hub::Hub;
use crate::ws::protocol::{ChannelUnreadBody, ServerFrame};
use crate::ws::session::Session;

/// Most channels one `unread` frame may name.
pub(crate) const MAX_UNREAD_CHANNELS: usize = 500;

/// Tells the channel's sessions on every node that `user` has read it up
/// to `seq`. The position is stored already; a receipt that cannot be
/// published is logged and counted, and members still read it with
/// `GET .../reads`.
pub(crate) async fn publish_receipt(hub: &Hub, channel: &ChannelId, user: &UserId, seq: u64) {
    let event = ReadEvent {
        channel: channel.clone(),
        user: user.clone(),
        seq,
    };
    if let Err(err) = hub.publish_read(&event).await {
        metrics::counter!("chatmesh_gateway_receipts_unpublished_total").increment(1);
        tracing::warn!(channel = %channel, error = %err, "read receipt not published");
    }
}

impl Session {
    pub(super) async fn ack(&mut self, request_id: Option<String>, channel_id: String, seq: u64) {
        let channel = match ChannelId::new(channel_id) {
            Ok(channel) => channel,
            Err(err) => {
                let err = ClientError::new(ErrorKind::InvalidChannel, err.to_string());
                return self.fail(request_id, err).await;
            }
        };
        if seq == 0 {
            let err = ClientError::new(ErrorKind::InvalidFrame, "seq must be from 1");
            return self.fail(request_id, err).await;
        }
        let held = match self.read_marks.get(&channel) {
            Some(&held) if held >= seq => held,
            _ => match self.ctx.reads.mark_read(&channel, &self.user, seq).await {
                Ok(held) => {
                    self.read_marks.insert(channel.clone(), held);
                    if held == seq {
                        publish_receipt(&self.ctx.hub, &channel, &self.user, held).await;
                    }
                    held
                }
                Err(err) => return self.fail(request_id, err).await,
            },
        };
        if request_id.is_some() {
            self.reply(ServerFrame::Read {
                request_id,
                channel_id: channel.as_str().to_owned(),
                user_id: self.user.as_str().to_owned(),
                seq: held,
            })
            .await;
        }
    }

    pub(super) async fn unread(&mut self, request_id: Option<String>, channel_ids: Vec<String>) {
        if channel_ids.len() > MAX_UNREAD_CHANNELS {
            let msg = format!("name at most {MAX_UNREAD_CHANNELS} channels");
            return self
                .fail(request_id, ClientError::new(ErrorKind::InvalidFrame, msg))
                .await;
        }
        let channels = match channel_ids
            .into_iter()
            .map(ChannelId::new)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(channels) => channels,
            Err(err) => {
                let err = ClientError::new(ErrorKind::InvalidChannel, err.to_string());
                return self.fail(request_id, err).await;
            }
        };
        match self.ctx.reads.unread(&self.user, &channels).await {
            Ok(counts) => {
                let channels: Vec<ChannelUnreadBody> = counts
                    .into_iter()
                    .map(|c| ChannelUnreadBody {
                        channel_id: c.channel_id,
                        read_seq: c.read_seq,
                        last_seq: c.last_seq,
                        unread: c.unread,
                        mentions: c.mentions,
                    })
                    .collect();
                self.reply(ServerFrame::Unread {
                    request_id,
                    total: channels.iter().map(|c| c.unread).sum(),
                    mentions: channels.iter().map(|c| c.mentions).sum(),
                    channels,
                })
                .await;
            }
            Err(err) => self.fail(request_id, err).await,
        }
    }
}
