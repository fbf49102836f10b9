//! Users' per-second send counts, shared by every chat instance and added
//! up off the send path.
//!
//! A user's limit holds across channels, so its count cannot live in any
//! channel's slot, and reading it on each send would cost a Redis round
//! trip of its own before the admission script. Each instance counts its
//! own sends in memory instead and adds them to the shared counts in
//! batches: at most [`FLUSH_EVERY`] after a send, one pipeline per bucket
//! of users ([`keys::USER_RATE_BUCKETS`]). The pipeline's answer holds the
//! shared totals, which every later decision of the instance includes.
//!
//! Within one instance the limit is exact. Across instances, each learns
//! the others' sends within one flush and a round trip, so a user sending
//! through several instances at once can pass the limit by what reaches
//! them in that time, and no more. If Redis fails, the counts stay local
//! (each instance still holds the user to the limit) and are added at the
//! next flush.
//!
//! Hand-written: a rate limiter crate (`governor`) keeps its counts in one
//! process, and the shared part here is a Redis hash per bucket and window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chatmesh_ids::{Clock, UserId};
use chatmesh_redis::{Cluster, keys};
use tokio::sync::Notify;
use tokio_util::task::AbortOnDropHandle;

/// How long after a send its count reaches the shared counts at most
/// (plus a round trip). Sends counted meanwhile share the pipeline.
pub const FLUSH_EVERY: Duration = Duration::from_millis(25);

/// One user's sends in the current window, as this instance knows them.
#[derive(Debug, Default)]
struct Count {
    /// The shared total, every instance's sends, as Redis last answered.
    shared: u32,
    /// Sends counted here and not yet on their way to Redis.
    unsent: u32,
    /// Sends on their way: not yet in `shared`.
    sending: u32,
}

#[derive(Debug, Default)]
struct Window {
    second: u64,
    users: HashMap<UserId, Count>,
}

#[derive(Debug)]
struct Shared<C> {
    redis: Cluster,
    limit: u32,
    clock: C,
    window: Mutex<Window>,
    /// Woken by a send, so an idle instance makes no Redis calls.
    counted: Notify,
}

/// The users' windows of one chat instance. Clones share them; the
/// background flush ends with the last clone.
#[derive(Debug, Clone)]
pub struct UserWindows<C> {
    shared: Arc<Shared<C>>,
    _flush: Arc<AbortOnDropHandle<()>>,
}

fn lock(window: &Mutex<Window>) -> MutexGuard<'_, Window> {
    window.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: Clock + 'static> UserWindows<C> {
    /// Windows holding each user to `limit` sends a second on `clock`.
    /// Must be called within a Tokio runtime, which runs the flush.
    pub fn new(redis: Cluster, limit: u32, clock: C) -> Self {
        let shared = Arc::new(Shared {
            redis,
            limit,
            clock,
            window: Mutex::default(),
            counted: Notify::new(),
        });
        let flush = tokio::spawn(flush_loop(shared.clone()));
        Self {
            shared,
            _flush: Arc::new(AbortOnDropHandle::new(flush)),
        }
    }

    /// Counts one send by `user` if the user is within the limit for the
    /// current second; false (and nothing counted) if not.
    pub fn admit(&self, user: &UserId) -> bool {
        let second = self.shared.clock.now_ms() / 1000;
        let mut window = lock(&self.shared.window);
        if window.second != second {
            *window = Window {
                second,
                users: HashMap::new(),
            };
        }
        let count = window.users.entry(user.clone()).or_default();
        if count.shared + count.unsent + count.sending >= self.shared.limit {
            return false;
        }
        count.unsent += 1;
        drop(window);
        self.shared.counted.notify_one();
        true
    }

    /// Adds the counts made here to the shared ones now, as the background
    /// flush does within [`FLUSH_EVERY`] of a send.
    pub async fn flush(&self) -> Result<(), redis::RedisError> {
        flush(&self.shared).await
    }
}

async fn flush_loop<C: Clock>(shared: Arc<Shared<C>>) {
    loop {
        shared.counted.notified().await;
        // Let the sends of the next moments join this batch.
        tokio::time::sleep(FLUSH_EVERY).await;
        if let Err(e) = flush(&shared).await {
            tracing::warn!(error = %e, "user send counts not shared yet; retrying with the next send");
        }
    }
}

async fn flush<C: Clock>(shared: &Shared<C>) -> Result<(), redis::RedisError> {
    let (second, buckets) = {
        let mut window = lock(&shared.window);
        let mut buckets: BTreeMap<u16, Vec<(UserId, u32)>> = BTreeMap::new();
        for (user, count) in window.users.iter_mut().filter(|(_, c)| c.unsent > 0) {
            let n = std::mem::take(&mut count.unsent);
            count.sending += n;
            buckets
                .entry(keys::user_rate_bucket(user.as_str()))
                .or_default()
                .push((user.clone(), n));
        }
        (window.second, buckets)
    };
    let results = futures::future::join_all(
        buckets
            .into_iter()
            .map(|(bucket, batch)| add(&shared.redis, bucket, second, batch)),
    )
    .await;
    let mut window = lock(&shared.window);
    // Answers for a window that has ended count for nothing.
    let current = window.second == second;
    let mut failed = None;
    for (batch, totals) in results {
        for (i, (user, n)) in batch.into_iter().enumerate() {
            let Some(count) = window.users.get_mut(&user).filter(|_| current) else {
                continue;
            };
            count.sending -= n;
            match totals.as_ref().map(|t| t.get(i)) {
                Ok(Some(&total)) => count.shared = count.shared.max(total),
                // Not added (or not answered): counted again next time.
                _ => count.unsent += n,
            }
        }
        if let Err(e) = totals {
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Adds a bucket's counts for `second` in one pipeline; the batch comes
/// back with each user's shared total, in order.
async fn add(
    redis: &Cluster,
    bucket: u16,
    second: u64,
    batch: Vec<(UserId, u32)>,
) -> (Vec<(UserId, u32)>, Result<Vec<u32>, redis::RedisError>) {
    let key = keys::user_rates(bucket, second);
    let mut pipe = redis::pipe();
    for (user, n) in &batch {
        pipe.cmd("HINCRBY").arg(&key).arg(user.as_str()).arg(*n);
    }
    // The window's counts matter for its second; two leave room for
    // clocks a little apart.
    pipe.cmd("EXPIRE").arg(&key).arg(2).ignore();
    let totals = async {
        let mut conn = redis.conn().await?;
        pipe.query_async::<Vec<u32>>(&mut conn).await
    }
    .await;
    (batch, totals)
}
