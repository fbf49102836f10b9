//! chatmesh as users run it: one process per service (`make run`'s layout,
//! release binaries), gateways on one ring, receivers on their channel's
//! owner node, over the JSON WebSocket protocol.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_bench::token_signed;
use chatmesh_integration_tests::fixtures::create_channel_at;
use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::sandbox::SANDBOX_SECRET;
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::system::{Incoming, Layout, System, Ws};

pub(crate) struct Chatmesh {
    mesh: Mesh,
    /// A prefix unique to the run, so channels of earlier runs on the same
    /// databases never collide.
    run: String,
    /// Each channel's owner node, found on the ring once the channels exist.
    owners: std::sync::OnceLock<Vec<usize>>,
}

impl Chatmesh {
    fn user_token(user: &str) -> String {
        token_signed(user, SANDBOX_SECRET)
    }
}

impl System for Chatmesh {
    const NAME: &'static str = "chatmesh";

    async fn start(_infra: &Infra, layout: Layout) -> anyhow::Result<Self> {
        let mesh = Mesh::start(MeshOptions {
            chats: 1,
            gateways: layout.nodes,
            ..MeshOptions::default()
        })
        .await?;
        Ok(Self {
            mesh,
            run: uuid::Uuid::new_v4().simple().to_string(),
            owners: std::sync::OnceLock::new(),
        })
    }

    async fn prepare(&self, layout: Layout) -> anyhow::Result<()> {
        let senders: Vec<String> = (0..layout.senders).map(|s| format!("sender-{s}")).collect();
        let node_of: HashMap<String, usize> = (0..self.mesh.gateways.len())
            .map(|i| (format!("gw-{i}"), i))
            .collect();
        let mut owners = Vec::with_capacity(layout.channels);
        for c in 0..layout.channels {
            let id = self.channel_id(c);
            let receivers: Vec<String> = (c..layout.receivers)
                .step_by(layout.channels)
                .map(|i| format!("user-{i}"))
                .collect();
            let members: Vec<&str> = senders
                .iter()
                .chain(&receivers)
                .map(String::as_str)
                .collect();
            create_channel_at(self.mesh.chats[0], &id, ModerationPolicy::Reject, &members).await?;
            let url = format!("http://{}/v1/route/{id}", self.mesh.gateways[0]);
            let node_of = &node_of;
            let owner = wait::until("route", Duration::from_secs(10), || {
                let url = url.clone();
                async move {
                    let v: Value = reqwest::get(&url).await?.json().await?;
                    let node = v["node"].as_str().context("no node")?;
                    node_of
                        .get(node)
                        .copied()
                        .with_context(|| format!("unknown node {node}"))
                }
            })
            .await?;
            owners.push(owner);
        }
        self.owners
            .set(owners)
            .map_err(|_| anyhow::anyhow!("prepared twice"))
    }

    fn owner(&self, channel: usize) -> usize {
        self.owners.get().map_or(0, |o| o[channel])
    }

    fn channel_id(&self, channel: usize) -> String {
        format!("peers-{}-{channel}", self.run)
    }

    fn processes(&self) -> Vec<(String, u32)> {
        self.mesh.pids()
    }

    fn edge_pids(&self) -> Vec<u32> {
        self.mesh
            .pids()
            .into_iter()
            .filter(|(name, _)| name.starts_with("gw-"))
            .map(|(_, pid)| pid)
            .collect()
    }

    async fn open_receiver(&self, channel: usize, index: usize) -> anyhow::Result<Ws> {
        let url = format!(
            "ws://{}/v1/ws?token={}&channel={}",
            self.mesh.gateways[self.owner(channel)],
            Self::user_token(&format!("user-{index}")),
            self.channel_id(channel)
        );
        let (mut ws, _) = crate::system::connect(&url)
            .await
            .with_context(|| format!("receiver {index}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => return Ok(ws),
                Some(Ok(Message::Text(t))) if t.contains("\"error\"") => {
                    anyhow::bail!("receiver {index} refused: {t}")
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("receiver {index} failed to subscribe: {other:?}"),
            }
        }
    }

    async fn open_sender(&self, node: usize, index: usize) -> anyhow::Result<Ws> {
        let url = format!(
            "ws://{}/v1/ws?token={}",
            self.mesh.gateways[node],
            Self::user_token(&format!("sender-{index}"))
        );
        let (ws, _) = crate::system::connect(&url)
            .await
            .with_context(|| format!("sender {index} to node {node}"))?;
        Ok(ws)
    }

    fn publish(&self, _sender: usize, channel: usize, body: &str, request: u64) -> String {
        json!({"type": "send", "request_id": request.to_string(),
            "channel_id": self.channel_id(channel), "body": body})
        .to_string()
    }

    fn classify(&self, frame: &str) -> Incoming {
        // Deliveries are most frames by far: tell them by their prefix
        // before parsing anything.
        if frame.starts_with("{\"type\":\"message\"") {
            return Incoming::Message;
        }
        let Ok(v) = serde_json::from_str::<Value>(frame) else {
            return Incoming::Error(format!("not JSON: {frame}"));
        };
        match v["type"].as_str() {
            Some("message") => Incoming::Message,
            Some("ack") => Incoming::Ack(
                v["channel_id"]
                    .as_str()
                    .zip(v["seq"].as_u64())
                    .map(|(c, s)| (c.to_owned(), s)),
            ),
            Some("error") => Incoming::Error(frame.to_owned()),
            _ => Incoming::Other,
        }
    }

    fn keepalive(&self) -> Option<(Duration, String)> {
        // The browser SDK's ping; a session unheard of for 30 s expires.
        Some((Duration::from_secs(10), json!({"type": "ping"}).to_string()))
    }

    async fn wait_stored(&self, newest: &[(String, u64)]) -> anyhow::Result<bool> {
        chatmesh_bench::wait_stored(
            self.mesh.storage.0,
            newest.iter().cloned(),
            Duration::from_secs(120),
        )
        .await?;
        Ok(true)
    }
}
