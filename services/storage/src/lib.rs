//! The storage service. It consumes the message topic in a consumer group,
//! writes batches to the channel's shard database, and serves history.
//!
//! The rules live in plain types over two small traits: a [`Batcher`] moves
//! records from a [`source::LogSource`] to a [`store::MessageStore`], and
//! [`history::History`] serves reads of the store to channel members. The
//! Kafka and Postgres adapters are wired here; in-memory ones (with the
//! `testsuite` feature) stand in for them in tests.
//!
//! The consumer is a static group member under an instance ID that
//! survives restarts ([`instance`]), and a timer measures the whole
//! group's lag, so an instance the group leaves without partitions says so
//! in its metrics, its log and its readiness ([`stall`]).

pub mod batcher;
mod config;
mod error;
mod group;
mod grpc;
pub mod history;
mod instance;
mod lag;
pub mod members;
pub mod source;
mod stall;
pub mod store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_config::{Env, Invalid};
use chatmesh_db::{MigrationSet, ShardMap};
use chatmesh_proto::storage::v1::storage_service_server::{SERVICE_NAME, StorageServiceServer};
use chatmesh_server::{Listeners, Probe, Tasks};
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;

pub use batcher::{Batcher, Totals};
pub use config::{BatchConfig, StorageConfig};
pub use error::StorageError;

/// Binds the configured addresses and serves until `shutdown`. When the
/// configuration sets no instance ID, the process's `POD_NAME` is the
/// first default.
pub async fn run(mut config: StorageConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The process environment, read once here at the binary's edge.
    let env: Env = std::env::vars().collect();
    let (id, source) = instance::resolve(config.instance_id.as_deref(), &env, instance::host_name)
        .map_err(invalid)?;
    tracing::info!(instance_id = %id, source = source.as_str(), "group instance ID");
    config.instance_id = Some(id);
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

fn invalid(i: Invalid) -> anyhow::Error {
    anyhow::anyhow!("invalid config field `{}`: {}", i.field, i.reason)
}

/// Serves on already-bound listeners until `shutdown`. The consumer then
/// finishes and commits the batch in hand and leaves its group; this waits
/// for each at most `server.shutdown_grace`. Without a configured instance
/// ID the host name is the instance ID.
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
    let (instance_id, _) = instance::resolve(
        config.instance_id.as_deref(),
        &Env::new(),
        instance::host_name,
    )
    .map_err(invalid)?;
    let consumer = Arc::new(
        chatmesh_kafka::group_consumer(&config.kafka, &config.consumer_group, &instance_id)
            .context("kafka consumer")?,
    );
    let offsets = chatmesh_kafka::offsets_client(&config.kafka, &config.consumer_group)
        .context("kafka offsets client")?;
    let status = group::GroupStatus::default();
    probes.push(Arc::new(group::GroupProbe::new(
        consumer.context().clone(),
        status.clone(),
    )));
    tracing::info!(
        group = %config.consumer_group,
        instance_id = consumer.context().instance_id(),
        "joining the consumer group as a static member"
    );
    let log = source::KafkaSource::subscribe(consumer.clone(), &config.kafka.topic)
        .context("kafka subscribe")?;
    let store = store::PostgresStore::new(shards);

    // A child token: the tasks stop with the service, and an early end of
    // the server stops them without touching the caller's token.
    let tasks = Tasks::new(shutdown.child_token());
    tasks.spawn(
        "consumer lag",
        lag::run(
            lag::LagWatch {
                consumer: consumer.clone(),
                offsets,
                topic: config.kafka.topic.clone(),
                interval: config.lag_interval,
                stall_after: config.stall_after,
                status,
            },
            tasks.shutdown().clone(),
        ),
    );
    let batcher = Batcher::new(log, store.clone(), config.batch.clone());
    let stop = tasks.shutdown().clone();
    let consuming = tasks.spawn("storage consumer", async move { batcher.run(&stop).await });

    let history = history::History::new(
        store,
        members::DirectoryMembers::new(directory),
        config.max_page,
    );
    let routes =
        tonic::service::Routes::new(StorageServiceServer::new(grpc::StorageGrpc::new(history)));
    let grace = config.server.shutdown_grace;
    let serving = async {
        let served = chatmesh_server::serve_grpc(
            routes,
            vec![SERVICE_NAME],
            probes,
            listeners,
            &config.server,
            shutdown,
        )
        .await;
        tasks.shutdown().cancel();
        served
    };
    // The grace period runs from shutdown, alongside the server's own.
    let draining = async {
        tasks.shutdown().cancelled().await;
        tasks.wait(grace).await
    };
    let (served, drained) = tokio::join!(serving, draining);
    if !drained {
        tracing::warn!(
            ?grace,
            "storage consumer did not finish its batch in time; the batch replays"
        );
        return served;
    }
    // Every task has ended, so this does not wait.
    consuming.await.context("storage consumer panicked")?;
    // A static member does not leave its group on close; without this a
    // scale-down would leave its partitions unread for the session timeout
    // (and on some brokers for good). A restart then costs a rebalance,
    // as it would for a dynamic member; a crash does not.
    chatmesh_kafka::leave(&consumer, grace).await;
    // Closing waits for the broker's answers; off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    served
}
