use chatmesh_config::{
    Invalid, KafkaConfig, PostgresConfig, ServerConfig, ShardMapConfig, TelemetryConfig, Validate,
};
use serde::Deserialize;

/// Configuration of the storage service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Listen addresses and shutdown timing.
    pub server: ServerConfig,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Kafka, the source of messages to store.
    pub kafka: KafkaConfig,
    /// Consumer group shared by every storage instance.
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// Which shard database holds which channels.
    pub shards: ShardMapConfig,
    /// The directory database, for membership checks on history reads.
    pub directory: PostgresConfig,
}

fn default_group() -> String {
    "chatmesh-storage".into()
}

impl Validate for StorageConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.kafka.validate().map_err(|e| e.within("kafka"))?;
        if self.consumer_group.is_empty() {
            return Err(Invalid::new("consumer_group", "must not be empty"));
        }
        self.shards.validate().map_err(|e| e.within("shards"))?;
        self.directory
            .validate()
            .map_err(|e| e.within("directory"))?;
        Ok(())
    }
}

impl chatmesh_server::ServiceConfig for StorageConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
