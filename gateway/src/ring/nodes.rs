//! Ring membership. Each node registers itself in Redis with an expiry and
//! refreshes it; every node reads the same live set and builds the same
//! ring. A node that dies stops refreshing and drops out after the TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_ids::{Clock as _, SystemClock};

use chatmesh_redis::{Cluster, keys};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::RoutingConfig;
use crate::ring::Ring;

/// The ring and where each of its nodes is reached.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// The ring over live nodes.
    pub ring: Ring,
    /// Public URL of each live node.
    pub urls: HashMap<String, String>,
}

impl Routes {
    /// The owner of `channel` and its URL.
    pub fn owner(&self, channel: &str) -> Option<(&str, Option<&str>)> {
        let node = self.ring.owner(channel)?;
        Some((node, self.urls.get(node).map(String::as_str)))
    }
}

/// Registers `node` and keeps `routes` current until `shutdown`, then
/// deregisters so the ring moves its channels at once.
pub async fn run(
    redis: Cluster,
    node: String,
    url: String,
    config: RoutingConfig,
    routes: watch::Sender<Arc<Routes>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        match refresh(&redis, &config.cluster, &node, &url, config.node_ttl).await {
            Ok((nodes, urls)) => {
                let changed = routes.borrow().ring.nodes() != nodes.as_slice()
                    || routes.borrow().urls != urls;
                if changed {
                    tracing::info!(nodes = ?nodes, "gateway ring changed");
                    metrics::gauge!("chatmesh_gateway_ring_nodes").set(nodes.len() as f64);
                    routes.send_replace(Arc::new(Routes {
                        ring: Ring::new(nodes, config.vnodes),
                        urls,
                    }));
                }
            }
            // Keep the last known ring: a brief Redis outage must not
            // reshuffle every channel.
            Err(err) => tracing::warn!(error = %err, "gateway membership refresh failed"),
        }
    }
    let result: Result<(), redis::RedisError> = async {
        let mut conn = redis.conn().await?;
        redis::pipe()
            .cmd("ZREM")
            .arg(keys::gateway_nodes(&config.cluster))
            .arg(&node)
            .ignore()
            .cmd("HDEL")
            .arg(keys::gateway_urls(&config.cluster))
            .arg(&node)
            .ignore()
            .query_async(&mut conn)
            .await
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not deregister from the gateway ring");
    }
}

async fn refresh(
    redis: &Cluster,
    cluster: &str,
    node: &str,
    url: &str,
    ttl: Duration,
) -> Result<(Vec<String>, HashMap<String, String>), redis::RedisError> {
    let now = SystemClock.now_ms();
    let mut conn = redis.conn().await?;
    let (mut nodes, all_urls): (Vec<String>, HashMap<String, String>) = redis::pipe()
        .cmd("ZADD")
        .arg(keys::gateway_nodes(cluster))
        .arg(now + ttl.as_millis() as u64)
        .arg(node)
        .ignore()
        .cmd("HSET")
        .arg(keys::gateway_urls(cluster))
        .arg(node)
        .arg(url)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(keys::gateway_nodes(cluster))
        .arg("-inf")
        .arg(now)
        .ignore()
        .cmd("ZRANGEBYSCORE")
        .arg(keys::gateway_nodes(cluster))
        .arg(now)
        .arg("+inf")
        .cmd("HGETALL")
        .arg(keys::gateway_urls(cluster))
        .query_async(&mut conn)
        .await?;
    nodes.sort();
    let urls = all_urls
        .into_iter()
        .filter(|(n, _)| nodes.binary_search(n).is_ok())
        .collect();
    Ok((nodes, urls))
}

/// Ready once this node is on the ring it serves from.
#[derive(Debug, Clone)]
pub struct RingProbe {
    node: String,
    routes: watch::Receiver<Arc<Routes>>,
}

impl RingProbe {
    /// A probe for `node` over the shared routes.
    pub fn new(node: String, routes: watch::Receiver<Arc<Routes>>) -> Self {
        Self { node, routes }
    }
}

impl chatmesh_server::Probe for RingProbe {
    fn name(&self) -> &str {
        "ring"
    }

    fn check(&self) -> chatmesh_server::ProbeFuture<'_> {
        let on_ring = self.routes.borrow().ring.nodes().contains(&self.node);
        Box::pin(async move {
            if on_ring {
                Ok(())
            } else {
                Err("not registered on the gateway ring yet".into())
            }
        })
    }
}
