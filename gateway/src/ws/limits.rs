//! The per-connection frame budget: a GCRA limiter from `governor`, with
//! `frames_per_second` sustained and `frame_burst` above it.

use std::num::NonZeroU32;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// How many frames a connection may still send.
#[derive(Debug)]
pub(crate) struct FrameBudget<C: Clock = MonotonicClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

fn quota(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(rate.get())).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

impl FrameBudget {
    /// `rate` frames per second, bursts up to `burst` (at least `rate`).
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self::with_clock(rate, burst, MonotonicClock)
    }
}

impl<C: Clock> FrameBudget<C> {
    /// The same budget on another clock, for tests.
    pub(crate) fn with_clock(rate: u32, burst: u32, clock: C) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(quota(rate, burst), clock),
        }
    }

    /// Spends one frame; false when the budget is exhausted.
    pub(crate) fn take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate() {
        let clock = FakeRelativeClock::default();
        let budget = FrameBudget::with_clock(10, 20, clock.clone());
        assert_eq!((0..30).filter(|_| budget.take()).count(), 20);
        clock.advance(Duration::from_millis(100));
        assert!(budget.take());
        assert!(!budget.take());
        clock.advance(Duration::from_secs(2));
        assert_eq!((0..30).filter(|_| budget.take()).count(), 20);
    }

    #[test]
    fn a_burst_below_the_rate_is_raised_to_it() {
        let budget = FrameBudget::with_clock(5, 1, FakeRelativeClock::default());
        assert_eq!((0..10).filter(|_| budget.take()).count(), 5);
    }
}
