use std::net::SocketAddr;
use std::time::Duration;

use chatmesh_config::{Invalid, RedisConfig, TelemetryConfig, Validate};
use serde::Deserialize;

/// Configuration of a gateway node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// This node's name on the hash ring; unique among live nodes.
    pub node_id: String,
    /// Where WebSocket and HTTP clients connect.
    pub http_addr: SocketAddr,
    /// The base URL clients use to reach this node, e.g.
    /// `wss://gw-0.chat.example.com`; sent in redirects.
    pub public_url: String,
    /// How long connections get to drain after SIGTERM.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often dependencies are probed.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Redis Cluster for fan-out, membership and presence.
    pub redis: RedisConfig,
    /// gRPC endpoints of the services the gateway calls.
    pub services: ServiceEndpoints,
}

/// gRPC endpoints, `http://host:port`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEndpoints {
    /// The chat service.
    pub chat: String,
    /// The presence service.
    pub presence: String,
    /// The storage service.
    pub storage: String,
    /// The media service.
    pub media: String,
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(2)
}

impl Validate for GatewayConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.node_id.is_empty()
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Invalid::new(
                "node_id",
                "must be non-empty ASCII letters, digits, '-' or '_'",
            ));
        }
        check_url(
            "public_url",
            &self.public_url,
            &["ws", "wss", "http", "https"],
        )?;
        if self.probe_interval.is_zero() {
            return Err(Invalid::new("probe_interval", "must be greater than zero"));
        }
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.redis.validate().map_err(|e| e.within("redis"))?;
        let s = &self.services;
        for (field, value) in [
            ("services.chat", &s.chat),
            ("services.presence", &s.presence),
            ("services.storage", &s.storage),
            ("services.media", &s.media),
        ] {
            check_url(field, value, &["http", "https"])?;
        }
        Ok(())
    }
}

fn check_url(field: &str, raw: &str, schemes: &[&str]) -> Result<(), Invalid> {
    let url = url::Url::parse(raw)
        .map_err(|e| Invalid::new(field, format!("`{raw}` is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(Invalid::new(
            field,
            format!("`{raw}` must use one of the schemes {schemes:?}"),
        ));
    }
    Ok(())
}

impl chatmesh_server::ServiceConfig for GatewayConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
