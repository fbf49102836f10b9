//! The mesh under load: the in-process services of a sandbox, gateway
//! processes started from the release binary, and the benchmark's channels
//! with their members.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_bench::{SECRET, binary, free_port, rss_kib};
use chatmesh_integration_tests::fixtures::create_channel;
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::Value;

/// The shape of the mesh.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) clients: usize,
    pub(crate) channels: usize,
    pub(crate) senders: usize,
    pub(crate) gateways: usize,
    /// The gateways' `limits.max_sends_in_flight`; their default if unset.
    pub(crate) send_window: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct Mesh {
    pub(crate) sandbox: Sandbox,
    /// Gateway processes; each is killed when dropped.
    pub(crate) gateways: Vec<Gateway>,
    /// The channels' IDs.
    pub(crate) rooms: Vec<String>,
    /// Each channel's owner node.
    pub(crate) owner: Vec<SocketAddr>,
    /// Subscribed clients per channel: the deliveries one event makes.
    pub(crate) members: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Gateway {
    child: tokio::process::Child,
    pub(crate) addr: SocketAddr,
}

impl Mesh {
    /// Starts the services and `shape.gateways` gateways, and creates the
    /// channels: every sender and the clients of a channel are members.
    pub(crate) async fn start(infra: &Infra, shape: &Shape) -> anyhow::Result<Self> {
        let mut options = Options {
            gateways: 0,
            ..Options::default()
        };
        // The bench measures the mesh, not the chat service's rate limits.
        options.chat_limits.user_per_second = 1_000_000;
        options.chat_limits.channel_per_second = 1_000_000;
        let sandbox = Sandbox::start(infra, options).await?;
        sandbox.wait_ready(Duration::from_secs(60)).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("chatmesh-bench-{run}"));
        std::fs::create_dir_all(&dir)?;
        let cluster = format!("bench-{run}");
        let mut gateways = Vec::new();
        let mut node_addr: HashMap<String, SocketAddr> = HashMap::new();
        for i in 0..shape.gateways {
            let node = format!("bench-{i}");
            let gateway =
                Gateway::start(infra, &sandbox, &node, &cluster, &dir, shape.send_window).await?;
            node_addr.insert(node, gateway.addr);
            gateways.push(gateway);
        }

        let rooms: Vec<String> = (0..shape.channels)
            .map(|i| format!("bench-{run}-{i}"))
            .collect();
        let mut grpc =
            chat::chat_service_client::ChatServiceClient::new(channel(sandbox.chat.grpc));
        let mut owner = Vec::new();
        for room in &rooms {
            create_channel(&sandbox, room, ModerationPolicy::Reject, &["bench-owner"]).await?;
            for s in 0..shape.senders {
                grpc.join_channel(chat::JoinChannelRequest {
                    channel_id: room.clone(),
                    user_id: format!("sender-{s}"),
                    ..Default::default()
                })
                .await?;
            }
            let (gw, node_addr) = (gateways[0].addr, &node_addr);
            let route = wait::until("route", Duration::from_secs(10), || async move {
                let url = format!("http://{gw}/v1/route/{room}");
                let v: Value = reqwest::get(&url).await?.json().await?;
                let node = v["node"].as_str().context("no node")?.to_owned();
                anyhow::ensure!(node_addr.contains_key(&node), "unknown node {node}");
                Ok(node)
            })
            .await?;
            owner.push(node_addr[&route]);
        }
        let mut members = vec![0; rooms.len()];
        for i in 0..shape.clients {
            grpc.join_channel(chat::JoinChannelRequest {
                channel_id: rooms[i % rooms.len()].clone(),
                user_id: format!("user-{i}"),
                ..Default::default()
            })
            .await?;
            members[i % rooms.len()] += 1;
        }
        Ok(Self {
            sandbox,
            gateways,
            rooms,
            owner,
            members,
        })
    }

    /// The gateways' resident memory, in KiB.
    pub(crate) fn gateway_rss_kib(&self) -> u64 {
        self.gateways
            .iter()
            .map(|g| rss_kib(g.child.id().unwrap_or(0)).unwrap_or(0))
            .sum()
    }

    /// Waits until storage holds post `seq` of each channel named, so one
    /// run's backlog does not weigh on the next.
    pub(crate) async fn wait_stored(&self, last: &[(usize, u64)]) -> anyhow::Result<()> {
        let messages = last
            .iter()
            .map(|&(room, seq)| (self.rooms[room].clone(), seq));
        chatmesh_bench::wait_stored(self.sandbox.storage.grpc, messages, Duration::from_secs(60))
            .await
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        for g in &mut self.gateways {
            let _ = g.child.start_kill();
        }
        self.sandbox.stop().await
    }
}

impl Gateway {
    async fn start(
        infra: &Infra,
        sb: &Sandbox,
        node: &str,
        cluster: &str,
        dir: &Path,
        send_window: Option<usize>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let config = format!(
            "node_id = \"{node}\"\nhttp_addr = \"{addr}\"\npublic_url = \"http://{addr}\"\n{}[services]\nchat = \"http://{}\"\npresence = \"http://{}\"\nstorage = \"http://{}\"\nmedia = \"http://{}\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[routing]\ncluster = \"{cluster}\"\nmode = \"redirect\"\nrefresh_interval = \"200ms\"\nnode_ttl = \"2s\"\n[limits]\nframes_per_second = 1000000\nframe_burst = 1000000\nmax_connections = 100000\n{}[telemetry]\nlog = \"warn\"\n",
            infra.redis_toml(),
            sb.chat.grpc,
            sb.presence.grpc,
            sb.storage.grpc,
            sb.media.grpc,
            send_window.map_or_else(String::new, |w| format!("max_sends_in_flight = {w}\n")),
        );
        let file = dir.join(format!("{node}.toml"));
        std::fs::write(&file, config)?;
        let path = binary("chatmesh-gateway")?;
        let child = tokio::process::Command::new(&path)
            .env("CHATMESH_CONFIG", &file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let url = format!("http://{addr}/readyz");
        wait::until(&format!("{node} ready"), Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(&url).await?.error_for_status().map(|_| ()) }
        })
        .await?;
        Ok(Self { child, addr })
    }
}
