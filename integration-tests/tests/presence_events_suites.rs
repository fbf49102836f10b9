//! The presence event publisher contract (`chatmesh_presence::testsuite`)
//! on the real Redis Cluster: [`RedisPublisher`] publishes, and each
//! listener subscribes the way a gateway node does, with `SSUBSCRIBE` on a
//! RESP3 cluster connection of its own, decoding the `PresenceEvent`
//! protobufs it hears. The in-memory publisher passes the same suite in
//! the presence unit tests.

use chatmesh_ids::{ChannelId, UserId};
use chatmesh_integration_tests::Infra;
use chatmesh_presence::testsuite::{EventListener, EventStreams};
use chatmesh_presence::{EventKind, EventPublisher, PresenceError, PresenceEvent, RedisPublisher};
use chatmesh_proto::presence::v1 as pb;
use chatmesh_redis::keys;
use prost::Message as _;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

/// The real publisher, and the cluster's seed nodes for listeners.
struct RedisStreams {
    publisher: RedisPublisher,
    nodes: Vec<String>,
}

async fn redis_streams() -> anyhow::Result<RedisStreams> {
    let infra = Infra::load()?;
    Ok(RedisStreams {
        publisher: RedisPublisher::new(infra.redis()?),
        nodes: infra.redis_nodes,
    })
}

#[tonic::async_trait]
impl EventPublisher for RedisStreams {
    async fn publish(&self, event: &PresenceEvent) -> Result<(), PresenceError> {
        self.publisher.publish(event).await
    }
}

#[tonic::async_trait]
impl EventStreams for RedisStreams {
    async fn listen(&self, channel: &ChannelId) -> anyhow::Result<Box<dyn EventListener>> {
        let (tx, pushes) = mpsc::unbounded_channel();
        let client = redis::cluster::ClusterClient::builder(self.nodes.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        let mut conn = client.get_async_connection().await?;
        let stream = keys::presence_events(channel.as_str());
        conn.ssubscribe(&stream).await?;
        Ok(Box::new(RedisListener {
            _conn: conn,
            stream,
            pushes,
        }))
    }
}

/// One channel's sharded subscription and the pushes it receives.
struct RedisListener {
    // Held so the subscription stays open.
    _conn: ClusterConnection,
    stream: String,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
}

#[tonic::async_trait]
impl EventListener for RedisListener {
    async fn next(&mut self) -> anyhow::Result<PresenceEvent> {
        loop {
            let push = self
                .pushes
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the subscription connection closed"))?;
            if !matches!(push.kind, PushKind::SMessage) {
                continue;
            }
            // RESP3 smessage push: [channel, payload].
            let [.., Value::BulkString(name), Value::BulkString(payload)] = push.data.as_slice()
            else {
                anyhow::bail!("malformed smessage push {:?}", push.data);
            };
            anyhow::ensure!(
                name.as_slice() == self.stream.as_bytes(),
                "heard {} on a subscription to {}",
                String::from_utf8_lossy(name),
                self.stream
            );
            return decode(payload);
        }
    }
}

/// The event a gateway reads from the payload.
fn decode(payload: &[u8]) -> anyhow::Result<PresenceEvent> {
    let wire = pb::PresenceEvent::decode(payload)?;
    let kind = match wire.kind() {
        pb::presence_event::Kind::Join => EventKind::Join,
        pb::presence_event::Kind::Leave => EventKind::Leave,
        other => anyhow::bail!("event of kind {other:?}"),
    };
    Ok(PresenceEvent {
        kind,
        channel: ChannelId::new(wire.channel_id)?,
        user: UserId::new(wire.user_id)?,
        at_ms: u64::try_from(wire.at_ms)?,
    })
}

chatmesh_presence::presence_events_suite!(redis_streams().await?);
