//! The presence service. Gateways publish heartbeats on the Redis channel
//! `HEARTBEAT`; this service keeps per-session TTL keys alive from them and
//! answers who is online.

mod config;
mod grpc;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_proto::presence::v1::presence_service_server::{PresenceServiceServer, SERVICE_NAME};
use chatmesh_server::{Listeners, Probe};
use tokio_util::sync::CancellationToken;

pub use config::PresenceConfig;

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
    let probes: Vec<Arc<dyn Probe>> =
        vec![Arc::new(chatmesh_redis::RedisProbe::new(redis.clone()))];
    let routes =
        tonic::service::Routes::new(PresenceServiceServer::new(grpc::PresenceGrpc::new(redis)));
    chatmesh_server::serve_grpc(
        routes,
        vec![SERVICE_NAME],
        probes,
        listeners,
        &config.server,
        shutdown,
    )
    .await
}
