//! Measurement 3: a reconnect storm. The gateway dies (SIGKILL, as a
//! crashed node does) under a fleet of subscribed clients while a sender
//! keeps sending into their channels straight through chat; once it is
//! ready again every client reconnects at the same moment and resumes
//! from the last `seq` it holds, and the gateway must fill each gap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_bench::{cpu_time, load_average, percentile};
use chatmesh_integration_tests::mesh::Mesh;
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use tokio::sync::watch;

use crate::client::{Fleet, print_errors, wait_subscribed};
use crate::cpu::{Machine, Sampler};
use crate::setup;

/// How long every client may take to come back before the bench reports
/// the storm as failed.
const STORM_DEADLINE: Duration = Duration::from_secs(60);
/// How long clients may take to notice the crash, and the sender to get
/// its outage messages acked.
const OUTAGE_DEADLINE: Duration = Duration::from_secs(30);
/// Senders working side by side, each on its share of the channels.
const SEND_WORKERS: usize = 8;

/// The storm's parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StormConfig {
    /// Messages per second into all channels together, from the crash
    /// until the clients are back.
    pub(crate) rate: u64,
    /// Messages each channel gets during the outage, at least, before the
    /// gateway starts again.
    pub(crate) missed: u64,
}

/// What the sender got acked, per channel.
#[derive(Debug)]
struct Book {
    acked: Vec<Mutex<Vec<u64>>>,
    max: Vec<AtomicU64>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Book {
    fn new(channels: usize, start: &[u64]) -> Self {
        Self {
            acked: (0..channels).map(|_| Mutex::default()).collect(),
            max: start.iter().map(|&s| AtomicU64::new(s)).collect(),
            errors: Mutex::default(),
        }
    }

    fn acked_count(&self, channel: usize) -> u64 {
        lock(&self.acked[channel]).len() as u64
    }

    fn targets(&self) -> Vec<u64> {
        self.max.iter().map(|m| m.load(Ordering::Acquire)).collect()
    }

    fn total(&self) -> u64 {
        (0..self.acked.len()).map(|c| self.acked_count(c)).sum()
    }
}

pub(crate) async fn run(mesh: &mut Mesh, fleet: &Fleet, config: StormConfig) -> anyhow::Result<()> {
    let n = fleet.len();
    let channels = Arc::new(fleet.shared().channels.clone());
    println!();
    println!(
        "3. reconnect storm: {n} clients over {} channels, gateway killed (SIGKILL) and restarted; sender at {} msg/s through chat (load {})",
        channels.len(),
        config.rate,
        load_average()
    );
    wait_subscribed(fleet, n, OUTAGE_DEADLINE).await?;
    fleet.take_errors();
    let clock = fleet.shared().clock;
    let now_us = || clock.elapsed().as_micros() as u64;

    // Each channel's newest number before the crash, as the clients hold
    // it: the sender's book starts there.
    let mut start = vec![0u64; channels.len()];
    for state in fleet.states() {
        let held = state.last_seq.load(Ordering::Acquire);
        start[state.channel] = start[state.channel].max(held);
    }
    let book = Arc::new(Book::new(channels.len(), &start));
    let disconnects_before = fleet.disconnects();

    let killed = Instant::now();
    mesh.kill("gw-0").await?;
    let noticed = wait_until(|| fleet.subscribed() == 0, OUTAGE_DEADLINE).await;
    let noticed_secs = killed.elapsed().as_secs_f64();

    let chat = ChatServiceClient::new(channel(mesh.chats[0]));
    let (stop, stopped) = watch::channel(false);
    let period = Duration::from_secs_f64(SEND_WORKERS as f64 / config.rate.max(1) as f64);
    let workers: Vec<_> = (0..SEND_WORKERS.min(channels.len()))
        .map(|w| {
            tokio::spawn(send_loop(
                chat.clone(),
                channels.clone(),
                w,
                period,
                book.clone(),
                stopped.clone(),
                clock,
            ))
        })
        .collect();
    // The outage lasts until every channel holds messages its clients
    // missed; a counter polled against a deadline, not a sleep.
    let outage_full = wait_until(
        || (0..channels.len()).all(|c| book.acked_count(c) >= config.missed),
        OUTAGE_DEADLINE,
    )
    .await;
    let restart = Instant::now();
    mesh.restart_ready("gw-0").await?;
    let ready_us = now_us();
    let restart_secs = restart.elapsed().as_secs_f64();
    let outage_targets = book.targets();
    let outage_sent = book.total();

    let sampler = Sampler::start(mesh.pids(), "gw-0");
    let machine = Machine::now();
    let me = std::process::id();
    let me_cpu0 = cpu_time(me)?;
    fleet.release(&outage_targets);
    let back = wait_until(|| fleet.caught_up() == n, STORM_DEADLINE).await;
    let usage = sampler.stop();
    let machine = machine.map_or_else(|| "unknown".to_owned(), Machine::busy_since);
    let me_cpu = cpu_time(me)?.saturating_sub(me_cpu0).as_secs_f64();
    let caught_up_count = fleet.caught_up();
    let mut caught: Vec<u64> = fleet
        .caught_up_at_us()
        .iter()
        .map(|&at| at.saturating_sub(ready_us))
        .collect();
    caught.sort_unstable();
    let errors = fleet.take_errors();

    // Stop the sender, then hold everyone to the last message it sent.
    stop.send_replace(true);
    for worker in workers {
        worker.await?;
    }
    let live_sent = book.total() - outage_sent;
    let final_targets = book.targets();
    let drain = Instant::now();
    fleet.retarget(&final_targets);
    let drained = wait_until(|| fleet.caught_up() == n, OUTAGE_DEADLINE).await;
    let drain_secs = drain.elapsed().as_secs_f64();

    println!(
        "  outage: every client saw the crash {noticed_secs:.2}s after the kill{}; {outage_sent} messages sent meanwhile (at least {} per channel{}); restart to ready {restart_secs:.2}s",
        if noticed {
            ""
        } else {
            " (NOT all clients noticed)"
        },
        config.missed,
        if outage_full {
            ""
        } else {
            ", NOT reached in time"
        },
    );
    if back {
        println!(
            "  back: all {n} clients reconnected, subscribed and holding every message through the outage's last {:.2}s after the gateway was ready (clients: p50 {:.2}s, p99 {:.2}s)",
            percentile(&caught, 1.0) / 1000.0,
            percentile(&caught, 0.50) / 1000.0,
            percentile(&caught, 0.99) / 1000.0,
        );
    } else {
        println!(
            "  back: ONLY {caught_up_count} of {n} clients caught up within {STORM_DEADLINE:?} of the gateway being ready ({} subscribed)",
            fleet.subscribed()
        );
        print_stragglers(fleet, &outage_targets);
    }
    println!(
        "  connections ended by the crash: {} (one per client expected)",
        fleet.disconnects() - disconnects_before
    );
    print_errors("reconnect errors", &errors);
    println!(
        "  gateway CPU from ready until all back ({:.2}s): peak {:.0}% of one core (100 ms windows), average {:.0}%",
        usage.seconds,
        100.0 * usage.watched_peak,
        100.0
            * usage
                .average
                .iter()
                .find(|(name, _)| name == "gw-0")
                .map_or(f64::NAN, |(_, a)| *a),
    );
    println!(
        "  whole mesh CPU: peak {:.0}% of one core, average {:.0}% ({}); bench clients {:.0}%; machine {machine} busy",
        100.0 * usage.total_peak,
        100.0 * usage.average.iter().map(|(_, a)| a).sum::<f64>(),
        usage
            .average
            .iter()
            .map(|(name, a)| format!("{name} {:.0}%", 100.0 * a))
            .collect::<Vec<_>>()
            .join(", "),
        100.0 * me_cpu / usage.seconds.max(f64::EPSILON),
    );
    println!(
        "  live sends while the clients came back: {live_sent}; after the sender stopped, {} in {drain_secs:.2}s",
        if drained {
            format!("all {n} clients held every message through the last one sent")
        } else {
            format!(
                "ONLY {} of {n} clients held every message through the last one sent",
                fleet.caught_up()
            )
        }
    );
    let sender_errors = lock(&book.errors).clone();
    if !sender_errors.is_empty() {
        println!("  sender errors: {sender_errors:?}");
    }
    report_loss(fleet, &book);
    Ok(())
}

/// Sends into channels `w`, `w + W`, … in turn, one every `period`, until
/// told to stop; each body carries its send time.
async fn send_loop(
    chat: ChatServiceClient<tonic::transport::Channel>,
    channels: Arc<Vec<String>>,
    w: usize,
    period: Duration,
    book: Arc<Book>,
    stop: watch::Receiver<bool>,
    clock: Instant,
) {
    let mine: Vec<usize> = (w..channels.len()).step_by(SEND_WORKERS).collect();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 0u64.. {
        tick.tick().await;
        if *stop.borrow() {
            return;
        }
        let c = mine[k as usize % mine.len()];
        let body = format!("t={}", clock.elapsed().as_micros());
        let key = format!("storm-{w}-{k}");
        match setup::send(&chat, &channels[c], body, key).await {
            Ok(seq) => {
                lock(&book.acked[c]).push(seq);
                book.max[c].fetch_max(seq, Ordering::AcqRel);
            }
            Err(status) => {
                *lock(&book.errors)
                    .entry(format!("{:?}: {}", status.code(), status.message()))
                    .or_default() += 1;
            }
        }
    }
}

/// Acked messages some client never got. Those in a range a
/// `reload_required` named were refused openly (the client reloads them
/// from history); those in a gap the client skipped unannounced are lost.
/// Gaps holding only numbers no ack carried are failed sends' numbers,
/// which are never delivered.
fn report_loss(fleet: &Fleet, book: &Book) {
    let acked: Vec<Vec<u64>> = book
        .acked
        .iter()
        .map(|a| {
            let mut v = lock(a).clone();
            v.sort_unstable();
            v
        })
        .collect();
    let mut lost = Unreceived::default();
    let mut reloaded = Unreceived::default();
    let mut repeats = 0u64;
    for state in fleet.states() {
        repeats += state.repeats.load(Ordering::Acquire);
        let seqs = &acked[state.channel];
        let channel = &fleet.shared().channels[state.channel];
        lost.add(seqs, &lock(&state.gaps), channel, false);
        reloaded.add(seqs, &lock(&state.reloads), channel, true);
    }
    if reloaded.messages > 0 || reloaded.clients > 0 {
        println!(
            "  gap fill gave up (reload_required) at {} clients, covering {} acked messages (e.g. {})",
            reloaded.clients,
            reloaded.messages,
            reloaded.example.unwrap_or_default()
        );
    }
    if lost.messages == 0 {
        println!(
            "  silent loss: no acked message skipped unannounced at any client; {repeats} arrived twice"
        );
    } else {
        println!(
            "  silent loss: {} acked messages SKIPPED unannounced at {} clients (e.g. {}); {repeats} arrived twice",
            lost.messages,
            lost.clients,
            lost.example.unwrap_or_default()
        );
    }
    for (channel, seq, held) in fleet.repeat_examples() {
        println!(
            "    repeated: {seq} in {} arrived at a client already holding {held}",
            fleet.shared().channels[channel]
        );
    }
}

/// Acked messages inside ranges clients did not receive.
#[derive(Debug, Default)]
struct Unreceived {
    messages: u64,
    clients: usize,
    example: Option<String>,
}

impl Unreceived {
    /// Adds one client's `ranges` of its channel, whose acked numbers are
    /// `seqs` (sorted). An `announced` range counts even with no acked
    /// message in it: the gateway still gave up on it.
    fn add(&mut self, seqs: &[u64], ranges: &[(u64, u64)], channel: &str, announced: bool) {
        let mut here = 0;
        for &(from, to) in ranges {
            let inside = seqs.partition_point(|&s| s <= to) - seqs.partition_point(|&s| s < from);
            here += inside as u64;
            if self.example.is_none() && (announced || inside > 0) {
                self.example = Some(format!("{channel} {from}..={to}"));
            }
        }
        self.messages += here;
        self.clients += usize::from(here > 0 || (announced && !ranges.is_empty()));
    }
}

/// Clients that did not catch up, a few by name, so a failed storm says
/// where it stopped.
fn print_stragglers(fleet: &Fleet, targets: &[u64]) {
    let mut shown = 0;
    for (i, state) in fleet.states().enumerate() {
        let held = state.last_seq.load(Ordering::Acquire);
        let target = targets[state.channel];
        if held < target && shown < 5 {
            shown += 1;
            println!(
                "    client u{i} in {}: holds {held}, needs {target}",
                fleet.shared().channels[state.channel]
            );
        }
    }
}

/// Polls `done` every 10 ms until it holds or `deadline` passes; answers
/// whether it held.
async fn wait_until(done: impl Fn() -> bool, deadline: Duration) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
