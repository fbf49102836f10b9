//! One of two gateway nodes is SIGKILLed under load. Its watchers reconnect
//! to the survivor, which takes over the dead node's channels on its ring
//! within seconds and never redirects to it; each watcher resumes with its
//! last sequence number and ends with every acknowledged message exactly
//! once, in order.

use std::time::Duration;

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions, Seen, channel_names, not_received};
use chatmesh_integration_tests::wait;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_gateways_clients_resume_on_the_survivor() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    let channels = channel_names("gwkill", 30);
    let shards = Shards::new(&mesh.infra)?;
    let load = Load::start(&mesh, channels.clone(), LoadOptions::steady(8, 200, 40)).await?;
    load.acked_at_least(400, Duration::from_secs(60)).await?;
    mesh.kill("gw-1").await?;

    // The survivor routes every channel to itself within a few seconds.
    let survivor = mesh.gateways[0];
    let started = std::time::Instant::now();
    wait::until(
        "the survivor owns every channel",
        Duration::from_secs(10),
        || {
            let channels = channels.clone();
            async move {
                let client = reqwest::Client::new();
                for channel in &channels {
                    let route: serde_json::Value = client
                        .get(format!("http://{survivor}/v1/route/{channel}"))
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    anyhow::ensure!(route["node"] == "gw-0", "{channel} routes to {route}");
                }
                Ok(())
            }
        },
    )
    .await?;
    eprintln!("the survivor took over in {:?}", started.elapsed());

    let watchers = load.watchers.clone();
    let sent = load.sent.clone();
    let report = load.finish(&shards, Duration::from_secs(60)).await?;
    eprintln!("{}", report.summary());
    assert!(report.is_clean(), "{report:#?}");
    let late = not_received(&sent.acked(), &watchers);
    assert!(late.is_empty(), "acked, never delivered: {late:?}");
    let moved = watchers
        .iter()
        .filter(|(_, s)| s.lock().unwrap().contains(&Seen::Reconnected))
        .count();
    assert!(moved > 0, "no watcher was on the killed node");
    eprintln!("{moved} of {} watchers reconnected", watchers.len());
    Ok(())
}
