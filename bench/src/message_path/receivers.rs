//! The benchmark's WebSocket clients: each subscribed to one channel on the
//! channel's owner node, recording when every event arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::token;
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_integration_tests::wait;
use chatmesh_proto::presence::v1 as presence;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::mesh::Mesh;

/// One event delivered to one client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Delivery {
    pub(crate) room: usize,
    pub(crate) seq: u64,
    /// Microseconds since the benchmark's clock started.
    pub(crate) at_us: u64,
}

/// The connected clients and their reader and pinger tasks, which end
/// when this is dropped.
#[derive(Debug)]
pub(crate) struct Receivers {
    /// Per client, what it received since the last [`Receivers::take`].
    /// One lock per client, so readers never contend with each other.
    logs: Vec<Arc<Mutex<Vec<Delivery>>>>,
    delivered: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Receivers {
    /// Connects `clients` clients, client i to channel i mod M, each
    /// counted once the gateway confirmed its subscription.
    pub(crate) async fn connect(
        mesh: &Mesh,
        clients: usize,
        clock: Instant,
    ) -> anyhow::Result<Self> {
        let mut this = Self {
            logs: Vec::with_capacity(clients),
            delivered: Arc::default(),
            tasks: Vec::with_capacity(2 * clients),
        };
        for i in 0..clients {
            let room = i % mesh.rooms.len();
            let url = format!(
                "ws://{}/v1/ws?token={}&channel={}",
                mesh.owner[room],
                token(&format!("user-{i}")),
                mesh.rooms[room]
            );
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .with_context(|| format!("client {i}"))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
                    Some(Ok(_)) => {}
                    other => anyhow::bail!("client {i} failed to subscribe: {other:?}"),
                }
            }
            let (sink, stream) = ws.split();
            let log = Arc::<Mutex<Vec<Delivery>>>::default();
            this.tasks.push(tokio::spawn(ping(sink)));
            this.tasks.push(tokio::spawn(read(
                stream,
                room,
                log.clone(),
                this.delivered.clone(),
                clock,
            )));
            this.logs.push(log);
        }
        Ok(this)
    }

    /// Events received so far, by every client.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Everything received since the last call.
    pub(crate) fn take(&self) -> Vec<Delivery> {
        let mut all = Vec::new();
        for log in &self.logs {
            all.append(&mut log.lock().unwrap_or_else(|p| p.into_inner()));
        }
        all
    }

    /// Waits until presence shows every client online in its channel, so
    /// the connection burst has settled (every join processed and fanned
    /// out) before anything is timed.
    pub(crate) async fn wait_online(&self, mesh: &Mesh, clients: usize) -> anyhow::Result<()> {
        let client = presence::presence_service_client::PresenceServiceClient::new(channel(
            mesh.sandbox.presence.grpc,
        ));
        for (room, id) in mesh.rooms.iter().enumerate() {
            let expected = (0..clients)
                .filter(|i| i % mesh.rooms.len() == room)
                .count();
            wait::until("joins processed", Duration::from_secs(60), || {
                let (mut client, id) = (client.clone(), id.clone());
                async move {
                    let online = client
                        .list_online(presence::ListOnlineRequest { channel_id: id })
                        .await?
                        .into_inner()
                        .user_ids
                        .len();
                    anyhow::ensure!(online >= expected, "{online} of {expected} online");
                    Ok::<_, anyhow::Error>(())
                }
            })
            .await?;
        }
        Ok(())
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Pings every 10 s as the browser SDK does, so sessions connected early in
/// a long connection phase outlive the session TTL (30 s).
async fn ping<S>(mut sink: S)
where
    S: futures::Sink<Message> + Unpin,
{
    let mut every = tokio::time::interval(Duration::from_secs(10));
    every.tick().await;
    loop {
        every.tick().await;
        let ping = json!({"type": "ping", "request_id": "bench"}).to_string();
        if sink.send(Message::text(ping)).await.is_err() {
            break;
        }
    }
}

async fn read<S>(
    mut stream: S,
    room: usize,
    log: Arc<Mutex<Vec<Delivery>>>,
    delivered: Arc<AtomicU64>,
    clock: Instant,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let at_us = clock.elapsed().as_micros() as u64;
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if v["type"] == "message"
            && let Some(seq) = v["seq"].as_u64()
        {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Delivery { room, seq, at_us });
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
