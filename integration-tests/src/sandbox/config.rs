//! What a sandbox may be shaped by, and the service configurations built
//! from it. Options are the services' own typed config sections; each
//! configuration is assembled from them and a base parsed for the
//! infrastructure, then validated as the binaries validate theirs, so a
//! sandbox never runs a service on settings its binary would refuse.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_chat::{ChatConfig, ModerationConfig, SendLimits};
use chatmesh_config::{ConfigError, Validate};
use chatmesh_gateway::{GatewayConfig, GatewayLimits, PinMode, RoutingConfig, ServiceEndpoints};
use chatmesh_media::{MediaConfig, MediaLimits, StoreConfig};
use chatmesh_presence::PresenceConfig;
use chatmesh_storage::StorageConfig;

use crate::Infra;

/// The HS256 secret sandbox gateways accept; tests may sign their own tokens.
pub const SANDBOX_SECRET: &str = "sandbox-secret-0123456789";

const SERVER_TOML: &str = "[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\nshutdown_grace = \"3s\"\n";

/// How to shape a sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// Gateway nodes to start.
    pub gateways: usize,
    /// The gateways' `routing.mode`.
    pub pin_mode: PinMode,
    /// The gateways' `[limits]`.
    pub gateway_limits: GatewayLimits,
    /// The chat service's `[limits]`.
    pub chat_limits: SendLimits,
    /// The chat service's `[member_cache]`.
    pub chat_member_cache: chatmesh_chat::MemberCacheConfig,
    /// Blocked words for the chat service.
    pub blocked_words: Vec<String>,
    /// The gateways' `[presence]`: session liveness.
    pub gateway_presence: chatmesh_gateway::PresenceSettings,
    /// The presence service's `[presence]`. Its `group` is replaced by the
    /// sandbox's own instance group.
    pub presence: chatmesh_presence::PresenceSettings,
    /// Run a presence instance in the sandbox. Without one, `presence`
    /// addresses answer nothing and the caller runs its own.
    pub presence_instance: bool,
    /// The media service's `[limits]`.
    pub media_limits: MediaLimits,
    /// The media service's `[store]`; `None` uses the infrastructure's S3
    /// bucket.
    pub media_store: Option<StoreConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateways: 2,
            pin_mode: PinMode::Serve,
            gateway_limits: GatewayLimits {
                reorder_window: Duration::from_millis(300),
                ..GatewayLimits::default()
            },
            // Far above what any test sends, so only tests of the limits
            // meet them.
            chat_limits: SendLimits {
                user_per_second: 1000,
                channel_per_second: 5000,
                ..SendLimits::default()
            },
            chat_member_cache: chatmesh_chat::MemberCacheConfig::default(),
            blocked_words: Vec::new(),
            // Long enough that tests of other features need not ping.
            gateway_presence: chatmesh_gateway::PresenceSettings {
                session_ttl: Duration::from_secs(600),
                flush_interval: Duration::from_millis(100),
                ..chatmesh_gateway::PresenceSettings::default()
            },
            presence: chatmesh_presence::PresenceSettings::default(),
            presence_instance: true,
            media_limits: MediaLimits::default(),
            media_store: None,
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> anyhow::Result<T> {
    toml::from_str(text).with_context(|| format!("sandbox {what} config:\n{text}"))
}

/// Runs the checks `chatmesh_config::load` runs for the binaries, and fails
/// with the same error, which names the field.
fn validated<T: Validate>(what: &str, config: T) -> anyhow::Result<T> {
    config
        .validate()
        .map_err(|i| ConfigError::Invalid {
            field: i.field,
            reason: i.reason,
        })
        .with_context(|| format!("sandbox {what} config"))?;
    Ok(config)
}

/// The chat service's configuration, producing to `topic` and blocking the
/// words in `words`.
pub(super) fn chat(
    infra: &Infra,
    topic: &str,
    words: &Path,
    storage: std::net::SocketAddr,
    options: &Options,
) -> anyhow::Result<ChatConfig> {
    let base: ChatConfig = parse(
        "chat",
        &format!(
            "{SERVER_TOML}{}{}[directory]\nurl = {:?}\n",
            infra.redis_toml(),
            infra.kafka_toml_for(topic),
            infra.directory_url,
        ),
    )?;
    validated(
        "chat",
        ChatConfig {
            limits: options.chat_limits.clone(),
            member_cache: options.chat_member_cache.clone(),
            storage: Some(format!("http://{storage}")),
            moderation: ModerationConfig {
                words_file: Some(words.to_owned()),
                ..ModerationConfig::default()
            },
            ..base
        },
    )
}

/// The configuration of a presence instance in `group`.
pub(super) fn presence(
    infra: &Infra,
    group: &str,
    options: &Options,
) -> anyhow::Result<PresenceConfig> {
    let base: PresenceConfig = parse("presence", &format!("{SERVER_TOML}{}", infra.redis_toml()))?;
    validated(
        "presence",
        PresenceConfig {
            presence: chatmesh_presence::PresenceSettings {
                group: group.to_owned(),
                ..options.presence.clone()
            },
            ..base
        },
    )
}

/// The storage service's configuration, consuming `topic` as
/// `consumer_group`.
pub(super) fn storage(
    infra: &Infra,
    topic: &str,
    consumer_group: &str,
) -> anyhow::Result<StorageConfig> {
    let config = parse(
        "storage",
        &format!(
            "consumer_group = {consumer_group:?}\n{SERVER_TOML}{}[directory]\nurl = {:?}\n{}",
            infra.kafka_toml_for(topic),
            infra.directory_url,
            Infra::shards_toml(&infra.shard_urls, 256)
        ),
    )?;
    validated("storage", config)
}

/// The media service's configuration.
pub(super) fn media(infra: &Infra, options: &Options) -> anyhow::Result<MediaConfig> {
    let base: MediaConfig = parse(
        "media",
        &format!(
            "{SERVER_TOML}[directory]\nurl = {:?}\n[store]\nkind = \"s3\"\nendpoint = {:?}\nregion = {:?}\nbucket = {:?}\naccess_key = {:?}\nsecret_key = {:?}\n",
            infra.directory_url,
            infra.s3_endpoint,
            infra.s3_region,
            infra.s3_bucket,
            infra.s3_access_key,
            infra.s3_secret_key
        ),
    )?;
    validated(
        "media",
        MediaConfig {
            store: options.media_store.clone().unwrap_or(base.store),
            limits: options.media_limits.clone(),
            ..base
        },
    )
}

/// What every gateway node of a sandbox shares. In-process nodes get it
/// typed; node processes get it as TOML, which loads to the same config.
#[derive(Debug, Clone)]
pub(super) struct GatewayTemplate {
    /// Top-level keys and the tables built from the infrastructure and the
    /// sandbox's services. It ends inside `[routing]`, so `mode` can follow.
    base: String,
    mode: PinMode,
    limits: GatewayLimits,
    presence: chatmesh_gateway::PresenceSettings,
}

impl GatewayTemplate {
    /// Gateways of ring `cluster` calling `services`, checked as the
    /// configuration of a first node.
    pub(super) fn new(
        infra: &Infra,
        services: &ServiceEndpoints,
        cluster: &str,
        options: &Options,
    ) -> anyhow::Result<Self> {
        let ServiceEndpoints {
            chat,
            presence,
            storage,
            media,
        } = services;
        let base = format!(
            "probe_interval = \"200ms\"\nshutdown_grace = \"2s\"\n{}[services]\nchat = {chat:?}\npresence = {presence:?}\nstorage = {storage:?}\nmedia = {media:?}\n[auth]\nhs256_secret = {SANDBOX_SECRET:?}\ndev_tokens = true\n[routing]\ncluster = {cluster:?}\nrefresh_interval = \"100ms\"\nnode_ttl = \"1s\"\n",
            infra.redis_toml(),
        );
        let template = Self {
            base,
            mode: options.pin_mode,
            limits: options.gateway_limits.clone(),
            presence: options.gateway_presence.clone(),
        };
        template.config("gw-0", SocketAddr::from(([127, 0, 0, 1], 0)))?;
        Ok(template)
    }

    fn head(&self, node_id: &str, http_addr: &str, public_url: &str) -> String {
        format!(
            "node_id = {node_id:?}\nhttp_addr = {http_addr:?}\npublic_url = {public_url:?}\n{}",
            self.base
        )
    }

    /// The configuration of node `node_id`, serving on `addr`.
    pub(super) fn config(&self, node_id: &str, addr: SocketAddr) -> anyhow::Result<GatewayConfig> {
        let what = format!("gateway {node_id}");
        let base: GatewayConfig = parse(
            &what,
            &self.head(node_id, &addr.to_string(), &format!("http://{addr}")),
        )?;
        validated(
            &what,
            GatewayConfig {
                routing: RoutingConfig {
                    mode: self.mode,
                    ..base.routing
                },
                limits: self.limits.clone(),
                presence: self.presence.clone(),
                ..base
            },
        )
    }

    /// The same configuration as TOML, for a gateway process. Tables may be
    /// appended to it.
    pub(super) fn toml(&self, node_id: &str, http_addr: &str, public_url: &str) -> String {
        format!(
            "{}mode = {}\n[limits]\n{}[presence]\n{}",
            self.head(node_id, http_addr, public_url),
            pin_mode_toml(self.mode),
            limits_toml(&self.limits),
            liveness_toml(&self.presence),
        )
    }
}

// The renderers below destructure without `..`, so a field added to a
// section fails to compile here instead of silently missing from processes.

fn pin_mode_toml(mode: PinMode) -> &'static str {
    match mode {
        PinMode::Redirect => "\"redirect\"",
        PinMode::Serve => "\"serve\"",
    }
}

fn limits_toml(limits: &GatewayLimits) -> String {
    let GatewayLimits {
        max_frame_bytes,
        read_buffer_bytes,
        outbound_queue,
        frames_per_second,
        frame_burst,
        max_connections,
        max_subscriptions,
        max_sends_in_flight,
        reorder_window,
    } = limits;
    format!(
        "max_frame_bytes = {max_frame_bytes}\nread_buffer_bytes = {read_buffer_bytes}\noutbound_queue = {outbound_queue}\nframes_per_second = {frames_per_second}\nframe_burst = {frame_burst}\nmax_connections = {max_connections}\nmax_subscriptions = {max_subscriptions}\nmax_sends_in_flight = {max_sends_in_flight}\nreorder_window = {}\n",
        duration_toml(*reorder_window),
    )
}

fn liveness_toml(presence: &chatmesh_gateway::PresenceSettings) -> String {
    let chatmesh_gateway::PresenceSettings {
        session_ttl,
        flush_interval,
        sweep_interval,
        topology_refresh,
    } = presence;
    format!(
        "session_ttl = {}\nflush_interval = {}\nsweep_interval = {}\ntopology_refresh = {}\n",
        duration_toml(*session_ttl),
        duration_toml(*flush_interval),
        duration_toml(*sweep_interval),
        duration_toml(*topology_refresh),
    )
}

/// A duration as an exact humantime string, the form the configs read.
fn duration_toml(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("\"{}s\"", d.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("\"{}ms\"", d.as_millis())
    } else {
        format!("\"{}ns\"", d.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_config::Env;

    use super::*;

    /// Endpoints that are never contacted: building configs needs none.
    fn infra() -> Infra {
        Infra {
            redis_nodes: vec!["redis://127.0.0.1:7000".into()],
            directory_url: "postgres://postgres@127.0.0.1:5432/directory".into(),
            shard_urls: vec![
                "postgres://postgres@127.0.0.1:5432/shard_0".into(),
                "postgres://postgres@127.0.0.1:5433/shard_1".into(),
            ],
            pg_a_port: 5432,
            pg_b_port: 5433,
            kafka_brokers: vec!["127.0.0.1:9092".into()],
            kafka_topic: "chatmesh.messages".into(),
            s3_endpoint: "http://127.0.0.1:9000".into(),
            s3_region: "us-east-1".into(),
            s3_bucket: "media".into(),
            s3_access_key: "access".into(),
            s3_secret_key: "secret".into(),
        }
    }

    fn endpoints() -> ServiceEndpoints {
        ServiceEndpoints {
            chat: "http://127.0.0.1:1".into(),
            presence: "http://127.0.0.1:2".into(),
            storage: "http://127.0.0.1:3".into(),
            media: "http://127.0.0.1:4".into(),
        }
    }

    fn gateway(options: &Options) -> anyhow::Result<GatewayConfig> {
        GatewayTemplate::new(&infra(), &endpoints(), "sandbox-test", options)?
            .config("gw-0", "127.0.0.1:0".parse()?)
    }

    /// The field an error is about, and its message, which must name it.
    fn refused(result: anyhow::Result<impl std::fmt::Debug>) -> String {
        let err = result.expect_err("an invalid option was accepted");
        let field = err
            .downcast_ref::<ConfigError>()
            .and_then(ConfigError::field)
            .unwrap_or_else(|| panic!("not a config field error: {err:#}"))
            .to_owned();
        assert!(format!("{err:#}").contains(&field), "{err:#}");
        field
    }

    #[test]
    fn defaults_keep_the_sandbox_values_and_pass_validation() -> anyhow::Result<()> {
        let options = Options::default();
        let words = tempfile::NamedTempFile::new()?;
        let chat = chat(
            &infra(),
            "t",
            words.path(),
            ([127, 0, 0, 1], 3).into(),
            &options,
        )?;
        assert_eq!(chat.limits.user_per_second, 1000);
        assert_eq!(chat.limits.channel_per_second, 5000);
        assert_eq!(chat.kafka.topic, "t");
        let presence = presence(&infra(), "g", &options)?;
        assert_eq!(presence.presence.group, "g");
        storage(&infra(), "t", "group")?;
        let media = media(&infra(), &options)?;
        assert!(matches!(media.store, StoreConfig::S3 { .. }));
        let gateway = gateway(&options)?;
        assert_eq!(gateway.limits.reorder_window, Duration::from_millis(300));
        assert_eq!(gateway.presence.session_ttl, Duration::from_secs(600));
        assert_eq!(gateway.presence.flush_interval, Duration::from_millis(100));
        assert_eq!(gateway.routing.mode, PinMode::Serve);
        Ok(())
    }

    #[test]
    fn an_invalid_typed_option_is_refused_naming_its_field() -> anyhow::Result<()> {
        let defaults = Options::default();
        let zero_frames = Options {
            gateway_limits: GatewayLimits {
                max_frame_bytes: 0,
                ..defaults.gateway_limits.clone()
            },
            ..Options::default()
        };
        assert_eq!(refused(gateway(&zero_frames)), "limits.max_frame_bytes");

        let zero_flush = Options {
            gateway_presence: chatmesh_gateway::PresenceSettings {
                flush_interval: Duration::ZERO,
                ..defaults.gateway_presence.clone()
            },
            ..Options::default()
        };
        assert_eq!(refused(gateway(&zero_flush)), "presence.flush_interval");

        let words = tempfile::NamedTempFile::new()?;
        let no_sends = Options {
            chat_limits: SendLimits {
                user_per_second: 0,
                ..defaults.chat_limits.clone()
            },
            ..Options::default()
        };
        assert_eq!(
            refused(chat(
                &infra(),
                "t",
                words.path(),
                ([127, 0, 0, 1], 3).into(),
                &no_sends
            )),
            "limits.user_per_second"
        );

        let refresh = Duration::from_millis(100);
        let lease = Options {
            presence: chatmesh_presence::PresenceSettings {
                instance_refresh: refresh,
                instance_ttl: refresh,
                ..defaults.presence.clone()
            },
            ..Options::default()
        };
        assert_eq!(
            refused(presence(&infra(), "g", &lease)),
            "presence.instance_ttl"
        );

        let empty = Options {
            media_limits: MediaLimits {
                max_size: 0,
                ..defaults.media_limits.clone()
            },
            ..Options::default()
        };
        assert_eq!(refused(media(&infra(), &empty)), "limits.max_size");
        let weak = Options {
            media_store: Some(StoreConfig::Local {
                root: "/tmp/never-used".into(),
                listen_addr: "127.0.0.1:0".parse()?,
                public_url: None,
                secret: "short".into(),
            }),
            ..Options::default()
        };
        assert_eq!(refused(media(&infra(), &weak)), "store.secret");
        Ok(())
    }

    #[test]
    fn gateway_toml_loads_to_the_in_process_config() -> anyhow::Result<()> {
        let options = Options {
            pin_mode: PinMode::Redirect,
            gateway_limits: GatewayLimits {
                max_frame_bytes: 2048,
                frames_per_second: 7,
                reorder_window: Duration::from_micros(1500),
                ..GatewayLimits::default()
            },
            gateway_presence: chatmesh_gateway::PresenceSettings {
                session_ttl: Duration::from_secs(2),
                sweep_interval: Duration::from_millis(250),
                ..Options::default().gateway_presence
            },
            ..Options::default()
        };
        let template = GatewayTemplate::new(&infra(), &endpoints(), "sandbox-test", &options)?;
        let addr: SocketAddr = "127.0.0.1:0".parse()?;
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(
            file.path(),
            template.toml("gw-0", &addr.to_string(), &format!("http://{addr}")),
        )?;
        // The binary's own loader, as a gateway process reads the file.
        let loaded: GatewayConfig = chatmesh_config::load(Some(file.path()), &Env::new())?;
        let typed = template.config("gw-0", addr)?;
        assert_eq!(format!("{loaded:?}"), format!("{typed:?}"));
        assert_eq!(loaded.limits.reorder_window, Duration::from_micros(1500));
        assert_eq!(loaded.routing.mode, PinMode::Redirect);
        Ok(())
    }
}
