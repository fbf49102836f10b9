//! `ack` and `unread`: the user's read positions and unread counts, kept
//! by the storage service. An `ack` that would not move the position (its
//! `seq` is at or below the last one this session stored) is answered
//! without a call, so a client acking every message it shows costs one
//! write per new position, not one per frame.

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::ChannelId;

use crate::ws::protocol::{ServerFrame, UnreadBody};
use crate::ws::session::Session;

/// Most channels one `unread` frame may name.
pub(crate) const MAX_UNREAD_CHANNELS: usize = 500;

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
                    held
                }
                Err(err) => return self.fail(request_id, err).await,
            },
        };
        if request_id.is_some() {
            self.reply(ServerFrame::Read {
                request_id,
                channel_id: channel.as_str().to_owned(),
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
                let channels: Vec<UnreadBody> = counts
                    .into_iter()
                    .map(|c| UnreadBody {
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
