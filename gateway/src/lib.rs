//! The WebSocket edge gateway. Clients connect here; each node serves the
//! channels the hash ring assigns it, calls the chat service over gRPC and
//! delivers fanned-out messages to its sessions.
//!
//! Layout: `ws/` holds the client connection, its session and fan-out;
//! `http/` the REST routes; `ring/` channel placement and the node registry;
//! `upstream/` the adapters to the services and Redis behind the traits in
//! `ports.rs`; `testsuite/` (with the `testsuite` feature) is the contract
//! every implementation of those traits passes.

pub mod auth;
mod config;
mod http;
mod liveness;
#[cfg(test)]
mod memory;
mod ports;
pub mod ring;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod upstream;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_server::{Probe, Readiness, Tasks};
use chatmesh_upstream::{balance, retry};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use chatmesh_upstream::health::GrpcHealthProbe;
pub use config::{
    AuthConfig, GatewayConfig, GatewayLimits, PinMode, PresenceSettings, RoutingConfig,
    ServiceEndpoints,
};
pub use http::ConnectRequest;
pub use ws::{CLOSE_GOING_AWAY, CLOSE_SESSION_EXPIRED, CLOSE_SLOW_CONSUMER};

use crate::ws::session::{Placement, SessionContext};

/// The client protocol's frames in both forms, for Rust clients and tools.
pub mod frames {
    pub use crate::ws::codec::{decode as decode_binary, encode as encode_binary};
    pub use crate::ws::protocol::{
        ChangeKind, ClientFrame, FrameError, MessageBody, ReactionBody, ServerFrame, parse,
    };
}

/// State shared by every connection of a node.
pub struct Gateway {
    config: GatewayConfig,
    auth: auth::Authenticator,
    sessions: Arc<SessionContext>,
    /// The chat service's directory calls (channels and members).
    chat: balance::Upstream,
    storage: balance::Upstream,
    presence_api: balance::Upstream,
    media: balance::Upstream,
    /// Retries of the idempotent calls of each service.
    reads: Reads,
    connections: AtomicUsize,
    next_session: AtomicU64,
    /// Shutdown was asked for: new connections are refused.
    shutdown: CancellationToken,
    /// The node has left the ring: every session sends `reconnect` and
    /// closes with 1001.
    going_away: CancellationToken,
    /// Upgraded connections, which the HTTP server's graceful shutdown does
    /// not wait for; shutdown waits on this instead.
    live: TaskTracker,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

/// The retry budgets of the reads the HTTP API makes.
#[derive(Debug)]
struct Reads {
    chat: retry::Retries,
    storage: retry::Retries,
    presence: retry::Retries,
    media: retry::Retries,
}

/// Opens the fan-out feed, retrying while Redis is unreachable: a node
/// started before its Redis Cluster waits for it instead of exiting.
async fn connect_feed(
    redis: &chatmesh_redis::Cluster,
    config: &GatewayConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<(
    upstream::feed::RedisFeed,
    tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
)> {
    use backon::{ExponentialBuilder, Retryable as _};
    let connect = || upstream::feed::RedisFeed::connect(redis.clone(), &config.redis);
    let retried = connect
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .without_max_times(),
        )
        .notify(|err, delay| {
            tracing::warn!(error = %err, retry_in = ?delay, "redis pub/sub unreachable")
        });
    tokio::select! {
        result = retried => Ok(result?),
        () = shutdown.cancelled() => anyhow::bail!("shut down before redis was reachable"),
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
/// node leaves the ring, tells every client to reconnect and closes it with
/// 1001, publishes its last heartbeats, then returns, all within
/// `shutdown_grace`.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = chatmesh_redis::Cluster::new(&config.redis).context("redis client")?;
    let auth = auth::Authenticator::from_config(&config.auth)?;
    // Background tasks outlive the HTTP server so sessions can drain;
    // each group is stopped and awaited in turn.
    let background = Tasks::new(CancellationToken::new());
    let heartbeats = Tasks::new(CancellationToken::new());
    let ring_tasks = Tasks::new(shutdown.clone());

    let (feed, pushes) = connect_feed(&redis, &config, &shutdown).await?;
    let up = &config.upstream;
    let storage = balance::channel("storage", &config.services.storage, up, &background)?;
    let gaps: Arc<upstream::gaps::StoredGaps> = Arc::new(upstream::gaps::StoredGaps::new(
        redis.clone(),
        storage.clone(),
        retry::Retries::new("storage", up),
    ));
    let hub = ws::hub::Hub::with_gaps(Arc::new(feed), gaps.clone(), config.limits.reorder_window);
    background.spawn(
        "fanout-pushes",
        upstream::feed::read_pushes(hub.clone(), pushes, background.clone()),
    );
    background.spawn(
        "gap-mending",
        hub.clone().mend_gaps(background.shutdown().clone()),
    );
    background.spawn(
        "typing-expiry",
        hub.clone().expire_typers(background.shutdown().clone()),
    );
    let (liveness, expiry_probe) = liveness::Presence::start(
        config.node_id.clone(),
        redis.clone(),
        config.presence.clone(),
        &heartbeats,
    );
    let (routes_tx, routes_rx) = watch::channel(Arc::new(ring::nodes::Routes::default()));
    ring_tasks.spawn(
        "ring-membership",
        ring::nodes::run(
            redis.clone(),
            config.node_id.clone(),
            config.public_url.clone(),
            config.routing.clone(),
            routes_tx,
            shutdown.clone(),
        ),
    );

    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_redis::RedisProbe::new(redis.clone())),
        Arc::new(GrpcHealthProbe::new("chat", &config.services.chat)?),
        Arc::new(ring::nodes::RingProbe::new(
            config.node_id.clone(),
            routes_rx.clone(),
        )),
        Arc::new(expiry_probe),
    ];
    let readiness = Readiness::default();
    background.spawn(
        "dependency-probes",
        chatmesh_server::watch_dependencies(
            probes,
            readiness.clone(),
            None,
            Vec::new(),
            config.probe_interval,
            shutdown.clone(),
        ),
    );

    let chat = balance::channel("chat", &config.services.chat, up, &background)?;
    let sessions = Arc::new(SessionContext {
        chat: Arc::new(upstream::chat::GrpcChat::new(chat.clone(), up)),
        hub,
        gaps,
        reads: Arc::new(upstream::reads::StoredReads::new(
            storage.clone(),
            retry::Retries::new("storage", up),
        )),
        liveness: Arc::new(liveness),
        limits: config.limits.clone(),
        placement: Placement {
            node_id: config.node_id.clone(),
            mode: config.routing.mode,
            routes: routes_rx,
        },
    });
    let gw = Arc::new(Gateway {
        auth,
        sessions,
        chat,
        storage,
        presence_api: balance::channel("presence", &config.services.presence, up, &background)?,
        media: balance::channel("media", &config.services.media, up, &background)?,
        reads: Reads {
            chat: retry::Retries::new("chat", up),
            storage: retry::Retries::new("storage", up),
            presence: retry::Retries::new("presence", up),
            media: retry::Retries::new("media", up),
        },
        connections: AtomicUsize::new(0),
        next_session: AtomicU64::new(1),
        shutdown: shutdown.clone(),
        going_away: CancellationToken::new(),
        live: TaskTracker::new(),
        config,
    });
    let app = http::routes(gw.clone()).merge(chatmesh_server::admin_routes(readiness));
    let addr = listener.local_addr()?;
    tracing::info!(node_id = %gw.config.node_id, %addr, "gateway serving");

    // Frames are small and latency matters more than packet count: no
    // Nagle delay on any accepted connection.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let serving = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    drain(&gw, ring_tasks, heartbeats, background, serving).await;
    Ok(())
}

/// The shutdown sequence, bounded by `shutdown_grace` as a whole.
async fn drain(
    gw: &Gateway,
    ring_tasks: Tasks,
    heartbeats: Tasks,
    background: Tasks,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let deadline = Instant::now() + gw.config.shutdown_grace;
    let left = || deadline.saturating_duration_since(Instant::now());
    tracing::info!(connections = gw.live.len(), "gateway shutting down");
    // 1. Leave the ring, so reconnecting clients are sent elsewhere.
    ring_tasks.wait(left()).await;
    // 2. Every session sends `reconnect` and closes with 1001.
    gw.going_away.cancel();
    gw.live.close();
    if tokio::time::timeout(left(), gw.live.wait()).await.is_err() {
        tracing::warn!(
            still_open = gw.live.len(),
            "connections did not close within the grace period"
        );
    }
    match tokio::time::timeout(left(), serving).await {
        Ok(Ok(Err(err))) => tracing::warn!(error = %err, "http server failed while draining"),
        Ok(_) => {}
        Err(_) => tracing::warn!("http requests did not finish within the grace period"),
    }
    // 3. The closed sessions' last heartbeats go out.
    heartbeats
        .drain(left().max(Duration::from_millis(500)))
        .await;
    // 4. Everything else.
    background
        .drain(left().max(Duration::from_millis(100)))
        .await;
    tracing::info!("gateway stopped");
}
