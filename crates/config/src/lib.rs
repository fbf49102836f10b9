//! Typed configuration shared by every chatmesh binary.
//!
//! A binary's configuration is one struct. It is read from an optional TOML
//! file and then overridden by `CHATMESH_*` variables, where `__` separates
//! nesting levels: `CHATMESH_REDIS__NODES` sets `redis.nodes`, and a number
//! picks an array element: `CHATMESH_SHARDS__DATABASES__0__URL`. Unknown keys
//! are rejected and every error names the field it is about, so a typo never
//! silently falls back to a default.

mod check;
mod load;
mod sections;

pub use check::{CHECK_FLAG, CheckOutcome, check_config, check_config_main};
pub use load::{ConfigError, Env, load, load_from_env};
pub use sections::{
    KafkaConfig, PostgresConfig, RedisConfig, ServerConfig, ShardDatabase, ShardMapConfig,
    TelemetryConfig,
};

/// Checks that run after deserialisation, for rules serde cannot express.
pub trait Validate {
    /// Returns the first invalid field found.
    fn validate(&self) -> Result<(), Invalid>;
}

/// A field whose value is well-formed but not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted path of the field, e.g. `redis.nodes`.
    pub field: String,
    /// Why the value is refused.
    pub reason: String,
}

impl Invalid {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with the section it was found in.
    pub fn within(self, section: &str) -> Self {
        Self {
            field: format!("{section}.{}", self.field),
            reason: self.reason,
        }
    }
}
