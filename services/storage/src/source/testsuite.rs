//! The shared test suite of [`LogSource`]: what the consumer relies on
//! from the log, held against every implementation. The unit tests run it
//! on [`MemorySource`], and `integration-tests/tests/log_source_suites.rs`
//! on [`KafkaSource`](super::KafkaSource) against the broker
//! `scripts/infra` starts.
//!
//! A source is one member of a consumer group, so the suite reaches it
//! through a [`LogFixture`] that produces records and starts and stops
//! members. Each test uses consumer groups of its own, and
//! [`log_source_suite!`](crate::log_source_suite) builds a fresh fixture
//! (for Kafka, a fresh topic) per test.

use std::hash::BuildHasher as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{LogSource, Offsets, Record};

/// Expands to one `#[tokio::test]` per suite test, each on the
/// [`LogFixture`] `$make` evaluates to (inside the async test, so it may
/// `.await` and use `?` on an `anyhow::Result`).
#[macro_export]
macro_rules! log_source_suite {
    ($make:expr) => {
        $crate::log_source_suite!(@tests $make;
            records_arrive_with_their_partition_and_offset,
            a_new_member_resumes_after_the_groups_commits,
            groups_keep_their_own_commits,
            a_receive_error_loses_no_record,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        mod log_source {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() -> ::anyhow::Result<()> {
                    let log = $make;
                    $crate::source::testsuite::$name(&log).await
                }
            )*
        }
    };
}

/// A log under test: where records are produced, and members of consumer
/// groups that read it through the [`LogSource`] under test.
#[async_trait]
pub trait LogFixture: Send + Sync {
    /// The source under test.
    type Source: LogSource;

    /// Appends `payload` to `partition` and returns its offset.
    async fn produce(&self, partition: i32, payload: &[u8]) -> anyhow::Result<i64>;

    /// A new member of `group`. Once it owns the log's partitions it reads
    /// each from the group's last commit, or from the start when the group
    /// committed none there.
    async fn join(&self, group: &str) -> anyhow::Result<Self::Source>;

    /// Stops `member`, as a consumer that shuts down; the group keeps its
    /// commits.
    async fn leave(&self, member: Self::Source) -> anyhow::Result<()>;

    /// Makes a receive of `member` fail soon, before or among the records
    /// produced next.
    async fn interrupt(&self, member: &Self::Source) -> anyhow::Result<()>;
}

/// How long a test waits for the records it expects; a Kafka group takes
/// some seconds to form.
const RECEIVE_WAIT: Duration = Duration::from_secs(60);

/// Differs between processes, so groups of earlier runs never collide.
static RUN: LazyLock<u64> =
    LazyLock::new(|| std::collections::hash_map::RandomState::new().hash_one(std::process::id()));
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A consumer group no other test or run uses.
pub fn unique_group(label: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("suite-{label}-{:016x}-{n}", *RUN)
}

/// What was read: the records in arrival order, and how many receives
/// failed.
#[derive(Debug, Default)]
struct Received {
    records: Vec<Record>,
    errors: usize,
}

/// Receives until `count` records have arrived, passing over failed
/// receives as the consumer does.
async fn receive(source: &impl LogSource, count: usize) -> anyhow::Result<Received> {
    receive_until(source, |got| got.records.len() >= count).await
}

/// Receives until `done` holds of what arrived.
async fn receive_until(
    source: &impl LogSource,
    done: impl Fn(&Received) -> bool,
) -> anyhow::Result<Received> {
    let mut got = Received::default();
    let reading = async {
        while !done(&got) {
            match source.recv().await {
                Ok(record) => got.records.push(record),
                Err(_) => got.errors += 1,
            }
            anyhow::ensure!(got.errors < 10_000, "receives keep failing");
        }
        Ok(())
    };
    tokio::time::timeout(RECEIVE_WAIT, reading)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "after {RECEIVE_WAIT:?}, {} records and {} failed receives",
                got.records.len(),
                got.errors
            )
        })??;
    Ok(got)
}

/// A record as produced.
fn record(partition: i32, offset: i64, payload: &str) -> Record {
    Record {
        partition,
        offset,
        payload: Some(payload.as_bytes().to_vec()),
        traceparent: None,
    }
}

/// Produces `payload` to `partition` and returns the record it made.
async fn produce(log: &impl LogFixture, partition: i32, payload: &str) -> anyhow::Result<Record> {
    let offset = log.produce(partition, payload.as_bytes()).await?;
    Ok(record(partition, offset, payload))
}

/// `records` ordered by partition, keeping each partition's arrival order:
/// order is only promised within a partition.
fn by_partition(records: &[Record]) -> Vec<Record> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| r.partition);
    sorted
}

/// A member reads every record with the partition and offset it was
/// produced at, in order within each partition, and keeps reading what is
/// produced while it runs.
pub async fn records_arrive_with_their_partition_and_offset(
    log: &impl LogFixture,
) -> anyhow::Result<()> {
    let first = vec![
        produce(log, 0, "a0").await?,
        produce(log, 0, "a1").await?,
        produce(log, 1, "b0").await?,
    ];
    let member = log.join(&unique_group("place")).await?;
    let got = receive(&member, first.len()).await?;
    assert_eq!(by_partition(&got.records), first);
    let later = produce(log, 0, "a2").await?;
    assert_eq!(receive(&member, 1).await?.records, [later]);
    log.leave(member).await
}

/// A member joining after another left reads each partition from the
/// group's last commit there, and from the start where it made none.
pub async fn a_new_member_resumes_after_the_groups_commits(
    log: &impl LogFixture,
) -> anyhow::Result<()> {
    let mut produced = Vec::new();
    for (partition, payload) in [
        (0, "x0"),
        (0, "x1"),
        (0, "x2"),
        (1, "y0"),
        (1, "y1"),
        (2, "z0"),
    ] {
        produced.push(produce(log, partition, payload).await?);
    }
    let [x0, x1, x2, y0, y1, z0] = <[Record; 6]>::try_from(produced.clone()).expect("six records");
    let group = unique_group("resume");
    let member = log.join(&group).await?;
    assert_eq!(
        by_partition(&receive(&member, produced.len()).await?.records),
        produced
    );
    // A later commit of a partition moves it on; one that leaves a
    // partition out keeps its earlier commit.
    member
        .commit(&Offsets::from([(0, x0.offset + 1), (1, y0.offset + 1)]))
        .await?;
    member.commit(&Offsets::from([(0, x1.offset + 1)])).await?;
    log.leave(member).await?;

    let next = log.join(&group).await?;
    let resumed = receive(&next, 3).await?;
    assert_eq!(by_partition(&resumed.records), [x2, y1, z0]);
    log.leave(next).await
}

/// Commits belong to their group: a member of another group reads the
/// whole log.
pub async fn groups_keep_their_own_commits(log: &impl LogFixture) -> anyhow::Result<()> {
    let produced = vec![produce(log, 0, "p0").await?, produce(log, 0, "p1").await?];
    let member = log.join(&unique_group("committed")).await?;
    receive(&member, produced.len()).await?;
    member
        .commit(&Offsets::from([(0, produced[1].offset + 1)]))
        .await?;
    log.leave(member).await?;

    let other = log.join(&unique_group("other")).await?;
    assert_eq!(receive(&other, produced.len()).await?.records, produced);
    log.leave(other).await
}

/// A failed receive is only a failed receive: the records around it
/// still arrive, none skipped and none repeated.
pub async fn a_receive_error_loses_no_record(log: &impl LogFixture) -> anyhow::Result<()> {
    let member = log.join(&unique_group("errors")).await?;
    let before = vec![produce(log, 0, "r0").await?, produce(log, 0, "r1").await?];
    assert_eq!(receive(&member, before.len()).await?.records, before);
    log.interrupt(&member).await?;
    let after = vec![produce(log, 0, "r2").await?, produce(log, 0, "r3").await?];
    let got = receive_until(&member, |got| {
        got.records.len() >= after.len() && got.errors >= 1
    })
    .await?;
    assert_eq!(got.records, after);
    log.leave(member).await
}

#[cfg(test)]
mod memory_passes {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex, MutexGuard};

    use async_trait::async_trait;

    use super::LogFixture;
    use crate::source::{MemorySource, Offsets, Record};

    /// The log behind [`MemorySource`] members: it keeps what was produced
    /// and each group's commits, as a broker does, and queues every record
    /// on every live member.
    #[derive(Debug, Default)]
    struct MemoryLog {
        // A std mutex: no critical section awaits.
        state: Mutex<LogState>,
    }

    #[derive(Debug, Default)]
    struct LogState {
        records: Vec<Record>,
        next_offsets: BTreeMap<i32, i64>,
        members: Vec<(String, Arc<MemorySource>)>,
        commits: HashMap<String, Offsets>,
    }

    impl MemoryLog {
        fn lock(&self) -> MutexGuard<'_, LogState> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    #[async_trait]
    impl LogFixture for MemoryLog {
        type Source = Arc<MemorySource>;

        async fn produce(&self, partition: i32, payload: &[u8]) -> anyhow::Result<i64> {
            let mut state = self.lock();
            let next = state.next_offsets.entry(partition).or_insert(0);
            let record = Record {
                partition,
                offset: *next,
                payload: Some(payload.to_vec()),
                traceparent: None,
            };
            *next += 1;
            for (_, member) in &state.members {
                member.push_record(record.clone());
            }
            state.records.push(record.clone());
            Ok(record.offset)
        }

        async fn join(&self, group: &str) -> anyhow::Result<Self::Source> {
            let mut state = self.lock();
            let committed = state.commits.get(group).cloned().unwrap_or_default();
            let member = Arc::new(MemorySource::new());
            for record in &state.records {
                if record.offset >= committed.get(&record.partition).copied().unwrap_or(0) {
                    member.push_record(record.clone());
                }
            }
            state.members.push((group.to_owned(), member.clone()));
            Ok(member)
        }

        async fn leave(&self, member: Self::Source) -> anyhow::Result<()> {
            let mut state = self.lock();
            let at = state
                .members
                .iter()
                .position(|(_, m)| Arc::ptr_eq(m, &member))
                .ok_or_else(|| anyhow::anyhow!("not a member"))?;
            let (group, _) = state.members.remove(at);
            let committed = state.commits.entry(group).or_default();
            for commit in member.commits() {
                committed.extend(commit.offsets);
            }
            Ok(())
        }

        async fn interrupt(&self, member: &Self::Source) -> anyhow::Result<()> {
            member.push_error("interrupted");
            Ok(())
        }
    }

    crate::log_source_suite!(MemoryLog::default());
}
