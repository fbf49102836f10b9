//! The media service. Clients upload and download directly against the
//! object store through presigned URLs; this service checks membership and
//! limits, signs the URLs and keeps the metadata.

mod config;
mod grpc;
mod store;

use std::sync::Arc;

use chatmesh_db::MigrationSet;
use chatmesh_proto::media::v1::media_service_server::{MediaServiceServer, SERVICE_NAME};
use chatmesh_server::{Listeners, Probe};
use tokio_util::sync::CancellationToken;

pub use config::{MediaConfig, StoreConfig};
pub use store::{StoreProbe, open_store};

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: MediaConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

/// Serves on already-bound listeners until `shutdown`.
pub async fn serve(
    config: MediaConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = open_store(&config.store)?;
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
        Arc::new(StoreProbe::new(store.clone())),
    ];
    let routes = tonic::service::Routes::new(MediaServiceServer::new(grpc::MediaGrpc::new(
        store, directory,
    )));
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
