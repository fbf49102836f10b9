//! The [`PresenceStore`](crate::PresenceStore) contract as a suite of
//! generic async tests, run against every implementation (after quickwit's
//! metastore suite, in `store.rs`): the
//! unit tests run it on [`MemoryStore`](crate::MemoryStore), and
//! `integration-tests/tests/presence_suites.rs` on
//! [`RedisStore`](crate::RedisStore) against the real cluster, through
//! [`presence_store_suite!`](crate::presence_store_suite).
//!
//! The [`EventPublisher`](crate::EventPublisher) contract is a second suite,
//! in `events.rs`, heard through [`EventStreams`]: the unit tests run it on
//! [`MemoryPublisher`](crate::MemoryPublisher), and
//! `integration-tests/tests/presence_events_suites.rs` on
//! [`RedisPublisher`](crate::RedisPublisher) with sharded subscriptions
//! like a gateway's, through
//! [`presence_events_suite!`](crate::presence_events_suite).
//!
//! Each test names its own users and channels with a random suffix, so it
//! may share a store with other tests and earlier runs. Time moves by
//! passing later `now_ms` values, never by waiting; real TTLs stay long
//! (a minute), so no Redis key expires while a test runs.

use chatmesh_ids::{ChannelId, Clock as _, SystemClock, UserId};

mod events;
mod store;

pub use events::*;
pub use store::*;

/// Names unique to one test run.
struct Names(String);

impl Names {
    fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    fn user(&self, tag: &str) -> UserId {
        UserId::new(format!("suite-{tag}-{}", self.0)).expect("a valid user ID")
    }

    fn channel(&self, tag: &str) -> ChannelId {
        ChannelId::new(format!("suite-{tag}-{}", self.0)).expect("a valid channel ID")
    }
}

fn now() -> u64 {
    SystemClock.now_ms()
}
