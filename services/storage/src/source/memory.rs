//! A scripted message log, for tests: queued records and receive errors,
//! and a record of every commit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{LogSource, Offsets, Record};
use crate::error::StorageError;

/// A commit the consumer made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// When it was made.
    pub at: Instant,
    /// The next offset of each partition committed.
    pub offsets: Offsets,
}

/// A log that hands out what a test queued, in order, and waits when
/// nothing is queued.
#[derive(Debug, Default)]
pub struct MemorySource {
    // A std mutex: no critical section awaits.
    state: Mutex<State>,
    /// Woken whenever a record is queued or taken, or a commit is made.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Result<Record, String>>,
    next_offsets: BTreeMap<i32, i64>,
    commits: Vec<Commit>,
    failing_commits: usize,
}

impl MemorySource {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, next: Result<Record, String>) {
        self.lock().queue.push_back(next);
        self.changed.notify_waiters();
    }

    /// Appends `payload` to `partition` at its next offset, from 0, and
    /// returns that offset.
    pub fn push(&self, partition: i32, payload: Vec<u8>) -> i64 {
        let offset = {
            let mut state = self.lock();
            let next = state.next_offsets.entry(partition).or_insert(0);
            *next += 1;
            *next - 1
        };
        self.push_record(Record {
            partition,
            offset,
            payload: Some(payload),
            traceparent: None,
        });
        offset
    }

    /// Queues `record` as it is, e.g. a replay of one already read.
    pub fn push_record(&self, record: Record) {
        {
            let mut state = self.lock();
            let next = state.next_offsets.entry(record.partition).or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        self.queue(Ok(record));
    }

    /// Makes the receive after those already queued fail with `reason`.
    pub fn push_error(&self, reason: &str) {
        self.queue(Err(reason.to_owned()));
    }

    /// Makes the next `commits` commits fail.
    pub fn fail_commits(&self, commits: usize) {
        self.lock().failing_commits = commits;
    }

    /// Records and errors queued and not yet received.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// Every commit made so far, oldest first.
    pub fn commits(&self) -> Vec<Commit> {
        self.lock().commits.clone()
    }

    /// Waits until `commits` commits have been made.
    pub async fn wait_for_commits(&self, commits: usize) {
        self.wait_until(|s| s.commits.len() >= commits).await;
    }

    /// Waits until everything queued has been received.
    pub async fn wait_until_drained(&self) {
        self.wait_until(|s| s.queue.is_empty()).await;
    }

    async fn wait_until(&self, done: impl Fn(&State) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            changed.await;
        }
    }
}

#[async_trait]
impl LogSource for MemorySource {
    async fn recv(&self) -> Result<Record, StorageError> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // Taken only when this poll returns it, so a dropped receive
            // loses nothing.
            let next = self.lock().queue.pop_front();
            if let Some(next) = next {
                self.changed.notify_waiters();
                return next.map_err(StorageError::Log);
            }
            changed.await;
        }
    }

    async fn commit(&self, next: &Offsets) -> Result<(), StorageError> {
        {
            let mut state = self.lock();
            if state.failing_commits > 0 {
                state.failing_commits -= 1;
                return Err(StorageError::Log("commit refused".into()));
            }
            state.commits.push(Commit {
                at: Instant::now(),
                offsets: next.clone(),
            });
        }
        self.changed.notify_waiters();
        Ok(())
    }
}
