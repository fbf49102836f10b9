//! The presence service. Gateways publish heartbeats on the Redis channel
//! `HEARTBEAT`; this service keeps per-session TTL keys alive from them,
//! ends sessions whose keys expire, announces joins and leaves to each
//! channel's subscribers, and answers who is online.

mod config;
mod engine;
mod grpc;
mod instances;
mod scripts;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_proto::presence::v1::presence_service_server::{PresenceServiceServer, SERVICE_NAME};
use chatmesh_redis::{Scope, Subscriber, keys};
use chatmesh_server::{Listeners, Probe};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::{PresenceConfig, PresenceSettings};

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
    let tasks = CancellationToken::new();

    let instances =
        instances::Instances::new(format!("presence-{}", uuid::Uuid::new_v4().simple()));
    tracing::info!(instance = instances.me(), "presence instance starting");
    let registry = tokio::spawn(instances.clone().run(
        redis.clone(),
        settings.group.clone(),
        settings.instance_refresh,
        settings.instance_ttl,
        tasks.clone(),
    ));
    let engine = Arc::new(engine::Engine::new(
        redis.clone(),
        instances.clone(),
        settings.clone(),
    ));

    let (heartbeat_tx, heartbeat_rx) = mpsc::channel(1024);
    let (expiry_tx, expiry_rx) = mpsc::channel(4096);
    let heartbeats = Subscriber::new(redis.clone(), keys::HEARTBEAT, Scope::AnyMaster)
        .refresh(settings.topology_refresh);
    let expiries = Subscriber::new(redis.clone(), keys::EXPIRED_EVENTS, Scope::EveryMaster)
        .refresh(settings.topology_refresh);
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_redis::RedisProbe::new(redis.clone())),
        Arc::new(instances.clone()),
        Arc::new(heartbeats.probe("heartbeat-subscription")),
        Arc::new(expiries.probe("expiry-subscriptions")),
    ];
    let background = [
        tokio::spawn(heartbeats.run(heartbeat_tx, tasks.clone())),
        tokio::spawn(expiries.run(expiry_tx, tasks.clone())),
        tokio::spawn(engine.clone().run_heartbeats(heartbeat_rx, tasks.clone())),
        tokio::spawn(engine.clone().run_expiries(expiry_rx, tasks.clone())),
        tokio::spawn(engine.run_sweeps(tasks.clone())),
    ];

    let routes = tonic::service::Routes::new(PresenceServiceServer::new(grpc::PresenceGrpc::new(
        redis,
        settings.max_batch_users,
    )));
    let served = chatmesh_server::serve_grpc(
        routes,
        vec![SERVICE_NAME],
        probes,
        listeners,
        &config.server,
        shutdown,
    )
    .await;
    tasks.cancel();
    for task in background {
        let _ = task.await;
    }
    let _ = registry.await;
    served
}
