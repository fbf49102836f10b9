//! Traffic that survives failures, and the audit of what it left behind.
//!
//! [`Sender`]s send with one idempotency key per logical message and retry
//! it, on retryable errors and on lost connections, until it is
//! acknowledged; [`Watcher`]s subscribe to one channel each and follow
//! redirects, `reconnect` frames and dead connections, resubscribing with
//! the last sequence number seen, as a client SDK does. [`audit`] then
//! holds the acknowledged messages against what every watcher received and
//! what the shards store.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::messages::Shards;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one attempt waits for its reply before the connection is
/// counted as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a logical message is retried before it counts as unacked.
const GIVE_UP: Duration = Duration::from_secs(90);
/// Watchers ping this often, so their sessions stay alive while idle.
const PING_EVERY: Duration = Duration::from_secs(2);

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

    fn retry(&self, reason: &str) {
        *self
            .retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.to_owned())
            .or_default() += 1;
    }
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .context("connect timed out")??;
    Ok(ws)
}

fn ws_url(base: &str, token: &str) -> String {
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
                match attempt(ws, &frame, &request_id).await {
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

/// What a watcher saw in its channel, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The first subscription's latest number: messages after it are the
    /// watcher's to receive.
    Start(u64),
    /// A message.
    Message {
        /// Its ID.
        id: u64,
        /// Its sequence number.
        seq: u64,
    },
    /// The numbers `from..=to` must be reloaded.
    Reload {
        /// First number.
        from: u64,
        /// Last number.
        to: u64,
    },
    /// The connection was replaced.
    Reconnected,
}

/// A client subscribed to one channel that never gives up on it.
#[derive(Debug, Clone)]
pub struct Watcher {
    /// Gateway base URLs (`ws://host:port`), tried in turn.
    pub gateways: Vec<String>,
    /// The watcher's token.
    pub token: String,
    /// The channel watched.
    pub channel: String,
}

/// The frames of one watcher, shared with the test while it runs.
pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

impl Watcher {
    /// Subscribes and records what arrives in `seen` until `stop`.
    /// Returns once the first subscription is confirmed.
    pub async fn start(self, stop: CancellationToken) -> anyhow::Result<SeenLog> {
        let seen: SeenLog = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(self.run(seen.clone(), stop, ready_tx));
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("watcher never subscribed")?
            .context("watcher stopped before subscribing")?;
        Ok(seen)
    }

    async fn run(
        self,
        seen: SeenLog,
        stop: CancellationToken,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut last_seq: Option<u64> = None;
        let mut next_url: Option<String> = None;
        let mut gateway = 0_usize;
        let mut first = true;
        while !stop.is_cancelled() {
            let base = next_url.take().unwrap_or_else(|| {
                gateway += 1;
                self.gateways[(gateway - 1) % self.gateways.len()].clone()
            });
            let mut ws = match connect(&ws_url(&base, &self.token)).await {
                Ok(ws) => ws,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if !first {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Seen::Reconnected);
            }
            first = false;
            let mut subscribe =
                json!({"type": "subscribe", "request_id": "sub", "channel_id": self.channel});
            if let Some(last) = last_seq {
                subscribe["last_seq"] = json!(last);
            }
            if ws
                .send(Message::Text(subscribe.to_string().into()))
                .await
                .is_err()
            {
                continue;
            }
            let mut ping = tokio::time::interval(PING_EVERY);
            loop {
                let msg = tokio::select! {
                    msg = ws.next() => msg,
                    _ = ping.tick() => {
                        let frame = json!({"type": "ping"}).to_string();
                        if ws.send(Message::Text(frame.into())).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    () = stop.cancelled() => return,
                };
                let Some(Ok(Message::Text(text))) = msg else {
                    match msg {
                        Some(Ok(_)) => continue,
                        _ => break,
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let mut log = seen.lock().unwrap_or_else(|p| p.into_inner());
                match frame["type"].as_str().unwrap_or_default() {
                    "subscribed" => {
                        if last_seq.is_none() {
                            let start = frame["seq"].as_u64().unwrap_or(0);
                            log.push(Seen::Start(start));
                            last_seq = Some(start);
                        }
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    "message" if frame["channel_id"] == self.channel => {
                        let id = frame["message_id"].as_str().and_then(|s| s.parse().ok());
                        if let (Some(id), Some(seq)) = (id, frame["seq"].as_u64()) {
                            log.push(Seen::Message { id, seq });
                            last_seq = Some(seq);
                        }
                    }
                    "reload_required" if frame["channel_id"] == self.channel => {
                        let (from, to) = (frame["from_seq"].as_u64(), frame["to_seq"].as_u64());
                        if let (Some(from), Some(to)) = (from, to) {
                            log.push(Seen::Reload { from, to });
                            last_seq = Some(to.max(last_seq.unwrap_or(0)));
                        }
                    }
                    "redirect" => {
                        next_url = frame["url"].as_str().map(str::to_owned);
                        break;
                    }
                    "reconnect" => {
                        next_url = frame["url"].as_str().map(str::to_owned);
                        break;
                    }
                    "error" if frame["request_id"] == "sub" => {
                        drop(log);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One stored row.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Row {
    /// Channel ID.
    #[diesel(sql_type = Text)]
    pub channel_id: String,
    /// Message ID.
    #[diesel(sql_type = BigInt)]
    pub message_id: i64,
    /// Sequence number.
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    /// Body.
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// Every stored row of `channels`, from every shard.
pub async fn stored(shards: &Shards, channels: &[String]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for shard in shards.map().shards() {
        let mut conn = shard.pool.get().await?;
        let found: Vec<Row> = diesel::sql_query(
            "SELECT channel_id, message_id, seq, body FROM messages WHERE channel_id = ANY($1)",
        )
        .bind::<Array<Text>, _>(channels)
        .load(&mut *conn)
        .await?;
        rows.extend(found);
    }
    Ok(rows)
}

/// What the audit found. Every list is empty when nothing was lost,
/// duplicated or silently skipped.
#[derive(Debug, Default)]
pub struct Report {
    /// Acknowledged messages.
    pub acked: usize,
    /// Stored rows.
    pub stored: usize,
    /// Messages delivered, summed over watchers.
    pub delivered: usize,
    /// `reload_required` frames, summed over watchers.
    pub reloads: usize,
    /// Acknowledged messages with no stored row.
    pub not_stored: Vec<Acked>,
    /// Message IDs stored more than once.
    pub stored_twice: Vec<i64>,
    /// Bodies (logical messages) stored under more than one ID.
    pub body_stored_twice: Vec<String>,
    /// (channel, seq) carried by more than one stored message.
    pub seq_reused: Vec<(String, i64)>,
    /// Stored rows no ack accounts for, among sends that were acked or
    /// given up on (a given-up send may be stored at most once).
    pub stored_unacked: usize,
    /// (watcher, message) an acknowledged message the watcher should have
    /// received and neither received nor was told to reload.
    pub missed: Vec<(usize, Acked)>,
    /// (watcher, message ID) received more than once.
    pub delivered_twice: Vec<(usize, u64)>,
    /// (watcher, seq) received after a higher number.
    pub out_of_order: Vec<(usize, u64)>,
}

impl Report {
    /// True when nothing was lost, duplicated, reordered or skipped.
    pub fn is_clean(&self) -> bool {
        self.not_stored.is_empty()
            && self.stored_twice.is_empty()
            && self.body_stored_twice.is_empty()
            && self.seq_reused.is_empty()
            && self.missed.is_empty()
            && self.delivered_twice.is_empty()
            && self.out_of_order.is_empty()
    }

    /// One line of figures.
    pub fn summary(&self) -> String {
        format!(
            "acked {}, stored {}, delivered {}, reloads {}, missing {}, not stored {}, stored twice {}, logical duplicates {}, seq reused {}, delivered twice {}, out of order {}",
            self.acked,
            self.stored,
            self.delivered,
            self.reloads,
            self.missed.len(),
            self.not_stored.len(),
            self.stored_twice.len(),
            self.body_stored_twice.len(),
            self.seq_reused.len(),
            self.delivered_twice.len(),
            self.out_of_order.len()
        )
    }
}

/// The IDs of the messages in `seen`.
fn received(seen: &[Seen]) -> HashSet<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// Which acknowledged messages of `channel` the watcher `seen` should have
/// and has not: neither received nor inside a range it was told to reload.
fn missing<'a>(seen: &[Seen], acked: impl Iterator<Item = &'a Acked>) -> Vec<&'a Acked> {
    let start = seen.iter().find_map(|s| match s {
        Seen::Start(start) => Some(*start),
        _ => None,
    });
    let Some(start) = start else {
        return Vec::new();
    };
    let received = received(seen);
    let reloads: Vec<(u64, u64)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Reload { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    acked
        .filter(|a| a.seq > start)
        .filter(|a| !received.contains(&a.id))
        .filter(|a| !reloads.iter().any(|&(f, t)| (f..=t).contains(&a.seq)))
        .collect()
}

/// (watcher, message) for each of `acked` that the watcher of its channel
/// did not receive as a message, reload ranges notwithstanding.
pub fn not_received(acked: &[Acked], watchers: &[(String, SeenLog)]) -> Vec<(usize, Acked)> {
    let mut out = Vec::new();
    for (w, (channel, seen)) in watchers.iter().enumerate() {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let received = received(&seen);
        out.extend(
            acked
                .iter()
                .filter(|a| &a.channel == channel && !received.contains(&a.id))
                .map(|a| (w, a.clone())),
        );
    }
    out
}

/// How many acknowledged messages the watchers still wait for.
pub fn outstanding(acked: &[Acked], watchers: &[(String, SeenLog)]) -> usize {
    watchers
        .iter()
        .map(|(channel, seen)| {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            missing(&seen, acked.iter().filter(|a| &a.channel == channel)).len()
        })
        .sum()
}

/// Holds the acknowledged messages against the stored rows and what each
/// watcher (its channel and log) saw.
pub fn audit(
    acked: &[Acked],
    unacked: &[(String, String)],
    rows: &[Row],
    watchers: &[(String, SeenLog)],
) -> Report {
    let mut report = Report {
        acked: acked.len(),
        stored: rows.len(),
        ..Report::default()
    };
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    let mut by_body: HashMap<&str, HashSet<i64>> = HashMap::new();
    let mut by_seq: HashMap<(&str, i64), HashSet<i64>> = HashMap::new();
    for row in rows {
        *by_id.entry(row.message_id).or_default() += 1;
        by_body.entry(&row.body).or_default().insert(row.message_id);
        by_seq
            .entry((&row.channel_id, row.seq))
            .or_default()
            .insert(row.message_id);
    }
    report.stored_twice = by_id
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    report.body_stored_twice = by_body
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(b, _)| (*b).to_owned())
        .collect();
    report.seq_reused = by_seq
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((c, s), _)| ((*c).to_owned(), *s))
        .collect();
    report.not_stored = acked
        .iter()
        .filter(|a| !by_id.contains_key(&(a.id as i64)))
        .cloned()
        .collect();
    let accounted: HashSet<&str> = acked
        .iter()
        .map(|a| a.body.as_str())
        .chain(unacked.iter().map(|(_, b)| b.as_str()))
        .collect();
    let acked_ids: HashSet<i64> = acked.iter().map(|a| a.id as i64).collect();
    report.stored_unacked = rows
        .iter()
        .filter(|r| !acked_ids.contains(&r.message_id) && accounted.contains(r.body.as_str()))
        .count();
    for (w, (channel, seen)) in watchers.iter().enumerate() {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut ids = HashSet::new();
        let mut highest = 0;
        for s in &seen {
            match s {
                Seen::Message { id, seq } => {
                    report.delivered += 1;
                    if !ids.insert(*id) {
                        report.delivered_twice.push((w, *id));
                    }
                    if *seq <= highest {
                        report.out_of_order.push((w, *seq));
                    }
                    highest = highest.max(*seq);
                }
                Seen::Reload { to, .. } => {
                    report.reloads += 1;
                    highest = highest.max(*to);
                }
                Seen::Start(start) => highest = highest.max(*start),
                Seen::Reconnected => {}
            }
        }
        for a in missing(&seen, acked.iter().filter(|a| &a.channel == channel)) {
            report.missed.push((w, a.clone()));
        }
    }
    report
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
