//! The live presence instances and the share of work each one owns.
//!
//! Every instance hears every heartbeat batch (pub/sub is a broadcast), so
//! they split the work by session: rendezvous hashing over the registered
//! instances gives each session exactly one owner, and only a joining or
//! leaving instance moves sessions. While instances disagree for a moment
//! about who is live, a session may be refreshed twice or skipped once;
//! both are harmless, since refreshing is idempotent and a session TTL
//! spans many heartbeats.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chatmesh_ids::{Clock as _, SystemClock};
use chatmesh_redis::{Cluster, keys};
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// This instance's view of the live instances.
#[derive(Debug, Clone)]
pub(crate) struct Instances {
    me: Arc<str>,
    live: Arc<RwLock<Vec<String>>>,
}

impl Instances {
    pub(crate) fn new(me: impl Into<Arc<str>>) -> Self {
        Self {
            me: me.into(),
            live: Arc::default(),
        }
    }

    /// This instance's ID.
    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    /// True if this instance handles `item` (a session or channel ID).
    pub(crate) fn owns(&self, item: &str) -> bool {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        owner(&live, item).is_some_and(|o| o == &*self.me)
    }

    /// True once this instance appears in the registry.
    pub(crate) fn registered(&self) -> bool {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        live.iter().any(|i| i == &*self.me)
    }

    /// Replaces the view of the live instances.
    pub(crate) fn set(&self, live: Vec<String>) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
    }

    /// Registers this instance every `refresh` with a `ttl`, and rereads the
    /// live instances, until `shutdown`; then deregisters.
    pub(crate) async fn run(
        self,
        redis: Cluster,
        group: String,
        refresh: Duration,
        ttl: Duration,
        shutdown: CancellationToken,
    ) {
        let key = keys::presence_instances(&group);
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => break,
            }
            let now = SystemClock.now_ms();
            let result = async {
                let mut conn = redis.conn().await?;
                let (_, _, live): ((), (), Vec<String>) = redis::pipe()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(now + ttl.as_millis() as u64)
                    .arg(&*self.me)
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>(live)
            }
            .await;
            match result {
                Ok(live) => {
                    metrics::gauge!("chatmesh_presence_instances").set(live.len() as f64);
                    self.set(live);
                }
                Err(err) => tracing::warn!(error = %err, "cannot refresh the instance registry"),
            }
        }
        if let Ok(mut conn) = redis.conn().await {
            let removed: Result<(), _> = redis::cmd("ZREM")
                .arg(&key)
                .arg(&*self.me)
                .query_async(&mut conn)
                .await;
            if let Err(err) = removed {
                tracing::warn!(error = %err, "cannot deregister; the registration lapses by itself");
            }
        }
    }
}

/// Ready once this instance holds a share of the work.
impl chatmesh_server::Probe for Instances {
    fn name(&self) -> &str {
        "instance-registry"
    }

    fn check(&self) -> chatmesh_server::ProbeFuture<'_> {
        let registered = self.registered();
        Box::pin(async move {
            if registered {
                Ok(())
            } else {
                Err("not registered among presence instances yet".into())
            }
        })
    }
}

/// The instance owning `item`: highest rendezvous score wins.
fn owner<'a>(live: &'a [String], item: &str) -> Option<&'a String> {
    live.iter().max_by_key(|instance| {
        xxh3_64_with_seed(item.as_bytes(), xxh3_64_with_seed(instance.as_bytes(), 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_has_one_owner_and_a_new_instance_takes_a_fair_share() {
        let two: Vec<String> = vec!["p-a".into(), "p-b".into()];
        let three: Vec<String> = vec!["p-a".into(), "p-b".into(), "p-c".into()];
        let items: Vec<String> = (0..9_000).map(|i| format!("session-{i}")).collect();
        let mut moved = 0;
        let mut per = std::collections::HashMap::<&str, usize>::new();
        for item in &items {
            let before = owner(&two, item).expect("owner");
            let after = owner(&three, item).expect("owner");
            *per.entry(after.as_str()).or_default() += 1;
            if before != after {
                moved += 1;
                assert_eq!(after, "p-c", "only moves to the new instance");
            }
        }
        assert!((2_700..=3_300).contains(&moved), "moved {moved}");
        for (instance, n) in per {
            assert!((2_700..=3_300).contains(&n), "{instance} owns {n}");
        }
        assert_eq!(owner(&[], "x"), None);
    }

    #[test]
    fn ownership_follows_the_registry() {
        let a = Instances::new("p-a");
        assert!(!a.owns("s1"), "nothing is owned before registering");
        a.set(vec!["p-a".into()]);
        assert!(a.owns("s1") && a.registered());
    }
}
