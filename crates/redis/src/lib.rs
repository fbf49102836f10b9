//! Redis Cluster access shared by the gateway, chat and presence services.

pub mod keys;
mod subscriber;

pub use subscriber::{Scope, Subscriber, SubscriberProbe};

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use chatmesh_config::RedisConfig;
use chatmesh_probe::{Probe, ProbeFuture};
use redis::RedisError;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::Mutex;

/// A cluster client that connects on first use, so a service can start
/// while Redis is still coming up. The connection, once made, follows
/// topology changes and reconnects by itself.
#[derive(Clone)]
pub struct Cluster {
    client: ClusterClient,
    shared: Arc<Shared>,
    nodes: Nodes,
}

/// The connection every clone of a [`Cluster`] hands out, replaced when
/// the topology moves under it.
struct Shared {
    current: ArcSwapOption<ClusterConnection>,
    /// Held while the first connection is made, so callers racing on a
    /// cold start make one between them.
    connecting: Mutex<()>,
    /// The masters last read, asked first for the next reading.
    known: std::sync::Mutex<Vec<String>>,
}

/// How to reach single nodes, for reading the topology directly.
#[derive(Clone)]
struct Nodes {
    /// The configured seed URLs; the first is the template for per-node
    /// URLs (scheme and credentials).
    seeds: Vec<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    topology_refresh: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// A client for the seed nodes in `config`.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let client = ClusterClient::builder(config.nodes.clone())
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.response_timeout)
            .build()?;
        Ok(Self {
            client,
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                connecting: Mutex::new(()),
                known: std::sync::Mutex::new(Vec::new()),
            }),
            nodes: Nodes {
                seeds: config.nodes.clone(),
                connect_timeout: config.connect_timeout,
                response_timeout: config.response_timeout,
                topology_refresh: config.topology_refresh,
            },
        })
    }

    /// The shared multiplexed connection, made on first call. From then on
    /// a background task rereads the slot owners every
    /// `redis.topology_refresh` and replaces the connection when they
    /// change.
    pub async fn conn(&self) -> Result<Conn, RedisError> {
        if let Some(conn) = self.shared.current.load_full() {
            return Ok(Conn((*conn).clone()));
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(conn) = self.shared.current.load_full() {
            return Ok(Conn((*conn).clone()));
        }
        let conn = self.client.get_async_connection().await?;
        let seen = self.topology().await.ok();
        self.shared.current.store(Some(Arc::new(conn.clone())));
        tokio::spawn(follow_topology(
            Arc::downgrade(&self.shared),
            self.client.clone(),
            self.nodes.clone(),
            seen,
        ));
        Ok(Conn(conn))
    }

    /// The cluster's masters, read from the first node that answers. The
    /// nodes are asked directly, not through the shared connection, which
    /// can be stuck on a dead node until it learns the new topology.
    pub async fn topology(&self) -> Result<Vec<Master>, RedisError> {
        topology(&self.shared, &self.nodes).await
    }

    /// The underlying client, for dedicated connections such as pub/sub.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// A URL for the node at `addr` (`host:port`), with the seed's scheme
    /// and credentials.
    pub fn node_url(&self, addr: &str) -> String {
        self.nodes.url(addr)
    }

    /// The configured connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.nodes.connect_timeout
    }
}

impl Nodes {
    fn url(&self, addr: &str) -> String {
        node_url(self.seeds.first().map_or("", String::as_str), addr)
    }

    /// `CLUSTER SLOTS` from the node at `url`, on a connection of its own.
    async fn ask(&self, url: &str) -> Result<Vec<Master>, RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        masters(&mut conn).await
    }
}

async fn topology(shared: &Shared, nodes: &Nodes) -> Result<Vec<Master>, RedisError> {
    let known: Vec<String> = shared
        .known
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|addr| nodes.url(addr))
        .collect();
    let mut urls: Vec<String> = Vec::new();
    for url in known.into_iter().chain(nodes.seeds.iter().cloned()) {
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    let mut last = None;
    for url in &urls {
        match nodes.ask(url).await {
            Ok(masters) if !masters.is_empty() => {
                *shared.known.lock().unwrap_or_else(|e| e.into_inner()) =
                    masters.iter().map(|m| m.addr.clone()).collect();
                return Ok(masters);
            }
            Ok(_) => {}
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no node reports any slot owner",
        ))
    }))
}

// redis-rs (1.8) refreshes its slot map only on a MOVED or ASK answer.
// When a master dies, commands for its slots fail with I/O errors while
// the client keeps reconnecting to the dead address, and the connection
// can stay stuck after the replica is promoted. This rereads the slot
// owners from the nodes directly and, when they differ from what the
// connection was made with, makes a fresh connection (which reads the
// slots anew) and hands that out from then on. Callers take a connection
// per operation, so their next operation uses the new one.
async fn follow_topology(
    shared: Weak<Shared>,
    client: ClusterClient,
    nodes: Nodes,
    mut seen: Option<Vec<Master>>,
) {
    let mut tick = tokio::time::interval(nodes.topology_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = match topology(&shared, &nodes).await {
            Ok(now) => now,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the cluster topology");
                continue;
            }
        };
        let Some(before) = &seen else {
            seen = Some(now);
            continue;
        };
        if *before == now {
            continue;
        }
        let owners: Vec<&str> = now.iter().map(|m| m.addr.as_str()).collect();
        tracing::info!(masters = ?owners, "the cluster's slot owners changed; reconnecting");
        match client.get_async_connection().await {
            Ok(fresh) => {
                shared.current.store(Some(Arc::new(fresh)));
                seen = Some(now);
                metrics::counter!("chatmesh_redis_reconnects_total", "reason" => "topology")
                    .increment(1);
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reconnect to the cluster; keeping the old connection");
            }
        }
    }
}

/// A handle on the shared cluster connection that counts the round trips
/// made through it in `chatmesh_redis_round_trips_total` (a pipeline is
/// one), so the cost of a request path in Redis round trips can be read
/// off the metrics.
#[derive(Clone)]
pub struct Conn(ClusterConnection);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        metrics::counter!("chatmesh_redis_round_trips_total").increment(1);
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        metrics::counter!("chatmesh_redis_round_trips_total").increment(1);
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// One master and the hash slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// `host:port` of the node.
    pub addr: String,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Master {
    /// True if `slot` is served by this master.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// The cluster's masters, from `CLUSTER SLOTS` on `conn`.
pub async fn masters(
    conn: &mut impl redis::aio::ConnectionLike,
) -> Result<Vec<Master>, RedisError> {
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut masters: Vec<Master> = Vec::new();
    for entry in slots {
        let redis::Value::Array(items) = entry else {
            continue;
        };
        let (Some(start), Some(end), Some(redis::Value::Array(node))) =
            (items.first(), items.get(1), items.get(2))
        else {
            continue;
        };
        let start: i64 = redis::from_redis_value_ref(start)?;
        let end: i64 = redis::from_redis_value_ref(end)?;
        let host: String = node
            .first()
            .map(redis::from_redis_value_ref)
            .transpose()?
            .unwrap_or_default();
        let port: i64 = node
            .get(1)
            .map(redis::from_redis_value_ref)
            .transpose()?
            .unwrap_or_default();
        let addr = format!("{host}:{port}");
        let range = (start as u16, end as u16);
        match masters.iter_mut().find(|m| m.addr == addr) {
            Some(m) => m.slots.push(range),
            None => masters.push(Master {
                addr,
                slots: vec![range],
            }),
        }
    }
    masters.sort_by(|a, b| a.addr.cmp(&b.addr));
    Ok(masters)
}

fn node_url(seed: &str, addr: &str) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    match authority.rsplit_once('@') {
        Some((credentials, _)) => format!("{scheme}://{credentials}@{addr}"),
        None => format!("{scheme}://{addr}"),
    }
}

/// The cluster hash slot of `key`, honouring `{hash tags}`.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&len| len > 0)
                .map(|len| &rest[..len])
        })
        .unwrap_or(key);
    crc16(tagged) % 16384
}

// CRC16-CCITT (XMODEM), the hash Redis Cluster uses for slots.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// Checks that the cluster answers and reports `cluster_state:ok`.
#[derive(Debug, Clone)]
pub struct RedisProbe {
    cluster: Cluster,
}

impl RedisProbe {
    /// A probe over `cluster`'s shared connection.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

impl Probe for RedisProbe {
    fn name(&self) -> &str {
        "redis"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let mut conn = self.cluster.conn().await.map_err(|e| e.to_string())?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err("cluster_state is not ok".into());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_keep_scheme_and_credentials() {
        assert_eq!(
            node_url("redis://127.0.0.1:7000", "10.0.0.2:7001"),
            "redis://10.0.0.2:7001"
        );
        assert_eq!(
            node_url("rediss://user:pw@seed:6379/0", "10.0.0.2:7001"),
            "rediss://user:pw@10.0.0.2:7001"
        );
        assert_eq!(node_url("seed:6379", "h:1"), "redis://h:1");
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on a real server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(key_slot(b"123456789"), 12739);
    }
}
