//! A shard server outage under steady load. With Postgres server "b"
//! (shards 2 and 3) stopped for ten seconds, the storage service stays up,
//! reports the shards down and holds its offsets; since offsets are
//! committed per batch across every shard, consumption pauses for all
//! shards and the consumer lag grows. Once the server is back, every
//! message produced is stored exactly once and the lag drains to zero.
//! Runs alone in its binary because it stops a shared Postgres server.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_integration_tests::messages::{Audit, MessageLog, Shards};
use chatmesh_integration_tests::storage_process::{self, StorageProcess, samples};
use chatmesh_integration_tests::{Infra, wait};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

const CHANNELS: usize = 200;
/// Steady load: this many sends every tick.
const PER_TICK: usize = 10;
const TICK: Duration = Duration::from_millis(20);
const OUTAGE: Duration = Duration::from_secs(10);
/// Shards on server "a" and on server "b", by index in the shard map.
const SERVER_A: [usize; 2] = [0, 1];
const SERVER_B: [usize; 2] = [2, 3];

/// Starts Postgres server "b" again when dropped, so a failing test never
/// leaves the shared infrastructure without it.
struct ServerBGuard {
    restored: bool,
}

impl ServerBGuard {
    async fn stop() -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(|| Infra::script(&["pg-stop", "b"])).await??;
        Ok(Self { restored: false })
    }

    async fn restore(mut self) -> anyhow::Result<()> {
        self.restored = true;
        tokio::task::spawn_blocking(|| Infra::script(&["pg-start", "b"])).await?
    }
}

impl Drop for ServerBGuard {
    fn drop(&mut self) {
        if !self.restored
            && let Err(e) = Infra::script(&["pg-start", "b"])
        {
            eprintln!("could not restart postgres b: {e}");
        }
    }
}

type Produced = (HashSet<(String, u64)>, Vec<String>);

/// Sends `PER_TICK` messages every `TICK` round-robin over `channels`
/// until `stop`, then waits for the sends in flight.
async fn produce_steadily(
    log: Arc<MessageLog>,
    channels: Arc<Vec<String>>,
    stop: CancellationToken,
) -> Produced {
    let mut acked = HashSet::new();
    let mut failed = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    let mut n = 0;
    let mut record = |(channel, id, sent): (String, u64, anyhow::Result<()>)| match sent {
        Ok(()) => {
            acked.insert((channel, id));
        }
        Err(e) => failed.push(e.to_string()),
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for _ in 0..PER_TICK {
                    let message = log.message(&channels[n % CHANNELS], (n / CHANNELS) as u64 + 1);
                    n += 1;
                    let log = log.clone();
                    in_flight.push(async move {
                        let sent = log.send(&message).await;
                        (message.channel_id, message.message_id, sent)
                    });
                }
            }
            Some(done) = in_flight.next() => record(done),
            () = stop.cancelled() => break,
        }
    }
    while let Some(done) = in_flight.next().await {
        record(done);
    }
    (acked, failed)
}

/// The value of `name{shard="<shard>"}`, or 0 when not reported yet.
fn per_shard(text: &str, name: &str, shard: usize) -> f64 {
    let labels = format!("{{shard=\"shard_{shard}\"}}");
    samples(text, name)
        .into_iter()
        .find(|(l, _)| *l == labels)
        .map_or(0.0, |(_, v)| v)
}

/// Total consumer lag over the partitions, once any is reported.
fn lag(text: &str) -> Option<f64> {
    let lags = samples(text, "chatmesh_storage_consumer_lag");
    (!lags.is_empty()).then(|| lags.iter().map(|(_, v)| v).sum())
}

async fn count_on(shards: &Shards, on: &[usize], channels: &[String]) -> anyhow::Result<i64> {
    let mut total = 0;
    for &shard in on {
        total += shards.count_on(shard, channels).await?;
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_server_outage_pauses_storage_and_loses_nothing() -> anyhow::Result<()> {
    let started = Instant::now();
    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh.test.outage-{run}");
    infra.create_topic(&topic).await?;
    let shards = Shards::new(&infra)?;
    let channels: Arc<Vec<String>> =
        Arc::new((0..CHANNELS).map(|i| format!("outage-{run}-{i}")).collect());
    let homes: HashSet<usize> = channels
        .iter()
        .map(|c| shards.home(c))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(homes.len() == 4, "the channels cover shards {homes:?} only");
    let config = storage_process::config(
        &infra,
        &topic,
        &format!("chatmesh-storage-outage-{run}"),
        "500ms",
        "",
    );
    let mut storage = StorageProcess::start(&config).await?;
    let log = Arc::new(MessageLog::new(&infra, &topic)?);
    let stop = CancellationToken::new();
    let producing = tokio::spawn(produce_steadily(log, channels.clone(), stop.clone()));

    // Steady state: rows arrive on every shard and the lag is measured.
    wait::until(
        "rows on every shard and a lag reading",
        Duration::from_secs(60),
        || {
            let (shards, channels, storage) = (&shards, &channels, &storage);
            async move {
                for shard in 0..4 {
                    anyhow::ensure!(
                        shards.count_on(shard, channels).await? > 0,
                        "nothing on shard {shard} yet"
                    );
                }
                lag(&storage.metrics().await?).context("no lag reported")?;
                Ok(())
            }
        },
    )
    .await?;

    let guard = ServerBGuard::stop().await?;
    let stopped = Instant::now();
    eprintln!("postgres b stopped");

    // The write of the batch in hand fails on server b and is retried;
    // server a's share of that batch is written.
    let metrics = wait::until(
        "shards 2 and 3 reported down",
        Duration::from_secs(OUTAGE.as_secs() - 2),
        || async {
            let text = storage.metrics().await?;
            let down: Vec<f64> = (0..4)
                .map(|s| per_shard(&text, "chatmesh_storage_shard_down", s))
                .collect();
            anyhow::ensure!(
                SERVER_B.iter().any(|&s| down[s] == 1.0),
                "shard_down {down:?}"
            );
            Ok(text)
        },
    )
    .await?;
    for s in SERVER_A {
        assert_eq!(
            per_shard(&metrics, "chatmesh_storage_shard_down", s),
            0.0,
            "shard {s} is up"
        );
    }
    let on_a = count_on(&shards, &SERVER_A, &channels).await?;
    let lag_before = lag(&metrics).unwrap_or_default();

    // For the rest of the outage the process stays up, the consumer stays
    // on the batch in hand, so server a gets nothing newer, and the lag
    // grows with the steady load.
    let lag_during = wait::until(
        "the lag to grow during the outage",
        OUTAGE.saturating_sub(stopped.elapsed()),
        || async {
            let lag = lag(&storage.metrics().await?).unwrap_or_default();
            anyhow::ensure!(
                lag >= lag_before + 1_000.0,
                "lag {lag}, {lag_before} at the start"
            );
            Ok(lag)
        },
    )
    .await?;
    // The outage lasts its full length whatever the checks took.
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    let text = storage.metrics().await?;
    anyhow::ensure!(storage.is_running(), "storage exited:\n{}", storage.log());
    reqwest::get(format!("http://{}/livez", storage.admin))
        .await?
        .error_for_status()?;
    assert_eq!(
        count_on(&shards, &SERVER_A, &channels).await?,
        on_a,
        "server a received rows past the stalled batch"
    );
    let failures: f64 = SERVER_B
        .iter()
        .map(|&s| per_shard(&text, "chatmesh_storage_write_failures_total", s))
        .sum();
    assert!(failures >= 2.0, "{failures} failed writes retried");
    eprintln!(
        "outage of {:.1}s: {on_a} rows on server a held, lag {lag_before} -> {lag_during} -> {}, {failures} failed writes",
        stopped.elapsed().as_secs_f64(),
        lag(&text).unwrap_or_default()
    );

    guard.restore().await?;
    eprintln!(
        "postgres b back after {:.1}s",
        stopped.elapsed().as_secs_f64()
    );
    // Load continues until the stalled batch has gone through.
    wait::until(
        "shards 2 and 3 up again",
        Duration::from_secs(60),
        || async {
            let text = storage.metrics().await?;
            let down: Vec<f64> = SERVER_B
                .iter()
                .map(|&s| per_shard(&text, "chatmesh_storage_shard_down", s))
                .collect();
            anyhow::ensure!(down.iter().all(|d| *d == 0.0), "shard_down {down:?}");
            Ok(())
        },
    )
    .await?;
    stop.cancel();
    let (acked, failed) = producing.await?;
    anyhow::ensure!(
        failed.is_empty(),
        "{} sends failed, first: {}",
        failed.len(),
        failed[0]
    );

    shards
        .wait_for(&channels, acked.len() as i64, Duration::from_secs(60))
        .await?;
    let drained = Instant::now();
    wait::until("the lag to drain", Duration::from_secs(30), || async {
        let t = storage.metrics().await?;
        let lag = lag(&t).unwrap_or(f64::NAN);
        anyhow::ensure!(lag == 0.0, "lag {lag}");
        Ok(())
    })
    .await?;
    let rows = shards.rows(&channels).await?;
    let audit = Audit::of(&acked, &rows, &shards)?;
    eprintln!(
        "{audit}; lag 0 {:.1}s after the last row; {:.1}s in all",
        drained.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(audit.is_exact(), "{audit}");
    Ok(())
}
