//! Restarts of storage as a supervisor makes them, on the shipped
//! configuration (the group instance ID left to its default):
//!
//! - SIGKILLed and started again 4 s later, three times while messages are
//!   sent: the restarted process takes its partitions back, and every
//!   acknowledged message is stored exactly once soon after the last
//!   restart. (A dynamic member restarted this fast is a stranger to the
//!   group: tansu 0.6 keeps the dead member's session and gives the new
//!   process no partitions at all.)
//! - SIGKILLed and started again only 15 s later: still within its static
//!   session, so it takes its partitions back. (tansu 0.6 counts a rejoined
//!   member's session from its predecessor's last heartbeat; past the
//!   session timeout it expires the member and the group never forms
//!   again.)
//! - One of two instances stopped with SIGTERM, as a scale-down does: it
//!   leaves the group, the other takes every partition, and when it starts
//!   again it takes its share back; nothing is lost on the way.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_integration_tests::messages::{Audit, MessageLog, Shards};
use chatmesh_integration_tests::storage_process::{self, StorageProcess};
use chatmesh_integration_tests::{Infra, wait};

const CHANNELS: usize = 100;
const MESSAGES: usize = 2_000;
const RESTARTS: usize = 3;
/// Between a kill and the restart: a supervisor's restart delay.
const DOWN: Duration = Duration::from_secs(4);
/// A slow restart: longer than a dynamic member's session (10 s), shorter
/// than a static member's (`chatmesh_kafka::STATIC_SESSION_TIMEOUT`).
const SLOW_DOWN: Duration = Duration::from_secs(15);
/// From the last restart to every acked message stored.
const SETTLE: Duration = Duration::from_secs(30);
/// The pace of sends: `MESSAGES` of them take about 50 s, long enough for
/// three restarts in the middle.
const SEND_EVERY: Duration = Duration::from_millis(25);
/// Partitions of a test topic (`Infra::create_topic`).
const PARTITIONS: f64 = 8.0;

/// Messages acknowledged so far, shared with the producer.
#[derive(Debug, Default)]
struct Acked {
    // A std mutex: inserts and counts, never held across an await.
    keys: Mutex<HashSet<(String, u64)>>,
}

impl Acked {
    fn len(&self) -> usize {
        self.keys.lock().unwrap().len()
    }

    fn snapshot(&self) -> HashSet<(String, u64)> {
        self.keys.lock().unwrap().clone()
    }
}

/// Sends `MESSAGES` messages round-robin over `channels`, one every
/// `SEND_EVERY`; returns the failures.
async fn produce(
    log: Arc<MessageLog>,
    channels: Arc<Vec<String>>,
    acked: Arc<Acked>,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut tick = tokio::time::interval(SEND_EVERY);
    for i in 0..MESSAGES {
        tick.tick().await;
        let message = log.message(
            &channels[i % channels.len()],
            (i / channels.len()) as u64 + 1,
        );
        match log.send(&message).await {
            Ok(()) => {
                acked
                    .keys
                    .lock()
                    .unwrap()
                    .insert((message.channel_id, message.message_id));
            }
            Err(err) => failed.push(err.to_string()),
        }
    }
    failed
}

async fn wait_ready(storage: &StorageProcess, what: &str) -> anyhow::Result<()> {
    wait::until(what, Duration::from_secs(60), || async {
        let (ready, body) = storage.readyz().await?;
        anyhow::ensure!(ready, "{body}");
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nstorage log:\n{}", storage.log()))
}

async fn assigned(storage: &StorageProcess) -> anyhow::Result<f64> {
    storage
        .metric("chatmesh_storage_assigned_partitions")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no assignment reported yet"))
}

/// Both instances hold partitions, and between them all of them.
async fn split(a: &StorageProcess, b: &StorageProcess) -> anyhow::Result<()> {
    let (on_a, on_b) = (assigned(a).await?, assigned(b).await?);
    anyhow::ensure!(
        on_a > 0.0 && on_b > 0.0 && on_a + on_b == PARTITIONS,
        "a holds {on_a}, b {on_b}"
    );
    Ok(())
}

struct Run {
    infra: Infra,
    run: String,
    topic: String,
    group: String,
    channels: Arc<Vec<String>>,
    shards: Shards,
    log: Arc<MessageLog>,
}

impl Run {
    async fn new(name: &str) -> anyhow::Result<Self> {
        let infra = Infra::load()?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let topic = format!("chatmesh.test.{name}-{run}");
        infra.create_topic(&topic).await?;
        let channels = Arc::new((0..CHANNELS).map(|i| format!("{name}-{run}-{i}")).collect());
        Ok(Self {
            shards: Shards::new(&infra)?,
            log: Arc::new(MessageLog::new(&infra, &topic)?),
            group: format!("chatmesh-storage-{name}-{run}"),
            infra,
            run,
            topic,
            channels,
        })
    }

    /// The storage configuration as `scripts/run` writes it, but for the
    /// ports and the test's topic and group.
    fn config(&self) -> String {
        storage_process::config(&self.infra, &self.topic, &self.group, "1s", "")
    }

    fn produce(&self, acked: &Arc<Acked>) -> tokio::task::JoinHandle<Vec<String>> {
        tokio::spawn(produce(
            self.log.clone(),
            self.channels.clone(),
            acked.clone(),
        ))
    }

    /// Every acked message stored exactly once, on its shard, within
    /// `timeout`.
    async fn audit(&self, acked: &Acked, timeout: Duration, log: &str) -> anyhow::Result<Audit> {
        let acked = acked.snapshot();
        self.shards
            .wait_for(&self.channels, acked.len() as i64, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nstorage log:\n{log}"))?;
        let rows = self.shards.rows(&self.channels).await?;
        Audit::of(&acked, &rows, &self.shards)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_killed_and_restarted_takes_its_partitions_back() -> anyhow::Result<()> {
    let started = Instant::now();
    let run = Run::new("restart").await?;
    let mut storage = StorageProcess::start(&run.config()).await?;
    wait_ready(&storage, "storage ready").await?;
    eprintln!(
        "storage joined and ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let acked = Arc::new(Acked::default());
    let producing = run.produce(&acked);

    let mut last_restart = Instant::now();
    for restart in 1..=RESTARTS {
        let point = MESSAGES * restart / (RESTARTS + 1);
        wait::until(
            &format!("{point} sends acked before kill {restart}"),
            Duration::from_secs(120),
            || async {
                let n = acked.len();
                anyhow::ensure!(n >= point, "{n} acked");
                Ok(())
            },
        )
        .await?;
        let stored = run.shards.count(&run.channels).await?;
        storage.kill().await?;
        let killed = Instant::now();
        eprintln!("kill {restart}: SIGKILL at {point} acked, {stored} stored");
        // The scenario, not a synchronisation: a supervisor's delay.
        tokio::time::sleep(DOWN).await;
        storage.restart().await?;
        last_restart = Instant::now();
        // Measured, not required: how long the group took to give the
        // restarted process its partitions.
        let back = wait::until("partitions back", Duration::from_secs(60), || async {
            let n = assigned(&storage).await?;
            anyhow::ensure!(n > 0.0, "{n} assigned");
            Ok(n)
        })
        .await;
        match back {
            Ok(n) => eprintln!(
                "restart {restart}: {n} partitions back {:.1}s after the kill",
                killed.elapsed().as_secs_f64()
            ),
            Err(err) => eprintln!("restart {restart}: {err}"),
        }
    }

    let failed = producing.await?;
    anyhow::ensure!(
        failed.is_empty(),
        "{} sends failed, first: {}",
        failed.len(),
        failed[0]
    );
    let left = SETTLE.saturating_sub(last_restart.elapsed());
    let audit = run.audit(&acked, left, &storage.log()).await?;
    eprintln!(
        "{audit}; settled {:.1}s after the last restart, {:.1}s in all",
        last_restart.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(audit.is_exact(), "{audit}");
    anyhow::ensure!(storage.is_running(), "storage exited:\n{}", storage.log());
    assert_eq!(
        assigned(&storage).await?,
        PARTITIONS,
        "the last process holds every partition"
    );
    assert_eq!(storage.metric("chatmesh_storage_stalled").await?, Some(0.0));
    let (ready, body) = storage.readyz().await?;
    assert!(ready, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_restart_within_the_session_takes_the_partitions_back() -> anyhow::Result<()> {
    let started = Instant::now();
    let run = Run::new("slow").await?;
    let mut storage = StorageProcess::start(&run.config()).await?;
    wait_ready(&storage, "storage ready").await?;
    let acked = Arc::new(Acked::default());
    let producing = run.produce(&acked);
    wait::until("sends under way", Duration::from_secs(60), || async {
        anyhow::ensure!(acked.len() >= MESSAGES / 4, "{} acked", acked.len());
        Ok(())
    })
    .await?;

    storage.kill().await?;
    let killed = Instant::now();
    // The scenario: a supervisor that takes its time.
    tokio::time::sleep(SLOW_DOWN).await;
    storage.restart().await?;
    let restarted = Instant::now();
    wait::until("partitions back", Duration::from_secs(30), || async {
        let n = assigned(&storage).await?;
        anyhow::ensure!(n == PARTITIONS, "{n} assigned");
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nstorage log:\n{}", storage.log()))?;
    eprintln!(
        "restarted {:.1}s after the kill: partitions back {:.1}s later",
        SLOW_DOWN.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );

    let failed = producing.await?;
    anyhow::ensure!(
        failed.is_empty(),
        "{} sends failed, first: {}",
        failed.len(),
        failed[0]
    );
    let audit = run.audit(&acked, SETTLE, &storage.log()).await?;
    eprintln!(
        "{audit}; {:.1}s from the kill, {:.1}s in all",
        killed.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(audit.is_exact(), "{audit}");
    // Taken back as the same member: assigned once and never revoked. A
    // broker that expired the member on its first heartbeat would have
    // made it revoke what it was given and rejoin.
    let log = storage.log();
    let rebalances = |message: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("\"message\":\"{message}\"")))
            .count()
    };
    assert_eq!(
        (
            rebalances("partitions assigned"),
            rebalances("partitions revoked")
        ),
        (1, 0),
        "storage log:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_instance_hands_its_partitions_over_and_takes_them_back() -> anyhow::Result<()>
{
    let started = Instant::now();
    let run = Run::new("scale").await?;
    // Two processes on one host: each needs an instance ID of its own.
    let config = |name: &str| {
        storage_process::with_fields(
            &run.config(),
            &[&format!("instance_id = \"storage-{name}-{}\"", run.run)],
        )
    };
    let a = StorageProcess::start(&config("a")).await?;
    let mut b = StorageProcess::start(&config("b")).await?;
    wait::until(
        "both instances holding partitions",
        Duration::from_secs(60),
        || split(&a, &b),
    )
    .await?;
    wait_ready(&a, "a ready").await?;
    wait_ready(&b, "b ready").await?;

    let acked = Arc::new(Acked::default());
    let producing = run.produce(&acked);
    wait::until("sends under way", Duration::from_secs(60), || async {
        anyhow::ensure!(acked.len() >= MESSAGES / 4, "{} acked", acked.len());
        Ok(())
    })
    .await?;

    let status = b.terminate(Duration::from_secs(30)).await?;
    anyhow::ensure!(status.success(), "b exited with {status}:\n{}", b.log());
    let terminated = Instant::now();
    wait::until(
        "a holding every partition",
        Duration::from_secs(30),
        || async {
            let n = assigned(&a).await?;
            anyhow::ensure!(n == PARTITIONS, "a holds {n}");
            Ok(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nb's log:\n{}", b.log()))?;
    eprintln!(
        "b left with SIGTERM: a holds every partition {:.1}s later",
        terminated.elapsed().as_secs_f64()
    );

    b.restart().await?;
    let restarted = Instant::now();
    wait::until("b holding its share again", Duration::from_secs(60), || {
        split(&a, &b)
    })
    .await?;
    eprintln!(
        "b restarted: the partitions are split again {:.1}s later",
        restarted.elapsed().as_secs_f64()
    );

    let failed = producing.await?;
    anyhow::ensure!(
        failed.is_empty(),
        "{} sends failed, first: {}",
        failed.len(),
        failed[0]
    );
    let audit = run.audit(&acked, SETTLE, &b.log()).await?;
    eprintln!("{audit}; {:.1}s in all", started.elapsed().as_secs_f64());
    assert!(audit.is_exact(), "{audit}");
    Ok(())
}
