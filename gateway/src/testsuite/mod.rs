//! The shared suites of the gateway's ports: every implementation of
//! [`Feed`](crate::ports::Feed), [`GapSource`](crate::ports::GapSource)
//! and [`ChatApi`](crate::ports::ChatApi), in memory or real, must pass the
//! same tests. The unit tests run them on the in-memory ports, and
//! `integration-tests/tests/gateway_suites.rs` on the Redis and gRPC
//! adapters against the real infrastructure.
//!
//! The ports stay private to the crate: a suite takes an "under test"
//! value that holds the port, built here from the parts a test supplies,
//! and a fixture trait the test implements to set the world up (publish a
//! message, create a channel) the way the other services do. The
//! `*_suite!` macros turn each suite into `#[tokio::test]`s on the value
//! `$make` builds afresh for every test.
//!
//! Tests make their own channel and user IDs, unique per run, so they can
//! share real stores with each other and with earlier runs.

use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};

pub mod chat;
pub mod feed;
pub mod gaps;

pub use anyhow::Result as SuiteResult;
pub use chat::{ChatDirectory, ChatUnderTest};
pub use feed::{FeedUnderTest, Publisher};
pub use gaps::{GapWriter, GapsUnderTest};

/// A channel ID no other test run uses.
pub fn unique_channel(prefix: &str) -> ChannelId {
    ChannelId::new(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
        .expect("prefix and UUID form a valid channel ID")
}

/// A user ID no other test run uses.
pub fn unique_user(prefix: &str) -> UserId {
    UserId::new(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
        .expect("prefix and UUID form a valid user ID")
}

/// Message `seq` of `channel` from `sender`, with an ID that grows with
/// `seq`, as the send path would build it.
pub fn message(channel: &ChannelId, sender: &UserId, seq: u64) -> ChatMessage {
    ChatMessage {
        id: MessageId::from_raw((seq + 1_000) << 22),
        channel: channel.clone(),
        sender: sender.clone(),
        seq,
        body: format!("message {seq}"),
        attachments: Vec::new(),
        created_at_ms: 1_800_000_000_000 + seq as i64,
        idempotency_key: None,
        change: Default::default(),
        reply_to: None,
        state: Default::default(),
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __gateway_suite {
    ($make:expr; $suite:ident; $($test:ident),+ $(,)?) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $test() -> $crate::testsuite::SuiteResult<()> {
                    let under_test = $make;
                    $crate::testsuite::$suite::$test(&under_test).await
                }
            )+
        }
    };
}

/// The [`feed`] suite as tests, on the [`FeedUnderTest`] `$make` builds
/// (it may `.await` and use `?`).
#[macro_export]
macro_rules! feed_suite {
    ($make:expr) => {
        $crate::__gateway_suite!($make; feed;
            a_fresh_channel_is_at_zero,
            the_counter_follows_published_messages,
            a_subscribed_channel_receives_its_messages_in_order,
            presence_events_reach_the_channels_sessions,
            typing_events_reach_the_channels_sessions,
            unsubscribing_stops_delivery,
            subscribing_twice_is_subscribing_once,
            a_channel_subscribed_again_is_delivered_again,
            unsubscribing_a_channel_never_subscribed_is_harmless,
        );
    };
}

/// The [`gaps`] suite as tests, on the [`GapsUnderTest`] `$make` builds.
#[macro_export]
macro_rules! gap_source_suite {
    ($make:expr) => {
        $crate::__gateway_suite!($make; gaps;
            a_fresh_channel_has_an_empty_window,
            the_window_is_read_after_exclusive_upto_inclusive,
            void_numbers_come_with_the_window,
            windows_are_per_channel,
            stored_messages_come_in_pages_flagged_truncated,
        );
    };
}

/// The [`chat`] suite as tests, on the [`ChatUnderTest`] `$make` builds.
#[macro_export]
macro_rules! chat_api_suite {
    ($make:expr) => {
        $crate::__gateway_suite!($make; chat;
            access_tells_members_outsiders_and_unknown_channels_apart,
            sends_are_numbered_densely_per_channel,
            a_repeated_idempotency_key_answers_the_original,
            sends_outside_membership_are_refused,
            changes_are_events_numbered_with_the_posts,
            only_the_author_edits_and_the_author_or_an_owner_deletes,
            changes_to_no_post_or_by_outsiders_are_refused,
            a_repeated_change_key_answers_the_original,
        );
    };
}

#[cfg(test)]
mod memory_passes {
    use super::{ChatUnderTest, FeedUnderTest, GapsUnderTest};

    crate::feed_suite!(FeedUnderTest::memory());
    crate::gap_source_suite!(GapsUnderTest::memory());
    crate::chat_api_suite!(ChatUnderTest::memory());
}
