use chatmesh_config::{
    Invalid, KafkaConfig, PostgresConfig, RedisConfig, ServerConfig, TelemetryConfig, Validate,
};
use chatmesh_ids::MAX_WORKER_ID;
use serde::Deserialize;

/// Configuration of the chat service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// Listen addresses and shutdown timing.
    pub server: ServerConfig,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Redis Cluster for fan-out and sequence numbers.
    pub redis: RedisConfig,
    /// Kafka, where messages become durable before fan-out.
    pub kafka: KafkaConfig,
    /// The directory database: channels and memberships.
    pub directory: PostgresConfig,
    /// Snowflake worker ID, unique per live instance (0 to 1023). On
    /// Kubernetes this is the StatefulSet ordinal.
    pub worker_id: u16,
}

impl Validate for ChatConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.redis.validate().map_err(|e| e.within("redis"))?;
        self.kafka.validate().map_err(|e| e.within("kafka"))?;
        self.directory
            .validate()
            .map_err(|e| e.within("directory"))?;
        if self.worker_id > MAX_WORKER_ID {
            return Err(Invalid::new(
                "worker_id",
                format!("must be at most {MAX_WORKER_ID}"),
            ));
        }
        Ok(())
    }
}

impl chatmesh_server::ServiceConfig for ChatConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
