//! Calls spread over every chat instance, avoid a slow one, and survive one
//! that dies.
//! Real processes over real connections: the gateway balances over the
//! instances it is configured with, and each instance's own request
//! counter (its `/metrics`) says how many calls it served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions, channel_names};

/// Sends an instance served, from its own metrics (every status).
async fn sends_served(admin: SocketAddr) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(counter_sum(
        &text,
        "chatmesh_grpc_server_requests_total{",
        "method=\"SendMessage\"",
    ))
}

/// The sum of every sample of `metric` whose labels contain `label`.
fn counter_sum(text: &str, metric: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// How often the first gateway took a chat instance out of its balancer.
async fn chat_ejections(mesh: &Mesh) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{}/metrics", mesh.gateways[0]))
        .await?
        .text()
        .await?;
    Ok(counter_sum(
        &text,
        "chatmesh_upstream_ejections_total",
        "service=\"chat\"",
    ))
}

async fn all_served(mesh: &Mesh) -> anyhow::Result<Vec<u64>> {
    let mut counts = Vec::new();
    for admin in &mesh.chat_admins {
        counts.push(sends_served(*admin).await.unwrap_or(0));
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_spread_over_three_instances_and_survive_one_dying() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mut mesh = Mesh::start(MeshOptions {
        chats: 3,
        gateways: 1,
        ..MeshOptions::default()
    })
    .await?;
    let shards = Shards::new(&mesh.infra)?;

    // 3,000 sends through one gateway.
    let load = Load::start(
        &mesh,
        channel_names("spread", 30),
        LoadOptions::steady(12, 250, 1),
    )
    .await?;
    let report = load.finish(&shards, Duration::from_secs(120)).await?;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.acked, 3_000);
    let served = all_served(&mesh).await?;
    let total: u64 = served.iter().sum();
    assert!(total >= 3_000, "served {served:?}");
    for (i, n) in served.iter().enumerate() {
        let share = *n as f64 / total as f64;
        eprintln!("chat-{i} served {n} of {total} ({:.1}%)", share * 100.0);
        assert!(
            (0.20..=0.47).contains(&share),
            "chat-{i} served {:.1}% of the sends: {served:?}",
            share * 100.0
        );
    }

    // SIGKILL one mid-run: every send gets an ack or a retryable error,
    // none waits more than 2 s, and the instance gets calls again soon
    // after it is back.
    let load = Load::start(
        &mesh,
        channel_names("dying", 30),
        LoadOptions::steady(12, 200, 10),
    )
    .await?;
    load.acked_at_least(500, Duration::from_secs(60)).await?;
    mesh.kill("chat-1").await?;
    load.acked_at_least(1_100, Duration::from_secs(60)).await?;
    mesh.restart_ready("chat-1").await?;
    let back = Instant::now();
    let again = loop {
        if sends_served(mesh.chat_admins[1]).await.unwrap_or(0) > 0 {
            break back.elapsed();
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(10),
            "chat-1 got no call within 10 s of being ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("chat-1 served again {again:?} after it was ready");
    let sent = load.sent.clone();
    let report = load.finish(&shards, Duration::from_secs(120)).await?;
    eprintln!(
        "{}; retries {:?}; slowest reply {:?}",
        report.summary(),
        sent.retries(),
        sent.slowest_reply()
    );
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.acked, 2_400);
    assert!(sent.refused().is_empty(), "refused: {:?}", sent.refused());
    assert!(sent.unacked().is_empty(), "given up: {:?}", sent.unacked());
    assert!(
        sent.slowest_reply() <= Duration::from_secs(2),
        "a send waited {:?}",
        sent.slowest_reply()
    );
    Ok(())
}

/// Runs 800 sends over 20 fresh channels, checks none was lost or doubled,
/// and returns how many calls each chat instance served meanwhile.
async fn served_during_load(
    mesh: &Mesh,
    shards: &Shards,
    prefix: &str,
) -> anyhow::Result<Vec<u64>> {
    let before = all_served(mesh).await?;
    let load = Load::start(
        mesh,
        channel_names(prefix, 20),
        LoadOptions::steady(8, 100, 5),
    )
    .await?;
    let report = load.finish(shards, Duration::from_secs(120)).await?;
    assert!(report.is_clean(), "{report:#?}");
    let after = all_served(mesh).await?;
    Ok(after.iter().zip(&before).map(|(a, b)| a - b).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_instance_gets_few_calls_while_it_is_slow() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mesh = Mesh::start(MeshOptions {
        chats: 3,
        gateways: 1,
        proxied_chats: true,
        ..MeshOptions::default()
    })
    .await?;
    let shards = Shards::new(&mesh.infra)?;
    let ejected_before = chat_ejections(&mesh).await?;
    mesh.chat_proxies[2].set_delay(Duration::from_millis(250));
    let delta = served_during_load(&mesh, &shards, "slow").await?;
    let total: u64 = delta.iter().sum();
    let share = delta[2] as f64 / total as f64;
    eprintln!(
        "calls while chat-2 was slow: {delta:?} ({:.1}% to chat-2)",
        share * 100.0
    );
    assert!(
        share < 0.10,
        "the slow instance got {:.1}%: {delta:?}",
        share * 100.0
    );
    // The balancer avoided it; the health checks did not take it out.
    assert_eq!(
        chat_ejections(&mesh).await?,
        ejected_before,
        "the slow instance was ejected, not avoided"
    );

    // Fast again: it gets its share back.
    mesh.chat_proxies[2].set_delay(Duration::ZERO);
    let delta = served_during_load(&mesh, &shards, "fast-again").await?;
    eprintln!("calls once chat-2 was fast again: {delta:?}");
    assert!(delta[2] > 0, "chat-2 never got a call back: {delta:?}");
    Ok(())
}
