//! Crash safety of storage: a storage process SIGKILLed three times at
//! random moments while it ingests 100,000 messages over 1,000 channels
//! still stores every acknowledged message exactly once, on its channel's
//! shard. A kill loses the batch in hand after some of its shard writes
//! landed and before its offsets were committed; the restarted process
//! replays that batch and the inserts skip what is already there.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_integration_tests::messages::{Audit, MessageLog, Shards};
use chatmesh_integration_tests::storage_process::{self, StorageProcess, samples};
use chatmesh_integration_tests::{Infra, wait};
use futures::StreamExt as _;
use rand::Rng as _;

const CHANNELS: usize = 1_000;
const MESSAGES: usize = 100_000;
const KILLS: usize = 3;
/// Sends in flight at once; the producer batches them into few requests.
const IN_FLIGHT: usize = 5_000;

/// Sends `MESSAGES` messages round-robin over `channels` and returns the
/// (channel, message ID) of each acknowledged one, and the failures.
async fn produce(
    log: Arc<MessageLog>,
    channels: Arc<Vec<String>>,
) -> (HashSet<(String, u64)>, Vec<String>) {
    let sends = (0..MESSAGES).map(|i| {
        let message = log.message(&channels[i % CHANNELS], (i / CHANNELS) as u64 + 1);
        let log = log.clone();
        async move {
            let sent = log.send(&message).await;
            (message, sent)
        }
    });
    let mut acked = HashSet::with_capacity(MESSAGES);
    let mut failed = Vec::new();
    let mut results = futures::stream::iter(sends).buffer_unordered(IN_FLIGHT);
    while let Some((message, sent)) = results.next().await {
        match sent {
            Ok(()) => {
                acked.insert((message.channel_id, message.message_id));
            }
            Err(err) => failed.push(err.to_string()),
        }
    }
    (acked, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_killed_three_times_stores_every_acked_message_exactly_once() -> anyhow::Result<()>
{
    let started = Instant::now();
    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh.test.kill-{run}");
    infra.create_topic(&topic).await?;
    let channels: Arc<Vec<String>> =
        Arc::new((0..CHANNELS).map(|i| format!("kill-{run}-{i}")).collect());
    let shards = Shards::new(&infra)?;
    let log = Arc::new(MessageLog::new(&infra, &topic)?);

    // The shipped configuration: storage is a static group member under
    // its default instance ID (the host name), so the restarted process
    // takes over the killed one's place at once, as a restarted
    // StatefulSet pod does, instead of waiting for the dead member's
    // session to expire.
    let config = storage_process::config(
        &infra,
        &topic,
        &format!("chatmesh-storage-kill-{run}"),
        "1s",
        "",
    );
    let mut storage = StorageProcess::start(&config).await?;
    let producing = tokio::spawn(produce(log, channels.clone()));

    // Each kill waits for ingestion to pass a random point in its own part
    // of the run, then for a random fraction of a batch period more, so
    // kills land anywhere in the collect, write and commit cycle.
    let mut rng = rand::rng();
    let part = MESSAGES as i64 / (KILLS as i64 + 1);
    for kill in 1..=KILLS as i64 {
        let point = rng.random_range(part * kill - part / 2..part * kill + part / 2);
        let reached = wait::until(
            &format!("{point} rows stored before kill {kill}"),
            Duration::from_secs(120),
            || {
                let (shards, channels) = (&shards, &channels);
                async move {
                    let n = shards.count(channels).await?;
                    anyhow::ensure!(n >= point, "{n} stored");
                    Ok(n)
                }
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        storage.kill().await?;
        let at_kill = shards.count(&channels).await?;
        eprintln!(
            "kill {kill}: SIGKILL at {at_kill} rows stored (aimed at {point}, {reached} seen)"
        );
        anyhow::ensure!(
            (at_kill as usize) < MESSAGES,
            "kill {kill} came after ingestion had finished"
        );
        storage.restart().await?;
    }

    let (acked, failed) = producing.await?;
    eprintln!(
        "produced {} acked, {} failed, in {:.1}s",
        acked.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        failed.is_empty(),
        "{} sends failed, first: {}",
        failed.len(),
        failed[0]
    );

    // Settled: no acked message is still on its way.
    shards
        .wait_for(&channels, acked.len() as i64, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nstorage log:\n{}", storage.log()))?;
    anyhow::ensure!(storage.is_running(), "storage exited:\n{}", storage.log());

    // The last process started from the offsets committed before the last
    // kill, so it re-read whatever had been written but not committed.
    let metrics = storage.metrics().await?;
    let read: f64 = samples(&metrics, "chatmesh_storage_batch_size_sum")
        .iter()
        .map(|(_, v)| v)
        .sum();
    let inserted: f64 = samples(&metrics, "chatmesh_storage_rows_inserted_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    eprintln!(
        "after the last kill: {read} records read, {inserted} rows new, {} skipped as already stored",
        read - inserted
    );

    let rows = shards.rows(&channels).await?;
    let audit = Audit::of(&acked, &rows, &shards)?;
    let per_shard: Vec<usize> = rows.iter().map(Vec::len).collect();
    eprintln!(
        "{audit}; rows per shard {per_shard:?}; {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    assert!(audit.is_exact(), "{audit}");
    Ok(())
}
