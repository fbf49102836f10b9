//! The chat service. It owns the channel directory (channels and
//! memberships) and the send path: validation, moderation, Snowflake IDs,
//! per-channel sequence numbers, Kafka durability, then Redis fan-out.
//!
//! The send path's rules ([`SendPath`]) see their stores only through the
//! traits in [`ports`]; [`adapters`] holds the Redis, Kafka and Postgres
//! implementations and, for tests, `memory` the in-memory ones, and
//! `testsuite` the trait suites both must pass.

pub mod adapters;
mod config;
mod directory;
mod error;
mod grpc;
pub mod lease;
pub mod member_cache;
#[cfg(any(test, feature = "testsuite"))]
pub mod memory;
pub mod moderation;
pub mod ports;
mod send;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_db::MigrationSet;
use chatmesh_proto::chat::v1::chat_service_server::{ChatServiceServer, SERVICE_NAME};
use chatmesh_server::{Listeners, Probe, Tasks};
use tokio_util::sync::CancellationToken;

pub use config::{ChatConfig, ModerationConfig, SendLimits};
pub use directory::{Channel, Directory, Member, Moderation, Role, Visibility};
pub use error::ChatError;
pub use member_cache::{MemberCache, MemberCacheConfig};
pub use send::{Backends, SendPath, SendRequest, Sent, Stepwise, StepwiseSettlement};

/// Stands in for the storage service when none is configured: every
/// change is refused as unavailable, with the setting named in the log.
#[derive(Debug)]
struct NoStorage;

#[async_trait::async_trait]
impl ports::PostLookup for NoStorage {
    async fn post(
        &self,
        _channel: &chatmesh_ids::ChannelId,
        _seq: u64,
    ) -> Result<Option<chatmesh_ids::ChatMessage>, ChatError> {
        Err(ChatError::StorageUnavailable(
            "no storage service configured (the `storage` setting)".into(),
        ))
    }
}

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: ChatConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve(config, listeners, shutdown).await
}

/// Serves on already-bound listeners until `shutdown`, then waits (at most
/// `server.shutdown_grace`) for its background tasks, so the worker ID lease
/// is released before this returns.
pub async fn serve(
    config: ChatConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = chatmesh_redis::Cluster::new(&config.redis).context("redis client")?;
    let log = adapters::KafkaLog::new(config.kafka.clone()).context("kafka producer")?;
    let kafka_probe = chatmesh_kafka::KafkaProbe::new(&config.kafka).context("kafka probe")?;
    let lists = moderation::ListFiles {
        words: config.moderation.words_file.clone(),
        allow: config.moderation.allow_file.clone(),
    };
    let filter = lists.load().context("moderation lists")?;
    tracing::info!(words = filter.len(), "moderation filter loaded");
    let filter = moderation::SharedFilter::new(filter);
    let pool = chatmesh_db::connect(&config.directory);
    let migrations = chatmesh_db::migrate_until_done(
        "directory",
        config.directory.url.clone(),
        MigrationSet::Directory,
        shutdown.clone(),
    );

    // Discovery and health checks of the storage instances. They stop only
    // once the server has drained, so calls still in flight during the
    // grace period keep being balanced; nothing runs if the URLs are bad.
    let upstream = Tasks::new(CancellationToken::new());
    let posts: Arc<dyn ports::PostLookup> = match &config.storage {
        Some(endpoints) => {
            Arc::new(adapters::StorageLookup::new(endpoints, &upstream).context("storage")?)
        }
        None => Arc::new(NoStorage),
    };

    // Nothing fallible after this point: the lease task must be drained.
    let tasks = Tasks::new(shutdown.clone());
    if !config.moderation.reload_interval.is_zero() {
        let reloader = moderation::Reloader::new(lists, filter.clone());
        let every = config.moderation.reload_interval;
        tasks.spawn(
            "moderation-reload",
            reloader.run(every, tasks.shutdown().clone()),
        );
    }
    let lease = lease::WorkerLease::start(
        redis.clone(),
        config.worker_id,
        config.worker_lease_ttl,
        &tasks,
    );
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(lease.clone()),
        Arc::new(chatmesh_redis::RedisProbe::new(redis.clone())),
        Arc::new(kafka_probe),
        Arc::new(chatmesh_db::PoolProbe::new(
            "postgres:directory",
            pool.clone(),
        )),
        Arc::new(migrations),
    ];
    let directory = Directory::new(pool);
    let (changes, change_rx) = member_cache::follow_changes(redis.clone(), &tasks);
    let members = Arc::new(MemberCache::new(
        Arc::new(directory.clone()),
        Arc::new(changes.clone()),
        &config.member_cache,
    ));
    tasks.spawn(
        "member-cache",
        members.clone().apply(change_rx, tasks.shutdown().clone()),
    );
    let announcer = member_cache::Announcer::new(members.clone(), Some(redis.clone()));
    let sequencer = adapters::RedisSequencer::new(redis.clone(), Arc::new(directory.clone()));
    let idempotency = adapters::RedisIdempotency::new(redis.clone());
    let backends = Backends {
        directory: members,
        ids: Arc::new(lease),
        admission: Arc::new(adapters::RedisAdmission::new(
            sequencer.clone(),
            idempotency.clone(),
            &config.limits,
        )),
        sequencer: Arc::new(sequencer),
        log: Arc::new(log),
        // The fan-out marks keys acknowledged in the same pipeline.
        settlement: Arc::new(adapters::RedisFanOut::new(
            redis.clone(),
            config.limits.recent_history,
        )),
        limiter: Arc::new(adapters::RedisRateLimiter::new(redis, &config.limits)),
        posts,
    };
    let send = SendPath::new(backends, filter, config.limits.clone());
    let service = grpc::ChatGrpc::new(directory, Arc::new(send), announcer);
    let routes = tonic::service::Routes::new(ChatServiceServer::new(service));
    let served = chatmesh_server::serve_grpc(
        routes,
        vec![SERVICE_NAME],
        probes,
        listeners,
        &config.server,
        shutdown,
    )
    .await;
    // Past the grace period the lease is left to expire; `drain` logs it.
    tasks.drain(config.server.shutdown_grace).await;
    upstream.drain(config.server.shutdown_grace).await;
    served
}
