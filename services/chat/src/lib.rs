//! The chat service. It owns the channel directory (channels and
//! memberships) and the send path: validation, moderation, Snowflake IDs,
//! per-channel sequence numbers, Kafka durability, then Redis fan-out.

mod config;
mod directory;
mod error;
mod grpc;
pub mod lease;
pub mod moderation;
mod send;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_db::MigrationSet;
use chatmesh_proto::chat::v1::chat_service_server::{ChatServiceServer, SERVICE_NAME};
use chatmesh_server::{Listeners, Probe};
use tokio_util::sync::CancellationToken;

pub use config::{ChatConfig, ModerationConfig, SendLimits};
pub use directory::{Channel, Directory, Moderation};
pub use error::ChatError;
pub use send::{SendPath, SendRequest, Sent};

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: ChatConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

/// Serves on already-bound listeners until `shutdown`.
pub async fn serve(
    config: ChatConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = chatmesh_redis::Cluster::new(&config.redis).context("redis client")?;
    let producer = chatmesh_kafka::producer(&config.kafka).context("kafka producer")?;
    let pool = chatmesh_db::connect(&config.directory);
    let migrations = chatmesh_db::migrate_until_done(
        "directory",
        config.directory.url.clone(),
        MigrationSet::Directory,
        shutdown.clone(),
    );

    let lease = lease::WorkerLease::start(
        redis.clone(),
        config.worker_id,
        config.worker_lease_ttl,
        shutdown.clone(),
    );
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(lease.clone()),
        Arc::new(chatmesh_redis::RedisProbe::new(redis.clone())),
        Arc::new(chatmesh_kafka::KafkaProbe::new(&config.kafka).context("kafka probe")?),
        Arc::new(chatmesh_db::PoolProbe::new(
            "postgres:directory",
            pool.clone(),
        )),
        Arc::new(migrations),
    ];
    let filter = match &config.moderation.words_file {
        Some(path) => moderation::Filter::from_file(path).context("moderation.words_file")?,
        None => moderation::Filter::new(std::iter::empty::<&str>()),
    };
    tracing::info!(words = filter.len(), "moderation filter loaded");
    let directory = Directory::new(pool);
    let send = SendPath {
        directory: directory.clone(),
        filter: Arc::new(filter),
        ids: lease.clone(),
        redis: redis.clone(),
        producer: send::Producer::new(config.kafka.clone(), producer),
        limits: config.limits.clone(),
    };
    let service = grpc::ChatGrpc::new(directory, Arc::new(send));
    let routes = tonic::service::Routes::new(ChatServiceServer::new(service));
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
