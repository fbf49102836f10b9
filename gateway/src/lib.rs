//! The WebSocket edge gateway. Clients connect here; each node serves the
//! channels the hash ring assigns it and calls the services over gRPC.

mod config;
pub mod ring;
mod upstream;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_server::{Probe, Readiness};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{GatewayConfig, ServiceEndpoints};
pub use upstream::GrpcHealthProbe;

/// Binds the configured address and serves until `shutdown`.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot bind http_addr {}", config.http_addr))?;
    serve(config, listener, shutdown).await
}

/// Serves on an already-bound listener until `shutdown`.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = chatmesh_redis::Cluster::new(&config.redis).context("redis client")?;
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_redis::RedisProbe::new(redis)),
        Arc::new(GrpcHealthProbe::new("chat", &config.services.chat)?),
    ];
    let readiness = Readiness::default();
    let watcher = tokio::spawn(chatmesh_server::watch_dependencies(
        probes,
        readiness.clone(),
        None,
        Vec::new(),
        config.probe_interval,
        shutdown.clone(),
    ));
    let app = chatmesh_server::admin_routes(readiness);
    let addr = listener.local_addr()?;
    tracing::info!(node_id = %config.node_id, %addr, "gateway serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    let _ = watcher.await;
    tracing::info!("gateway stopped");
    Ok(())
}
