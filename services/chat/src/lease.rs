//! Snowflake worker IDs leased in Redis, so no two live instances mint IDs
//! with the same worker bits. A configured ID (such as a StatefulSet
//! ordinal) is only used once its lease is won; without one, the instance
//! leases any free ID.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chatmesh_ids::{MAX_WORKER_ID, MessageId, Snowflake};
use chatmesh_redis::Cluster;
use chatmesh_server::{Probe, ProbeFuture, Tasks};
use tokio_util::sync::CancellationToken;

use crate::ports::IdSource;

/// Extends the lease only while this instance still holds it.
const REFRESH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease only if this instance holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The Redis key of `worker`'s lease; its value names the holding instance.
pub fn lease_key(worker: u16) -> String {
    format!("cm:worker:{{{worker}}}")
}

/// The leased worker ID and the generator built on it.
#[derive(Debug, Clone)]
pub struct WorkerLease {
    ids: Arc<OnceLock<Snowflake>>,
    held: Arc<AtomicBool>,
}

impl WorkerLease {
    /// The ID generator, while the lease is held.
    pub fn ids(&self) -> Option<&Snowflake> {
        if self.held.load(Ordering::Acquire) {
            self.ids.get()
        } else {
            None
        }
    }

    /// Acquires a lease (on `wanted`, or on any free ID) in a task owned by
    /// `tasks` and keeps it until their shutdown, then releases it: drain
    /// `tasks` to be sure the key is gone.
    pub fn start(redis: Cluster, wanted: Option<u16>, ttl: Duration, tasks: &Tasks) -> Self {
        let lease = Self {
            ids: Arc::default(),
            held: Arc::default(),
        };
        let shutdown = tasks.shutdown().clone();
        tasks.spawn(
            "worker-id-lease",
            lease.clone().run(redis, wanted, ttl, shutdown),
        );
        lease
    }

    async fn run(
        self,
        redis: Cluster,
        wanted: Option<u16>,
        ttl: Duration,
        shutdown: CancellationToken,
    ) {
        let instance = uuid::Uuid::new_v4().to_string();
        let ttl_ms = ttl.as_millis() as u64;
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut worker: Option<u16> = None;
        let mut last_refresh = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let result: Result<(), redis::RedisError> = async {
                let mut conn = redis.conn().await?;
                match worker {
                    None => {
                        // After a first lease, only that ID will do: a new
                        // one could mint IDs below ones already issued.
                        let target = self.ids.get().map(Snowflake::worker).or(wanted);
                        worker = acquire(&mut conn, target, &instance, ttl_ms).await?;
                        match worker {
                            Some(id) => {
                                self.ids.get_or_init(|| {
                                    Snowflake::new(id).expect("leased IDs fit 10 bits")
                                });
                                tracing::info!(worker_id = id, "snowflake worker id leased");
                                last_refresh = Instant::now();
                                self.held.store(true, Ordering::Release);
                            }
                            None => tracing::error!(
                                ?target,
                                "no snowflake worker id free; sends are refused"
                            ),
                        }
                    }
                    Some(id) => {
                        let kept: i64 = redis::Script::new(REFRESH)
                            .key(lease_key(id))
                            .arg(&instance)
                            .arg(ttl_ms)
                            .invoke_async(&mut conn)
                            .await?;
                        if kept == 1 {
                            last_refresh = Instant::now();
                        } else {
                            tracing::error!(
                                worker_id = id,
                                "snowflake worker id lease lost; sends are refused"
                            );
                            self.held.store(false, Ordering::Release);
                            worker = None;
                        }
                    }
                }
                Ok(())
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "worker id lease refresh failed");
                // Past the TTL another instance may own the ID.
                if last_refresh.elapsed() >= ttl && self.held.swap(false, Ordering::AcqRel) {
                    tracing::error!(
                        "worker id lease expired while redis was unreachable; sends are refused"
                    );
                    worker = None;
                }
            }
        }
        self.held.store(false, Ordering::Release);
        if let Some(id) = worker {
            // Compare-and-delete: a lease lost to another instance stays theirs.
            let released: Result<i64, redis::RedisError> = async {
                let mut conn = redis.conn().await?;
                redis::Script::new(RELEASE)
                    .key(lease_key(id))
                    .arg(&instance)
                    .invoke_async(&mut conn)
                    .await
            }
            .await;
            match released {
                Ok(1) => tracing::info!(worker_id = id, "snowflake worker id lease released"),
                Ok(_) => tracing::warn!(
                    worker_id = id,
                    "snowflake worker id lease was no longer held"
                ),
                Err(err) => {
                    tracing::warn!(worker_id = id, error = %err, "could not release worker id lease; it expires on its own");
                }
            }
        }
    }
}

/// Wins the lease on `wanted` (or the ID this instance used before, or any
/// free one), starting from a random ID so instances spread out.
async fn acquire(
    conn: &mut chatmesh_redis::Conn,
    wanted: Option<u16>,
    instance: &str,
    ttl_ms: u64,
) -> Result<Option<u16>, redis::RedisError> {
    let candidates: Vec<u16> = match wanted {
        Some(id) => vec![id],
        None => {
            let start = (uuid::Uuid::new_v4().as_u128() % (u128::from(MAX_WORKER_ID) + 1)) as u16;
            (0..=MAX_WORKER_ID)
                .map(|i| (start + i) % (MAX_WORKER_ID + 1))
                .collect()
        }
    };
    for id in candidates {
        let won: Option<String> = redis::cmd("SET")
            .arg(lease_key(id))
            .arg(instance)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(conn)
            .await?;
        if won.is_some() {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

impl IdSource for WorkerLease {
    fn next_id(&self) -> Option<MessageId> {
        self.ids().map(Snowflake::next_id)
    }
}

impl Probe for WorkerLease {
    fn name(&self) -> &str {
        "worker-id-lease"
    }

    fn check(&self) -> ProbeFuture<'_> {
        let held = self.ids().is_some();
        Box::pin(async move {
            if held {
                Ok(())
            } else {
                Err("no snowflake worker id leased".into())
            }
        })
    }
}
