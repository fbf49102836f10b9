//! Ring membership. Each node registers itself in Redis with an expiry and
//! refreshes it; every node reads the same live set and builds the same
//! ring. A node that dies stops refreshing and drops out after the TTL.
//!
//! The TTL is long enough to ride out a slow Redis, which is too long to
//! keep sending clients to a dead node. So every node also checks the
//! others' `/livez` itself, a few times a second, and leaves a node that
//! fails `peer_failures` checks in a row out of its own ring until a check
//! succeeds again. Nodes that disagree for a moment are harmless: a node
//! never redirects to a node it cannot reach, and fan-out through Redis
//! reaches a channel's sessions on every node.

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
    let mut probe_tick = tokio::time::interval(config.peer_probe_interval);
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peers = Peers::new(node.clone(), &config);
    // The membership Redis last reported.
    let mut registered: Option<(Vec<String>, HashMap<String, String>)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match refresh(&redis, &config.cluster, &node, &url, config.node_ttl).await {
                    Ok(found) => registered = Some(found),
                    // Keep the last known ring: a brief Redis outage must
                    // not reshuffle every channel.
                    Err(err) => tracing::warn!(error = %err, "gateway membership refresh failed"),
                }
            }
            _ = probe_tick.tick() => {
                if let Some((_, urls)) = &registered {
                    peers.check(urls).await;
                }
            }
            () = shutdown.cancelled() => break,
        }
        let Some((nodes, urls)) = &registered else {
            continue;
        };
        let (nodes, urls) = peers.reachable(nodes, urls);
        let changed =
            routes.borrow().ring.nodes() != nodes.as_slice() || routes.borrow().urls != urls;
        if changed {
            tracing::info!(nodes = ?nodes, "gateway ring changed");
            metrics::gauge!("chatmesh_gateway_ring_nodes").set(nodes.len() as f64);
            routes.send_replace(Arc::new(Routes {
                ring: Ring::new(nodes, config.vnodes),
                urls,
            }));
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

/// This node's own view of which other nodes answer.
struct Peers {
    node: String,
    client: reqwest::Client,
    failures_allowed: u32,
    // node → failed checks in a row
    failures: HashMap<String, u32>,
}

impl Peers {
    fn new(node: String, config: &RoutingConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.peer_probe_timeout)
            .connect_timeout(config.peer_probe_timeout)
            .build()
            .unwrap_or_default();
        Self {
            node,
            client,
            failures_allowed: config.peer_failures,
            failures: HashMap::new(),
        }
    }

    /// Checks every other node's `/livez` at once.
    async fn check(&mut self, urls: &HashMap<String, String>) {
        let checks = urls
            .iter()
            .filter(|(n, _)| **n != self.node)
            .map(|(n, url)| {
                let client = self.client.clone();
                let probe = livez_url(url);
                async move {
                    let ok = match probe {
                        Some(probe) => client
                            .get(probe)
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success()),
                        None => false,
                    };
                    (n.clone(), ok)
                }
            });
        let results = futures::future::join_all(checks).await;
        self.failures.retain(|n, _| urls.contains_key(n));
        for (peer, ok) in results {
            let count = self.failures.entry(peer.clone()).or_default();
            let was_down = *count >= self.failures_allowed;
            *count = if ok { 0 } else { count.saturating_add(1) };
            let down = *count >= self.failures_allowed;
            if down && !was_down {
                metrics::counter!("chatmesh_gateway_peers_lost_total").increment(1);
                tracing::warn!(peer = %peer, "gateway node stopped answering; left out of the ring");
            } else if was_down && !down {
                tracing::info!(peer = %peer, "gateway node answers again; back on the ring");
            }
        }
    }

    /// `nodes` and `urls` without the nodes that stopped answering.
    fn reachable(
        &self,
        nodes: &[String],
        urls: &HashMap<String, String>,
    ) -> (Vec<String>, HashMap<String, String>) {
        let up = |n: &String| {
            *n == self.node
                || self
                    .failures
                    .get(n)
                    .is_none_or(|&f| f < self.failures_allowed)
        };
        (
            nodes.iter().filter(|n| up(n)).cloned().collect(),
            urls.iter()
                .filter(|(n, _)| up(n))
                .map(|(n, u)| (n.clone(), u.clone()))
                .collect(),
        )
    }
}

/// The `/livez` of the node whose public URL is `public`: same host and
/// port, over HTTP(S).
fn livez_url(public: &str) -> Option<url::Url> {
    let mut url = url::Url::parse(public).ok()?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    url.set_path("/livez");
    url.set_query(None);
    Some(url)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn livez_is_reached_on_the_public_host_and_port() {
        assert_eq!(
            livez_url("ws://10.0.0.5:8080/v1/ws?x=1").unwrap().as_str(),
            "http://10.0.0.5:8080/livez"
        );
        assert_eq!(
            livez_url("wss://gw-1.example.com").unwrap().as_str(),
            "https://gw-1.example.com/livez"
        );
        assert!(livez_url("not a url").is_none());
    }

    #[tokio::test]
    async fn a_node_that_stops_answering_leaves_and_comes_back() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let app = axum::Router::new().route("/livez", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(live, app).await });
        // A port with nothing behind it: connections are refused at once.
        let dead_addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let config = RoutingConfig {
            peer_failures: 2,
            ..RoutingConfig::default()
        };
        let mut peers = Peers::new("gw-0".into(), &config);
        let nodes: Vec<String> = ["gw-0", "gw-1", "gw-2"].map(String::from).to_vec();
        let urls: HashMap<String, String> = [
            ("gw-0", "ws://127.0.0.1:1".to_owned()),
            ("gw-1", format!("ws://{live_addr}")),
            ("gw-2", format!("ws://{dead_addr}")),
        ]
        .into_iter()
        .map(|(n, u)| (n.to_owned(), u))
        .collect();
        peers.check(&urls).await;
        assert_eq!(
            peers.reachable(&nodes, &urls).0,
            nodes,
            "one failure is not enough"
        );
        peers.check(&urls).await;
        let (up, up_urls) = peers.reachable(&nodes, &urls);
        assert_eq!(up, ["gw-0", "gw-1"], "this node never leaves its own ring");
        assert!(!up_urls.contains_key("gw-2"));
        server.abort();
        let _ = server.await;
        // gw-2 comes back at a fresh address (the old port, once released,
        // may already belong to another test).
        let relisten = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back_addr = relisten.local_addr().unwrap();
        let urls_back: HashMap<String, String> = urls
            .iter()
            .map(|(n, u)| {
                (
                    n.clone(),
                    if n == "gw-2" {
                        format!("ws://{back_addr}")
                    } else {
                        u.clone()
                    },
                )
            })
            .collect();
        let app = axum::Router::new().route("/livez", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(relisten, app).await });
        peers.check(&urls_back).await;
        assert!(
            peers
                .reachable(&nodes, &urls_back)
                .0
                .contains(&"gw-2".to_owned())
        );
        server.abort();
    }
}
