use chatmesh_config::{
    Invalid, KafkaConfig, PostgresConfig, RedisConfig, ServerConfig, TelemetryConfig, Validate,
};
use std::path::PathBuf;
use std::time::Duration;

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
    /// When unset, the instance leases any free ID.
    #[serde(default)]
    pub worker_id: Option<u16>,
    /// How long a worker ID lease lives without being refreshed.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub worker_lease_ttl: Duration,
    /// Size and rate limits of the send path.
    #[serde(default)]
    pub limits: SendLimits,
    /// The moderation filter.
    #[serde(default)]
    pub moderation: ModerationConfig,
    /// Send rights cached in the instance.
    #[serde(default)]
    pub member_cache: crate::MemberCacheConfig,
    /// The storage service's instances, where edits, deletes and
    /// reactions look up the message they change: one gRPC URL
    /// (`http://host:port`), a list of them, or `dns://name:port` with
    /// every address of the name an instance (see
    /// [`chatmesh_upstream::endpoints`]). Lookups are balanced over the
    /// healthy instances and retried on another one. Without it those
    /// changes are refused as unavailable; sends are unaffected.
    #[serde(default, deserialize_with = "storage_endpoints")]
    pub storage: Option<String>,
}

fn storage_endpoints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    chatmesh_upstream::endpoints::deserialize(d).map(Some)
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

/// Limits on what one send may carry and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendLimits {
    /// Largest message body, in bytes of UTF-8.
    pub max_body_bytes: usize,
    /// Most attachments per message.
    pub max_attachments: usize,
    /// Sends per second allowed for one user, across all channels.
    pub user_per_second: u32,
    /// Sends per second allowed into one channel, across all users.
    pub channel_per_second: u32,
    /// How long an idempotency key is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Messages per channel kept in Redis for filling reconnect gaps.
    pub recent_history: usize,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4096,
            max_attachments: 10,
            user_per_second: 20,
            channel_per_second: 500,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            recent_history: 500,
        }
    }
}

/// Where the moderation lists come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationConfig {
    /// The blocked-word list (format in `docs/moderation.md`); no file means nothing is
    /// blocked.
    pub words_file: Option<PathBuf>,
    /// Phrases that win over a blocked word inside them (names, places), one per line.
    #[serde(default)]
    pub allow_file: Option<PathBuf>,
    /// How often the lists are checked for changes and reloaded; `0s` never.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for ModerationConfig {
    fn default() -> Self {
        Self {
            words_file: None,
            allow_file: None,
            reload_interval: default_reload_interval(),
        }
    }
}

impl Validate for ChatConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(endpoints) = &self.storage {
            chatmesh_upstream::endpoints::validate("storage", endpoints)?;
        }
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.redis.validate().map_err(|e| e.within("redis"))?;
        self.kafka.validate().map_err(|e| e.within("kafka"))?;
        self.directory
            .validate()
            .map_err(|e| e.within("directory"))?;
        let l = &self.limits;
        for (field, value) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.user_per_second", l.user_per_second as usize),
            ("limits.channel_per_second", l.channel_per_second as usize),
            ("limits.recent_history", l.recent_history),
        ] {
            if value == 0 {
                return Err(Invalid::new(field, "must be greater than zero"));
            }
        }
        for (field, path) in [
            ("moderation.words_file", &self.moderation.words_file),
            ("moderation.allow_file", &self.moderation.allow_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(Invalid::new(
                    field,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        let reload = self.moderation.reload_interval;
        if !reload.is_zero() && reload < Duration::from_secs(1) {
            return Err(Invalid::new(
                "moderation.reload_interval",
                "must be 0s (never) or at least 1s",
            ));
        }
        if self.worker_lease_ttl < Duration::from_secs(1) {
            return Err(Invalid::new("worker_lease_ttl", "must be at least 1s"));
        }
        if self.worker_id.is_some_and(|id| id > MAX_WORKER_ID) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_storage(storage: &str) -> Result<ChatConfig, chatmesh_config::ConfigError> {
        let env: chatmesh_config::Env = [
            ("CHATMESH_SERVER__GRPC_ADDR", "127.0.0.1:0"),
            ("CHATMESH_SERVER__ADMIN_ADDR", "127.0.0.1:0"),
            ("CHATMESH_REDIS__NODES", "redis://127.0.0.1:1"),
            ("CHATMESH_KAFKA__BROKERS", "127.0.0.1:1"),
            (
                "CHATMESH_DIRECTORY__URL",
                "postgres://chatmesh@127.0.0.1:1/directory",
            ),
            ("CHATMESH_STORAGE", storage),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        chatmesh_config::load(None, &env)
    }

    #[test]
    fn storage_takes_a_url_a_list_or_a_dns_name() {
        for storage in [
            "http://storage:50051",
            "http://storage-0:50051,http://storage-1:50051",
            "[\"http://storage-0:50051\", \"http://storage-1:50051\"]",
            "dns://storage-headless.default.svc.cluster.local:50051",
        ] {
            let config = with_storage(storage).unwrap_or_else(|e| panic!("{storage}: {e}"));
            assert!(config.storage.is_some(), "{storage}");
        }
        let listed = with_storage("[\"http://a:1\", \"http://b:2\"]").unwrap();
        assert_eq!(listed.storage.as_deref(), Some("http://a:1,http://b:2"));
        for bad in ["ftp://storage:50051", "dns://storage", "http://a:1,dns://b"] {
            let err = with_storage(bad).unwrap_err();
            assert_eq!(err.field(), Some("storage"), "{bad}: {err}");
        }
    }
}
