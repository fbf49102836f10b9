use std::time::Duration;

use chatmesh_config::{Invalid, RedisConfig, ServerConfig, TelemetryConfig, Validate};
use serde::Deserialize;

/// Configuration of the presence service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Listen addresses and shutdown timing.
    pub server: ServerConfig,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Redis Cluster holding the session keys.
    pub redis: RedisConfig,
    /// Heartbeat handling and the work split between instances.
    #[serde(default)]
    pub presence: PresenceSettings,
}

/// How heartbeats become session keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceSettings {
    /// Instances in one group split the heartbeat work between them. Every
    /// group processes every heartbeat, so a deployment runs one group.
    pub group: String,
    /// Session TTL used when a heartbeat batch names none.
    #[serde(with = "humantime_serde")]
    pub default_session_ttl: Duration,
    /// Longest session TTL a gateway may ask for.
    #[serde(with = "humantime_serde")]
    pub max_session_ttl: Duration,
    /// An instance that stops refreshing its registration loses its share
    /// of the work after this.
    #[serde(with = "humantime_serde")]
    pub instance_ttl: Duration,
    /// How often an instance refreshes its registration and rereads the
    /// live instances.
    #[serde(with = "humantime_serde")]
    pub instance_refresh: Duration,
    /// How often channels' online sets are swept for users whose sessions
    /// expired without an event.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often the Redis topology is reread for subscriptions.
    #[serde(with = "humantime_serde")]
    pub topology_refresh: Duration,
    /// Sessions processed at once; commands to Redis are pipelined on the
    /// cluster connection up to this depth.
    pub concurrency: usize,
    /// Most users in one `GetPresence` call.
    pub max_batch_users: usize,
    /// Join and leave events are published only while a channel has at
    /// most this many users online: in a larger channel every join would
    /// reach every member. `ListOnline` answers for any size.
    pub events_max_online: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            group: "default".into(),
            default_session_ttl: Duration::from_secs(30),
            max_session_ttl: Duration::from_secs(600),
            instance_ttl: Duration::from_secs(5),
            instance_refresh: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(10),
            topology_refresh: Duration::from_secs(5),
            concurrency: 256,
            max_batch_users: 1_000,
            events_max_online: 1_000,
        }
    }
}

impl Validate for PresenceSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if self.group.is_empty() || self.group.contains(['{', '}']) {
            return Err(Invalid::new(
                "group",
                "must be non-empty and free of braces",
            ));
        }
        for (field, value) in [
            ("default_session_ttl", self.default_session_ttl),
            ("max_session_ttl", self.max_session_ttl),
            ("instance_refresh", self.instance_refresh),
            ("sweep_interval", self.sweep_interval),
            ("topology_refresh", self.topology_refresh),
        ] {
            if value < Duration::from_millis(10) {
                return Err(Invalid::new(field, "must be at least 10ms"));
            }
        }
        if self.instance_ttl <= self.instance_refresh {
            return Err(Invalid::new(
                "instance_ttl",
                "must be longer than instance_refresh",
            ));
        }
        if self.default_session_ttl > self.max_session_ttl {
            return Err(Invalid::new(
                "default_session_ttl",
                "must not exceed max_session_ttl",
            ));
        }
        if self.concurrency == 0 {
            return Err(Invalid::new("concurrency", "must be at least 1"));
        }
        if self.max_batch_users == 0 {
            return Err(Invalid::new("max_batch_users", "must be at least 1"));
        }
        Ok(())
    }
}

impl Validate for PresenceConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.redis.validate().map_err(|e| e.within("redis"))?;
        self.presence.validate().map_err(|e| e.within("presence"))?;
        Ok(())
    }
}

impl chatmesh_server::ServiceConfig for PresenceConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
