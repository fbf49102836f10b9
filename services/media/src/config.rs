use std::path::PathBuf;

use chatmesh_config::{Invalid, PostgresConfig, ServerConfig, TelemetryConfig, Validate};
use serde::Deserialize;

/// Configuration of the media service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Listen addresses and shutdown timing.
    pub server: ServerConfig,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The directory database: media metadata and memberships.
    pub directory: PostgresConfig,
    /// Where media bytes live.
    pub store: StoreConfig,
}

/// The object store behind presigned URLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// An S3-compatible service, addressed path-style.
    S3 {
        /// Base URL, e.g. `https://s3.eu-west-1.amazonaws.com` or a local server.
        endpoint: String,
        /// Signing region.
        region: String,
        /// Bucket holding every object.
        bucket: String,
        /// Access key ID.
        access_key: String,
        /// Secret access key.
        secret_key: String,
    },
    /// A directory on local disk, for development.
    Local {
        /// Directory holding the objects.
        root: PathBuf,
    },
}

impl Validate for MediaConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.directory
            .validate()
            .map_err(|e| e.within("directory"))?;
        match &self.store {
            StoreConfig::S3 {
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
            } => {
                let url = url::Url::parse(endpoint).map_err(|e| {
                    Invalid::new("store.endpoint", format!("`{endpoint}` is not a URL: {e}"))
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(Invalid::new(
                        "store.endpoint",
                        "must be an http or https URL",
                    ));
                }
                for (field, value) in [
                    ("store.region", region),
                    ("store.bucket", bucket),
                    ("store.access_key", access_key),
                    ("store.secret_key", secret_key),
                ] {
                    if value.is_empty() {
                        return Err(Invalid::new(field, "must not be empty"));
                    }
                }
            }
            StoreConfig::Local { root } => {
                if root.as_os_str().is_empty() {
                    return Err(Invalid::new("store.root", "must not be empty"));
                }
            }
        }
        Ok(())
    }
}

impl chatmesh_server::ServiceConfig for MediaConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
