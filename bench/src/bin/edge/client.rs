//! The benchmark's WebSocket clients: a fleet of users, each subscribed to
//! one channel on the single gateway node, pinging as the SDK does and
//! tracking the last `seq` it holds. On the bench's word each reconnects
//! and resumes from that `seq`, retrying what the protocol calls
//! retryable, so a restarted gateway meets the whole fleet at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{Failure, Ws, backoff, connect_subscribed};

/// Connections opened side by side while the fleet grows: enough to keep
/// the gateway busy, few enough that none waits in its accept backlog.
const CONNECT_CONCURRENCY: usize = 64;
/// How often a client pings: the SDK's period, a third of the session TTL
/// (30 s), so sessions outlive a connection phase longer than the TTL.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Attempts while the fleet grows; a quiet gateway should need one.
const GROW_ATTEMPTS: u32 = 5;
/// Marks a client with no live subscription.
const UNSUBSCRIBED: u64 = u64::MAX;

/// One kind of failure a client met, with how often.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    /// Whether the protocol says the same request may succeed later.
    pub(crate) retryable: bool,
    /// The first occurrence's text, for failures worth reading.
    pub(crate) example: String,
}

/// What the bench reads of one client while its task runs.
#[derive(Debug)]
pub(crate) struct ClientState {
    /// Index into [`Shared::channels`].
    pub(crate) channel: usize,
    /// The highest `seq` received in the channel.
    pub(crate) last_seq: AtomicU64,
    /// The reconnect generation the client is subscribed in, or
    /// [`UNSUBSCRIBED`].
    subscribed_gen: AtomicU64,
    /// The generation in which it last held its channel's target.
    caught_up_gen: AtomicU64,
    /// Ranges of `seq` skipped on arrival; real loss only when a send was
    /// acked inside one (numbers of failed sends are never delivered).
    pub(crate) gaps: Mutex<Vec<(u64, u64)>>,
    /// Ranges a `reload_required` frame named: not replayed, but the
    /// client was told to reload them from history.
    pub(crate) reloads: Mutex<Vec<(u64, u64)>>,
    /// Messages at or below a `seq` already held: duplicates or reordering.
    pub(crate) repeats: AtomicU64,
    /// Send-to-receive times of bodies that carry their send time, in µs.
    pub(crate) latencies_us: Mutex<Vec<u64>>,
}

/// Everything the fleet's tasks share with the bench.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) clock: Instant,
    gateway: SocketAddr,
    pub(crate) channels: Vec<String>,
    /// Per channel, the `seq` a client must hold to count as caught up in
    /// the current generation.
    targets: Vec<AtomicU64>,
    generation: AtomicU64,
    subscribed: AtomicUsize,
    caught_up: AtomicUsize,
    /// When each client caught up, µs on [`Shared::clock`].
    caught_up_at_us: Mutex<Vec<u64>>,
    /// Messages received that carry a send time, and the last one's
    /// arrival (µs on the clock).
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    /// Connections that ended, whatever the cause.
    disconnects: AtomicU64,
    /// The first few messages that came at or below a `seq` held, as
    /// (channel, seq, held), to say which.
    repeat_examples: Mutex<Vec<(usize, u64, u64)>>,
    errors: Mutex<BTreeMap<String, Tally>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    fn record(&self, failure: &Failure) {
        let mut errors = lock(&self.errors);
        let tally = errors.entry(failure.kind.clone()).or_insert_with(|| Tally {
            count: 0,
            retryable: failure.retryable,
            example: failure.detail.clone(),
        });
        tally.count += 1;
    }

    /// Counts `state` caught up once per generation, when it is subscribed
    /// in the current one and holds its channel's target.
    fn check_caught_up(&self, state: &ClientState) {
        let generation = self.generation.load(Ordering::Acquire);
        if state.subscribed_gen.load(Ordering::Acquire) != generation
            || state.last_seq.load(Ordering::Acquire)
                < self.targets[state.channel].load(Ordering::Acquire)
            || state.caught_up_gen.swap(generation, Ordering::AcqRel) == generation
        {
            return;
        }
        lock(&self.caught_up_at_us).push(self.now_us());
        self.caught_up.fetch_add(1, Ordering::AcqRel);
    }
}

struct Client {
    state: Arc<ClientState>,
    task: JoinHandle<()>,
}

/// Users `{prefix}{i}`, client `i` subscribed to channel `i mod M`, with a
/// task each; the tasks end when the fleet shrinks or is dropped.
pub(crate) struct Fleet {
    shared: Arc<Shared>,
    user_prefix: String,
    clients: Vec<Client>,
    go: watch::Sender<u64>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    pub(crate) fn new(gateway: SocketAddr, channels: Vec<String>, user_prefix: &str) -> Self {
        let targets = channels.iter().map(|_| AtomicU64::new(u64::MAX)).collect();
        Self {
            shared: Arc::new(Shared {
                clock: Instant::now(),
                gateway,
                channels,
                targets,
                generation: AtomicU64::new(0),
                subscribed: AtomicUsize::new(0),
                caught_up: AtomicUsize::new(0),
                caught_up_at_us: Mutex::default(),
                delivered: AtomicU64::new(0),
                last_delivery_us: AtomicU64::new(0),
                disconnects: AtomicU64::new(0),
                repeat_examples: Mutex::default(),
                errors: Mutex::default(),
            }),
            user_prefix: user_prefix.to_owned(),
            clients: Vec::new(),
            go: watch::Sender::new(0),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn states(&self) -> impl Iterator<Item = &ClientState> {
        self.clients.iter().map(|c| &*c.state)
    }

    /// Connects clients until there are `n`, `CONNECT_CONCURRENCY` at a
    /// time, each counted once the gateway confirmed its subscription.
    pub(crate) async fn grow(&mut self, n: usize) -> anyhow::Result<()> {
        let shared = &self.shared;
        let prefix = &self.user_prefix;
        let mut connected = futures::stream::iter(self.clients.len()..n)
            .map(|i| async move {
                let user = format!("{prefix}{i}");
                let channel = i % shared.channels.len();
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let channel_id = &shared.channels[channel];
                    match connect_subscribed(shared.gateway, &user, channel_id, None).await {
                        Ok((ws, seq)) => return Ok((user, channel, ws, seq)),
                        Err(f) => {
                            shared.record(&f);
                            if !f.retryable || attempt >= GROW_ATTEMPTS {
                                anyhow::bail!(
                                    "client {user} could not subscribe after {attempt} attempts: {} ({})",
                                    f.kind,
                                    f.detail
                                );
                            }
                        }
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            })
            .buffer_unordered(CONNECT_CONCURRENCY);
        let mut spawned = Vec::new();
        while let Some(result) = connected.next().await {
            let (user, channel, ws, seq) = result?;
            let state = Arc::new(ClientState {
                channel,
                last_seq: AtomicU64::new(seq),
                subscribed_gen: AtomicU64::new(*self.go.borrow()),
                caught_up_gen: AtomicU64::new(UNSUBSCRIBED),
                gaps: Mutex::default(),
                reloads: Mutex::default(),
                repeats: AtomicU64::new(0),
                latencies_us: Mutex::default(),
            });
            shared.subscribed.fetch_add(1, Ordering::AcqRel);
            let task = tokio::spawn(run(
                shared.clone(),
                state.clone(),
                user,
                ws,
                self.go.subscribe(),
            ));
            spawned.push(Client { state, task });
        }
        drop(connected);
        self.clients.append(&mut spawned);
        Ok(())
    }

    /// Closes every client beyond the first `n`.
    pub(crate) fn truncate(&mut self, n: usize) {
        for client in self.clients.drain(n.min(self.clients.len())..) {
            client.task.abort();
            if client.state.subscribed_gen.load(Ordering::Acquire) != UNSUBSCRIBED {
                self.shared.subscribed.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Clients subscribed right now.
    pub(crate) fn subscribed(&self) -> usize {
        self.shared.subscribed.load(Ordering::Acquire)
    }

    /// Connections that ended so far.
    pub(crate) fn disconnects(&self) -> u64 {
        self.shared.disconnects.load(Ordering::Acquire)
    }

    /// Clients caught up in the current generation.
    pub(crate) fn caught_up(&self) -> usize {
        self.shared.caught_up.load(Ordering::Acquire)
    }

    /// When each client caught up in the current generation, µs on the
    /// fleet's clock.
    pub(crate) fn caught_up_at_us(&self) -> Vec<u64> {
        lock(&self.shared.caught_up_at_us).clone()
    }

    /// Messages received that carried their send time, and when the last
    /// of them arrived (µs on the fleet's clock).
    pub(crate) fn delivered(&self) -> (u64, u64) {
        (
            self.shared.delivered.load(Ordering::Acquire),
            self.shared.last_delivery_us.load(Ordering::Acquire),
        )
    }

    /// The first few repeated messages: (channel, seq, seq held then).
    pub(crate) fn repeat_examples(&self) -> Vec<(usize, u64, u64)> {
        lock(&self.shared.repeat_examples).clone()
    }

    /// Failures met so far, by kind; the tally starts again.
    pub(crate) fn take_errors(&self) -> BTreeMap<String, Tally> {
        std::mem::take(&mut *lock(&self.shared.errors))
    }

    /// Sets each channel's target and lets every disconnected client
    /// reconnect and resume, all at once.
    pub(crate) fn release(&self, targets: &[u64]) {
        for (slot, &target) in self.shared.targets.iter().zip(targets) {
            slot.store(target, Ordering::Release);
        }
        self.shared.caught_up.store(0, Ordering::Release);
        lock(&self.shared.caught_up_at_us).clear();
        let generation = self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.go.send_replace(generation);
    }

    /// Re-counts every client against new targets in the current
    /// generation: those already holding them count at once, the rest as
    /// their messages arrive.
    pub(crate) fn retarget(&self, targets: &[u64]) {
        for (slot, &target) in self.shared.targets.iter().zip(targets) {
            slot.store(target, Ordering::Release);
        }
        self.shared.caught_up.store(0, Ordering::Release);
        lock(&self.shared.caught_up_at_us).clear();
        for client in &self.clients {
            client
                .state
                .caught_up_gen
                .store(UNSUBSCRIBED, Ordering::Release);
            self.shared.check_caught_up(&client.state);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for client in &self.clients {
            client.task.abort();
        }
    }
}

/// One client's life: serve its connection until it ends, then wait for
/// the bench's word and resume where it left off.
async fn run(
    shared: Arc<Shared>,
    state: Arc<ClientState>,
    user: String,
    mut ws: Ws,
    mut go: watch::Receiver<u64>,
) {
    let mut generation = *go.borrow_and_update();
    loop {
        serve(&shared, &state, &mut ws).await;
        state.subscribed_gen.store(UNSUBSCRIBED, Ordering::Release);
        shared.subscribed.fetch_sub(1, Ordering::AcqRel);
        shared.disconnects.fetch_add(1, Ordering::AcqRel);
        match go.wait_for(|g| *g > generation).await {
            Ok(next) => generation = *next,
            Err(_) => return,
        }
        let Some(resumed) = resume(&shared, &state, &user).await else {
            return;
        };
        ws = resumed;
        state.subscribed_gen.store(generation, Ordering::Release);
        shared.subscribed.fetch_add(1, Ordering::AcqRel);
        shared.check_caught_up(&state);
    }
}

/// Reconnects and resubscribes with the last `seq` held, retrying every
/// retryable failure with backoff; gives up on any other.
async fn resume(shared: &Shared, state: &ClientState, user: &str) -> Option<Ws> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = state.last_seq.load(Ordering::Acquire);
        let channel_id = &shared.channels[state.channel];
        match connect_subscribed(shared.gateway, user, channel_id, Some(last)).await {
            Ok((ws, _)) => return Some(ws),
            Err(f) => {
                shared.record(&f);
                if !f.retryable {
                    return None;
                }
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// Reads the connection until it ends, pinging every [`PING_EVERY`].
async fn serve(shared: &Shared, state: &ClientState, ws: &mut Ws) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => on_text(shared, state, &text),
                Some(Ok(Message::Close(close))) => {
                    // A close the server chose (slow consumer, session
                    // expired) is a finding; a crash sends none.
                    let code = close.as_ref().map(|c| u16::from(c.code));
                    shared.record(&Failure::new(
                        format!("closed by the gateway ({code:?})"),
                        false,
                        format!("{close:?}"),
                    ));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = ping.tick() => {
                let frame = json!({"type": "ping", "request_id": "ping"}).to_string();
                if ws.send(Message::text(frame)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Handles one frame after the subscription.
fn on_text(shared: &Shared, state: &ClientState, text: &str) {
    // Presence events and pongs are most of what a connection burst
    // sends; skipping them unparsed leaves the cores to the gateway.
    if text.starts_with(r#"{"type":"presence""#) || text.starts_with(r#"{"type":"pong""#) {
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        shared.record(&Failure::new("unreadable frame", false, text));
        return;
    };
    match v["type"].as_str() {
        Some("message") => {
            let Some(seq) = v["seq"].as_u64() else {
                shared.record(&Failure::new("message without seq", false, text));
                return;
            };
            if v["channel_id"].as_str() != Some(&shared.channels[state.channel]) {
                shared.record(&Failure::new("message of another channel", false, text));
                return;
            }
            hold(shared, state, seq);
            if let Some(sent_us) = v["body"]
                .as_str()
                .and_then(|b| b.strip_prefix("t="))
                .and_then(|t| t.parse::<u64>().ok())
            {
                let now = shared.now_us();
                lock(&state.latencies_us).push(now.saturating_sub(sent_us));
                shared.delivered.fetch_add(1, Ordering::AcqRel);
                shared.last_delivery_us.fetch_max(now, Ordering::AcqRel);
            }
            shared.check_caught_up(state);
        }
        Some("reload_required") => {
            // The gateway gave up filling a gap: the client would reload
            // that range from history, so it counts as held, but as a
            // finding, not a retryable error.
            shared.record(&Failure::new("reload_required", false, text));
            let (from, to) = (
                v["from_seq"].as_u64().unwrap_or(0),
                v["to_seq"].as_u64().unwrap_or(0),
            );
            lock(&state.reloads).push((from, to));
            if from <= state.last_seq.load(Ordering::Acquire) + 1 {
                state.last_seq.fetch_max(to, Ordering::AcqRel);
            } else {
                hold(shared, state, to);
            }
            shared.check_caught_up(state);
        }
        Some("error") => {
            let code = v["code"].as_str().unwrap_or("unknown");
            shared.record(&Failure::new(
                format!("error frame {code}"),
                v["retryable"].as_bool().unwrap_or(false),
                text,
            ));
        }
        Some("reconnect" | "redirect") => {
            shared.record(&Failure::new(
                format!("{} frame", v["type"].as_str().unwrap_or_default()),
                true,
                text,
            ));
        }
        _ => {}
    }
}

/// Moves the client's position to `seq`, noting a skipped range or a
/// number that came again.
fn hold(shared: &Shared, state: &ClientState, seq: u64) {
    let last = state.last_seq.load(Ordering::Acquire);
    if seq <= last {
        state.repeats.fetch_add(1, Ordering::AcqRel);
        let mut examples = lock(&shared.repeat_examples);
        if examples.len() < 5 {
            examples.push((state.channel, seq, last));
        }
        return;
    }
    if seq > last + 1 {
        lock(&state.gaps).push((last + 1, seq - 1));
    }
    state.last_seq.store(seq, Ordering::Release);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Clients subscribed before `deadline`, or an error naming how many
/// were missing.
pub(crate) async fn wait_subscribed(
    fleet: &Fleet,
    want: usize,
    deadline: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while fleet.subscribed() != want {
        anyhow::ensure!(
            start.elapsed() < deadline,
            "{} of {want} clients subscribed after {deadline:?}",
            fleet.subscribed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A readable summary of failures: retryable ones on one line, every
/// other with its first occurrence.
pub(crate) fn print_errors(label: &str, errors: &BTreeMap<String, Tally>) {
    let (retryable, other): (Vec<_>, Vec<_>) = errors.iter().partition(|(_, t)| t.retryable);
    let list = |v: &[(&String, &Tally)]| {
        v.iter()
            .map(|(k, t)| format!("{k} x{}", t.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if errors.is_empty() {
        println!("  {label}: no errors");
        return;
    }
    if !retryable.is_empty() {
        println!("  {label}, retryable: {}", list(&retryable));
    }
    if !other.is_empty() {
        println!("  {label}, NOT retryable: {}", list(&other));
        for (kind, tally) in other {
            println!("    {kind}: first seen as {}", tally.example);
        }
    }
}

/// Grows `fleet` to `n` clients; answers how long that took.
pub(crate) async fn grow_to(fleet: &mut Fleet, n: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    fleet
        .grow(n)
        .await
        .with_context(|| format!("connecting {n} clients"))?;
    Ok(start.elapsed())
}
