//! Presence events on each channel's sharded pub/sub stream
//! (`cm:{<channel>}:presence`), as `PresenceEvent` protobufs.

use async_trait::async_trait;
use chatmesh_proto::presence::v1 as pb;
use chatmesh_redis::{Cluster, keys};
use prost::Message as _;

use crate::PresenceError;
use crate::events::{EventKind, EventPublisher, PresenceEvent};

/// Publishes presence events with `SPUBLISH` on the channel's slot, where
/// the gateways subscribed to the channel hear them.
#[derive(Debug, Clone)]
pub struct RedisPublisher {
    redis: Cluster,
}

impl RedisPublisher {
    /// A publisher on `redis`; it connects on first use.
    pub fn new(redis: Cluster) -> Self {
        Self { redis }
    }
}

/// The wire form of an event.
fn to_proto(event: &PresenceEvent) -> pb::PresenceEvent {
    let kind = match event.kind {
        EventKind::Join => pb::presence_event::Kind::Join,
        EventKind::Leave => pb::presence_event::Kind::Leave,
    };
    pb::PresenceEvent {
        kind: kind as i32,
        channel_id: event.channel.to_string(),
        user_id: event.user.to_string(),
        at_ms: i64::try_from(event.at_ms).unwrap_or(i64::MAX),
    }
}

#[async_trait]
impl EventPublisher for RedisPublisher {
    async fn publish(&self, event: &PresenceEvent) -> Result<(), PresenceError> {
        let mut conn = self.redis.conn().await?;
        redis::cmd("SPUBLISH")
            .arg(keys::presence_events(event.channel.as_str()))
            .arg(to_proto(event).encode_to_vec())
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_ids::{ChannelId, UserId};

    use super::*;

    #[test]
    fn events_keep_their_fields_on_the_wire() {
        let event = PresenceEvent {
            kind: EventKind::Leave,
            channel: ChannelId::new("room-1").expect("valid"),
            user: UserId::new("alice").expect("valid"),
            at_ms: 1_700_000_000_000,
        };
        let wire = pb::PresenceEvent::decode(to_proto(&event).encode_to_vec().as_slice())
            .expect("decodes");
        assert_eq!(wire.kind(), pb::presence_event::Kind::Leave);
        assert_eq!(
            (wire.channel_id.as_str(), wire.user_id.as_str(), wire.at_ms),
            ("room-1", "alice", 1_700_000_000_000)
        );
    }
}
