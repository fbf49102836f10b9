//! The Redis side of fan-out: one RESP3 cluster connection carrying the
//! node's sharded subscriptions, and the task that turns its pushes into
//! hub deliveries.
//!
//! Typing events ride the presence events channel each node already
//! subscribes per channel, rather than a third subscription per channel:
//! they go to the same nodes (those serving the channel), the existing
//! subscribe, unsubscribe and re-subscribe paths carry them with no change,
//! and a busy node holds no extra subscriptions. They are told apart from
//! presence events by a leading zero byte, which no encoded
//! `PresenceEvent` starts with (field number 0 is not valid Protobuf); a
//! node that predates typing drops them as undecodable presence events.

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, UserId};
use chatmesh_proto::common::v1::Message;
use chatmesh_proto::gateway::v1::ReadPosition as ReadPositionProto;
use chatmesh_proto::presence::v1::{PresenceEvent, TypingEvent as TypingProto};
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::ports::{Feed, FeedError, ReadEvent, TypingEvent};
use crate::ws::hub::Hub;
use crate::ws::protocol::ServerFrame;

/// Sharded pub/sub on Redis Cluster.
pub(crate) struct RedisFeed {
    redis: Cluster,
    pubsub: ClusterConnection,
}

impl std::fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeed").finish_non_exhaustive()
    }
}

impl RedisFeed {
    /// Opens the node's pub/sub connection. Its pushes arrive on the
    /// returned receiver, for [`read_pushes`].
    pub(crate) async fn connect(
        redis: Cluster,
        config: &chatmesh_config::RedisConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<PushInfo>), redis::RedisError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = redis::cluster::ClusterClient::builder(config.nodes.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.response_timeout)
            .push_sender(tx)
            .build()?;
        let pubsub = client.get_async_connection().await?;
        Ok((Self { redis, pubsub }, rx))
    }
}

fn feed_error(err: redis::RedisError) -> FeedError {
    FeedError(err.to_string())
}

#[async_trait]
impl Feed for RedisFeed {
    async fn subscribe(&self, channel: &ChannelId) -> Result<(), FeedError> {
        let mut pubsub = self.pubsub.clone();
        pubsub
            .ssubscribe(keys::fanout(channel.as_str()))
            .await
            .map_err(feed_error)?;
        pubsub
            .ssubscribe(keys::presence_events(channel.as_str()))
            .await
            .map_err(feed_error)
    }

    async fn unsubscribe(&self, channel: &ChannelId) -> Result<(), FeedError> {
        let mut pubsub = self.pubsub.clone();
        let mut result = Ok(());
        for name in [
            keys::fanout(channel.as_str()),
            keys::presence_events(channel.as_str()),
        ] {
            if let Err(err) = pubsub.sunsubscribe(&name).await {
                result = Err(feed_error(err));
            }
        }
        result
    }

    async fn current_seq(&self, channel: &ChannelId) -> Result<u64, FeedError> {
        let mut conn = self.redis.conn().await.map_err(feed_error)?;
        let current: Option<u64> = redis::cmd("GET")
            .arg(keys::seq(channel.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(feed_error)?;
        Ok(current.unwrap_or(0))
    }

    async fn publish_typing(&self, event: &TypingEvent) -> Result<(), FeedError> {
        let mut conn = self.redis.conn().await.map_err(feed_error)?;
        redis::cmd("SPUBLISH")
            .arg(keys::presence_events(event.channel.as_str()))
            .arg(encode_typing(event))
            .query_async::<i64>(&mut conn)
            .await
            .map_err(feed_error)?;
        Ok(())
    }

    async fn publish_read(&self, event: &ReadEvent) -> Result<(), FeedError> {
        let mut conn = self.redis.conn().await.map_err(feed_error)?;
        redis::cmd("SPUBLISH")
            .arg(keys::presence_events(event.channel.as_str()))
            .arg(encode_read(event))
            .query_async::<i64>(&mut conn)
            .await
            .map_err(feed_error)?;
        Ok(())
    }
}

/// Marks a typing event on the presence events channel.
const TYPING_MARK: u8 = 0;

/// Marks a read receipt on the presence events channel. Presence events
/// are Protobuf messages whose first byte is a field tag, never 0 or 1.
const READ_MARK: u8 = 1;

/// A read receipt as published: the mark, then a `ReadPosition` message.
fn encode_read(event: &ReadEvent) -> Vec<u8> {
    let proto = ReadPositionProto {
        channel_id: event.channel.as_str().to_owned(),
        seq: event.seq,
        user_id: event.user.as_str().to_owned(),
    };
    let mut payload = Vec::with_capacity(1 + proto.encoded_len());
    payload.push(READ_MARK);
    proto
        .encode(&mut payload)
        .expect("a Vec grows to fit the message");
    payload
}

/// The read receipt of `channel` a payload carries: `None` for anything
/// else, `Some(Err)` for a marked payload that is not a valid receipt.
fn decode_read(channel: &ChannelId, payload: &[u8]) -> Option<Result<ReadEvent, String>> {
    let body = payload.strip_prefix(&[READ_MARK])?;
    let decoded = ReadPositionProto::decode(body).map_err(|e| e.to_string());
    Some(decoded.and_then(|r| {
        let user = UserId::new(r.user_id).map_err(|e| e.to_string())?;
        Ok(ReadEvent {
            channel: channel.clone(),
            user,
            seq: r.seq,
        })
    }))
}

/// A typing event as published: the mark, then the `TypingEvent` message.
fn encode_typing(event: &TypingEvent) -> Vec<u8> {
    let proto = TypingProto {
        channel_id: event.channel.as_str().to_owned(),
        user_id: event.user.as_str().to_owned(),
        stop: event.stop,
    };
    let mut payload = Vec::with_capacity(1 + proto.encoded_len());
    payload.push(TYPING_MARK);
    proto
        .encode(&mut payload)
        .expect("a Vec grows to fit the message");
    payload
}

/// The typing event of `channel` a payload of its presence events channel
/// carries: `None` for a presence event, `Some(Err)` for a marked payload
/// that is not a valid typing event.
fn decode_typing(channel: &ChannelId, payload: &[u8]) -> Option<Result<TypingEvent, String>> {
    let body = payload.strip_prefix(&[TYPING_MARK])?;
    let decoded = TypingProto::decode(body).map_err(|e| e.to_string());
    Some(decoded.and_then(|t| {
        let user = UserId::new(t.user_id).map_err(|e| e.to_string())?;
        Ok(TypingEvent {
            // The channel the event came on is the one that counts.
            channel: channel.clone(),
            user,
            stop: t.stop,
        })
    }))
}

/// Delivers the pushes of the feed's connection to `hub` until `shutdown`.
pub(crate) async fn read_pushes(
    hub: Hub,
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    tasks: chatmesh_server::Tasks,
) {
    let shutdown = tasks.shutdown().clone();
    loop {
        let push = tokio::select! {
            push = rx.recv() => match push { Some(p) => p, None => return },
            () = shutdown.cancelled() => return,
        };
        match push.kind {
            PushKind::SMessage => on_message(&hub, &push.data),
            // redis-rs re-subscribes all channels in one SSUBSCRIBE after a
            // reconnect, which Redis refuses with CROSSSLOT as soon as they
            // span slots. The hub re-subscribes each channel on its own.
            PushKind::Disconnection => {
                metrics::counter!("chatmesh_gateway_pubsub_reconnects_total").increment(1);
                tracing::warn!("pub/sub connection lost, re-subscribing every channel");
                tasks.spawn("resubscribe", hub.clone().resubscribe_all(shutdown.clone()));
            }
            _ => {}
        }
    }
}

fn on_message(hub: &Hub, data: &[Value]) {
    // RESP3 smessage push: [channel, payload].
    let [.., Value::BulkString(name), Value::BulkString(payload)] = data else {
        return;
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    if let Some(channel) = keys::channel_of_presence_events(name) {
        let Ok(channel) = ChannelId::new(channel) else {
            return;
        };
        match decode_typing(&channel, payload) {
            Some(Ok(event)) => return hub.on_typing(&event),
            Some(Err(err)) => {
                tracing::warn!(channel = %channel, error = %err, "undecodable typing event dropped");
                return;
            }
            None => {}
        }
        match decode_read(&channel, payload) {
            Some(Ok(event)) => return hub.on_read(&event),
            Some(Err(err)) => {
                tracing::warn!(channel = %channel, error = %err, "undecodable read receipt dropped");
                return;
            }
            None => {}
        }
        match PresenceEvent::decode(payload.as_slice()) {
            Ok(event) => {
                if let Some(frame) = ServerFrame::presence(&event) {
                    hub.broadcast(&channel, frame);
                }
            }
            Err(err) => {
                tracing::warn!(channel = %channel, error = %err, "undecodable presence event dropped")
            }
        }
        return;
    }
    let Some(channel) = keys::channel_of_fanout(name) else {
        return;
    };
    let decoded = Message::decode(payload.as_slice())
        .map_err(|e| e.to_string())
        .and_then(|mut m| {
            let traceparent = m.take_traceparent();
            ChatMessage::try_from(m)
                .map(|m| (m, traceparent))
                .map_err(|e| e.to_string())
        });
    match (ChannelId::new(channel), decoded) {
        (Ok(channel), Ok((message, traceparent))) => {
            hub.accept_traced(&channel, message, traceparent.as_deref())
        }
        (_, Err(err)) => {
            tracing::warn!(channel, error = %err, "undecodable fan-out payload dropped")
        }
        (Err(_), _) => {}
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_proto::presence::v1::presence_event;

    use super::*;

    fn room() -> ChannelId {
        ChannelId::new("room").unwrap()
    }

    #[test]
    fn typing_events_survive_the_wire() {
        for stop in [false, true] {
            let event = TypingEvent {
                channel: room(),
                user: UserId::new("alice").unwrap(),
                stop,
            };
            let decoded = decode_typing(&room(), &encode_typing(&event));
            assert_eq!(decoded, Some(Ok(event)));
        }
    }

    #[test]
    fn typing_and_presence_events_are_told_apart() {
        let presence = PresenceEvent {
            kind: presence_event::Kind::Join as i32,
            channel_id: "room".into(),
            user_id: "alice".into(),
            at_ms: 1,
        }
        .encode_to_vec();
        assert_eq!(decode_typing(&room(), &presence), None);
        let typing = encode_typing(&TypingEvent {
            channel: room(),
            user: UserId::new("alice").unwrap(),
            stop: false,
        });
        assert!(PresenceEvent::decode(typing.as_slice()).is_err());
        assert!(matches!(
            decode_typing(&room(), &[TYPING_MARK, 0xff]),
            Some(Err(_))
        ));
    }

    #[test]
    fn read_receipts_survive_the_wire_and_are_told_apart() {
        let event = ReadEvent {
            channel: room(),
            user: UserId::new("alice").unwrap(),
            seq: 42,
        };
        let payload = encode_read(&event);
        assert_eq!(decode_read(&room(), &payload), Some(Ok(event)));
        assert_eq!(decode_typing(&room(), &payload), None);
        assert!(PresenceEvent::decode(payload.as_slice()).is_err());
        let typing = encode_typing(&TypingEvent {
            channel: room(),
            user: UserId::new("alice").unwrap(),
            stop: true,
        });
        assert_eq!(decode_read(&room(), &typing), None);
        let presence = PresenceEvent {
            kind: presence_event::Kind::Leave as i32,
            channel_id: "room".into(),
            user_id: "alice".into(),
            at_ms: 1,
        }
        .encode_to_vec();
        assert_eq!(decode_read(&room(), &presence), None);
        assert!(matches!(
            decode_read(&room(), &[READ_MARK, 0xff]),
            Some(Err(_))
        ));
    }
}
