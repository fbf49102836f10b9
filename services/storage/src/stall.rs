//! When the consumer group has stalled: messages wait in the log, the group
//! commits none of them, and this instance holds no partition it could
//! store them from. That is what a broker that forms the group without
//! this instance looks like from inside it, and without this rule nothing
//! in the process would notice: it has no partitions, so it has no lag.
//!
//! The rule reads commit progress rather than the lag figure alone. Lag
//! that grows or holds steady while commits advance is a group keeping up
//! (another instance may legitimately hold every partition); pending
//! messages whose partition's commit does not move are stuck, whether or
//! not more keep arriving.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

/// Where the group stands on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The next offset the group will store: its commit, or the start of
    /// the log when it has none.
    pub(crate) committed: i64,
    /// The end of the partition (its high watermark).
    pub(crate) end: i64,
}

impl Position {
    /// Messages in the log that the group has not stored.
    pub(crate) fn pending(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

/// What the rule concluded from the measurements so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Partitions with messages pending and no commit progress for the
    /// whole window, held by this instance or not.
    pub(crate) stuck: BTreeSet<i32>,
    /// Stuck partitions while this instance has held none for the window:
    /// nothing it does will store them.
    pub(crate) stalled: bool,
    /// Messages pending over all partitions.
    pub(crate) pending: i64,
}

/// The stall rule over a stream of measurements, each with the time it was
/// taken: `after` is the window that no progress must last.
#[derive(Debug)]
pub(crate) struct StallRule {
    after: Duration,
    /// Since when this instance has held no partition.
    idle_since: Option<Instant>,
    partitions: BTreeMap<i32, Waiting>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    committed: i64,
    /// Since when messages have been pending at this commit.
    since: Option<Instant>,
}

impl StallRule {
    /// A rule that calls a lack of progress a stall once it lasts `after`.
    pub(crate) fn new(after: Duration) -> Self {
        Self {
            after,
            idle_since: None,
            partitions: BTreeMap::new(),
        }
    }

    /// Takes the measurement made at `now`: `assigned` partitions held by
    /// this instance and the group's position on every partition.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        assigned: usize,
        positions: &BTreeMap<i32, Position>,
    ) -> Verdict {
        self.idle_since = if assigned == 0 {
            Some(self.idle_since.unwrap_or(now))
        } else {
            None
        };
        self.partitions.retain(|p, _| positions.contains_key(p));
        let mut verdict = Verdict::default();
        for (&partition, position) in positions {
            let pending = position.pending() > 0;
            verdict.pending += position.pending();
            let waiting = self.partitions.entry(partition).or_insert(Waiting {
                committed: position.committed,
                since: None,
            });
            if waiting.committed != position.committed || !pending {
                // Progress, or nothing to do: the clock starts again.
                *waiting = Waiting {
                    committed: position.committed,
                    since: None,
                };
            }
            if pending {
                let since = *waiting.since.get_or_insert(now);
                if self.lasted(since, now) {
                    verdict.stuck.insert(partition);
                }
            }
        }
        verdict.stalled =
            !verdict.stuck.is_empty() && self.idle_since.is_some_and(|at| self.lasted(at, now));
        verdict
    }

    fn lasted(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) >= self.after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(10);
    const INTERVAL: Duration = Duration::from_secs(5);

    /// One partition at `committed` of `end`.
    fn one(committed: i64, end: i64) -> BTreeMap<i32, Position> {
        BTreeMap::from([(0, Position { committed, end })])
    }

    /// Feeds `samples` (assigned, positions) one interval apart and returns
    /// every verdict.
    fn run(samples: &[(usize, BTreeMap<i32, Position>)]) -> Vec<Verdict> {
        let start = Instant::now();
        let mut rule = StallRule::new(AFTER);
        samples
            .iter()
            .enumerate()
            .map(|(i, (assigned, positions))| {
                rule.observe(start + INTERVAL * i as u32, *assigned, positions)
            })
            .collect()
    }

    fn stalled(verdicts: &[Verdict]) -> Vec<bool> {
        verdicts.iter().map(|v| v.stalled).collect()
    }

    #[test]
    fn growing_lag_with_no_partitions_stalls_once_it_lasts_the_window() {
        let verdicts = run(&[
            (0, one(100, 120)),
            (0, one(100, 140)),
            (0, one(100, 160)),
            (0, one(100, 180)),
        ]);
        assert_eq!(stalled(&verdicts), [false, false, true, true]);
        assert_eq!(verdicts[2].stuck, BTreeSet::from([0]));
        assert_eq!(verdicts[2].pending, 60);
    }

    #[test]
    fn flat_lag_of_a_group_that_keeps_up_is_no_stall() {
        // Another instance holds the partition and stores as fast as
        // messages arrive: the lag stays put, the commit moves.
        let verdicts = run(&[
            (0, one(100, 120)),
            (0, one(200, 220)),
            (0, one(300, 320)),
            (0, one(400, 420)),
        ]);
        assert_eq!(stalled(&verdicts), [false; 4]);
        assert!(verdicts.iter().all(|v| v.stuck.is_empty()));
    }

    #[test]
    fn an_idle_group_with_nothing_pending_is_no_stall() {
        let verdicts = run(&[(0, one(100, 100)), (0, one(100, 100)), (0, one(100, 100))]);
        assert_eq!(stalled(&verdicts), [false; 3]);
    }

    #[test]
    fn a_backlog_nobody_stores_is_a_stall_even_once_sends_stop() {
        let verdicts = run(&[(0, one(100, 150)), (0, one(100, 150)), (0, one(100, 150))]);
        assert_eq!(stalled(&verdicts), [false, false, true]);
    }

    #[test]
    fn an_instance_holding_partitions_reports_stuck_ones_but_is_not_stalled() {
        // Say a shard is down: this instance's own partition stops moving.
        // Its shard probe says so; the group is not leaving it out.
        let verdicts = run(&[(1, one(100, 120)), (1, one(100, 140)), (1, one(100, 160))]);
        assert_eq!(stalled(&verdicts), [false; 3]);
        assert_eq!(verdicts[2].stuck, BTreeSet::from([0]));
    }

    #[test]
    fn progress_ends_a_stall_at_once_and_restarts_the_window() {
        let verdicts = run(&[
            (0, one(100, 120)),
            (0, one(100, 140)),
            (0, one(100, 160)),
            (0, one(150, 180)),
            (0, one(150, 200)),
            (0, one(150, 220)),
        ]);
        assert_eq!(stalled(&verdicts), [false, false, true, false, false, true]);
    }

    #[test]
    fn being_given_partitions_ends_a_stall_and_losing_them_restarts_the_window() {
        let verdicts = run(&[
            (0, one(100, 120)),
            (0, one(100, 140)),
            (0, one(100, 160)),
            (1, one(100, 180)),
            (0, one(100, 200)),
            (0, one(100, 220)),
            (0, one(100, 240)),
        ]);
        // The partition stays stuck throughout; the stall needs the
        // instance to have held nothing for the whole window too.
        assert_eq!(
            stalled(&verdicts),
            [false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn one_stuck_partition_among_moving_ones_is_enough() {
        let sample = |i: i64| {
            BTreeMap::from([
                (
                    0,
                    Position {
                        committed: 100 * i,
                        end: 100 * i + 10,
                    },
                ),
                (
                    1,
                    Position {
                        committed: 7,
                        end: 9 + i,
                    },
                ),
            ])
        };
        let verdicts = run(&[(0, sample(1)), (0, sample(2)), (0, sample(3))]);
        assert_eq!(stalled(&verdicts), [false, false, true]);
        assert_eq!(verdicts[2].stuck, BTreeSet::from([1]));
    }

    #[test]
    fn a_measurement_gap_counts_by_the_clock_not_by_samples() {
        // A failed measurement leaves a gap: two samples a window apart
        // with no progress between them are enough.
        let start = Instant::now();
        let mut rule = StallRule::new(AFTER);
        assert!(!rule.observe(start, 0, &one(100, 120)).stalled);
        assert!(rule.observe(start + AFTER, 0, &one(100, 130)).stalled);
    }
}
