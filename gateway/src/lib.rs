//! The WebSocket edge gateway. Clients connect here; each node serves the
//! channels the hash ring assigns it, calls the chat service over gRPC and
//! delivers fanned-out messages to its sessions.

pub mod auth;
mod config;
mod http;
pub mod hub;
mod media_http;
pub mod membership;
mod presence;
mod presence_http;
pub mod protocol;
mod recovery;
pub mod ring;
mod session;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use anyhow::Context as _;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_server::{Probe, Readiness};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::{
    AuthConfig, GatewayConfig, GatewayLimits, PinMode, PresenceSettings, RoutingConfig,
    ServiceEndpoints,
};
pub use session::{CLOSE_GOING_AWAY, CLOSE_SESSION_EXPIRED, CLOSE_SLOW_CONSUMER};
pub use upstream::GrpcHealthProbe;

/// State shared by every connection of a node.
pub struct Gateway {
    config: GatewayConfig,
    auth: auth::Authenticator,
    hub: hub::Hub,
    redis: chatmesh_redis::Cluster,
    chat: ChatServiceClient<tonic::transport::Channel>,
    storage: tonic::transport::Channel,
    presence_api: tonic::transport::Channel,
    presence: presence::Presence,
    media: tonic::transport::Channel,
    routes: watch::Receiver<Arc<membership::Routes>>,
    connections: AtomicUsize,
    next_session: AtomicU64,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The URL of the node owning `channel`, when that is another node.
    fn redirect_url(&self, channel: &str) -> Option<String> {
        let routes = self.routes.borrow();
        match routes.owner(channel) {
            Some((node, Some(url))) if node != self.config.node_id => Some(url.to_owned()),
            _ => None,
        }
    }
}

/// Opens the fan-out hub, retrying while Redis is unreachable: a node
/// started before its Redis Cluster waits for it instead of exiting.
async fn connect_hub(
    redis: &chatmesh_redis::Cluster,
    config: &GatewayConfig,
    tasks: CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<hub::Hub> {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match hub::Hub::start(
            redis.clone(),
            &config.redis,
            config.limits.reorder_window,
            tasks.clone(),
        )
        .await
        {
            Ok(hub) => return Ok(hub),
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "redis pub/sub unreachable")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => anyhow::bail!("shut down before redis was reachable"),
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Binds the configured address and serves until `shutdown`.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot bind http_addr {}", config.http_addr))?;
    serve(config, listener, shutdown).await
}

/// Serves on an already-bound listener until `shutdown`. On shutdown the
/// node leaves the ring and tells its clients to reconnect elsewhere.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = chatmesh_redis::Cluster::new(&config.redis).context("redis client")?;
    let auth = auth::Authenticator::from_config(&config.auth)?;
    // Background tasks outlive the server briefly so sessions can drain.
    let tasks = CancellationToken::new();
    let hub = connect_hub(&redis, &config, tasks.clone(), &shutdown).await?;
    let (presence, expiry_probe) = presence::Presence::start(
        config.node_id.clone(),
        redis.clone(),
        config.presence.clone(),
        tasks.clone(),
    );
    let chat_channel = tonic::transport::Endpoint::from_shared(config.services.chat.clone())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect_lazy();
    let (routes_tx, routes_rx) = watch::channel(Arc::new(membership::Routes::default()));
    let membership = tokio::spawn(membership::run(
        redis.clone(),
        config.node_id.clone(),
        config.public_url.clone(),
        config.routing.clone(),
        routes_tx,
        shutdown.clone(),
    ));

    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_redis::RedisProbe::new(redis.clone())),
        Arc::new(GrpcHealthProbe::new("chat", &config.services.chat)?),
        Arc::new(membership::RingProbe::new(
            config.node_id.clone(),
            routes_rx.clone(),
        )),
        Arc::new(expiry_probe),
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

    let gw = Arc::new(Gateway {
        auth,
        hub,
        redis,
        chat: ChatServiceClient::new(chat_channel),
        storage: tonic::transport::Endpoint::from_shared(config.services.storage.clone())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .connect_lazy(),
        presence_api: tonic::transport::Endpoint::from_shared(config.services.presence.clone())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .connect_lazy(),
        presence,
        media: tonic::transport::Endpoint::from_shared(config.services.media.clone())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .connect_lazy(),
        routes: routes_rx,
        connections: AtomicUsize::new(0),
        next_session: AtomicU64::new(1),
        shutdown: shutdown.clone(),
        config,
    });
    let app = http::routes(gw.clone()).merge(chatmesh_server::admin_routes(readiness));
    let addr = listener.local_addr()?;
    tracing::info!(node_id = %gw.config.node_id, %addr, "gateway serving");
    let grace = gw.config.shutdown_grace;
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server => result?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "connections did not close within the grace period");
        }
    }
    shutdown.cancel();
    tasks.cancel();
    let _ = watcher.await;
    let _ = membership.await;
    tracing::info!("gateway stopped");
    Ok(())
}
