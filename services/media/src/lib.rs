//! The media service. Clients upload and download directly against the
//! object store through presigned URLs; this service checks membership and
//! limits, signs the URLs, verifies uploads and keeps the metadata.

mod catalog;
mod config;
mod error;
mod grpc;
mod media;
pub mod policy;
pub mod store;
mod uploads;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_db::MigrationSet;
use chatmesh_proto::media::v1::media_service_server::{MediaServiceServer, SERVICE_NAME};
use chatmesh_server::{Listeners, Probe};
use tokio_util::sync::CancellationToken;

pub use catalog::Catalog;
pub use config::{MediaConfig, MediaLimits, StoreConfig};
pub use error::MediaError;
pub use media::{Media, MediaId, MediaState};
pub use store::StoreProbe;
pub use uploads::{NewUpload, Upload, Uploads};

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: MediaConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

/// Serves on already-bound listeners until `shutdown`. The local store's
/// URL listener is bound from its own config (port 0 works: its public URL
/// then defaults to the bound address).
pub async fn serve(
    config: MediaConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = store::open(&config.store, config.limits.max_size, shutdown.clone()).await?;
    let directory = chatmesh_db::connect(&config.directory);
    let migrations = chatmesh_db::migrate_until_done(
        "directory",
        config.directory.url.clone(),
        MigrationSet::Directory,
        shutdown.clone(),
    );
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_db::PoolProbe::new(
            "postgres:directory",
            directory.clone(),
        )),
        Arc::new(migrations),
        Arc::new(StoreProbe::new(store.blobs.clone())),
    ];
    let uploads = Uploads::new(Catalog::new(directory), store.blobs, config.limits.clone());
    let routes =
        tonic::service::Routes::new(MediaServiceServer::new(grpc::MediaGrpc::new(uploads)));
    let served = chatmesh_server::serve_grpc(
        routes,
        vec![SERVICE_NAME],
        probes,
        listeners,
        &config.server,
        shutdown.clone(),
    )
    .await;
    // The gRPC server has stopped; uploads still streaming to the local
    // store get the same grace period, then are cut off.
    shutdown.cancel();
    if let Some(server) = store.server {
        let abort = server.abort_handle();
        match tokio::time::timeout(config.server.shutdown_grace, server).await {
            Ok(joined) => joined.context("local store server panicked")??,
            Err(_) => {
                abort.abort();
                tracing::warn!("local store uploads did not finish within the grace period");
            }
        }
    }
    served
}
