//! What it costs to number a message safely. On the local Redis Cluster, in
//! one run: the plain `INCR` the sequencer used to send, against the
//! epoch-checked script it sends now (which also reads the master's
//! replication ID), both one round trip per number, sequential and with
//! many numbers in flight. Prints µs per number and the ratio.
//!
//! Parameters: BENCH_SEQ_CALLS (numbers per measurement), BENCH_SEQ_CHANNELS
//! (channels the numbers are spread over), BENCH_SEQ_IN_FLIGHT.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use chatmesh_bench::param;
use chatmesh_chat::ports::Sequencer as _;
use chatmesh_ids::ChannelId;
use chatmesh_integration_tests::Infra;
use futures::StreamExt as _;

async fn timed<F, Fut>(calls: usize, in_flight: usize, f: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    let mut results = futures::stream::iter((0..calls).map(f)).buffer_unordered(in_flight);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / calls as f64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let calls = param("BENCH_SEQ_CALLS", 20_000) as usize;
    let channels = param("BENCH_SEQ_CHANNELS", 100) as usize;
    let in_flight = param("BENCH_SEQ_IN_FLIGHT", 64) as usize;
    let infra = Infra::load()?;
    let redis = infra.redis()?;
    let sequencer = infra.sequencer().await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let names: Vec<ChannelId> = (0..channels)
        .map(|i| ChannelId::new(format!("bench-seq-{run}-{i}")))
        .collect::<Result<_, _>>()?;
    // Warm both paths: connections, script cache, first epochs.
    for c in &names {
        sequencer.next(c).await?;
    }
    let incr = |i: usize| {
        let redis = redis.clone();
        let key = chatmesh_redis::keys::seq(&format!("bench-incr-{run}-{}", i % channels));
        async move {
            let mut conn = redis.conn().await?;
            redis::cmd("INCR")
                .arg(key)
                .query_async::<u64>(&mut conn)
                .await?;
            Ok(())
        }
    };
    let script = |i: usize| {
        let sequencer = sequencer.clone();
        let channel = names[i % channels].clone();
        async move {
            sequencer.next(&channel).await?;
            Ok(())
        }
    };
    println!("sequence numbers: {calls} per run over {channels} channels");
    for (label, depth) in [("sequential", 1), ("in flight", in_flight)] {
        // Interleaved twice, so neither side gets the warmer machine.
        let mut plain = Vec::new();
        let mut checked = Vec::new();
        for _ in 0..2 {
            plain.push(timed(calls, depth, incr).await?);
            checked.push(timed(calls, depth, script).await?);
        }
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (p, c) = (best(&plain), best(&checked));
        println!(
            "  {label:<10} ({depth:>2} at once): INCR {p:>6.1} µs/number, epoch-checked script {c:>6.1} µs/number, ratio {:.2}",
            c / p
        );
    }
    Ok(())
}
