//! Snowflake IDs: 41 bits of milliseconds since [`CHATMESH_EPOCH_MS`], 10
//! bits of worker ID, 12 bits of sequence within the millisecond. The top bit
//! stays zero, so IDs fit a signed 64-bit database column and sort by time.

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// 2025-01-01T00:00:00Z. 41 bits of milliseconds last about 69 years from here.
pub const CHATMESH_EPOCH_MS: u64 = 1_735_689_600_000;
/// Highest worker ID that fits in 10 bits.
pub const MAX_WORKER_ID: u16 = (1 << WORKER_BITS) - 1;

const WORKER_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;

/// A message's Snowflake ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(u64);

impl MessageId {
    /// Wraps a raw ID, e.g. one read from storage.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch at which the ID was minted.
    pub const fn unix_ms(self) -> u64 {
        (self.0 >> (WORKER_BITS + SEQUENCE_BITS)) + CHATMESH_EPOCH_MS
    }

    /// The worker that minted the ID.
    pub const fn worker(self) -> u16 {
        ((self.0 >> SEQUENCE_BITS) & MAX_WORKER_ID as u64) as u16
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source of wall-clock milliseconds, replaceable in tests.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Mints unique, per-worker monotonic message IDs.
///
/// When the clock steps back, or the 4,096 IDs of a millisecond run out, the
/// generator keeps counting on its own logical millisecond instead of waiting
/// or reusing one: IDs may run slightly ahead of the wall clock, but never
/// repeat and never go backwards.
pub struct Snowflake<C = SystemClock> {
    worker: u16,
    clock: C,
    // (logical ms since epoch, next sequence). A std mutex: the critical
    // section is a few arithmetic operations and never awaits.
    state: Mutex<(u64, u16)>,
}

impl<C> fmt::Debug for Snowflake<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snowflake")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Snowflake<SystemClock> {
    /// A generator for `worker` on the system clock.
    pub fn new(worker: u16) -> Option<Self> {
        Self::with_clock(worker, SystemClock)
    }
}

impl<C: Clock> Snowflake<C> {
    /// A generator for `worker` on `clock`; `None` if the worker ID does not
    /// fit in 10 bits.
    pub fn with_clock(worker: u16, clock: C) -> Option<Self> {
        (worker <= MAX_WORKER_ID).then(|| Self {
            worker,
            clock,
            state: Mutex::new((0, 0)),
        })
    }

    /// This generator's worker ID.
    pub fn worker(&self) -> u16 {
        self.worker
    }

    /// Mints the next ID.
    pub fn next_id(&self) -> MessageId {
        let now = self.clock.now_ms().saturating_sub(CHATMESH_EPOCH_MS);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last_ms, next_seq) = *state;
        let (ms, seq) = if now > last_ms {
            (now, 0)
        } else if next_seq <= MAX_SEQUENCE {
            (last_ms, next_seq)
        } else {
            (last_ms + 1, 0)
        };
        *state = (ms, seq + 1);
        drop(state);
        MessageId(
            (ms << (WORKER_BITS + SEQUENCE_BITS))
                | (u64::from(self.worker) << SEQUENCE_BITS)
                | u64::from(seq),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Clone)]
    struct ManualClock(Arc<AtomicU64>);

    impl Clock for ManualClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn manual(at: u64) -> (ManualClock, Arc<AtomicU64>) {
        let cell = Arc::new(AtomicU64::new(at));
        (ManualClock(cell.clone()), cell)
    }

    #[test]
    fn layout_round_trips() {
        let (clock, _) = manual(CHATMESH_EPOCH_MS + 1_000);
        let ids = Snowflake::with_clock(513, clock).unwrap();
        let id = ids.next_id();
        assert_eq!(id.worker(), 513);
        assert_eq!(id.unix_ms(), CHATMESH_EPOCH_MS + 1_000);
        assert!(i64::try_from(id.get()).is_ok());
        assert!(Snowflake::with_clock(MAX_WORKER_ID + 1, SystemClock).is_none());
    }

    #[test]
    fn unique_across_threads_under_contention() {
        let ids = Arc::new(Snowflake::new(7).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..50_000).map(|_| ids.next_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            let ids = t.join().unwrap();
            // Each thread sees its own IDs strictly increasing.
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            for id in ids {
                assert!(seen.insert(id), "duplicate {id}");
            }
        }
        assert_eq!(seen.len(), 400_000);
    }

    #[test]
    fn monotonic_when_the_clock_steps_back() {
        let (clock, cell) = manual(CHATMESH_EPOCH_MS + 10_000);
        let ids = Snowflake::with_clock(1, clock).unwrap();
        let before: Vec<_> = (0..10).map(|_| ids.next_id()).collect();
        cell.store(CHATMESH_EPOCH_MS + 5_000, Ordering::SeqCst);
        let after: Vec<_> = (0..10).map(|_| ids.next_id()).collect();
        let all: Vec<_> = before.into_iter().chain(after).collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        cell.store(CHATMESH_EPOCH_MS + 20_000, Ordering::SeqCst);
        let later = ids.next_id();
        assert_eq!(later.unix_ms(), CHATMESH_EPOCH_MS + 20_000);
        assert!(later > *all.last().unwrap());
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let (clock, _) = manual(CHATMESH_EPOCH_MS + 42);
        let ids = Snowflake::with_clock(3, clock).unwrap();
        let ids: Vec<_> = (0..(u32::from(MAX_SEQUENCE) + 3))
            .map(|_| ids.next_id())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids[0].unix_ms(), CHATMESH_EPOCH_MS + 42);
        assert_eq!(ids.last().unwrap().unix_ms(), CHATMESH_EPOCH_MS + 43);
    }
}
