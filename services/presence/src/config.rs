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
}

impl Validate for PresenceConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.redis.validate().map_err(|e| e.within("redis"))?;
        Ok(())
    }
}

impl chatmesh_server::ServiceConfig for PresenceConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
