//! The gateway at the edge: how many connections one gateway process holds
//! and what they cost, on a mesh of one gateway node and one chat
//! instance started as processes from the release binaries.
//!
//! 1. Idle memory: the gateway's resident memory before any client and
//!    with N idle clients connected and subscribed over 100 channels,
//!    divided by N, for each N of BENCH_EDGE_CONNECTIONS
//!    (default "10000,19000").
//! 2. Fan-out: BENCH_FANOUT_SUBSCRIBERS (10000) clients subscribed to one
//!    channel; one sender sends BENCH_FANOUT_RATE (20) msg/s for
//!    BENCH_FANOUT_SECONDS (10) s. Prints deliveries per second, loss and
//!    send-to-receive latency.
//! 3. Reconnect storm: BENCH_STORM_CLIENTS (10000) clients over the same
//!    100 channels; the gateway is killed while a sender keeps sending
//!    into their channels straight through chat, at BENCH_STORM_RATE (100)
//!    msg/s until the clients are back, and restarted once every channel
//!    got BENCH_STORM_MISSED (3) messages; every client then reconnects at
//!    once and resumes from the last `seq` it holds. Prints the time until
//!    every client holds every message again, the errors by kind, and the
//!    gateway's and the mesh's CPU meanwhile.
//!
//! They run in the order 1, 3, 2: the idle figure needs a gateway no client
//! has touched, and the storm reuses the idle clients rather than
//! connecting ten thousand more (the process may not hold both sets).
#![allow(clippy::print_stdout)]

mod client;
mod connect;
mod cpu;
mod fanout;
mod idle;
mod setup;
mod storm;

use anyhow::Context as _;
use chatmesh_bench::{param, rss_kib};
use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};

use client::Fleet;
use storm::StormConfig;

/// Channels the idle and storm clients spread over.
const SPREAD_CHANNELS: usize = 100;
/// Descriptors the bench needs beyond its clients' sockets: the runtime,
/// gRPC and HTTP clients, the mesh's pipes.
const SPARE_FILES: u64 = 300;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut counts = connection_counts()?;
    counts.sort_unstable();
    let fanout_subscribers = param("BENCH_FANOUT_SUBSCRIBERS", 10_000) as usize;
    let fanout_rate = param("BENCH_FANOUT_RATE", 20).max(1);
    let fanout_seconds = param("BENCH_FANOUT_SECONDS", 10).max(1);
    let storm_clients = param("BENCH_STORM_CLIENTS", 10_000) as usize;
    let storm = StormConfig {
        rate: param("BENCH_STORM_RATE", 100).max(1),
        missed: param("BENCH_STORM_MISSED", 3).max(1),
    };
    let most = counts
        .last()
        .copied()
        .unwrap_or(0)
        .max(storm_clients)
        .max(fanout_subscribers + 1);
    check_open_files(most as u64 + SPARE_FILES)?;
    println!(
        "chatmesh edge bench: idle connections {counts:?}, storm {storm_clients} clients, fan-out {fanout_subscribers} subscribers at {fanout_rate} msg/s for {fanout_seconds}s; one gateway, one chat instance"
    );

    let mut mesh = Mesh::start(MeshOptions {
        gateways: 1,
        chats: 1,
        ..MeshOptions::default()
    })
    .await
    .context("starting the mesh (are the release binaries built?)")?;
    let spread_users = counts.last().copied().unwrap_or(0).max(storm_clients);
    let channels = setup::channels(
        mesh.chats[0],
        SPREAD_CHANNELS,
        spread_users,
        fanout_subscribers,
    )
    .await?;
    let rss_before = rss_kib(idle::gateway_pid(&mesh)?)?;

    let mut fleet = Fleet::new(mesh.gateways[0], channels.spread.clone(), "u");
    idle::run(&mesh, &mut fleet, &counts, rss_before).await?;

    if storm_clients > 0 {
        if fleet.len() > storm_clients {
            fleet.truncate(storm_clients);
        } else {
            client::grow_to(&mut fleet, storm_clients).await?;
        }
        storm::run(&mut mesh, &fleet, storm).await?;
    }
    drop(fleet);

    if fanout_subscribers > 0 {
        fanout::run(
            &mesh,
            &channels.fanout,
            fanout_subscribers,
            fanout_rate,
            fanout_seconds,
        )
        .await?;
    }
    Ok(())
}

/// BENCH_EDGE_CONNECTIONS: a comma-separated list of connection counts.
fn connection_counts() -> anyhow::Result<Vec<usize>> {
    let raw = std::env::var("BENCH_EDGE_CONNECTIONS").unwrap_or_else(|_| "10000,19000".into());
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("BENCH_EDGE_CONNECTIONS={raw:?}: {s:?} is not a count"))
        })
        .collect()
}

/// Fails early, saying what to run, when this process may not open a
/// socket per client. The gateway inherits the same limit. The bench has
/// no way to raise it itself (no `libc` or `rlimit` dependency, and no
/// unsafe code), so it asks for `ulimit -n`.
fn check_open_files(needed: u64) -> anyhow::Result<()> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no open-file limit in /proc/self/limits")?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().unwrap_or("unlimited");
    let hard = fields.next().unwrap_or("unlimited");
    let soft_n = soft.parse::<u64>().unwrap_or(u64::MAX);
    println!("open-file limit: soft {soft}, hard {hard}; this run needs about {needed}");
    if soft_n >= needed {
        return Ok(());
    }
    anyhow::bail!(
        "the open-file limit ({soft}) is below the {needed} descriptors this run needs: run the bench under `ulimit -n {}`{}, or lower BENCH_EDGE_CONNECTIONS, BENCH_STORM_CLIENTS and BENCH_FANOUT_SUBSCRIBERS",
        hard,
        if hard.parse::<u64>().unwrap_or(u64::MAX) < needed {
            " (the hard limit is lower still: raise it first)"
        } else {
            ""
        }
    )
}
