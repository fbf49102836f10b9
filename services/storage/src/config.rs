use chatmesh_config::{
    Invalid, KafkaConfig, PostgresConfig, ServerConfig, ShardMapConfig, TelemetryConfig, Validate,
};
use std::time::Duration;

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
    /// This process's static member ID in the consumer group
    /// (`group.instance.id`), kept across restarts so a restarted process
    /// takes its own partitions back. Also `CHATMESH_INSTANCE_ID`. Unset:
    /// `POD_NAME`, then the host name. Two live processes must never share
    /// one, so set it when several run on one host.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Which shard database holds which channels.
    pub shards: ShardMapConfig,
    /// The directory database, for membership checks on history reads.
    pub directory: PostgresConfig,
    /// How the consumer batches writes.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Largest history page a client may ask for.
    #[serde(default = "default_max_page")]
    pub max_page: u32,
    /// How often the consumer lag is measured at the broker.
    #[serde(default = "default_lag_interval", with = "humantime_serde")]
    pub lag_interval: Duration,
    /// How long messages may wait with no commit progress while this
    /// instance holds no partition before it reports the group stalled
    /// and itself not ready. At least `lag_interval`.
    #[serde(default = "default_stall_after", with = "humantime_serde")]
    pub stall_after: Duration,
}

fn default_lag_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_stall_after() -> Duration {
    Duration::from_secs(15)
}

fn default_max_page() -> u32 {
    100
}

/// Consumer batching: a batch closes at `batch_size` messages or
/// `batch_timeout` after its first, whichever comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most messages per batch.
    pub batch_size: usize,
    /// Longest a message waits for its batch to fill.
    #[serde(with = "humantime_serde")]
    pub batch_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            batch_size: 2_000,
            batch_timeout: Duration::from_millis(100),
        }
    }
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
        if let Some(id) = &self.instance_id {
            crate::instance::check(id).map_err(|r| Invalid::new("instance_id", r))?;
        }
        self.shards.validate().map_err(|e| e.within("shards"))?;
        self.directory
            .validate()
            .map_err(|e| e.within("directory"))?;
        if self.batch.batch_size == 0 {
            return Err(Invalid::new("batch.batch_size", "must be at least 1"));
        }
        if self.lag_interval.is_zero() {
            return Err(Invalid::new("lag_interval", "must be greater than zero"));
        }
        if self.stall_after < self.lag_interval {
            return Err(Invalid::new(
                "stall_after",
                "must be at least lag_interval: a stall shows over two measurements",
            ));
        }
        if self.max_page == 0 {
            return Err(Invalid::new("max_page", "must be at least 1"));
        }
        Ok(())
    }
}

impl chatmesh_server::ServiceConfig for StorageConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
