//! Load benchmark of the message path: K WebSocket clients on N gateway
//! processes, subscribed to M channels (each client on its channel's owner
//! node), and S senders publishing R frames per second in total for D
//! seconds. Prints delivered events per second, latency from the send to
//! its ack and to each receiver, loss and errors, and gateway memory per
//! connection.
//!
//! The scenario runs twice in one invocation: first with posts only, then
//! at the same rate with a share of the frames changes to recent posts
//! (edits of the sender's own, reactions added to anyone's and taken back),
//! and the two runs are printed side by side.
//!
//! Parameters come from the environment: BENCH_CLIENTS (K), BENCH_CHANNELS
//! (M), BENCH_RATE (R), BENCH_SECONDS (D), BENCH_SENDERS (S),
//! BENCH_GATEWAYS (N, 2 by default; 1 puts every connection on one
//! process), BENCH_SEND_WINDOW, the gateways' `limits.max_sends_in_flight`
//! (their default when unset; 1 answers each connection's sends one at a
//! time), BENCH_CHANGE_SHARE, the share of changes in the second run (0.10;
//! 0 skips it), and BENCH_CHANGE_AGE_MS, how long ago a post must have been
//! acked to be changed (1000).
#![allow(clippy::print_stdout)]

mod message_path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_bench::{load_average, param, param_f64};
use chatmesh_integration_tests::Infra;
use message_path::mesh::{Mesh, Shape};
use message_path::mix::{Kind, Targets};
use message_path::receivers::Receivers;
use message_path::report::{Summary, compare};
use message_path::senders::{self, RunConfig, RunLog};

/// Seconds of posts sent, and not counted, before the timed runs.
const WARMUP_SECS: u64 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shape = Shape {
        clients: param("BENCH_CLIENTS", 2000) as usize,
        channels: param("BENCH_CHANNELS", 100).max(1) as usize,
        senders: param("BENCH_SENDERS", 10).max(1) as usize,
        gateways: param("BENCH_GATEWAYS", 2).max(1) as usize,
        send_window: std::env::var("BENCH_SEND_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok()),
    };
    let config = RunConfig {
        rate: param("BENCH_RATE", 500),
        seconds: param("BENCH_SECONDS", 20),
        senders: shape.senders,
        change_share: 0.0,
    };
    let change_share = param_f64("BENCH_CHANGE_SHARE", 0.10)?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&change_share),
        "BENCH_CHANGE_SHARE={change_share} is not a share between 0 and 1"
    );
    let change_age = Duration::from_millis(param("BENCH_CHANGE_AGE_MS", 1000));
    println!(
        "chatmesh bench: K={} clients, M={} channels, R={} frames/s from S={} senders, D={}s, {} gateway nodes; then {:.0}% changes",
        shape.clients,
        shape.channels,
        config.rate,
        shape.senders,
        config.seconds,
        shape.gateways,
        100.0 * change_share
    );

    let infra = Infra::load()?;
    let mesh = Mesh::start(&infra, &shape).await?;
    let clock = Instant::now();
    let rss_before = mesh.gateway_rss_kib();
    let receivers = Receivers::connect(&mesh, shape.clients, clock).await?;
    let connect_secs = clock.elapsed().as_secs_f64();
    let rss_after = mesh.gateway_rss_kib();
    receivers.wait_online(&mesh, shape.clients).await?;
    println!();
    println!("connected {} clients in {connect_secs:.1}s", shape.clients);
    println!(
        "gateway memory: {rss_before} KiB before, {rss_after} KiB after connecting; {:.1} KiB per connection",
        rss_after.saturating_sub(rss_before) as f64 / shape.clients.max(1) as f64
    );

    let targets = Arc::new(Mutex::new(Targets::new(
        shape.channels,
        shape.senders,
        change_age,
    )));
    // Warm up: each channel's first send takes its epoch from Postgres,
    // and connections and caches fill; none of that belongs to either run.
    let warmup = RunConfig {
        seconds: WARMUP_SECS,
        ..config
    };
    let log = senders::run(&mesh, &receivers, &targets, warmup, clock).await?;
    mesh.wait_stored(&last_posts(&log)).await?;
    println!(
        "warm-up: {} posts in {WARMUP_SECS}s, not counted",
        log.acked.len()
    );

    let plain = timed_run(
        &mesh,
        &receivers,
        &targets,
        config,
        clock,
        "plain run: posts only",
    )
    .await?;
    if change_share > 0.0 {
        let config = RunConfig {
            change_share,
            ..config
        };
        let mix = timed_run(
            &mesh,
            &receivers,
            &targets,
            config,
            clock,
            "mix run: posts and changes",
        )
        .await?;
        compare(&plain, &mix);
    }
    drop(receivers);
    mesh.stop().await
}

/// One run, printed; then waits until storage holds the run's last posts,
/// so the next run neither inherits its backlog nor names posts not stored
/// yet.
async fn timed_run(
    mesh: &Mesh,
    receivers: &Receivers,
    targets: &Arc<Mutex<Targets>>,
    config: RunConfig,
    clock: Instant,
    label: &'static str,
) -> anyhow::Result<Summary> {
    let load = load_average();
    let log = senders::run(mesh, receivers, targets, config, clock).await?;
    let last = last_posts(&log);
    let summary = Summary::new(label, log, &receivers.take(), &mesh.members);
    summary.print(&load);
    let waited = Instant::now();
    mesh.wait_stored(&last).await?;
    println!(
        "  storage held the run's last posts {:.1}s after the drain",
        waited.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// Each channel's newest acked post.
fn last_posts(log: &RunLog) -> Vec<(usize, u64)> {
    let mut last = std::collections::BTreeMap::new();
    for a in log.acked.iter().filter(|a| a.kind == Kind::Post) {
        let seq = last.entry(a.room).or_insert(a.seq);
        *seq = (*seq).max(a.seq);
    }
    last.into_iter().collect()
}
