//! The whole mesh as processes, laid out as `make run` lays it out: chat
//! instances, presence, storage, media and gateway nodes, each a process of
//! the workspace's binaries on its own configuration file, on addresses
//! fixed for the mesh's life. A test kills any of them with SIGKILL, the
//! way a crashed node dies, and starts it again on the same addresses, as
//! a supervisor would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::proxy::DelayProxy;
use crate::sandbox::SANDBOX_SECRET;
use crate::{Infra, process};

/// How long a (re)started process may take to turn ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The processes a mesh runs.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Chat instances; the gateways balance over all of them.
    pub chats: usize,
    /// Gateway nodes, on one ring.
    pub gateways: usize,
    /// `routing.mode` of the gateways.
    pub pin_mode: &'static str,
    /// Lines added to each chat instance's `[server]` section, e.g.
    /// `max_concurrent_requests = 8`.
    pub chat_server: String,
    /// Put a [`DelayProxy`] in front of each chat instance, so a test can
    /// make one slow; the gateways call the proxies.
    pub proxied_chats: bool,
    /// `telemetry.otlp_endpoint` of every process. Their span batches then
    /// go out every [`OTLP_SCHEDULE_DELAY_MS`] instead of every 5 s.
    pub otlp_endpoint: Option<String>,
}

/// The batch span processor's delay in a mesh that exports traces.
pub const OTLP_SCHEDULE_DELAY_MS: u32 = 100;

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            chats: 1,
            gateways: 2,
            pin_mode: "redirect",
            chat_server: String::new(),
            proxied_chats: false,
            otlp_endpoint: None,
        }
    }
}

/// One process of the mesh.
#[derive(Debug)]
struct Proc {
    name: String,
    binary: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    starts: u32,
    ready_url: String,
}

/// A running mesh. Dropping it kills every process.
#[derive(Debug)]
pub struct Mesh {
    /// The infrastructure it runs on.
    pub infra: Infra,
    /// Its message topic.
    pub topic: String,
    /// HTTP (and WebSocket) address of each gateway node, `gw-0` first.
    pub gateways: Vec<SocketAddr>,
    /// gRPC address of each chat instance.
    pub chats: Vec<SocketAddr>,
    /// Admin (metrics, probes) address of each chat instance.
    pub chat_admins: Vec<SocketAddr>,
    /// The proxy in front of each chat instance, with
    /// [`MeshOptions::proxied_chats`].
    pub chat_proxies: Vec<DelayProxy>,
    /// gRPC address of the presence service.
    pub presence: SocketAddr,
    /// gRPC and admin addresses of the storage service.
    pub storage: (SocketAddr, SocketAddr),
    dir: PathBuf,
    procs: Vec<Proc>,
    otlp_endpoint: Option<String>,
}

/// A loopback address free right now (see [`process::free_port`]).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], process::free_port()?)))
}

fn server_toml(grpc: SocketAddr, admin: SocketAddr) -> String {
    server_toml_with(grpc, admin, "")
}

fn server_toml_with(grpc: SocketAddr, admin: SocketAddr, extra: &str) -> String {
    format!(
        "[server]\ngrpc_addr = \"{grpc}\"\nadmin_addr = \"{admin}\"\nprobe_interval = \"200ms\"\nshutdown_grace = \"2s\"\n{extra}\n[telemetry]\nlog = \"info\"\njson = true\n"
    )
}

impl Mesh {
    /// Starts every process of `options` on the infrastructure and waits
    /// until all are ready.
    pub async fn start(options: MeshOptions) -> anyhow::Result<Self> {
        let infra = Infra::load()?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let topic = format!("chatmesh.mesh.{run}");
        infra.create_topic(&topic).await?;
        let dir = process::scratch_dir("chatmesh-mesh")?;
        let words = dir.join("words.txt");
        std::fs::write(&words, "blocked\n")?;
        let directory = format!("[directory]\nurl = {:?}\n", infra.directory_url);
        let kafka = infra.kafka_toml_for(&topic);
        let redis = infra.redis_toml();

        let mut procs = Vec::new();
        let mut add = |name: String, binary: &str, toml: String, admin: SocketAddr| {
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, toml)?;
            procs.push(Proc {
                name,
                binary: process::binary(binary)?,
                config,
                child: None,
                starts: 0,
                ready_url: format!("http://{admin}/readyz"),
            });
            anyhow::Ok(())
        };

        let (presence, presence_admin) = (free_addr()?, free_addr()?);
        add(
            "presence".into(),
            "chatmesh-presence",
            format!(
                "{}{redis}[presence]\ngroup = \"mesh-{run}\"\n",
                server_toml(presence, presence_admin)
            ),
            presence_admin,
        )?;
        let storage = (free_addr()?, free_addr()?);
        add(
            "storage".into(),
            "chatmesh-storage",
            format!(
                "consumer_group = \"mesh-{run}\"\nlag_interval = \"500ms\"\n{}{kafka}{directory}{}",
                server_toml(storage.0, storage.1),
                Infra::shards_toml(&infra.shard_urls, 256)
            ),
            storage.1,
        )?;
        let mut chats = Vec::new();
        let mut chat_admins = Vec::new();
        for i in 0..options.chats {
            let (grpc, admin) = (free_addr()?, free_addr()?);
            chats.push(grpc);
            chat_admins.push(admin);
            add(
                format!("chat-{i}"),
                "chatmesh-chat",
                format!(
                    "storage = \"http://{}\"\n{}{redis}{kafka}{directory}[moderation]\nwords_file = {words:?}\n[limits]\nuser_per_second = 100000\nchannel_per_second = 100000\n",
                    storage.0,
                    server_toml_with(grpc, admin, &options.chat_server)
                ),
                admin,
            )?;
        }
        let (media, media_admin) = (free_addr()?, free_addr()?);
        add(
            "media".into(),
            "chatmesh-media",
            format!(
                "{}{directory}[store]\nkind = \"s3\"\nendpoint = {:?}\nregion = {:?}\nbucket = {:?}\naccess_key = {:?}\nsecret_key = {:?}\n",
                server_toml(media, media_admin),
                infra.s3_endpoint,
                infra.s3_region,
                infra.s3_bucket,
                infra.s3_access_key,
                infra.s3_secret_key
            ),
            media_admin,
        )?;
        let mut chat_proxies = Vec::new();
        if options.proxied_chats {
            for chat in &chats {
                chat_proxies.push(DelayProxy::start("127.0.0.1:0".parse()?, *chat).await?);
            }
        }
        let chat_urls: Vec<String> = if options.proxied_chats {
            chat_proxies
                .iter()
                .map(|p| format!("http://{}", p.addr))
                .collect()
        } else {
            chats.iter().map(|a| format!("http://{a}")).collect()
        };
        let mut gateways = Vec::new();
        for i in 0..options.gateways {
            let addr = free_addr()?;
            gateways.push(addr);
            add(
                format!("gw-{i}"),
                "chatmesh-gateway",
                format!(
                    "node_id = \"gw-{i}\"\nhttp_addr = \"{addr}\"\npublic_url = \"ws://{addr}\"\nprobe_interval = \"200ms\"\nshutdown_grace = \"2s\"\n{redis}[services]\nchat = {chat_urls:?}\npresence = \"http://{presence}\"\nstorage = \"http://{}\"\nmedia = \"http://{media}\"\n[auth]\nhs256_secret = {SANDBOX_SECRET:?}\ndev_tokens = true\n[routing]\ncluster = \"mesh-{run}\"\nmode = {:?}\nrefresh_interval = \"200ms\"\nnode_ttl = \"3s\"\n[limits]\nframes_per_second = 100000\nframe_burst = 100000\n[telemetry]\nlog = \"info\"\njson = true\n",
                    storage.0, options.pin_mode,
                ),
                addr,
            )?;
        }
        let mut mesh = Self {
            infra,
            topic,
            gateways,
            chats,
            chat_admins,
            chat_proxies,
            presence,
            storage,
            dir,
            procs,
            otlp_endpoint: options.otlp_endpoint.clone(),
        };
        for i in 0..mesh.procs.len() {
            mesh.spawn(i)?;
        }
        for i in 0..mesh.procs.len() {
            mesh.wait_ready(i).await?;
        }
        Ok(mesh)
    }

    /// Each running process's name and pid, in start order.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.procs
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.child.as_ref()?.id()?)))
            .collect()
    }

    fn index(&self, name: &str) -> anyhow::Result<usize> {
        self.procs
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("the mesh has no process {name}"))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        let p = &self.procs[i];
        self.dir.join(format!("{}-{}.log", p.name, p.starts))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.procs[i].starts += 1;
        let log = std::fs::File::create(self.log_path(i))?;
        let p = &mut self.procs[i];
        let mut command = Command::new(&p.binary);
        if p.name == "storage" {
            // Its static consumer-group membership.
            command.env("CHATMESH_INSTANCE_ID", &p.name);
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            // The process's name tells its spans apart from its peers'.
            command
                .env("CHATMESH_TELEMETRY__OTLP_ENDPOINT", endpoint)
                .env(
                    "OTEL_BSP_SCHEDULE_DELAY",
                    OTLP_SCHEDULE_DELAY_MS.to_string(),
                )
                .env(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    format!("service.instance.id={}", p.name),
                );
        }
        let child = command
            .env("CHATMESH_CONFIG", &p.config)
            .env_remove("RUST_LOG")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", p.name))?;
        p.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let url = self.procs[i].ready_url.clone();
        let name = self.procs[i].name.clone();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let ready = loop {
            if let Some(status) = self.procs[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                break Err(anyhow::anyhow!("{name} exited with {status}"));
            }
            match reqwest::get(&url).await.and_then(|r| r.error_for_status()) {
                Ok(_) => break Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    break Err(anyhow::anyhow!(
                        "{name} not ready after {READY_TIMEOUT:?}: {e}"
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        ready.map_err(|e| anyhow::anyhow!("{e}\n{}", self.log(&name)))
    }

    /// Kills process `name` with SIGKILL and reaps it.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.index(name)?;
        if let Some(mut child) = self.procs[i].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Starts process `name` again on its configuration, without waiting.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.index(name)?;
        anyhow::ensure!(self.procs[i].child.is_none(), "{name} is still running");
        self.spawn(i)
    }

    /// Starts process `name` again and waits until it is ready.
    pub async fn restart_ready(&mut self, name: &str) -> anyhow::Result<()> {
        self.restart(name)?;
        self.wait_ready(self.index(name)?).await
    }

    /// True while process `name` runs.
    pub fn is_running(&mut self, name: &str) -> bool {
        let Ok(i) = self.index(name) else {
            return false;
        };
        self.procs[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The log of the latest start of process `name`, for failure messages.
    pub fn log(&self, name: &str) -> String {
        self.index(name)
            .map(|i| std::fs::read_to_string(self.log_path(i)).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The WebSocket URL of gateway `i`.
    pub fn gateway_url(&self, i: usize) -> String {
        format!("ws://{}", self.gateways[i])
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Children are killed on drop; the logs stay when a test panics,
        // or always with KEEP_TEST_LOGS set (a test that returns an
        // error does not panic here).
        if !std::thread::panicking() && std::env::var_os("KEEP_TEST_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
