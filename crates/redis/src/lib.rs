//! Redis Cluster access shared by the gateway, chat and presence services.

pub mod keys;
mod subscriber;

pub use subscriber::{Scope, Subscriber, SubscriberProbe};

use std::sync::Arc;

use chatmesh_config::RedisConfig;
use chatmesh_probe::{Probe, ProbeFuture};
use redis::RedisError;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

/// A cluster client that connects on first use, so a service can start
/// while Redis is still coming up. The connection, once made, follows
/// topology changes and reconnects by itself.
#[derive(Clone)]
pub struct Cluster {
    client: ClusterClient,
    conn: Arc<OnceCell<ClusterConnection>>,
    /// The first seed node's URL, the template for per-node URLs.
    seed: String,
    connect_timeout: std::time::Duration,
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
            conn: Arc::new(OnceCell::new()),
            seed: config.nodes.first().cloned().unwrap_or_default(),
            connect_timeout: config.connect_timeout,
        })
    }

    /// The shared multiplexed connection, made on first call.
    pub async fn conn(&self) -> Result<ClusterConnection, RedisError> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }

    /// The underlying client, for dedicated connections such as pub/sub.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// A URL for the node at `addr` (`host:port`), with the seed's scheme
    /// and credentials.
    pub fn node_url(&self, addr: &str) -> String {
        node_url(&self.seed, addr)
    }

    /// The configured connect timeout.
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.connect_timeout
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

/// The cluster's masters, from `CLUSTER SLOTS`.
pub async fn masters(conn: &mut ClusterConnection) -> Result<Vec<Master>, RedisError> {
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
