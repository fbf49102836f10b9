//! A Redis master dies under load and its replica takes over. Fan-out
//! resumes on every channel, presence keeps working, no sequence number is
//! reused, and every watcher either sees a dense sequence or is told to
//! reload what it cannot be given. Runs alone in its binary: it kills a
//! node of the shared cluster (brought back, as a replica, at the end).

use std::time::Duration;

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions, not_received};
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_proto::presence::v1 as presence;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use chatmesh_redis::key_slot;

/// 50 channels, at least 15 on each master.
fn spread_channels(masters: &[chatmesh_redis::Master]) -> Vec<String> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut per_master = vec![Vec::new(); masters.len()];
    let mut i = 0;
    while per_master.iter().map(Vec::len).sum::<usize>() < 50 {
        let name = format!("fo-{run}-{i}");
        i += 1;
        let slot = key_slot(chatmesh_redis::keys::seq(&name).as_bytes());
        let owner = masters.iter().position(|m| m.owns(slot)).unwrap_or(0);
        let full = per_master[owner].len() >= 50 - 15 * (masters.len() - 1);
        if !full {
            per_master[owner].push(name);
        }
    }
    per_master.into_iter().flatten().collect()
}

/// Brings a killed node back (as a replica) even when the test fails
/// half-way, so the tests after this one find a whole cluster.
struct RestoreCluster;

impl Drop for RestoreCluster {
    fn drop(&mut self) {
        if let Err(e) = Infra::script(&["up"]) {
            eprintln!("could not restore the cluster: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_failover_under_load_skips_nothing_silently() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mesh = Mesh::start(MeshOptions::default()).await?;
    let masters = mesh.infra.redis_masters().await?;
    anyhow::ensure!(masters.len() == 3, "expected 3 masters: {masters:?}");
    let channels = spread_channels(&masters);
    let shards = Shards::new(&mesh.infra)?;
    let load = Load::start(&mesh, channels, LoadOptions::steady(10, 200, 50)).await?;
    load.acked_at_least(400, Duration::from_secs(60)).await?;

    // SIGKILL the master of the first channel's slot; its replica is
    // promoted once the cluster notices (cluster-node-timeout).
    let victim = masters[0].addr.clone();
    let slot = masters[0].slots[0].0;
    let _restore = RestoreCluster;
    std::process::Command::new("kill")
        .args(["-KILL", &Infra::redis_pid(&victim)?])
        .status()?;
    let infra = Infra::load()?;
    wait::until("a replica promoted", Duration::from_secs(30), || async {
        let now = infra.redis_masters().await?;
        let owner = now.iter().find(|m| m.owns(slot)).map(|m| m.addr.clone());
        anyhow::ensure!(
            owner.as_ref().is_some_and(|o| *o != victim),
            "slot {slot} still on {owner:?}"
        );
        Ok(())
    })
    .await?;
    let acked_before = load.sent.acked().len();

    // Presence keeps answering: the watcher, pinging all along, is online.
    // It may answer `unavailable` until its Redis client follows the new
    // topology (the slot owners are reread every second, and a change
    // makes a fresh connection), then must answer again within seconds.
    let client = PresenceServiceClient::connect(format!("http://{}", mesh.presence)).await?;
    let watcher_user = wait::until("presence answering", Duration::from_secs(8), || {
        let mut client = client.clone();
        let channel = load.channels[0].clone();
        async move {
            let online = client
                .list_online(presence::ListOnlineRequest {
                    channel_id: channel,
                })
                .await?
                .into_inner();
            anyhow::Ok(online.user_ids)
        }
    })
    .await?;

    let watchers = load.watchers.clone();
    let sent = load.sent.clone();
    let report = load.finish(&shards, Duration::from_secs(60)).await;
    // Bring the killed node back (it rejoins as a replica) before judging,
    // so the tests after this one find a whole cluster.
    Infra::script(&["up"])?;
    let report = report?;
    eprintln!("{}", report.summary());
    assert!(
        watcher_user.iter().any(|u| u.starts_with("watcher-")),
        "presence lost the watcher: {watcher_user:?}"
    );
    assert!(report.is_clean(), "{report:#?}");
    // Every message acked after the failover reached every watcher as a
    // message, not only inside a range to reload.
    let acked = sent.acked();
    let late = not_received(&acked[acked_before..], &watchers);
    assert!(
        late.is_empty(),
        "acked after the failover, not delivered: {late:?}"
    );
    Ok(())
}
