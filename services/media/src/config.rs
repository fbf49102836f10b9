use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chatmesh_config::{Invalid, PostgresConfig, ServerConfig, TelemetryConfig, Validate};
use serde::Deserialize;

use crate::policy;

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
    /// What an upload may be, and how long signed URLs live.
    #[serde(default)]
    pub limits: MediaLimits,
}

/// Limits on uploads and on the URLs handed out for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimits {
    /// Largest upload, in bytes.
    pub max_size: u64,
    /// Content types accepted, as bare `type/subtype` (no parameters).
    /// Anything a browser could render as active content (HTML, SVG) is
    /// left out of the default on purpose.
    pub content_types: Vec<String>,
    /// How long a presigned upload or download URL stays valid.
    #[serde(with = "humantime_serde")]
    pub url_ttl: Duration,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_size: 100 * 1024 * 1024,
            content_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "video/mp4",
                "audio/mpeg",
                "application/pdf",
                "text/plain",
            ]
            .map(String::from)
            .to_vec(),
            url_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// The longest URL lifetime SigV4 allows; the local store follows suit.
const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Validate for MediaLimits {
    fn validate(&self) -> Result<(), Invalid> {
        if self.max_size == 0 {
            return Err(Invalid::new("max_size", "must be at least 1 byte"));
        }
        if self.content_types.is_empty() {
            return Err(Invalid::new(
                "content_types",
                "at least one content type is required",
            ));
        }
        for (i, ct) in self.content_types.iter().enumerate() {
            if policy::bare_content_type(ct).as_deref() != Some(ct.as_str()) {
                return Err(Invalid::new(
                    format!("content_types[{i}]"),
                    format!("`{ct}` is not a lowercase type/subtype without parameters"),
                ));
            }
        }
        // S3 signs expiry in whole seconds.
        if self.url_ttl < Duration::from_secs(1) || self.url_ttl > MAX_URL_TTL {
            return Err(Invalid::new("url_ttl", "must be between 1s and 7 days"));
        }
        Ok(())
    }
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
    /// A directory on local disk, for development. The media service serves
    /// the signed URLs itself on `listen_addr`.
    Local {
        /// Directory holding the objects.
        root: PathBuf,
        /// Where signed upload and download URLs are served.
        listen_addr: SocketAddr,
        /// Base URL clients use to reach `listen_addr`; defaults to
        /// `http://<bound address>`.
        #[serde(default)]
        public_url: Option<String>,
        /// HMAC key that signs the URLs; at least 16 bytes.
        secret: String,
    },
}

/// Shortest accepted HMAC secret for the local store.
const MIN_SECRET_LEN: usize = 16;

impl Validate for MediaConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.directory
            .validate()
            .map_err(|e| e.within("directory"))?;
        self.limits.validate().map_err(|e| e.within("limits"))?;
        match &self.store {
            StoreConfig::S3 {
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
            } => {
                check_http_url("store.endpoint", endpoint)?;
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
            StoreConfig::Local {
                root,
                public_url,
                secret,
                ..
            } => {
                if root.as_os_str().is_empty() {
                    return Err(Invalid::new("store.root", "must not be empty"));
                }
                if let Some(url) = public_url {
                    check_http_url("store.public_url", url)?;
                }
                if secret.len() < MIN_SECRET_LEN {
                    return Err(Invalid::new(
                        "store.secret",
                        format!("must be at least {MIN_SECRET_LEN} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_http_url(field: &str, value: &str) -> Result<(), Invalid> {
    let url = url::Url::parse(value)
        .map_err(|e| Invalid::new(field, format!("`{value}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Invalid::new(field, "must be an http or https URL"));
    }
    Ok(())
}

impl chatmesh_server::ServiceConfig for MediaConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_config::{ConfigError, Env};

    use super::*;

    const BASE: &str = "[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n[directory]\nurl = \"postgres://u@127.0.0.1:5432/d\"\n";

    fn load(extra: &str) -> Result<MediaConfig, ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{BASE}{extra}")).unwrap();
        chatmesh_config::load(Some(file.path()), &Env::new())
    }

    const LOCAL: &str = "[store]\nkind = \"local\"\nroot = \"/tmp/m\"\nlisten_addr = \"127.0.0.1:0\"\nsecret = \"0123456789abcdef\"\n";

    #[test]
    fn local_store_defaults() {
        let config = load(LOCAL).unwrap();
        assert_eq!(config.limits.url_ttl, Duration::from_secs(900));
        assert!(config.limits.content_types.iter().any(|t| t == "image/png"));
    }

    #[test]
    fn bad_fields_are_named() {
        let short = LOCAL.replace("0123456789abcdef", "short");
        assert_eq!(load(&short).unwrap_err().field(), Some("store.secret"));
        let typed = format!("{LOCAL}[limits]\ncontent_types = [\"image/png; q=1\"]\n");
        assert_eq!(
            load(&typed).unwrap_err().field(),
            Some("limits.content_types[0]")
        );
        let ttl = format!("{LOCAL}[limits]\nurl_ttl = \"10ms\"\n");
        assert_eq!(load(&ttl).unwrap_err().field(), Some("limits.url_ttl"));
        let size = format!("{LOCAL}[limits]\nmax_size = 0\n");
        assert_eq!(load(&size).unwrap_err().field(), Some("limits.max_size"));
    }
}
