//! The media service. Clients upload and download directly against the
//! object store through presigned URLs; this service checks membership and
//! limits, signs the URLs, verifies uploads and keeps the metadata.
//!
//! The rules live in [`Uploads`], over two small traits: a
//! [`catalog::Catalog`] of media rows and memberships (Postgres) and a
//! [`store::Blobs`] that signs URLs (S3 or a local directory). In-memory
//! implementations and the suites every implementation passes come with
//! the `testsuite` feature.

pub mod catalog;
mod config;
mod error;
mod grpc;
mod media;
pub mod policy;
pub mod store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod uploads;

use std::sync::Arc;

use chatmesh_db::MigrationSet;
use chatmesh_proto::media::v1::media_service_server::{MediaServiceServer, SERVICE_NAME};
use chatmesh_server::{Listeners, Probe, Tasks};
use tokio_util::sync::CancellationToken;

pub use catalog::{Catalog, Membership, PostgresCatalog};
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
/// then defaults to the bound address). On shutdown, uploads still
/// streaming to the local store get `server.shutdown_grace`, alongside the
/// gRPC server's own, and are then cut off.
pub async fn serve(
    config: MediaConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A child token: the local store server stops with the service, and an
    // early end of the gRPC server stops it without touching the caller's
    // token.
    let tasks = Tasks::new(shutdown.child_token());
    let store = store::open(&config.store, config.limits.max_size, &tasks).await?;
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
    let uploads = Uploads::new(
        Arc::new(PostgresCatalog::new(directory)),
        store.blobs,
        config.limits.clone(),
    );
    let routes =
        tonic::service::Routes::new(MediaServiceServer::new(grpc::MediaGrpc::new(uploads)));
    let grace = config.server.shutdown_grace;
    let serving = async {
        let served = chatmesh_server::serve_grpc(
            routes,
            vec![SERVICE_NAME],
            probes,
            listeners,
            &config.server,
            shutdown.clone(),
        )
        .await;
        tasks.shutdown().cancel();
        served
    };
    let draining = async {
        tasks.shutdown().cancelled().await;
        tasks.wait(grace).await
    };
    let (served, drained) = tokio::join!(serving, draining);
    if !drained {
        tracing::warn!(?grace, "local store uploads cut off after the grace period");
        if let Some(server) = store.server {
            server.abort();
        }
    }
    served
}
