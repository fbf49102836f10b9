//! One timed run: S senders, each on its own WebSocket, sending at R/S
//! frames per second without waiting for answers, and a reader per sender
//! matching each `ack` or `error` to its frame by `request_id`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_bench::token;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::mesh::Mesh;
use super::mix::{Frame, Kind, Mixer, Targets};
use super::receivers::Receivers;

/// How long a run waits for its last answers, then its last deliveries.
const DRAIN: Duration = Duration::from_secs(30);
/// Senders ping as often as the SDK does: the gateway ends a session that
/// has not pinged for the session TTL (30 s), and sends do not count.
const PING_EVERY: Duration = Duration::from_secs(10);

/// A run's parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunConfig {
    /// Frames per second, all senders together.
    pub(crate) rate: u64,
    pub(crate) seconds: u64,
    pub(crate) senders: usize,
    /// The share of frames that are changes.
    pub(crate) change_share: f64,
}

/// A frame answered with an `ack`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acked {
    pub(crate) kind: Kind,
    pub(crate) room: usize,
    /// The event's own number.
    pub(crate) seq: u64,
    pub(crate) sent_us: u64,
    pub(crate) ack_us: u64,
}

/// What one run sent and what came back to the senders.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    pub(crate) sent: BTreeMap<Kind, u64>,
    /// Changes due with nothing to name yet, sent as posts.
    pub(crate) fallbacks: u64,
    pub(crate) acked: Vec<Acked>,
    /// Error frames by code.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Frames with no answer when the drain gave up.
    pub(crate) unanswered: u64,
    /// From the first send to the last.
    pub(crate) send_secs: f64,
    /// From the first send until every answer and delivery arrived.
    pub(crate) total_secs: f64,
}

/// A frame sent and not answered yet.
#[derive(Debug)]
struct Pending {
    frame: Frame,
    sent_us: u64,
}

/// One sender's frames in flight and answers, shared by its sending task
/// and its reader.
#[derive(Debug, Default)]
struct Book {
    pending: HashMap<u64, Pending>,
    acked: Vec<Acked>,
    errors: BTreeMap<String, u64>,
}

/// Runs the senders for `config.seconds`, then waits for the answers and
/// the deliveries they imply.
pub(crate) async fn run(
    mesh: &Mesh,
    receivers: &Receivers,
    targets: &Arc<Mutex<Targets>>,
    config: RunConfig,
    clock: Instant,
) -> anyhow::Result<RunLog> {
    receivers.take();
    let delivered_before = receivers.delivered();
    let answered = Arc::new(AtomicU64::new(0));
    let books: Vec<Arc<Mutex<Book>>> = (0..config.senders).map(|_| Arc::default()).collect();
    let rooms = Arc::new(mesh.rooms.clone());
    let mut readers = Vec::new();
    let mut connections = Vec::new();
    for (s, book) in books.iter().enumerate() {
        let url = format!(
            "ws://{}/v1/ws?token={}",
            mesh.gateways[s % mesh.gateways.len()].addr,
            token(&format!("sender-{s}"))
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let (sink, stream) = ws.split();
        readers.push(tokio::spawn(read_answers(
            stream,
            s,
            book.clone(),
            targets.clone(),
            answered.clone(),
            clock,
        )));
        connections.push(sink);
    }

    let send_start = Instant::now();
    let run_for = Duration::from_secs(config.seconds);
    let period = Duration::from_secs_f64(config.senders as f64 / config.rate.max(1) as f64);
    let mut tasks = Vec::new();
    for (s, mut sink) in connections.into_iter().enumerate() {
        let (book, targets, rooms) = (books[s].clone(), targets.clone(), rooms.clone());
        let mut mixer = Mixer::new(s, config.senders, rooms.len(), config.change_share);
        tasks.push(tokio::spawn(async move {
            let mut sent: BTreeMap<Kind, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut pinged = Instant::now();
            let mut request_id = 0u64;
            while send_start.elapsed() < run_for {
                tick.tick().await;
                let frame = mixer.next(&mut lock(&targets), Instant::now());
                request_id += 1;
                let sent_us = clock.elapsed().as_micros() as u64;
                let text = frame.to_json(&rooms, request_id, sent_us);
                lock(&book)
                    .pending
                    .insert(request_id, Pending { frame, sent_us });
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
                *sent.entry(frame.kind).or_default() += 1;
                if pinged.elapsed() >= PING_EVERY {
                    pinged = Instant::now();
                    let ping = json!({"type": "ping", "request_id": "ping"}).to_string();
                    if sink.send(Message::text(ping)).await.is_err() {
                        break;
                    }
                }
            }
            (sink, sent, mixer.fallbacks)
        }));
    }
    let mut log = RunLog::default();
    let mut sinks = Vec::new();
    for task in tasks {
        let (sink, sent, fallbacks) = task.await?;
        for (kind, n) in sent {
            *log.sent.entry(kind).or_default() += n;
        }
        log.fallbacks += fallbacks;
        sinks.push(sink);
    }
    log.send_secs = send_start.elapsed().as_secs_f64();

    // Drain: every answer, then every delivery the acks imply, or give up.
    let total_sent: u64 = log.sent.values().sum();
    let drain = Instant::now();
    while answered.load(Ordering::Relaxed) < total_sent && drain.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected: u64 = books
        .iter()
        .map(|b| {
            lock(b)
                .acked
                .iter()
                .map(|a| mesh.members[a.room])
                .sum::<u64>()
        })
        .sum();
    while receivers.delivered().saturating_sub(delivered_before) < expected
        && drain.elapsed() < DRAIN
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log.total_secs = send_start.elapsed().as_secs_f64();
    for reader in readers {
        reader.abort();
    }
    drop(sinks);
    for book in books {
        let mut book = lock(&book);
        log.unanswered += book.pending.len() as u64;
        log.acked.append(&mut book.acked);
        for (code, n) in std::mem::take(&mut book.errors) {
            *log.errors.entry(code).or_default() += n;
        }
    }
    Ok(log)
}

/// Reads a sender's answers: an `ack` or `error` settles the frame with
/// its `request_id`; an acked post or reaction becomes a target for later
/// changes.
async fn read_answers<S>(
    mut stream: S,
    sender: usize,
    book: Arc<Mutex<Book>>,
    targets: Arc<Mutex<Targets>>,
    answered: Arc<AtomicU64>,
    clock: Instant,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(Message::Text(text))) = stream.next().await {
        let ack_us = clock.elapsed().as_micros() as u64;
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let id = v["request_id"]
            .as_str()
            .and_then(|id| id.parse::<u64>().ok());
        let (is_ack, is_error) = (v["type"] == "ack", v["type"] == "error");
        if !is_ack && !is_error {
            continue;
        }
        let mut book = lock(&book);
        let Some(Pending { frame, sent_us }) = id.and_then(|id| book.pending.remove(&id)) else {
            if is_error {
                *book.errors.entry("unattributed".into()).or_default() += 1;
            }
            continue;
        };
        answered.fetch_add(1, Ordering::Relaxed);
        if is_error {
            let code = v["code"].as_str().unwrap_or("unknown").to_owned();
            *book.errors.entry(code).or_default() += 1;
            continue;
        }
        let Some(seq) = v["seq"].as_u64() else {
            *book.errors.entry("ack without seq".into()).or_default() += 1;
            continue;
        };
        book.acked.push(Acked {
            kind: frame.kind,
            room: frame.room,
            seq,
            sent_us,
            ack_us,
        });
        drop(book);
        match frame.kind {
            Kind::Post => lock(&targets).posted(sender, frame.room, seq, Instant::now()),
            Kind::ReactionAdd => lock(&targets).reacted(sender, frame.room, frame.seq, frame.emoji),
            Kind::Edit | Kind::ReactionRemove => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
