//! The storage service. It consumes the message topic in a consumer group,
//! writes batches to the channel's shard database, and serves history.

mod config;
mod consumer;
mod grpc;
mod history;
mod lag;
mod rows;
mod schema;
mod writer;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_db::{MigrationSet, ShardMap};
use chatmesh_proto::storage::v1::storage_service_server::{SERVICE_NAME, StorageServiceServer};
use chatmesh_server::{Listeners, Probe};
use tokio_util::sync::CancellationToken;

pub use config::{BatchConfig, StorageConfig};

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: StorageConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

/// Serves on already-bound listeners until `shutdown`.
pub async fn serve(
    config: StorageConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shards = ShardMap::connect(&config.shards);
    let directory = chatmesh_db::connect(&config.directory);

    let mut probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(chatmesh_kafka::KafkaProbe::new(&config.kafka).context("kafka probe")?),
        Arc::new(chatmesh_db::PoolProbe::new(
            "postgres:directory",
            directory.clone(),
        )),
    ];
    for shard in shards.shards() {
        probes.push(Arc::new(chatmesh_db::PoolProbe::new(
            format!("postgres:{}", shard.name),
            shard.pool.clone(),
        )));
        probes.push(Arc::new(chatmesh_db::migrate_until_done(
            shard.name.clone(),
            shard.url.clone(),
            MigrationSet::Shard,
            shutdown.clone(),
        )));
    }
    let consumer = Arc::new(
        chatmesh_kafka::consumer(&config.kafka, &config.consumer_group)
            .context("kafka consumer")?,
    );
    let watermarks =
        chatmesh_kafka::offsets_client(&config.kafka).context("kafka offsets client")?;
    let measuring = tokio::spawn(lag::run(
        consumer.clone(),
        watermarks,
        config.kafka.topic.clone(),
        config.lag_interval,
        shutdown.clone(),
    ));
    let consuming = tokio::spawn(consumer::run(
        consumer,
        config.kafka.topic.clone(),
        shards.clone(),
        config.batch.clone(),
        shutdown.clone(),
    ));
    let routes = tonic::service::Routes::new(StorageServiceServer::new(grpc::StorageGrpc::new(
        shards,
        directory,
        config.max_page,
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
    // The consumer finishes and commits the batch in hand before exiting.
    consuming.await.context("storage consumer panicked")??;
    measuring.await.context("consumer lag task panicked")?;
    served
}
