//! Measurement 1: the gateway's resident memory per idle connection, at
//! each connection count asked for, on one process.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::{load_average, rss_kib};
use chatmesh_integration_tests::mesh::Mesh;
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_integration_tests::wait;
use chatmesh_proto::presence::v1 as presence;

use crate::client::{Fleet, grow_to, print_errors};
use crate::setup::drain_queues;

/// The goal the figures are held against.
const GOAL_KIB: f64 = 8.0;
/// How long the frames queued by a connection burst may take to drain.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

/// Grows `fleet` to each count of `counts` in turn (ascending) and prints
/// the gateway's memory per connection at each, measured from `rss_before`,
/// taken before any client connected.
pub(crate) async fn run(
    mesh: &Mesh,
    fleet: &mut Fleet,
    counts: &[usize],
    rss_before: u64,
) -> anyhow::Result<()> {
    println!();
    println!(
        "1. idle memory per connection, one gateway process (load {})",
        load_average()
    );
    println!("  gateway RSS before any client: {rss_before} KiB");
    for &n in counts {
        let added = n.saturating_sub(fleet.len());
        let took = grow_to(fleet, n).await?;
        wait_online(mesh, fleet).await?;
        let drained = drain_queues(mesh.chats[0], fleet, DRAIN_DEADLINE).await?;
        println!(
            "  every client received a message sent after the burst {:.1}s later",
            drained.as_secs_f64()
        );
        let rss = rss_kib(gateway_pid(mesh)?)?;
        let disconnects = fleet.disconnects();
        let per = rss.saturating_sub(rss_before) as f64 / n as f64;
        println!(
            "  {n} connections ({added} new, connected and subscribed in {:.1}s, {:.0}/s): RSS {rss} KiB; {per:.2} KiB per connection (goal <= {GOAL_KIB} KiB: {})",
            took.as_secs_f64(),
            added as f64 / took.as_secs_f64(),
            if per <= GOAL_KIB { "met" } else { "MISSED" },
        );
        if disconnects > 0 {
            println!("  {disconnects} connections ended while idle");
        }
    }
    print_errors("idle connections", &fleet.take_errors());
    Ok(())
}

/// The pid of the gateway process.
pub(crate) fn gateway_pid(mesh: &Mesh) -> anyhow::Result<u32> {
    mesh.pids()
        .into_iter()
        .find_map(|(name, pid)| (name == "gw-0").then_some(pid))
        .context("gw-0 is not running")
}

/// Waits until presence shows every client of the fleet online in its
/// channel: the burst of joins is then processed and fanned out, and the
/// connections are idle.
pub(crate) async fn wait_online(mesh: &Mesh, fleet: &Fleet) -> anyhow::Result<()> {
    let start = Instant::now();
    let client =
        presence::presence_service_client::PresenceServiceClient::new(channel(mesh.presence));
    let channels = &fleet.shared().channels;
    let mut expected = vec![0usize; channels.len()];
    for state in fleet.states() {
        expected[state.channel] += 1;
    }
    for (id, &want) in channels.iter().zip(&expected) {
        wait::until("clients online", Duration::from_secs(60), || {
            let (mut client, id) = (client.clone(), id.clone());
            async move {
                let online = client
                    .list_online(presence::ListOnlineRequest { channel_id: id })
                    .await?
                    .into_inner()
                    .user_ids
                    .len();
                anyhow::ensure!(online >= want, "{online} of {want} online");
                anyhow::Ok(())
            }
        })
        .await?;
    }
    println!(
        "  presence showed every client online {:.1}s later",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
