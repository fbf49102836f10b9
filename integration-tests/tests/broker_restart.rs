//! The Kafka-protocol broker is killed under load and started again.
//! While it is down sends fail with a retryable `unavailable` and nothing
//! is fanned out that is not durable; afterwards sends succeed, storage
//! catches up, and the stored set equals the acknowledged set. Runs alone
//! in its binary: it restarts the shared broker.

use std::time::Duration;

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions, Seen, channel_names, stored};
use chatmesh_integration_tests::{Infra, wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_loses_nothing_and_fans_out_only_what_is_durable() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mesh = Mesh::start(MeshOptions::default()).await?;
    let channels = channel_names("broker", 20);
    let shards = Shards::new(&mesh.infra)?;
    let load = Load::start(&mesh, channels.clone(), LoadOptions::steady(8, 150, 50)).await?;
    load.acked_at_least(300, Duration::from_secs(60)).await?;

    // SIGKILL: tansu 0.6 leaves its listener up after SIGTERM. The broker
    // comes back however this test ends, so a failure here does not take
    // every later test's broker with it.
    let _restore = Restore;
    let pid = Infra::state_value("TANSU_PID")?;
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()?;
    let sent = load.sent.clone();
    wait::until(
        "sends refused as unavailable",
        Duration::from_secs(30),
        || async {
            let refused = sent.retries().get("unavailable").copied().unwrap_or(0);
            anyhow::ensure!(refused > 0, "no send refused yet");
            Ok(())
        },
    )
    .await?;
    let down_acked = sent.acked().len();
    Infra::script(&["up"])?;

    let watchers = load.watchers.clone();
    let report = load.finish(&shards, Duration::from_secs(90)).await?;
    eprintln!("{}; retries {:?}", report.summary(), sent.retries());
    assert!(report.is_clean(), "{report:#?}");
    assert!(sent.refused().is_empty(), "refused: {:?}", sent.refused());
    assert!(sent.unacked().is_empty(), "given up: {:?}", sent.unacked());
    assert!(
        sent.acked().len() > down_acked,
        "sends never succeeded again"
    );
    // Stored set = acked set, and every delivered message is stored.
    let rows = stored(&shards, &channels).await?;
    let stored_ids: std::collections::HashSet<u64> =
        rows.iter().map(|r| r.message_id as u64).collect();
    let acked_ids: std::collections::HashSet<u64> = sent.acked().iter().map(|a| a.id).collect();
    assert_eq!(stored_ids, acked_ids, "stored and acked sets differ");
    for (channel, seen) in &watchers {
        for event in seen.lock().unwrap().iter() {
            if let Seen::Message { id, .. } = event {
                assert!(
                    stored_ids.contains(id),
                    "{channel}: {id} delivered, never stored"
                );
            }
        }
    }
    Ok(())
}

/// Starts the broker again when dropped (a no-op when it runs).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = Infra::script(&["up"]);
    }
}
