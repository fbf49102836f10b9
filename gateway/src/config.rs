use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chatmesh_config::{Invalid, RedisConfig, TelemetryConfig, Validate};
use chatmesh_upstream::UpstreamSettings;
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
    /// Client authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Hash-ring membership and what to do with channels owned elsewhere.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Per-connection and node-wide limits.
    #[serde(default)]
    pub limits: GatewayLimits,
    /// Session liveness: heartbeats and expiry.
    #[serde(default)]
    pub presence: PresenceSettings,
    /// How calls to the services are spread, checked, timed and retried.
    #[serde(default)]
    pub upstream: UpstreamSettings,
    /// Limits on the node's HTTP API (the WebSocket upgrade included).
    #[serde(default)]
    pub http: HttpSettings,
}

/// Limits on the node's HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// How long one HTTP request may take before it is answered with
    /// `timed_out` (a WebSocket upgrade only until the switch).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// HTTP requests in flight at once on this node; more are refused at
    /// once with 503 `overloaded` rather than queued.
    pub max_concurrent_requests: usize,
    /// Web origins whose pages may call the HTTP API from a browser
    /// (`https://chat.example.com`), or `["*"]` for any. Empty: no CORS
    /// headers, so only same-origin pages. Tokens travel in the
    /// `Authorization` header, never in cookies, so `*` exposes nothing a
    /// page could not already ask for with a token of its own.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 4096,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// How sessions prove they are alive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceSettings {
    /// A session that has not pinged for this long is closed and shown
    /// offline. Clients should ping at a third of it or more often.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How often the node publishes the heartbeats gathered since the last
    /// publish, as one batch.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How often the node checks its quiet sessions for an expired key, in
    /// case the expiry event was lost.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often the Redis topology is reread for expiry subscriptions.
    #[serde(with = "humantime_serde")]
    pub topology_refresh: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(30),
            flush_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(10),
            topology_refresh: Duration::from_secs(5),
        }
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens. Meant for development.
    pub hs256_secret: Option<String>,
    /// PEM files with RSA public keys for RS256 tokens.
    pub rs256_public_keys: Vec<PathBuf>,
    /// A JWKS document with RS256 keys, selected by the token's `kid`.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Serve `POST /v1/dev/token`, which signs a token for any user. Never
    /// enable in production.
    pub dev_tokens: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_keys: Vec::new(),
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            dev_tokens: false,
        }
    }
}

/// What a node does with a client of a channel it does not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// Answer 307 (before the upgrade) or a redirect frame.
    #[default]
    Redirect,
    /// Serve it anyway; correct, but the channel's traffic crosses nodes.
    Serve,
}

/// Ring membership.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Name of this gateway cluster. Nodes with the same name form one
    /// ring; deployments sharing a Redis Cluster use different names.
    pub cluster: String,
    /// Redirect or serve clients of channels owned by another node.
    pub mode: PinMode,
    /// Virtual points per node on the ring.
    pub vnodes: u32,
    /// A node that stops refreshing its registration leaves the ring after this.
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
    /// How often a node refreshes its registration and rereads membership.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// How often a node checks every other node's `/livez` itself, so a
    /// node that died leaves the ring in about `peer_failures` checks
    /// instead of a whole `node_ttl`, and clients are never sent to it.
    #[serde(with = "humantime_serde")]
    pub peer_probe_interval: Duration,
    /// How long one check may take.
    #[serde(with = "humantime_serde")]
    pub peer_probe_timeout: Duration,
    /// Failed checks in a row after which a node is left out of the ring,
    /// until a check succeeds again.
    pub peer_failures: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            cluster: "default".into(),
            mode: PinMode::Redirect,
            vnodes: crate::ring::DEFAULT_VNODES,
            node_ttl: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(1),
            peer_probe_interval: Duration::from_millis(500),
            peer_probe_timeout: Duration::from_millis(500),
            peer_failures: 2,
        }
    }
}

/// Limits that protect the node and its other clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayLimits {
    /// Largest client frame, in bytes.
    pub max_frame_bytes: usize,
    /// Bytes read from a connection's socket at a time, held by every
    /// connection from its start. A larger frame is read in several steps
    /// (the buffer grows for it), so this sets what an idle connection
    /// costs, not what it may send.
    pub read_buffer_bytes: usize,
    /// Frames queued for one client before it counts as too slow and is closed.
    pub outbound_queue: usize,
    /// Sustained client frames per second per connection.
    pub frames_per_second: u32,
    /// Frames a connection may send in a burst above the sustained rate.
    pub frame_burst: u32,
    /// Most concurrent connections on this node.
    pub max_connections: usize,
    /// Most channels one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Sends one connection may have between frame and answer. Sends to
    /// one channel still reach chat one after another, in order; at the
    /// window the connection's next frames wait to be read.
    pub max_sends_in_flight: usize,
    /// How long an out-of-order message waits for the ones before it.
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024,
            read_buffer_bytes: 1024,
            outbound_queue: 1024,
            frames_per_second: 20,
            frame_burst: 40,
            max_connections: 50_000,
            max_subscriptions: 100,
            max_sends_in_flight: 32,
            reorder_window: Duration::from_millis(500),
        }
    }
}

/// gRPC endpoints of each service: `http://host:port`; several instances
/// as a TOML list (or one comma-separated string); or `dns://name:port`,
/// every address of the name an instance (a Kubernetes headless Service).
/// The gateway balances its calls over the instances, leaving out those
/// whose health check fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEndpoints {
    /// The chat service.
    #[serde(deserialize_with = "chatmesh_upstream::endpoints::deserialize")]
    pub chat: String,
    /// The presence service.
    #[serde(deserialize_with = "chatmesh_upstream::endpoints::deserialize")]
    pub presence: String,
    /// The storage service.
    #[serde(deserialize_with = "chatmesh_upstream::endpoints::deserialize")]
    pub storage: String,
    /// The media service.
    #[serde(deserialize_with = "chatmesh_upstream::endpoints::deserialize")]
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
        self.validate_auth()?;
        self.validate_routing()?;
        let l = &self.limits;
        for (field, value) in [
            ("limits.max_frame_bytes", l.max_frame_bytes),
            ("limits.read_buffer_bytes", l.read_buffer_bytes),
            ("limits.outbound_queue", l.outbound_queue),
            ("limits.frames_per_second", l.frames_per_second as usize),
            ("limits.max_connections", l.max_connections),
            ("limits.max_subscriptions", l.max_subscriptions),
        ] {
            if value == 0 {
                return Err(Invalid::new(field, "must be greater than zero"));
            }
        }
        self.redis.validate().map_err(|e| e.within("redis"))?;
        let p = &self.presence;
        for (field, value) in [
            ("presence.flush_interval", p.flush_interval),
            ("presence.sweep_interval", p.sweep_interval),
            ("presence.topology_refresh", p.topology_refresh),
        ] {
            if value < Duration::from_millis(10) {
                return Err(Invalid::new(field, "must be at least 10ms"));
            }
        }
        if p.session_ttl < p.flush_interval * 2 {
            return Err(Invalid::new(
                "presence.session_ttl",
                "must be at least twice presence.flush_interval",
            ));
        }
        let s = &self.services;
        for (field, value) in [
            ("services.chat", &s.chat),
            ("services.presence", &s.presence),
            ("services.storage", &s.storage),
            ("services.media", &s.media),
        ] {
            chatmesh_upstream::endpoints::validate(field, value)?;
        }
        let u = &self.upstream;
        for (field, value) in [
            ("upstream.health_interval", u.health_interval),
            ("upstream.dns_refresh", u.dns_refresh),
            ("upstream.call_timeout", u.call_timeout),
            ("upstream.send_timeout", u.send_timeout),
            ("upstream.default_rtt", u.default_rtt),
            ("upstream.load_decay", u.load_decay),
            ("http.request_timeout", self.http.request_timeout),
        ] {
            if value < Duration::from_millis(1) {
                return Err(Invalid::new(field, "must be at least 1ms"));
            }
        }
        if u.health_failures == 0 {
            return Err(Invalid::new(
                "upstream.health_failures",
                "must be greater than zero",
            ));
        }
        if u.max_in_flight == 0 {
            return Err(Invalid::new(
                "upstream.max_in_flight",
                "must be greater than zero",
            ));
        }
        if u.retry_percent > 1000 {
            return Err(Invalid::new(
                "upstream.retry_percent",
                "must be at most 1000",
            ));
        }
        if self.limits.max_sends_in_flight == 0 {
            return Err(Invalid::new(
                "limits.max_sends_in_flight",
                "must be greater than zero",
            ));
        }
        if self.http.max_concurrent_requests == 0 {
            return Err(Invalid::new(
                "http.max_concurrent_requests",
                "must be greater than zero",
            ));
        }
        crate::http::cors_origins(&self.http.cors_allowed_origins)
            .map_err(|reason| Invalid::new("http.cors_allowed_origins", reason))?;
        Ok(())
    }
}

impl GatewayConfig {
    fn validate_auth(&self) -> Result<(), Invalid> {
        let a = &self.auth;
        if a.hs256_secret.is_none() && a.rs256_public_keys.is_empty() && a.jwks_file.is_none() {
            return Err(Invalid::new(
                "auth",
                "configure hs256_secret, rs256_public_keys or jwks_file",
            ));
        }
        if a.hs256_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(Invalid::new(
                "auth.hs256_secret",
                "must be at least 16 bytes",
            ));
        }
        if a.dev_tokens && a.hs256_secret.is_none() {
            return Err(Invalid::new("auth.dev_tokens", "needs auth.hs256_secret"));
        }
        Ok(())
    }

    fn validate_routing(&self) -> Result<(), Invalid> {
        let r = &self.routing;
        if r.cluster.is_empty() || r.cluster.contains(['{', '}']) {
            return Err(Invalid::new(
                "routing.cluster",
                "must be non-empty and free of braces",
            ));
        }
        if r.vnodes == 0 {
            return Err(Invalid::new("routing.vnodes", "must be at least 1"));
        }
        if r.refresh_interval.is_zero() || r.node_ttl <= r.refresh_interval * 2 {
            return Err(Invalid::new(
                "routing.node_ttl",
                "must exceed twice routing.refresh_interval",
            ));
        }
        if r.peer_probe_interval.is_zero() || r.peer_probe_timeout.is_zero() {
            return Err(Invalid::new(
                "routing.peer_probe_interval",
                "the interval and routing.peer_probe_timeout must be above zero",
            ));
        }
        if r.peer_failures == 0 {
            return Err(Invalid::new("routing.peer_failures", "must be at least 1"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn services(chat: &str) -> Result<ServiceEndpoints, toml::de::Error> {
        toml::from_str(&format!(
            "chat = {chat}\npresence = \"http://p:1\"\nstorage = \"http://s:1\"\nmedia = \"http://m:1\"\n"
        ))
    }

    #[test]
    fn a_service_takes_one_url_or_a_list() {
        assert_eq!(services("\"http://a:1\"").unwrap().chat, "http://a:1");
        let listed = services("[\"http://a:1\", \"http://b:2\"]").unwrap();
        assert_eq!(listed.chat, "http://a:1,http://b:2");
    }

    #[test]
    fn every_listed_url_is_checked() {
        let mut config: GatewayConfig = toml::from_str(
            "node_id = \"gw-0\"\nhttp_addr = \"127.0.0.1:0\"\npublic_url = \"ws://127.0.0.1:1\"\n[redis]\nnodes = [\"redis://127.0.0.1:1\"]\n[services]\nchat = [\"http://a:1\", \"ftp://b:2\"]\npresence = \"http://p:1\"\nstorage = \"http://s:1\"\nmedia = \"http://m:1\"\n[auth]\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(config.validate().unwrap_err().field, "services.chat");
        config.services.chat = String::new();
        assert_eq!(config.validate().unwrap_err().field, "services.chat");
        config.services.chat = "http://a:1,http://b:2".into();
        config.validate().unwrap();
    }
}
