//! Every Redis master loses its data under load (`FLUSHALL` on each, what a
//! restart without persistence does). Sequence numbers continue in a new
//! epoch instead of starting again at 1, so no number is reused, and no
//! message acknowledged after the flush is skipped by a live watcher.
//! Runs alone in its binary: it empties the shared cluster.

use std::time::Duration;

use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::messages::Shards;
use chatmesh_integration_tests::traffic::{Load, LoadOptions, Seen, channel_names, not_received};
use chatmesh_proto::presence::v1 as presence;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flush_of_every_master_reuses_no_number_and_skips_nothing() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let mesh = Mesh::start(MeshOptions::default()).await?;
    let channels = channel_names("flush", 20);
    let shards = Shards::new(&mesh.infra)?;
    let load = Load::start(&mesh, channels, LoadOptions::steady(8, 150, 50)).await?;
    load.acked_at_least(300, Duration::from_secs(60)).await?;

    for master in mesh.infra.redis_masters().await? {
        let client = redis::Client::open(format!("redis://{}", master.addr))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
    }
    let acked_before = load.sent.acked().len();
    let sent = load.sent.clone();
    let watchers = load.watchers.clone();

    // Presence recovers while the watchers are still connected: their pings
    // become heartbeats again and bring their session keys back.
    let client = PresenceServiceClient::connect(format!("http://{}", mesh.presence)).await?;
    chatmesh_integration_tests::wait::until(
        "every channel's watcher online again",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let watchers = &watchers;
            async move {
                for (channel, _) in watchers {
                    let online = client
                        .clone()
                        .list_online(presence::ListOnlineRequest {
                            channel_id: channel.clone(),
                        })
                        .await?
                        .into_inner()
                        .user_ids;
                    anyhow::ensure!(
                        online.iter().any(|u| u.starts_with("watcher-")),
                        "{channel} online: {online:?}"
                    );
                }
                Ok(())
            }
        },
    )
    .await?;

    let report = load.finish(&shards, Duration::from_secs(60)).await?;
    eprintln!("{}", report.summary());
    assert!(report.is_clean(), "{report:#?}");
    let acked = sent.acked();
    let late = not_received(&acked[acked_before..], &watchers);
    assert!(
        late.is_empty(),
        "acked after the flush, not delivered: {late:?}"
    );
    // The numbering moved on: the messages after the flush are in a later
    // epoch than any before it, on every channel that saw both.
    for (channel, _) in &watchers {
        let before = acked[..acked_before]
            .iter()
            .filter(|a| &a.channel == channel)
            .map(|a| a.seq)
            .max();
        let after = acked[acked_before..]
            .iter()
            .filter(|a| &a.channel == channel)
            .map(|a| a.seq)
            .min();
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after > before, "{channel}: {after} after {before}");
        }
    }
    // Watchers were told where continuity could not be shown.
    let reloads: usize = watchers
        .iter()
        .map(|(_, s)| {
            s.lock()
                .unwrap()
                .iter()
                .filter(|e| matches!(e, Seen::Reload { .. }))
                .count()
        })
        .sum();
    eprintln!("reload_required frames: {reloads}");
    Ok(())
}
