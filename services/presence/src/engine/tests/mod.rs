//! The engine's rules on the in-memory store, with tokio's clock paused so
//! TTLs and sweeps run on virtual time.

use std::sync::atomic::Ordering;

use chatmesh_proto::presence::v1 as pb;
use prost::Message as _;

use super::*;
use crate::memory::{MemoryPublisher, MemoryStore, TokioClock};
use crate::test_support::DownPublisher;

/// "Now" when a test starts, in ms since the epoch.
const BASE_MS: u64 = 1_750_000_000_000;
const ME: &str = "p-a";
const PEER: &str = "p-b";

struct Harness {
    engine: Arc<Engine>,
    store: Arc<MemoryStore>,
    events: Arc<MemoryPublisher>,
    instances: Instances,
    clock: Arc<TokioClock>,
}

fn settings() -> PresenceSettings {
    PresenceSettings {
        sweep_interval: Duration::from_secs(1),
        ..PresenceSettings::default()
    }
}

/// An engine on an empty store that owns every session and channel.
fn harness() -> Harness {
    harness_with(settings(), None)
}

fn harness_with(settings: PresenceSettings, publisher: Option<Arc<dyn EventPublisher>>) -> Harness {
    let clock = Arc::new(TokioClock::new(BASE_MS));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let events = Arc::new(MemoryPublisher::new());
    let instances = Instances::new(ME);
    instances.set(vec![ME.into()]);
    let engine = Arc::new(Engine::new(
        store.clone(),
        publisher.unwrap_or_else(|| events.clone()),
        instances.clone(),
        clock.clone(),
        settings,
    ));
    Harness {
        engine,
        store,
        events,
        instances,
        clock,
    }
}

fn user(raw: &str) -> UserId {
    UserId::new(raw).expect("a valid user ID")
}

fn channel(raw: &str) -> ChannelId {
    ChannelId::new(raw).expect("a valid channel ID")
}

fn beat(session: &str, user: &str, channels: &[&str]) -> pb::SessionHeartbeat {
    pb::SessionHeartbeat {
        session_id: session.into(),
        user_id: user.into(),
        channel_ids: channels.iter().map(|c| (*c).to_owned()).collect(),
        at_ms: 0,
        closed: false,
    }
}

fn closed(session: &str, user: &str, channels: &[&str], at_ms: i64) -> pb::SessionHeartbeat {
    pb::SessionHeartbeat {
        at_ms,
        closed: true,
        ..beat(session, user, channels)
    }
}

fn batch(ttl_ms: i64, sessions: Vec<pb::SessionHeartbeat>) -> Vec<u8> {
    pb::HeartbeatBatch {
        gateway_node: "gw-1".into(),
        sessions,
        ttl_ms,
    }
    .encode_to_vec()
}

/// A name that rendezvous hashing over `live` gives to `owner`.
fn owned_by(owner: &str, live: &[&str], prefix: &str) -> String {
    let view = Instances::new(owner);
    view.set(live.iter().map(|i| (*i).to_owned()).collect());
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|name| view.owns(name))
        .expect("some name has every owner")
}

/// Events as (kind, channel, user), easy to compare.
fn summary(events: &[PresenceEvent]) -> Vec<(EventKind, String, String)> {
    events
        .iter()
        .map(|e| (e.kind, e.channel.to_string(), e.user.to_string()))
        .collect()
}

fn ev(kind: EventKind, channel: &str, user: &str) -> (EventKind, String, String) {
    (kind, channel.to_owned(), user.to_owned())
}

impl Harness {
    async fn send(&self, ttl_ms: i64, sessions: Vec<pb::SessionHeartbeat>) {
        self.engine.handle_payload(&batch(ttl_ms, sessions)).await;
    }

    /// (online, last seen) of `name` now.
    async fn status(&self, name: &str) -> (bool, u64) {
        let statuses = self
            .store
            .user_status(&[user(name)], self.clock.now_ms())
            .await
            .expect("memory store");
        (statuses[0].online, statuses[0].last_seen_ms)
    }

    /// Users online in `name` now, sorted.
    async fn online(&self, name: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .store
            .online_users(&channel(name), self.clock.now_ms(), 100)
            .await
            .expect("memory store")
            .into_iter()
            .map(String::from)
            .collect();
        users.sort_unstable();
        users
    }

    /// The events published once there are at least `n`, failing after a
    /// minute of (virtual) time rather than hanging.
    async fn wait_events(&self, n: usize) -> Vec<PresenceEvent> {
        tokio::time::timeout(Duration::from_secs(60), self.events.wait_for(n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} events: {:?}", self.events.events()))
    }

    fn stat(&self, pick: fn(&Stats) -> &AtomicU64) -> u64 {
        pick(self.engine.stats()).load(Ordering::Relaxed)
    }
}

mod input;
mod loops;
mod sessions;
mod sweep;
mod ttl;
