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

mod config;

pub use config::{Options, SANDBOX_SECRET};

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
    gateway: config::GatewayTemplate,
    /// The configuration of presence instances, kept for extra ones.
    presence_config: chatmesh_presence::PresenceConfig,
    presence_instance: bool,
    /// The presence instance group, shared by extra instances.
    pub presence_group: String,
    /// The gateways' ring cluster name (`routing.cluster`).
    pub ring_cluster: String,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

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

impl Sandbox {
    /// Starts every service and the gateway nodes of `options` against `infra`.
    pub async fn start(infra: &Infra, options: Options) -> anyhow::Result<Self> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let group = format!("chatmesh-storage-{run}");
        let topic = format!("chatmesh.test.{run}");
        let words = std::env::temp_dir().join(format!("chatmesh-words-{run}.txt"));
        std::fs::write(&words, options.blocked_words.join("\n"))?;
        let presence_group = format!("sandbox-{run}");
        let ring_cluster = format!("sandbox-{run}");
        let listeners = [
            listeners().await?,
            listeners().await?,
            listeners().await?,
            listeners().await?,
        ];
        let [chat, presence, storage, media] = listeners.each_ref().map(addrs);

        // Every configuration is checked before anything starts, so a
        // refused option leaves nothing running.
        let chat_config = config::chat(infra, &topic, &words, storage.grpc, &options)?;
        let presence_config = config::presence(infra, &presence_group, &options)?;
        let storage_config = config::storage(infra, &topic, &group)?;
        let media_config = config::media(infra, &options)?;
        let endpoints = chatmesh_gateway::ServiceEndpoints {
            chat: format!("http://{}", chat.grpc),
            presence: format!("http://{}", presence.grpc),
            storage: format!("http://{}", storage.grpc),
            media: format!("http://{}", media.grpc),
        };
        let gateway = config::GatewayTemplate::new(infra, &endpoints, &ring_cluster, &options)?;
        infra.create_topic(&topic).await?;

        let shutdown = CancellationToken::new();
        let [chat_l, presence_l, storage_l, media_l] = listeners;
        let mut tasks = vec![
            (
                "chat",
                tokio::spawn(chatmesh_chat::serve(chat_config, chat_l, shutdown.clone())),
            ),
            (
                "storage",
                tokio::spawn(chatmesh_storage::serve(
                    storage_config,
                    storage_l,
                    shutdown.clone(),
                )),
            ),
            (
                "media",
                tokio::spawn(chatmesh_media::serve(
                    media_config,
                    media_l,
                    shutdown.clone(),
                )),
            ),
        ];
        if options.presence_instance {
            tasks.push((
                "presence",
                tokio::spawn(chatmesh_presence::serve(
                    presence_config.clone(),
                    presence_l,
                    shutdown.clone(),
                )),
            ));
        }
        let mut sandbox = Self {
            chat,
            topic: topic.clone(),
            presence,
            storage,
            media,
            gateways: Vec::new(),
            gateway,
            presence_config,
            presence_instance: options.presence_instance,
            presence_group,
            ring_cluster,
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
        let config = self.gateway.config(&format!("gw-{i}"), addr)?;
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
        self.gateway.toml(node_id, http_addr, public_url)
    }

    /// Starts one more presence instance in the sandbox's group and returns
    /// its addresses.
    pub async fn add_presence_instance(&mut self) -> anyhow::Result<ServiceAddrs> {
        let l = listeners().await?;
        let addrs = addrs(&l);
        self.tasks.push((
            "presence",
            tokio::spawn(chatmesh_presence::serve(
                self.presence_config.clone(),
                l,
                self.shutdown.clone(),
            )),
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
