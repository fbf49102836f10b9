//! What it costs to number a message safely. On the local Redis Cluster, in
//! one run: the plain `INCR` the sequencer used to send, against the
//! epoch-checked script it sends now (which also reads the master's
//! replication ID), both one round trip per number, sequential and with
//! many numbers in flight. Prints µs per number and the ratio.
//!
//!
//! Then admission, what the send path does before the append: the three
//! steps one round trip each (the channel's rate counter, the number, the
//! idempotency claim; `Stepwise` over the Redis adapters), against the one
//! script in the channel's slot the chat service runs (`RedisAdmission`),
//! for keyed messages, in the same run.
//!
//! Parameters: BENCH_SEQ_CALLS (numbers per measurement), BENCH_SEQ_CHANNELS
//! (channels the numbers are spread over), BENCH_SEQ_IN_FLIGHT.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::param;
use chatmesh_chat::adapters::{RedisAdmission, RedisIdempotency, RedisRateLimiter};
use chatmesh_chat::ports::{Admission, Admitted, IdempotencyKey, Sequencer as _};
use chatmesh_chat::{SendLimits, Stepwise};
use chatmesh_ids::{ChannelId, ChatMessage, Snowflake, UserId};
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
        let (p, c) = interleaved(calls, depth, incr, script).await?;
        println!(
            "  {label:<10} ({depth:>2} at once): INCR {p:>6.1} µs/number, epoch-checked script {c:>6.1} µs/number, ratio {:.2}",
            c / p
        );
    }

    // Admission of keyed messages, each under a key of its own, with a
    // channel limit no run reaches.
    let limits = SendLimits {
        channel_per_second: u32::MAX,
        ..SendLimits::default()
    };
    let idempotency = RedisIdempotency::new(redis.clone());
    let stepwise: Arc<dyn Admission> = Arc::new(Stepwise {
        limiter: Arc::new(RedisRateLimiter::new(redis.clone(), &limits)),
        sequencer: Arc::new(sequencer.clone()),
        idempotency: Arc::new(idempotency.clone()),
    });
    let one_script: Arc<dyn Admission> =
        Arc::new(RedisAdmission::new(sequencer.clone(), idempotency, &limits));
    let ids = Snowflake::new(1).context("worker ID 1")?;
    let made = AtomicU64::new(0);
    let sender = UserId::new(format!("bench-admit-{run}"))?;
    let admit = |admission: Arc<dyn Admission>, tag: &'static str| {
        let (names, ids, sender, run, made) = (&names, &ids, &sender, &run, &made);
        move |i: usize| {
            let admission = admission.clone();
            let channel = names[i % channels].clone();
            let key = IdempotencyKey {
                channel: channel.clone(),
                sender: sender.clone(),
                key: format!("{tag}-{run}-{}", made.fetch_add(1, Ordering::Relaxed)),
            };
            let id = ids.next_id();
            let draft = ChatMessage {
                id,
                channel,
                sender: sender.clone(),
                seq: 0,
                body: "bench".into(),
                attachments: Vec::new(),
                created_at_ms: id.unix_ms() as i64,
                idempotency_key: Some(key.key.clone()),
                change: Default::default(),
                reply_to: None,
                state: Default::default(),
            };
            async move {
                match admission
                    .admit(&draft, Some(&key), Duration::from_secs(60))
                    .await?
                {
                    Admitted::New(_) => Ok(()),
                    other => anyhow::bail!("a fresh key was not new: {other:?}"),
                }
            }
        }
    };
    println!("admission of keyed messages: {calls} per run over {channels} channels");
    for (label, depth) in [("sequential", 1), ("in flight", in_flight)] {
        let (steps, one) = interleaved(
            calls,
            depth,
            admit(stepwise.clone(), "steps"),
            admit(one_script.clone(), "one"),
        )
        .await?;
        println!(
            "  {label:<10} ({depth:>2} at once): three round trips {steps:>6.1} µs/message, one script {one:>6.1} µs/message, ratio {:.2}",
            one / steps
        );
    }
    Ok(())
}

/// The best of two runs of each of `a` and `b`, interleaved so neither gets
/// the warmer machine: µs per call.
async fn interleaved<A, AF, B, BF>(
    calls: usize,
    depth: usize,
    a: A,
    b: B,
) -> anyhow::Result<(f64, f64)>
where
    A: Fn(usize) -> AF,
    AF: std::future::Future<Output = anyhow::Result<()>>,
    B: Fn(usize) -> BF,
    BF: std::future::Future<Output = anyhow::Result<()>>,
{
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        first.push(timed(calls, depth, &a).await?);
        second.push(timed(calls, depth, &b).await?);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((best(&first), best(&second)))
}
