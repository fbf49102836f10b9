//! The presence service. Gateways publish heartbeats on the Redis channel
//! `HEARTBEAT`; this service keeps per-session TTL keys alive from them,
//! ends sessions whose keys expire, announces joins and leaves to each
//! channel's subscribers, and answers who is online.

mod config;
mod engine;
mod error;
mod events;
mod grpc;
mod heartbeat;
mod instances;
mod memory;
mod query;
mod redis_events;
mod redis_store;
mod scripts;
mod store;
#[cfg(test)]
mod test_support;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_ids::{Clock, SystemClock};
use chatmesh_proto::presence::v1::presence_service_server::{PresenceServiceServer, SERVICE_NAME};
use chatmesh_redis::{Scope, Subscriber, keys};
use chatmesh_server::{Listeners, Probe, Tasks};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::{PresenceConfig, PresenceSettings};
pub use error::PresenceError;
pub use events::{EventKind, EventPublisher, PresenceEvent};
pub use memory::{MemoryPublisher, MemoryStore, MemorySubscription, TokioClock};
pub use redis_events::RedisPublisher;
pub use redis_store::RedisStore;
pub use store::{
    ChannelJoin, Joined, LapsedSession, Left, PresenceStore, Refreshed, SessionRefresh, Swept,
    UserStatus,
};

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: PresenceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

/// Serves on already-bound listeners until `shutdown`.
pub async fn serve(
    config: PresenceConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = chatmesh_redis::Cluster::new(&config.redis).context("redis client")?;
    let settings = config.presence.clone();
    // Background loops stop with the server, or when it fails; `drain`
    // below waits for them, so the registry's deregistration and in-flight
    // heartbeats finish before this returns.
    let tasks = Tasks::new(shutdown.child_token());

    let instances =
        instances::Instances::new(format!("presence-{}", uuid::Uuid::new_v4().simple()));
    tracing::info!(instance = instances.me(), "presence instance starting");
    tasks.spawn(
        "presence-registry",
        instances.clone().run(
            redis.clone(),
            settings.group.clone(),
            settings.instance_refresh,
            settings.instance_ttl,
            tasks.shutdown().clone(),
        ),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn PresenceStore> = Arc::new(RedisStore::new(redis.clone()));
    let engine = Arc::new(engine::Engine::new(
        store.clone(),
        Arc::new(RedisPublisher::new(redis.clone())),
        instances.clone(),
        clock.clone(),
        settings.clone(),
    ));

    let (heartbeat_tx, heartbeat_rx) = mpsc::channel(1024);
    let (expiry_tx, expiry_rx) = mpsc::channel(4096);
    let heartbeats = Subscriber::new(redis.clone(), keys::HEARTBEAT, Scope::AnyMaster)
        .refresh(settings.topology_refresh);
    let expiries = Subscriber::new(redis.clone(), keys::EXPIRED_EVENTS, Scope::EveryMaster)
        .refresh(settings.topology_refresh);
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_redis::RedisProbe::new(redis)),
        Arc::new(instances),
        Arc::new(heartbeats.probe("heartbeat-subscription")),
        Arc::new(expiries.probe("expiry-subscriptions")),
    ];
    let stop = || tasks.shutdown().clone();
    tasks.spawn("heartbeat-subscriber", heartbeats.run(heartbeat_tx, stop()));
    tasks.spawn("expiry-subscriber", expiries.run(expiry_tx, stop()));
    tasks.spawn(
        "presence-heartbeats",
        engine.clone().run_heartbeats(heartbeat_rx, stop()),
    );
    tasks.spawn(
        "presence-expiries",
        engine.clone().run_expiries(expiry_rx, stop()),
    );
    tasks.spawn("presence-sweeps", engine.run_sweeps(stop()));

    let queries = query::Queries::new(store, clock, settings.max_batch_users);
    let routes =
        tonic::service::Routes::new(PresenceServiceServer::new(grpc::PresenceGrpc::new(queries)));
    let served = chatmesh_server::serve_grpc(
        routes,
        vec![SERVICE_NAME],
        probes,
        listeners,
        &config.server,
        shutdown,
    )
    .await;
    tasks.drain(config.server.shutdown_grace).await;
    served
}
