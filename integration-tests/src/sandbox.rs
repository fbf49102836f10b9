//! The whole mesh in one process: every service and two gateway nodes, on
//! ephemeral loopback ports, against the real infrastructure.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_server::Listeners;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::{Infra, wait};

/// Addresses of one service in the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct ServiceAddrs {
    /// gRPC API, health and reflection.
    pub grpc: SocketAddr,
    /// Admin HTTP.
    pub admin: SocketAddr,
}

/// A running mesh. Dropping it shuts everything down; [`Sandbox::stop`]
/// does so and reports any service that failed.
#[derive(Debug)]
pub struct Sandbox {
    /// The chat service.
    pub chat: ServiceAddrs,
    /// The presence service.
    pub presence: ServiceAddrs,
    /// The storage service.
    pub storage: ServiceAddrs,
    /// The media service.
    pub media: ServiceAddrs,
    /// The sandbox's own message topic.
    pub topic: String,
    /// Gateway nodes' HTTP addresses; node `gw-<i>` is at index `i`.
    pub gateways: Vec<SocketAddr>,
    gateway_template: String,
    presence_toml: String,
    presence_instance: bool,
    /// The presence instance group, shared by extra instances.
    pub presence_group: String,
    /// The gateways' ring cluster name (`routing.cluster`).
    pub ring_cluster: String,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

const SERVER_TOML: &str = "[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\nshutdown_grace = \"3s\"\n";

async fn listeners() -> anyhow::Result<Listeners> {
    Ok(Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await?,
        admin: TcpListener::bind("127.0.0.1:0").await?,
    })
}

fn addrs(l: &Listeners) -> ServiceAddrs {
    ServiceAddrs {
        grpc: l.grpc_addr(),
        admin: l.admin_addr(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> anyhow::Result<T> {
    toml::from_str(text).with_context(|| format!("sandbox {what} config:\n{text}"))
}

/// How to shape a sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// Gateway nodes to start.
    pub gateways: usize,
    /// `redirect` or `serve`.
    pub pin_mode: &'static str,
    /// Body of the gateways' `[limits]` table.
    pub gateway_limits: String,
    /// Body of the chat service's `[limits]` table.
    pub chat_limits: String,
    /// Blocked words for the chat service.
    pub blocked_words: Vec<String>,
    /// Body of the gateways' `[presence]` table.
    pub gateway_presence: String,
    /// Body of the presence service's `[presence]` table; the sandbox adds
    /// its own instance group.
    pub presence: String,
    /// Run a presence instance in the sandbox. Without one, `presence`
    /// addresses answer nothing and the caller runs its own.
    pub presence_instance: bool,
    /// Body of the media service's `[limits]` table.
    pub media_limits: String,
    /// Body of the media service's `[store]` table; `None` uses the
    /// infrastructure's S3 bucket.
    pub media_store: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateways: 2,
            pin_mode: "serve",
            gateway_limits: "reorder_window = \"300ms\"\n".into(),
            chat_limits: "user_per_second = 1000\nchannel_per_second = 5000\n".into(),
            blocked_words: Vec::new(),
            // Long enough that tests of other features need not ping.
            gateway_presence: "session_ttl = \"10m\"\nflush_interval = \"100ms\"\n".into(),
            presence: String::new(),
            presence_instance: true,
            media_limits: String::new(),
            media_store: None,
        }
    }
}

/// The HS256 secret sandbox gateways accept; tests may sign their own tokens.
pub const SANDBOX_SECRET: &str = "sandbox-secret-0123456789";

impl Sandbox {
    /// Starts every service and the gateway nodes of `options` against `infra`.
    pub async fn start(infra: &Infra, options: Options) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let group = format!("chatmesh-storage-{run}");
        let topic = format!("chatmesh.test.{run}");
        infra.create_topic(&topic).await?;
        let words = std::env::temp_dir().join(format!("chatmesh-words-{run}.txt"));
        std::fs::write(&words, options.blocked_words.join("\n"))?;

        let l = listeners().await?;
        let chat = addrs(&l);
        let config: chatmesh_chat::ChatConfig = parse(
            "chat",
            &format!(
                "{SERVER_TOML}{}{}[directory]\nurl = {:?}\n[limits]\n{}[moderation]\nwords_file = {:?}\n",
                infra.redis_toml(),
                infra.kafka_toml_for(&topic),
                infra.directory_url,
                options.chat_limits,
                words
            ),
        )?;
        tasks.push((
            "chat",
            tokio::spawn(chatmesh_chat::serve(config, l, shutdown.clone())),
        ));

        let l = listeners().await?;
        let presence = addrs(&l);
        let presence_group = format!("sandbox-{run}");
        let presence_toml = format!(
            "{SERVER_TOML}{}[presence]\ngroup = {presence_group:?}\n{}",
            infra.redis_toml(),
            options.presence
        );
        let config: chatmesh_presence::PresenceConfig = parse("presence", &presence_toml)?;
        if options.presence_instance {
            tasks.push((
                "presence",
                tokio::spawn(chatmesh_presence::serve(config, l, shutdown.clone())),
            ));
        }

        let l = listeners().await?;
        let storage = addrs(&l);
        let config: chatmesh_storage::StorageConfig = parse(
            "storage",
            &format!(
                "consumer_group = {group:?}\n{SERVER_TOML}{}[directory]\nurl = {:?}\n{}",
                infra.kafka_toml_for(&topic),
                infra.directory_url,
                Infra::shards_toml(&infra.shard_urls, 256)
            ),
        )?;
        tasks.push((
            "storage",
            tokio::spawn(chatmesh_storage::serve(config, l, shutdown.clone())),
        ));

        let l = listeners().await?;
        let media = addrs(&l);
        let media_store = options.media_store.clone().unwrap_or_else(|| {
            format!(
                "kind = \"s3\"\nendpoint = {:?}\nregion = {:?}\nbucket = {:?}\naccess_key = {:?}\nsecret_key = {:?}\n",
                infra.s3_endpoint,
                infra.s3_region,
                infra.s3_bucket,
                infra.s3_access_key,
                infra.s3_secret_key
            )
        });
        let config: chatmesh_media::MediaConfig = parse(
            "media",
            &format!(
                "{SERVER_TOML}[directory]\nurl = {:?}\n[store]\n{media_store}[limits]\n{}",
                infra.directory_url, options.media_limits
            ),
        )?;
        tasks.push((
            "media",
            tokio::spawn(chatmesh_media::serve(config, l, shutdown.clone())),
        ));

        let gateway_template = format!(
            "probe_interval = \"200ms\"\nshutdown_grace = \"2s\"\n{}[services]\nchat = \"http://{}\"\npresence = \"http://{}\"\nstorage = \"http://{}\"\nmedia = \"http://{}\"\n[auth]\nhs256_secret = {SANDBOX_SECRET:?}\ndev_tokens = true\n[routing]\ncluster = \"sandbox-{run}\"\nmode = {:?}\nrefresh_interval = \"100ms\"\nnode_ttl = \"1s\"\n[limits]\n{}[presence]\n{}",
            infra.redis_toml(),
            chat.grpc,
            presence.grpc,
            storage.grpc,
            media.grpc,
            options.pin_mode,
            options.gateway_limits,
            options.gateway_presence
        );
        let mut sandbox = Self {
            chat,
            topic: topic.clone(),
            presence,
            storage,
            media,
            gateways: Vec::new(),
            gateway_template,
            presence_toml,
            presence_instance: options.presence_instance,
            presence_group,
            ring_cluster: format!("sandbox-{run}"),
            shutdown,
            tasks,
        };
        for _ in 0..options.gateways {
            sandbox.add_gateway().await?;
        }
        Ok(sandbox)
    }

    /// Starts a sandbox and waits until every part of it is ready.
    pub async fn start_ready(options: Options) -> anyhow::Result<Self> {
        let sandbox = Self::start(&Infra::load()?, options).await?;
        sandbox.wait_ready(Duration::from_secs(60)).await?;
        Ok(sandbox)
    }

    /// Starts one more gateway node, `gw-<n>`, and returns its address.
    pub async fn add_gateway(&mut self) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let i = self.gateways.len();
        let config: chatmesh_gateway::GatewayConfig = parse(
            "gateway",
            &self.gateway_toml(
                &format!("gw-{i}"),
                &addr.to_string(),
                &format!("http://{addr}"),
            ),
        )?;
        self.gateways.push(addr);
        self.tasks.push((
            "gateway",
            tokio::spawn(chatmesh_gateway::serve(
                config,
                listener,
                self.shutdown.clone(),
            )),
        ));
        Ok(addr)
    }

    /// The configuration of a gateway node of this sandbox named `node_id`,
    /// listening on `http_addr` (port 0 picks one) and reached at
    /// `public_url`. Tables may be appended to it.
    pub fn gateway_toml(&self, node_id: &str, http_addr: &str, public_url: &str) -> String {
        format!(
            "node_id = {node_id:?}\nhttp_addr = {http_addr:?}\npublic_url = {public_url:?}\n{}",
            self.gateway_template
        )
    }

    /// Starts one more presence instance in the sandbox's group and returns
    /// its addresses.
    pub async fn add_presence_instance(&mut self) -> anyhow::Result<ServiceAddrs> {
        let l = listeners().await?;
        let addrs = addrs(&l);
        let config: chatmesh_presence::PresenceConfig = parse("presence", &self.presence_toml)?;
        self.tasks.push((
            "presence",
            tokio::spawn(chatmesh_presence::serve(config, l, self.shutdown.clone())),
        ));
        Ok(addrs)
    }

    /// Waits until every service reports SERVING and every gateway is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        for (name, addrs) in self.services() {
            if name == "presence" && !self.presence_instance {
                continue;
            }
            if let Err(err) = wait::until(&format!("{name} SERVING"), timeout, || {
                health(addrs.grpc, "")
            })
            .await
            {
                let detail = match reqwest::get(format!("http://{}/readyz", addrs.admin)).await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                anyhow::bail!("{err}\n{name} dependencies:\n{detail}");
            }
        }
        for gw in &self.gateways {
            let url = format!("http://{gw}/readyz");
            wait::until(&format!("gateway {gw} ready"), timeout, || {
                http_ok(url.clone())
            })
            .await?;
        }
        Ok(())
    }

    /// Each service's name and addresses.
    pub fn services(&self) -> [(&'static str, ServiceAddrs); 4] {
        [
            ("chat", self.chat),
            ("presence", self.presence),
            ("storage", self.storage),
            ("media", self.media),
        ]
    }

    /// Shuts everything down and returns the first service failure.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for (name, task) in std::mem::take(&mut self.tasks) {
            task.await
                .with_context(|| format!("{name} panicked"))?
                .with_context(|| format!("{name} failed"))?;
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A lazily connecting gRPC channel to `addr`.
pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_lazy()
}

/// Ok when the gRPC health of `service` at `addr` is SERVING.
pub async fn health(addr: SocketAddr, service: &str) -> anyhow::Result<()> {
    let status = HealthClient::new(channel(addr))
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner()
        .status;
    anyhow::ensure!(
        status == ServingStatus::Serving as i32,
        "status is {status}"
    );
    Ok(())
}

async fn http_ok(url: String) -> anyhow::Result<()> {
    let response = reqwest::get(&url).await?;
    anyhow::ensure!(response.status().is_success(), "{}", response.status());
    Ok(())
}
