//! Traffic that survives failures, and the audit of what it left behind.
//!
//! [`Sender`]s send with one idempotency key per logical message and retry
//! it, on retryable errors and on lost connections, until it is
//! acknowledged; [`Watcher`]s subscribe to one channel each and follow
//! redirects, `reconnect` frames and dead connections, resubscribing with
//! the last sequence number seen, as a client SDK does. [`audit`] then
//! holds the acknowledged messages against what every watcher received and
//! what the shards store.

mod audit;
mod watch;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::messages::Shards;

pub use audit::{Report, Row, audit, not_received, outstanding, stored};
pub use watch::{Seen, SeenLog, Watcher};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one attempt waits for its reply before the connection is
/// counted as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a logical message is retried before it counts as unacked.
const GIVE_UP: Duration = Duration::from_secs(90);
/// Watchers ping this often, so their sessions stay alive while idle.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(2);

/// A message the mesh acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Its channel.
    pub channel: String,
    /// Its ID.
    pub id: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Its body, unique per logical message.
    pub body: String,
}

/// What senders did, shared by all of them.
#[derive(Debug, Default)]
pub struct Sent {
    acked: Mutex<Vec<Acked>>,
    unacked: Mutex<Vec<(String, String)>>,
    refused: Mutex<Vec<Value>>,
    retries: Mutex<HashMap<String, u64>>,
    slowest: Mutex<Duration>,
}

impl Sent {
    /// Every acknowledged message, in the order the acks arrived.
    pub fn acked(&self) -> Vec<Acked> {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// (channel, body) of every logical message given up on.
    pub fn unacked(&self) -> Vec<(String, String)> {
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Error frames that were not retryable.
    pub fn refused(&self) -> Vec<Value> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Retries by reason: the error code, or `connection`.
    pub fn retries(&self) -> HashMap<String, u64> {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The longest any send waited for its reply (an ack or an error),
    /// over a connection that stayed up.
    pub fn slowest_reply(&self) -> Duration {
        *self.slowest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replied_in(&self, took: Duration) {
        let mut slowest = self.slowest.lock().unwrap_or_else(|p| p.into_inner());
        *slowest = (*slowest).max(took);
    }

    fn retry(&self, reason: &str) {
        *self
            .retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.to_owned())
            .or_default() += 1;
    }
}

pub(crate) async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .context("connect timed out")??;
    Ok(ws)
}

pub(crate) fn ws_url(base: &str, token: &str) -> String {
    format!("{}/v1/ws?token={token}", base.trim_end_matches('/'))
}

/// A client that sends messages and retries each until acknowledged.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Gateway base URLs (`ws://host:port`), tried in turn.
    pub gateways: Vec<String>,
    /// The sender's token.
    pub token: String,
    /// Bodies start with this, unique per sender.
    pub name: String,
}

impl Sender {
    /// Sends `count` messages round-robin over `channels`, one every
    /// `every`, until done or `stop`; records each outcome in `sent`.
    pub async fn run(
        self,
        channels: Vec<String>,
        count: usize,
        every: Duration,
        sent: Arc<Sent>,
        stop: CancellationToken,
    ) {
        let mut conn: Option<Ws> = None;
        let mut gateway = 0_usize;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0..count {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let channel = &channels[i % channels.len()];
            let body = format!("{}-{i}", self.name);
            let started = tokio::time::Instant::now();
            let mut backoff = Duration::from_millis(50);
            loop {
                if started.elapsed() > GIVE_UP || stop.is_cancelled() {
                    sent.unacked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((channel.clone(), body.clone()));
                    break;
                }
                let ws = match &mut conn {
                    Some(ws) => ws,
                    None => {
                        let url =
                            ws_url(&self.gateways[gateway % self.gateways.len()], &self.token);
                        gateway += 1;
                        match connect(&url).await {
                            Ok(ws) => conn.insert(ws),
                            Err(_) => {
                                sent.retry("connection");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(1));
                                continue;
                            }
                        }
                    }
                };
                let request_id = format!("{}-{i}", self.name);
                let frame = json!({
                    "type": "send",
                    "request_id": request_id,
                    "channel_id": channel,
                    "body": body,
                    "idempotency_key": body,
                });
                let sent_at = tokio::time::Instant::now();
                let reply = attempt(ws, &frame, &request_id).await;
                if reply.is_ok() {
                    sent.replied_in(sent_at.elapsed());
                }
                match reply {
                    Ok(reply) if reply["type"] == "ack" => {
                        let id = reply["message_id"].as_str().and_then(|s| s.parse().ok());
                        let seq = reply["seq"].as_u64();
                        if let (Some(id), Some(seq)) = (id, seq) {
                            sent.acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Acked {
                                    channel: channel.clone(),
                                    id,
                                    seq,
                                    body: body.clone(),
                                });
                        }
                        break;
                    }
                    Ok(reply) if reply["retryable"] == true => {
                        sent.retry(reply["code"].as_str().unwrap_or("error"));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    Ok(reply) => {
                        sent.refused
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(reply);
                        break;
                    }
                    Err(_) => {
                        sent.retry("connection");
                        conn = None;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }
}

/// Sends `frame` and waits for the reply carrying `request_id`.
async fn attempt(ws: &mut Ws, frame: &Value, request_id: &str) -> anyhow::Result<Value> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no reply in time")?
            .context("connection ended")??;
        match msg {
            Message::Text(text) => {
                let reply: Value = serde_json::from_str(&text)?;
                if reply["request_id"] == request_id {
                    return Ok(reply);
                }
                if reply["type"] == "reconnect" {
                    anyhow::bail!("asked to reconnect");
                }
            }
            Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// A gateway's development token for `user`.
pub async fn token(gateway: SocketAddr, user: &str) -> anyhow::Result<String> {
    crate::client::dev_token(gateway, user).await
}

/// Steady traffic over a [`crate::mesh::Mesh`]: channels with one watcher
/// each, and senders spreading their messages over all of them.
#[derive(Debug)]
pub struct Load {
    /// The channels.
    pub channels: Vec<String>,
    /// Each watcher's channel and log.
    pub watchers: Vec<(String, SeenLog)>,
    /// What the senders did.
    pub sent: Arc<Sent>,
    stop: CancellationToken,
    senders: tokio::task::JoinSet<()>,
}

/// `n` fresh channel names starting with `prefix`.
pub fn channel_names(prefix: &str, n: usize) -> Vec<String> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..n).map(|i| format!("{prefix}-{run}-{i}")).collect()
}

/// The shape of a [`Load`].
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Sender connections.
    pub senders: usize,
    /// Messages each sender sends.
    pub per_sender: usize,
    /// Time between two sends of one sender.
    pub every: Duration,
}

impl LoadOptions {
    /// `senders` connections sending `per_sender` messages each, one every
    /// `every_ms` milliseconds.
    pub fn steady(senders: usize, per_sender: usize, every_ms: u64) -> Self {
        Self {
            senders,
            per_sender,
            every: Duration::from_millis(every_ms),
        }
    }
}

impl Load {
    /// Creates `channels` (with every sender and the watcher as members)
    /// through the mesh's first chat instance, subscribes a watcher to
    /// each, and starts the senders.
    pub async fn start(
        mesh: &crate::mesh::Mesh,
        channels: Vec<String>,
        options: LoadOptions,
    ) -> anyhow::Result<Self> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let watcher = format!("watcher-{run}");
        let senders: Vec<String> = (0..options.senders)
            .map(|i| format!("sender-{i}-{run}"))
            .collect();
        let mut members: Vec<&str> = vec![&watcher];
        members.extend(senders.iter().map(String::as_str));
        for channel in &channels {
            crate::fixtures::create_channel_at(
                mesh.chats[0],
                channel,
                chatmesh_proto::common::v1::ModerationPolicy::Reject,
                &members,
            )
            .await?;
        }
        let gateways: Vec<String> = (0..mesh.gateways.len())
            .map(|i| mesh.gateway_url(i))
            .collect();
        let stop = CancellationToken::new();
        let watch_token = token(mesh.gateways[0], &watcher).await?;
        let mut watchers = Vec::new();
        for channel in &channels {
            let w = Watcher {
                gateways: gateways.clone(),
                token: watch_token.clone(),
                channel: channel.clone(),
            };
            watchers.push((channel.clone(), w.start(stop.clone()).await?));
        }
        let sent = Arc::new(Sent::default());
        let mut tasks = tokio::task::JoinSet::new();
        for (i, user) in senders.iter().enumerate() {
            // Each sender starts on another gateway.
            let mut own = gateways.clone();
            own.rotate_left(i % gateways.len());
            let sender = Sender {
                gateways: own,
                token: token(mesh.gateways[0], user).await?,
                name: user.clone(),
            };
            let mut mine = channels.clone();
            mine.rotate_left(i % channels.len());
            tasks.spawn(sender.run(
                mine,
                options.per_sender,
                options.every,
                sent.clone(),
                stop.clone(),
            ));
        }
        Ok(Self {
            channels,
            watchers,
            sent,
            stop,
            senders: tasks,
        })
    }

    /// Waits until at least `n` messages are acknowledged.
    pub async fn acked_at_least(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        crate::wait::until("acknowledged messages", timeout, || async {
            let acked = self.sent.acked().len();
            anyhow::ensure!(acked >= n, "{acked} of {n} acked");
            Ok(())
        })
        .await
    }

    /// Waits for the senders to finish, then until every acknowledged
    /// message is stored and every watcher has it (or was told to reload
    /// it), at most `timeout`; stops the watchers and audits.
    pub async fn finish(mut self, shards: &Shards, timeout: Duration) -> anyhow::Result<Report> {
        while self.senders.join_next().await.is_some() {}
        let acked = self.sent.acked();
        let channels = self.channels.clone();
        let stored_ok = crate::wait::until("every acked message stored", timeout, || {
            let (acked, channels) = (&acked, &channels);
            async move {
                let rows = stored(shards, channels).await?;
                let ids: HashSet<i64> = rows.iter().map(|r| r.message_id).collect();
                let missing = acked
                    .iter()
                    .filter(|a| !ids.contains(&(a.id as i64)))
                    .count();
                anyhow::ensure!(missing == 0, "{missing} of {} not stored yet", acked.len());
                Ok(())
            }
        })
        .await;
        let delivered_ok = crate::wait::until("every watcher caught up", timeout, || {
            let (acked, watchers) = (&acked, &self.watchers);
            async move {
                let left = outstanding(acked, watchers);
                anyhow::ensure!(left == 0, "{left} deliveries outstanding");
                Ok(())
            }
        })
        .await;
        self.stop.cancel();
        if let Err(e) = stored_ok.and(delivered_ok) {
            eprintln!("{e}");
        }
        let rows = stored(shards, &self.channels).await?;
        Ok(audit(&acked, &self.sent.unacked(), &rows, &self.watchers))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
