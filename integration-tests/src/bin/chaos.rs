//! `make chaos`: mixed traffic over both gateways of a process mesh for
//! `CHAOS_SECONDS` (default 600) while, in turn, a chat instance, a
//! gateway, the storage service, a Redis master and the broker are killed
//! with SIGKILL and started again. Prints what was acknowledged, stored
//! and delivered to each watcher, and every message missing or
//! duplicated; exits non-zero unless both are zero.
//!
//! Needs the infrastructure (`scripts/infra up`) and the workspace's
//! binaries built in the same profile as this one.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions};
use chatmesh_integration_tests::{Infra, wait};

/// Time between two faults.
const BETWEEN_FAULTS: Duration = Duration::from_secs(45);
/// How long a killed process stays down.
const DOWN_FOR: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy)]
enum Fault {
    Chat,
    Gateway,
    Storage,
    RedisMaster,
    Broker,
}

const FAULTS: [Fault; 5] = [
    Fault::Chat,
    Fault::Gateway,
    Fault::Storage,
    Fault::RedisMaster,
    Fault::Broker,
];

fn kill_pid(pid: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid])
        .status()?;
    anyhow::ensure!(status.success(), "kill -KILL {pid} failed");
    Ok(())
}

async fn inject(mesh: &mut Mesh, fault: Fault) -> anyhow::Result<()> {
    match fault {
        Fault::Chat | Fault::Gateway | Fault::Storage => {
            let name = match fault {
                Fault::Chat => "chat-1",
                Fault::Gateway => "gw-1",
                _ => "storage",
            };
            mesh.kill(name).await?;
            tokio::time::sleep(DOWN_FOR).await;
            mesh.restart_ready(name).await?;
        }
        Fault::RedisMaster => {
            let masters = mesh.infra.redis_masters().await?;
            let victim = &masters[rand_index(masters.len())].addr;
            kill_pid(&Infra::redis_pid(victim)?)?;
            let slot = masters
                .iter()
                .find(|m| &m.addr == victim)
                .and_then(|m| m.slots.first())
                .map(|s| s.0)
                .unwrap_or(0);
            let infra = Infra::load()?;
            wait::until("a replica promoted", Duration::from_secs(30), || async {
                let now = infra.redis_masters().await?;
                let owner = now.iter().find(|m| m.owns(slot)).map(|m| m.addr.clone());
                anyhow::ensure!(owner.as_ref().is_some_and(|o| o != victim), "not yet");
                Ok(())
            })
            .await?;
            Infra::script(&["up"])?;
        }
        Fault::Broker => {
            kill_pid(&Infra::state_value("TANSU_PID")?)?;
            tokio::time::sleep(DOWN_FOR).await;
            Infra::script(&["up"])?;
        }
    }
    Ok(())
}

fn rand_index(n: usize) -> usize {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as usize)
        % n.max(1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut mesh = Mesh::start(MeshOptions {
        chats: 2,
        ..MeshOptions::default()
    })
    .await?;
    let channels = chatmesh_integration_tests::traffic::channel_names("chaos", 40);
    let shards = Shards::new(&mesh.infra)?;
    let every = Duration::from_millis(100);
    let senders = 10;
    let per_sender = (seconds * 1000 / every.as_millis() as u64) as usize;
    println!(
        "chaos: {seconds} s, {senders} senders at {} msg/s in all over {} channels, a fault every {BETWEEN_FAULTS:?}",
        senders as u64 * 1000 / every.as_millis() as u64,
        channels.len()
    );
    let load = Load::start(
        &mesh,
        channels,
        LoadOptions {
            senders,
            per_sender,
            every,
        },
    )
    .await?;
    let started = Instant::now();
    let mut next = 0;
    while started.elapsed() + BETWEEN_FAULTS < Duration::from_secs(seconds) {
        tokio::time::sleep(BETWEEN_FAULTS).await;
        let fault = FAULTS[next % FAULTS.len()];
        next += 1;
        let t = Instant::now();
        println!(
            "[{:>4} s] {fault:?} killed (acked so far: {})",
            started.elapsed().as_secs(),
            load.sent.acked().len()
        );
        inject(&mut mesh, fault).await?;
        println!("         back after {:.1} s", t.elapsed().as_secs_f64());
    }
    let sent = load.sent.clone();
    let watchers = load.watchers.clone();
    let report = load.finish(&shards, Duration::from_secs(120)).await?;
    println!(
        "\nchaos run over {} s, {next} faults",
        started.elapsed().as_secs()
    );
    println!("  acked        {}", report.acked);
    println!("  stored       {}", report.stored);
    for (i, (channel, seen)) in watchers.iter().enumerate().take(5) {
        let n = seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|e| {
                        matches!(e, chatmesh_integration_tests::traffic::Seen::Message { .. })
                    })
                    .count()
            })
            .unwrap_or(0);
        println!("  watcher {i:>2}   {n} delivered ({channel})");
    }
    println!(
        "  delivered    {} over {} watchers",
        report.delivered,
        watchers.len()
    );
    println!("  reloads      {}", report.reloads);
    println!("  retries      {:?}", sent.retries());
    println!("  given up     {}", sent.unacked().len());
    let duplicates = report.stored_twice.len()
        + report.body_stored_twice.len()
        + report.delivered_twice.len()
        + report.seq_reused.len();
    let missing = report.missed.len() + report.not_stored.len();
    println!("  duplicates   {duplicates}");
    println!("  missing      {missing}");
    println!("  out of order {}", report.out_of_order.len());
    if !report.is_clean() {
        println!("\n{report:#?}");
        anyhow::bail!("the chaos run lost, duplicated or reordered messages");
    }
    Ok(())
}
