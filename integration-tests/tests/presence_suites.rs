//! The presence store contract (`chatmesh_presence::testsuite`) on the real
//! Redis Cluster: the same suite the in-memory store passes in the unit
//! tests. Every test names its own users and channels, so it shares the
//! cluster with other tests and earlier runs.
//!
//! Also here: the service's own shutdown, which must leave the instance
//! registry clean before `serve` returns.

use std::time::{Duration, Instant};

use chatmesh_integration_tests::{Infra, wait};
use chatmesh_presence::{PresenceConfig, RedisStore};
use chatmesh_redis::keys;
use chatmesh_server::Listeners;
use tokio_util::sync::CancellationToken;

/// A store on the cluster `scripts/infra up` started.
async fn redis_store() -> RedisStore {
    let infra = Infra::load().expect("infrastructure state");
    RedisStore::new(infra.redis().expect("redis cluster client"))
}

chatmesh_presence::presence_store_suite!(redis_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_deregisters_the_instance_before_it_returns() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    let group = format!("suite-{}", uuid::Uuid::new_v4().simple());
    // The registration would outlive the test by itself: only an explicit
    // deregistration clears it in time.
    let config: PresenceConfig = toml::from_str(&format!(
        "[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nshutdown_grace = \"3s\"\n{}[presence]\ngroup = {group:?}\ninstance_refresh = \"100ms\"\ninstance_ttl = \"1m\"\n",
        infra.redis_toml()
    ))?;
    let listeners = Listeners::bind(&config.server).await?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(chatmesh_presence::serve(
        config,
        listeners,
        shutdown.clone(),
    ));

    let key = keys::presence_instances(&group);
    let mut redis = infra.redis()?.conn().await?;
    wait::until("instance registered", Duration::from_secs(30), || {
        let (mut redis, key) = (redis.clone(), key.clone());
        async move {
            let n: usize = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(&mut redis)
                .await?;
            anyhow::ensure!(n == 1, "{n} instances registered");
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;

    let stopping = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(3), "serve took {took:?} to stop");
    let left: usize = redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut redis)
        .await?;
    assert_eq!(left, 0, "still registered after serve returned");
    Ok(())
}
