use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_config::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::probe::{Probe, Readiness, watch_dependencies};

/// The sockets a service serves on, bound before serving starts so tests can
/// bind port 0 and learn the address without racing the server.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC API, health and reflection.
    pub grpc: TcpListener,
    /// Admin HTTP: metrics and probes.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses in `config`.
    pub async fn bind(config: &ServerConfig) -> anyhow::Result<Self> {
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot bind server.grpc_addr {}", config.grpc_addr))?;
        let admin = TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("cannot bind server.admin_addr {}", config.admin_addr))?;
        Ok(Self { grpc, admin })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }
}

/// Serves `routes` plus gRPC health and reflection on `listeners.grpc`, and
/// the admin endpoints on `listeners.admin`, until `shutdown` is cancelled.
/// Health reports SERVING for `services` only while every probe passes.
/// After cancellation, in-flight calls get `config.shutdown_grace` to finish.
pub async fn serve_grpc(
    routes: Routes,
    services: Vec<&'static str>,
    probes: Vec<Arc<dyn Probe>>,
    listeners: Listeners,
    config: &ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in services.iter().copied().chain([""]) {
        reporter
            .set_service_status(service, tonic_health::ServingStatus::NotServing)
            .await;
    }
    // Every chatmesh proto shares one descriptor set; advertise only what
    // this server actually serves.
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        services
            .iter()
            .copied()
            .chain([
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
            ])
            .fold(b, |b, name| b.with_service_name(name))
            .register_encoded_file_descriptor_set(chatmesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .context("building gRPC reflection")?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .context("building gRPC reflection")?;
    let routes = routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let readiness = Readiness::default();
    let watcher = tokio::spawn(watch_dependencies(
        probes,
        readiness.clone(),
        Some(reporter),
        services,
        config.probe_interval,
        shutdown.clone(),
    ));

    let grpc_addr = listeners.grpc_addr();
    let admin_addr = listeners.admin_addr();
    tracing::info!(%grpc_addr, %admin_addr, "serving");
    let admin = tokio::spawn(crate::admin::serve_admin(
        listeners.admin,
        readiness,
        shutdown.clone(),
    ));

    let limits = crate::layers::GrpcLimits {
        request_timeout: config.request_timeout,
        max_concurrent_requests: config.max_concurrent_requests,
    };
    let server = tonic::transport::Server::builder()
        .layer(crate::layers::GrpcLayer::new(&limits))
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a small response waits for the client's
            // delayed ACK (about 40 ms) whenever it goes out in two writes.
            TcpIncoming::from(listeners.grpc).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let grace = config.shutdown_grace;
    tokio::select! {
        result = server => result.context("gRPC server failed")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
        }
    }
    // The server only returns early on an error; make sure the helpers stop.
    shutdown.cancel();
    let _ = watcher.await;
    admin.await.context("admin server task panicked")??;
    tracing::info!("stopped");
    Ok(())
}
