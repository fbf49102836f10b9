//! One of two chat instances is SIGKILLed three times mid-traffic and
//! started again each time; the gateways keep sending through the other.
//! Every acknowledged message is stored exactly once and delivered exactly
//! once to every watcher, and a send whose acknowledgement was lost with
//! the instance, retried with its idempotency key, is stored at most once.

use std::time::Duration;

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions, channel_names, not_received};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chat_instance_killed_three_times_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mut mesh = Mesh::start(MeshOptions {
        chats: 2,
        ..MeshOptions::default()
    })
    .await?;
    let channels = channel_names("chatkill", 20);
    let shards = Shards::new(&mesh.infra)?;
    let load = Load::start(&mesh, channels, LoadOptions::steady(10, 200, 40)).await?;
    for round in 1..=3 {
        load.acked_at_least(round * 500, Duration::from_secs(60))
            .await?;
        mesh.kill("chat-1").await?;
        load.acked_at_least(round * 500 + 100, Duration::from_secs(60))
            .await?;
        mesh.restart_ready("chat-1").await?;
    }
    let sent = load.sent.clone();
    let watchers = load.watchers.clone();
    let report = load.finish(&shards, Duration::from_secs(60)).await?;
    eprintln!("{}; retries {:?}", report.summary(), sent.retries());
    assert!(report.is_clean(), "{report:#?}");
    assert!(sent.unacked().is_empty(), "given up: {:?}", sent.unacked());
    assert!(sent.refused().is_empty(), "refused: {:?}", sent.refused());
    assert_eq!(report.acked, 2_000);
    // Delivered as messages, every one: a reload range does not count.
    let late = not_received(&sent.acked(), &watchers);
    assert!(late.is_empty(), "acked, never delivered: {late:?}");
    Ok(())
}
