//! chatmesh side by side with its peers: Socket.IO 4 with its Redis
//! adapter, and Sockudo with its Redis Cluster adapter, each driven in turn
//! by the same load client with the same scenario on the same Redis
//! Cluster: R receivers over C channels, each channel pinned to one of N
//! nodes (receivers connect to their channel's node), and S senders with a
//! connection to every node, sending each channel's messages to its node.
//!
//! Each system is stepped through rising send rates. A step sends for D
//! seconds and counts what arrives within G seconds after; it is
//! sustainable when nothing is lost or duplicated, no error came back, the
//! senders kept the rate and the send-to-receive p99 is under 100 ms. The
//! stepping stops at the first step that is not. chatmesh is run as users
//! run it, one process per service, and after each step the benchmark
//! waits until storage holds every channel's newest acknowledged message.
//! After chatmesh's steps, one more step at half its highest sustainable
//! rate is set beside the broker's own produce-ack latency at that rate,
//! the floor of a durable acknowledgement here.
//!
//! Parameters: BENCH_PEERS (systems, `chatmesh,socketio,sockudo`),
//! BENCH_NODES (2), BENCH_CHANNELS (100), BENCH_RECEIVERS (2000),
//! BENCH_SENDERS (10), BENCH_RATES (messages/s per step,
//! `250,500,750,1000,1250,1500,2000,2500,3000,3500,4000`), BENCH_STEP_SECONDS (D,
//! 10), BENCH_GRACE_SECONDS (G, 10).
#![allow(clippy::print_stdout)]

mod chatmesh;
mod floor;
mod load;
mod socketio;
mod sockudo;
mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::{cpu_time, load_average, param, rss_kib};
use chatmesh_integration_tests::Infra;
use load::{Deliveries, Receivers, Senders, Sent};
use system::{Layout, System};

/// A step is sustainable only under this send-to-receive p99.
const P99_LIMIT_MS: f64 = 100.0;
/// Seconds of sends before the first step, not counted: connections,
/// caches and (for chatmesh) each channel's first number settle.
const WARMUP_SECS: u64 = 3;

#[derive(Clone, Copy, Debug)]
struct Params {
    layout: Layout,
    step_secs: u64,
    grace: Duration,
}

/// One step's outcome.
#[derive(Debug)]
struct Step {
    rate: u64,
    sent: u64,
    expected: u64,
    delivered: u64,
    deliveries_per_sec: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    duplicates: u64,
    errors: usize,
    kept_rate: bool,
}

impl Step {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    fn sustainable(&self) -> bool {
        self.lost() == 0
            && self.duplicates == 0
            && self.errors == 0
            && self.kept_rate
            && self.p99 < P99_LIMIT_MS
    }
}

/// One system's run.
#[derive(Debug)]
struct Report {
    name: &'static str,
    rss_per_connection_kib: f64,
    steps: Vec<Step>,
}

impl Report {
    fn best(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.sustainable())
            .max_by_key(|s| s.rate)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let layout = Layout {
        nodes: param("BENCH_NODES", 2).max(1) as usize,
        channels: param("BENCH_CHANNELS", 100).max(1) as usize,
        receivers: param("BENCH_RECEIVERS", 2000) as usize,
        senders: param("BENCH_SENDERS", 10).max(1) as usize,
    };
    let params = Params {
        layout,
        step_secs: param("BENCH_STEP_SECONDS", 10).max(1),
        grace: Duration::from_secs(param("BENCH_GRACE_SECONDS", 10)),
    };
    let rates = list(
        "BENCH_RATES",
        "250,500,750,1000,1250,1500,2000,2500,3000,3500,4000",
    )?;
    let systems =
        std::env::var("BENCH_PEERS").unwrap_or_else(|_| "chatmesh,socketio,sockudo".into());
    println!(
        "side by side: {} receivers over {} channels on {} nodes, {} senders; steps of {}s at {rates:?} msg/s, counting {}s after each",
        layout.receivers,
        layout.channels,
        layout.nodes,
        layout.senders,
        params.step_secs,
        params.grace.as_secs()
    );
    let infra = Infra::load()?;
    let mut reports = Vec::new();
    for name in systems.split(',').map(str::trim) {
        let report = match name {
            "chatmesh" => run::<chatmesh::Chatmesh>(&infra, params, &rates).await?,
            "socketio" => run::<socketio::SocketIo>(&infra, params, &rates).await?,
            "sockudo" => run::<sockudo::Sockudo>(&infra, params, &rates).await?,
            other => anyhow::bail!("BENCH_PEERS: unknown system {other:?}"),
        };
        reports.push(report);
    }
    summary(&reports, layout);
    Ok(())
}

fn list(name: &str, default: &str) -> anyhow::Result<Vec<u64>> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .with_context(|| format!("{name}: {r:?} is not a number"))
        })
        .collect()
}

async fn run<S: System>(infra: &Infra, params: Params, rates: &[u64]) -> anyhow::Result<Report> {
    let layout = params.layout;
    println!();
    println!("== {} ==", S::NAME);
    let system = Arc::new(S::start(infra, layout).await?);
    system.prepare(layout).await?;
    let rss = || -> u64 {
        system
            .edge_pids()
            .into_iter()
            .map(|pid| rss_kib(pid).unwrap_or(0))
            .sum()
    };
    let rss_before = rss();
    let clock = Instant::now();
    let receivers = Receivers::connect(&system, layout, clock).await?;
    let senders = Senders::connect(&system, layout).await?;
    let connections = layout.receivers + layout.senders * layout.nodes;
    let rss_after = rss();
    let rss_per_connection_kib =
        rss_after.saturating_sub(rss_before) as f64 / connections.max(1) as f64;
    println!(
        "connected {connections} clients in {:.1}s; edge memory {rss_before} → {rss_after} KiB, {rss_per_connection_kib:.1} KiB per connection",
        clock.elapsed().as_secs_f64()
    );

    let warmup_rate = rates.first().copied().unwrap_or(100);
    let warm = one_step(
        &system,
        &receivers,
        &senders,
        params,
        0,
        warmup_rate,
        WARMUP_SECS,
        clock,
    )
    .await?;
    println!(
        "warm-up: {} sent, {} of {} delivered, not counted",
        warm.sent, warm.delivered, warm.expected
    );
    let mut steps = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let step = one_step(
            &system,
            &receivers,
            &senders,
            params,
            i as u32 + 1,
            rate,
            params.step_secs,
            clock,
        )
        .await?;
        let sustainable = step.sustainable();
        steps.push(step);
        if !sustainable {
            break;
        }
    }
    let report = Report {
        name: S::NAME,
        rss_per_connection_kib,
        steps,
    };
    if S::NAME == chatmesh::Chatmesh::NAME
        && let Some(best) = report.best()
    {
        let half = (best.rate / 2).max(1);
        println!(
            "at half the highest sustainable rate, beside the broker's own produce-ack latency:"
        );
        let step = one_step(
            &system,
            &receivers,
            &senders,
            params,
            rates.len() as u32 + 1,
            half,
            params.step_secs,
            clock,
        )
        .await?;
        let floor = floor::produce_acks(infra, half, params.step_secs).await?;
        let floor_p99 = chatmesh_bench::percentile(
            &floor.iter().map(|&l| u64::from(l)).collect::<Vec<_>>(),
            0.99,
        );
        println!(
            "  broker produce→ack at {half} msg/s: p50 {:.1} ms, p99 {floor_p99:.1} ms; chatmesh send→receive p99 {:.1} ms = {:.2}× the broker's",
            chatmesh_bench::percentile(
                &floor.iter().map(|&l| u64::from(l)).collect::<Vec<_>>(),
                0.5
            ),
            step.p99,
            step.p99 / floor_p99
        );
    }
    drop(senders);
    drop(receivers);
    Ok(report)
}

/// Sends at `rate` for `secs` seconds as step `number`, counts what
/// arrives within the grace time, and prints the step with the CPU each
/// process used while it sent.
#[allow(clippy::too_many_arguments)]
async fn one_step<S: System>(
    system: &Arc<S>,
    receivers: &Receivers,
    senders: &Senders,
    params: Params,
    number: u32,
    rate: u64,
    secs: u64,
    clock: Instant,
) -> anyhow::Result<Step> {
    let layout = params.layout;
    receivers.begin(number);
    let load = load_average();
    let processes = cpu_processes(system.as_ref());
    let cpu_before: Vec<Duration> = processes.iter().map(|(_, pids)| cpu_of(pids)).collect();
    let wall = Instant::now();
    let mut sent = senders
        .run(system, layout, number, rate, secs, clock)
        .await?;
    let wall = wall.elapsed();
    let cpu: Vec<(String, f64)> = processes
        .iter()
        .zip(cpu_before)
        .map(|((name, pids), before)| {
            let used = cpu_of(pids).saturating_sub(before);
            (
                name.clone(),
                100.0 * used.as_secs_f64() / wall.as_secs_f64(),
            )
        })
        .collect();

    let per_channel_receivers =
        |c: usize| (c..layout.receivers).step_by(layout.channels).count() as u64;
    let expected: u64 = sent
        .per_channel
        .iter()
        .enumerate()
        .map(|(c, n)| n * per_channel_receivers(c))
        .sum();
    let deadline = Instant::now() + params.grace;
    // Polls the counter: the deliveries arrive on thousands of tasks, and
    // the grace time bounds the wait either way.
    while receivers.delivered() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acks_expected = sent.total();
    while senders.acks() < acks_expected
        && Instant::now() < deadline
        && S::NAME != sockudo::Sockudo::NAME
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    senders.collect(&mut sent);
    let deliveries = receivers.take();
    let stored = system.wait_stored(&sent.newest).await?;
    let step = summarize(rate, secs, &sent, &deliveries, expected);
    // Step 0 is the warm-up, summed up by the caller.
    if number > 0 {
        print_step(&step, &sent, &deliveries, &cpu, stored, &load);
    }
    Ok(step)
}

fn summarize(rate: u64, secs: u64, sent: &Sent, d: &Deliveries, expected: u64) -> Step {
    let latencies: Vec<u64> = d.latencies.iter().map(|&l| u64::from(l)).collect();
    let p = |q| chatmesh_bench::percentile(&latencies, q);
    Step {
        rate,
        sent: sent.total(),
        expected,
        delivered: latencies.len() as u64,
        deliveries_per_sec: latencies.len() as f64 / secs as f64,
        p50: p(0.5),
        p99: p(0.99),
        p999: p(0.999),
        duplicates: d.duplicates,
        errors: d.errors.len() + sent.errors.len(),
        // Sends are paced by a timer; a system that pushes back (a full
        // socket buffer) makes the senders fall behind it.
        kept_rate: sent.secs <= secs as f64 * 1.05 + 0.1,
    }
}

fn print_step(
    step: &Step,
    sent: &Sent,
    d: &Deliveries,
    cpu: &[(String, f64)],
    stored: bool,
    load: &str,
) {
    println!(
        "  {:>5} msg/s: sent {} in {:.1}s, acked {}; delivered {} of {} ({:.0}/s), lost {}, duplicates {}, late {}; send→receive p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms; errors {}{}{} [load {load}]",
        step.rate,
        step.sent,
        sent.secs,
        sent.acks,
        step.delivered,
        step.expected,
        step.deliveries_per_sec,
        step.lost(),
        step.duplicates,
        d.late,
        step.p50,
        step.p99,
        step.p999,
        step.errors,
        if stored { "; all stored" } else { "" },
        if step.sustainable() {
            "; sustainable"
        } else {
            "; NOT sustainable"
        },
    );
    if let Some(e) = sent.errors.first().or(d.errors.first()) {
        println!(
            "    first error: {}",
            e.chars().take(200).collect::<String>()
        );
    }
    let total: f64 = cpu.iter().map(|(_, c)| c).sum();
    let parts: Vec<String> = cpu
        .iter()
        .filter(|(_, c)| *c >= 0.5)
        .map(|(n, c)| format!("{n} {c:.0}%"))
        .collect();
    println!(
        "    CPU: {}; total {total:.0}%, {:.1} µs per delivery",
        parts.join(", "),
        total * 10_000.0 / step.deliveries_per_sec.max(1.0)
    );
}

/// The processes whose CPU a step accounts: the system's own, the shared
/// infrastructure, and the load client.
fn cpu_processes<S: System>(system: &S) -> Vec<(String, Vec<u32>)> {
    let mut all: Vec<(String, Vec<u32>)> = system
        .processes()
        .into_iter()
        .map(|(name, pid)| (name, vec![pid]))
        .collect();
    let pids = |var: &str| -> Vec<u32> {
        std::env::var(var)
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    };
    all.push(("redis".into(), pids("REDIS_PIDS")));
    all.push(("broker".into(), pids("TANSU_PID")));
    all.push(("postgres".into(), named("postgres")));
    all.push(("load client".into(), vec![std::process::id()]));
    all
}

/// Every process whose command is `comm` (Postgres forks a process per
/// connection, so its servers' pids alone miss most of its work).
fn named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|&p| cpu_time(p).ok()).sum()
}

fn summary(reports: &[Report], layout: Layout) {
    println!();
    println!(
        "| {} receivers, {} channels, {} nodes, {} senders | highest sustainable msg/s | deliveries/s | p50 / p99 / p99.9 ms | idle memory per connection |",
        layout.receivers, layout.channels, layout.nodes, layout.senders
    );
    println!("|---|---|---|---|---|");
    for r in reports {
        match r.best() {
            Some(b) => println!(
                "| {} | {} | {:.0} | {:.1} / {:.1} / {:.1} | {:.1} KiB |",
                r.name,
                b.rate,
                b.deliveries_per_sec,
                b.p50,
                b.p99,
                b.p999,
                r.rss_per_connection_kib
            ),
            None => println!(
                "| {} | none of the rates | | | {:.1} KiB |",
                r.name, r.rss_per_connection_kib
            ),
        }
    }
    let Some(ours) = reports.iter().find(|r| r.name == chatmesh::Chatmesh::NAME) else {
        return;
    };
    for peer in reports.iter().filter(|r| r.name != ours.name) {
        let rate = |r: &Report| r.best().map_or(0.0, |b| b.deliveries_per_sec);
        println!(
            "chatmesh ÷ {}: sustainable deliveries/s {:.2}, memory per connection {:.2}",
            peer.name,
            rate(ours) / rate(peer).max(1.0),
            ours.rss_per_connection_kib / peer.rss_per_connection_kib.max(0.01)
        );
    }
}
