//! Configuration sections that several binaries share.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::{Invalid, Validate};

/// Where a service listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC API, health and reflection.
    pub grpc_addr: SocketAddr,
    /// Plain HTTP for `/metrics`, `/livez` and `/readyz`.
    pub admin_addr: SocketAddr,
    /// How long in-flight requests get to finish after SIGTERM.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often dependencies are probed to drive the health status.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
    /// How long one API request may take before it is answered with
    /// `timed_out`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// API requests in flight at once, over every connection; more are
    /// refused at once with `overloaded` (retryable) instead of queued.
    /// Health checks and reflection are not counted.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

/// A backstop against a stuck handler, above the longest a healthy call
/// takes (a send waits for the broker's delivery timeout); callers set
/// their own, shorter deadlines.
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_concurrent_requests() -> usize {
    1024
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(2)
}

impl Validate for ServerConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.probe_interval.is_zero() {
            return Err(Invalid::new("probe_interval", "must be greater than zero"));
        }
        if self.request_timeout < Duration::from_millis(1) {
            return Err(Invalid::new("request_timeout", "must be at least 1ms"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(Invalid::new(
                "max_concurrent_requests",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// Logging and trace export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directives, e.g. `info,chatmesh_chat=debug`.
    #[serde(default = "default_log")]
    pub log: String,
    /// Emit JSON lines instead of human-readable text.
    #[serde(default)]
    pub json: bool,
    /// OTLP/gRPC collector endpoint; traces are exported only when set.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log: default_log(),
            json: false,
            otlp_endpoint: None,
        }
    }
}

fn default_log() -> String {
    "info".into()
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(endpoint) = &self.otlp_endpoint {
            check_url(endpoint, &["http", "https"])
                .map_err(|r| Invalid::new("otlp_endpoint", r))?;
        }
        Ok(())
    }
}

/// The Redis Cluster used for fan-out, presence and membership.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Seed nodes, `redis://host:port`; the rest of the cluster is discovered.
    #[serde(deserialize_with = "one_or_many")]
    pub nodes: Vec<String>,
    /// Timeout for establishing a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout for a single command.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// How often the slot owners are reread, so a failover is followed
    /// even when no command is redirected.
    #[serde(default = "default_topology_refresh", with = "humantime_serde")]
    pub topology_refresh: Duration,
}

fn default_topology_refresh() -> Duration {
    Duration::from_secs(1)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_response_timeout() -> Duration {
    Duration::from_secs(2)
}

impl Validate for RedisConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.nodes.is_empty() {
            return Err(Invalid::new("nodes", "at least one seed node is required"));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            check_url(node, &["redis", "rediss"])
                .map_err(|r| Invalid::new(format!("nodes[{i}]"), r))?;
        }
        if self.topology_refresh.is_zero() {
            return Err(Invalid::new(
                "topology_refresh",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// The Kafka-protocol broker that makes messages durable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    #[serde(deserialize_with = "one_or_many")]
    pub brokers: Vec<String>,
    /// Topic that carries every chat message, keyed by channel ID.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Extra librdkafka properties, passed through verbatim.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

fn default_topic() -> String {
    "chatmesh.messages".into()
}

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.brokers.is_empty() {
            return Err(Invalid::new("brokers", "at least one broker is required"));
        }
        for (i, broker) in self.brokers.iter().enumerate() {
            check_host_port(broker).map_err(|r| Invalid::new(format!("brokers[{i}]"), r))?;
        }
        if self.topic.is_empty() {
            return Err(Invalid::new("topic", "must not be empty"));
        }
        Ok(())
    }
}

/// One PostgreSQL database reached through a connection pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host:port/database`.
    pub url: String,
    /// Most connections the pool opens.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// How long a caller waits for a pooled connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_pool_size() -> u32 {
    8
}

impl Validate for PostgresConfig {
    fn validate(&self) -> Result<(), Invalid> {
        check_url(&self.url, &["postgres", "postgresql"]).map_err(|r| Invalid::new("url", r))?;
        if self.pool_size == 0 {
            return Err(Invalid::new("pool_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// Maps channels to shard databases in two steps: a channel hashes to one
/// of a fixed number of logical buckets, and each database owns a range of
/// buckets. Moving a bucket range to another database later moves only
/// those channels, without rehashing the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMapConfig {
    /// Number of logical buckets. Fixed for the life of a deployment.
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Physical databases and the bucket ranges they hold.
    pub databases: Vec<ShardDatabase>,
}

fn default_buckets() -> u32 {
    256
}

/// One shard database and the buckets it holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardDatabase {
    /// Stable shard name, used in logs and metrics.
    pub name: String,
    /// Connection settings.
    #[serde(flatten)]
    pub postgres: PostgresConfig,
    /// First bucket held, inclusive.
    pub first_bucket: u32,
    /// Last bucket held, inclusive.
    pub last_bucket: u32,
}

impl Validate for ShardMapConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.buckets == 0 {
            return Err(Invalid::new("buckets", "must be at least 1"));
        }
        if self.databases.is_empty() {
            return Err(Invalid::new(
                "databases",
                "at least one shard database is required",
            ));
        }
        let mut ranges: Vec<(u32, u32, usize)> = Vec::new();
        for (i, db) in self.databases.iter().enumerate() {
            let at = format!("databases[{i}]");
            db.postgres.validate().map_err(|e| e.within(&at))?;
            if db.name.is_empty() {
                return Err(Invalid::new(format!("{at}.name"), "must not be empty"));
            }
            if db.first_bucket > db.last_bucket || db.last_bucket >= self.buckets {
                return Err(Invalid::new(
                    format!("{at}.last_bucket"),
                    format!(
                        "bucket range {}..={} must be ordered and below buckets ({})",
                        db.first_bucket, db.last_bucket, self.buckets
                    ),
                ));
            }
            ranges.push((db.first_bucket, db.last_bucket, i));
        }
        ranges.sort_unstable();
        let mut next = 0;
        for (first, last, i) in ranges {
            if first != next {
                let why = if first < next {
                    "overlaps another database"
                } else {
                    "leaves a gap before it"
                };
                return Err(Invalid::new(
                    format!("databases[{i}].first_bucket"),
                    format!(
                        "bucket {first} {why}; ranges must cover 0..{} exactly once",
                        self.buckets
                    ),
                ));
            }
            next = last + 1;
        }
        if next != self.buckets {
            return Err(Invalid::new(
                "databases",
                format!(
                    "buckets {next}..{} are not held by any database",
                    self.buckets
                ),
            ));
        }
        Ok(())
    }
}

fn check_url(raw: &str, schemes: &[&str]) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!("`{raw}` must use one of the schemes {schemes:?}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    Ok(())
}

fn check_host_port(raw: &str) -> Result<(), String> {
    let (host, port) = raw
        .rsplit_once(':')
        .ok_or_else(|| format!("`{raw}` must be host:port"))?;
    if host.is_empty() {
        return Err(format!("`{raw}` has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{raw}` has an invalid port"))?;
    Ok(())
}

/// Deserialises a list that may also be written as one value, so
/// `CHATMESH_REDIS__NODES=redis://host:6379` works without brackets.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        match OneOrMany::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a string or a list of strings"))?
        {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(name: &str, first: u32, last: u32) -> ShardDatabase {
        ShardDatabase {
            name: name.into(),
            postgres: PostgresConfig {
                url: "postgres://postgres@127.0.0.1:5432/db".into(),
                pool_size: 4,
                connect_timeout: Duration::from_secs(1),
            },
            first_bucket: first,
            last_bucket: last,
        }
    }

    #[test]
    fn shard_map_must_cover_every_bucket_once() {
        let ok = ShardMapConfig {
            buckets: 8,
            databases: vec![shard("a", 0, 3), shard("b", 4, 7)],
        };
        assert_eq!(ok.validate(), Ok(()));

        let gap = ShardMapConfig {
            buckets: 8,
            databases: vec![shard("a", 0, 2), shard("b", 4, 7)],
        };
        assert_eq!(
            gap.validate().unwrap_err().field,
            "databases[1].first_bucket"
        );

        let overlap = ShardMapConfig {
            buckets: 8,
            databases: vec![shard("a", 0, 4), shard("b", 4, 7)],
        };
        assert!(overlap.validate().unwrap_err().reason.contains("overlaps"));

        let short = ShardMapConfig {
            buckets: 8,
            databases: vec![shard("a", 0, 3)],
        };
        assert_eq!(short.validate().unwrap_err().field, "databases");

        let beyond = ShardMapConfig {
            buckets: 8,
            databases: vec![shard("a", 0, 8)],
        };
        assert_eq!(
            beyond.validate().unwrap_err().field,
            "databases[0].last_bucket"
        );
    }

    #[test]
    fn urls_are_checked() {
        let bad = RedisConfig {
            nodes: vec!["redis://127.0.0.1:1".into(), "http://x".into()],
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            topology_refresh: Duration::from_secs(1),
        };
        assert_eq!(bad.validate().unwrap_err().field, "nodes[1]");
        let never = RedisConfig {
            nodes: vec!["redis://127.0.0.1:1".into()],
            topology_refresh: Duration::ZERO,
            ..bad
        };
        assert_eq!(never.validate().unwrap_err().field, "topology_refresh");
        let kafka = KafkaConfig {
            brokers: vec!["nohost".into()],
            topic: "t".into(),
            properties: Default::default(),
        };
        assert_eq!(kafka.validate().unwrap_err().field, "brokers[0]");
    }
}
