//! In-memory implementations of the send path's seams, for tests. They pass
//! the same trait suites as the real adapters (`crate::testsuite`), keep
//! what they were given for inspection, and can be told to fail.
//!
//! State sits behind `std` mutexes: every critical section is a map lookup
//! and none is held across an `.await`.

mod directory;
mod log;
mod stores;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatmesh_ids::{Clock, MessageId, Snowflake, SystemClock};

use crate::ChatError;
use crate::ports::IdSource;

pub use directory::MemoryDirectory;
pub use log::{Appended, HeldAppend, MemoryLog};
pub use stores::{
    MemoryEpochs, MemoryFanOut, MemoryIdempotency, MemoryRateLimiter, MemorySequencer,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A switch that makes a store fail every call while it is on. The errors
/// read like real client errors, addresses included, so tests can check
/// that such text never reaches a client.
#[derive(Debug, Default)]
pub struct Failure(AtomicBool);

impl Failure {
    /// Turns failing on or off.
    pub fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }

    fn on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn redis(&self) -> Result<(), ChatError> {
        if !self.on() {
            return Ok(());
        }
        Err(ChatError::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "connection refused",
            "10.0.0.7:6379 (injected by a test)".to_owned(),
        ))))
    }
}

/// A wall clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at the current system time.
    pub fn stopped_now() -> Self {
        Self(Arc::new(AtomicU64::new(SystemClock.now_ms())))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A Snowflake on a fixed worker ID whose lease can be taken away.
#[derive(Debug)]
pub struct MemoryIds {
    ids: Snowflake,
    held: AtomicBool,
}

impl MemoryIds {
    /// IDs of `worker` (at most `chatmesh_ids::MAX_WORKER_ID`).
    pub fn new(worker: u16) -> Self {
        Self {
            ids: Snowflake::new(worker).expect("worker IDs fit 10 bits"),
            held: AtomicBool::new(true),
        }
    }

    /// Holds the lease or loses it.
    pub fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }
}

impl IdSource for MemoryIds {
    fn next_id(&self) -> Option<MessageId> {
        self.held.load(Ordering::SeqCst).then(|| self.ids.next_id())
    }
}
