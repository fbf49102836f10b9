//! The shared trait suites: every implementation of a seam in
//! [`crate::ports`], in memory or real, must pass the same tests. Each test
//! is a generic function over a fresh implementation; the `*_suite!` macros
//! turn them into `#[tokio::test]`s, so the unit tests run them on the
//! in-memory stores and the integration tests on Redis, Kafka and Postgres.
//!
//! Tests make their own channel and user IDs, unique per run, so they can
//! share real stores with each other and with earlier runs.

use std::time::Duration;

use async_trait::async_trait;
use chatmesh_db::DbError;
use chatmesh_db::directory::{MEDIA_READY, media};
use chatmesh_ids::{ChannelId, ChatMessage, Snowflake, UserId};
use diesel::ExpressionMethods as _;
use diesel_async::RunQueryDsl as _;

use crate::memory::{Appended, MemoryDirectory, MemoryLog};
use crate::{ChatError, Directory, Moderation, SendLimits};

pub use anyhow::Result as SuiteResult;

pub mod admission;
pub mod directory;
pub mod fan_out;
pub mod idempotency;
pub mod message_log;
pub mod rate_limiter;
pub mod sequencer;
pub mod settlement;

/// The limits implementations under test are built with: the rate-limit
/// and recent-window tests count on them.
pub fn suite_limits() -> SendLimits {
    SendLimits {
        user_per_second: 3,
        channel_per_second: 5,
        recent_history: 4,
        ..SendLimits::default()
    }
}

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

/// A message as the send path would build it, with every field set.
pub fn message(ids: &Snowflake, channel: &ChannelId, sender: &UserId, seq: u64) -> ChatMessage {
    let id = ids.next_id();
    ChatMessage {
        id,
        channel: channel.clone(),
        sender: sender.clone(),
        seq,
        body: format!("message {seq}"),
        attachments: vec![format!("media-{seq}")],
        created_at_ms: id.unix_ms() as i64,
        idempotency_key: Some(format!("key-{seq}")),
        change: Default::default(),
        reply_to: None,
        state: Default::default(),
    }
}

/// Reads back what a message log holds, for the log suite.
#[async_trait]
pub trait LogReader: Send + Sync {
    /// The records of `channel`, in log order, once at least `count` are
    /// there (or an error once waiting is pointless).
    async fn read(&self, channel: &ChannelId, count: usize) -> SuiteResult<Vec<Appended>>;
}

#[async_trait]
impl LogReader for MemoryLog {
    async fn read(&self, channel: &ChannelId, count: usize) -> SuiteResult<Vec<Appended>> {
        let records: Vec<_> = self
            .records()
            .into_iter()
            .filter(|r| &r.message.channel == channel)
            .collect();
        anyhow::ensure!(
            records.len() >= count,
            "{} of {count} records",
            records.len()
        );
        Ok(records)
    }
}

/// Sets a directory up for the directory suite.
#[async_trait]
pub trait DirectoryFixture: Send + Sync {
    /// Creates `channel` with `owner` as its only member.
    async fn create_channel(
        &self,
        channel: &ChannelId,
        owner: &UserId,
        moderation: Moderation,
    ) -> SuiteResult<()>;
    /// Adds `user` to `channel`.
    async fn join(&self, channel: &ChannelId, user: &UserId) -> SuiteResult<()>;
    /// Records an upload by `uploader` to `channel`, ready or pending.
    async fn add_media(
        &self,
        channel: &ChannelId,
        uploader: &UserId,
        media_id: &str,
        ready: bool,
    ) -> SuiteResult<()>;
}

#[async_trait]
impl DirectoryFixture for MemoryDirectory {
    async fn create_channel(
        &self,
        channel: &ChannelId,
        owner: &UserId,
        moderation: Moderation,
    ) -> SuiteResult<()> {
        MemoryDirectory::create_channel(self, channel, owner, moderation);
        Ok(())
    }

    async fn join(&self, channel: &ChannelId, user: &UserId) -> SuiteResult<()> {
        MemoryDirectory::join(self, channel, user);
        Ok(())
    }

    async fn add_media(
        &self,
        channel: &ChannelId,
        _uploader: &UserId,
        media_id: &str,
        ready: bool,
    ) -> SuiteResult<()> {
        MemoryDirectory::add_media(self, channel, media_id, ready);
        Ok(())
    }
}

#[async_trait]
impl DirectoryFixture for Directory {
    async fn create_channel(
        &self,
        channel: &ChannelId,
        owner: &UserId,
        moderation: Moderation,
    ) -> SuiteResult<()> {
        Directory::create_channel(
            self,
            channel,
            channel.as_str(),
            owner,
            moderation,
            crate::Visibility::Private,
        )
        .await?;
        Ok(())
    }

    async fn join(&self, channel: &ChannelId, user: &UserId) -> SuiteResult<()> {
        Directory::join(self, channel, user, false).await?;
        Ok(())
    }

    async fn add_media(
        &self,
        channel: &ChannelId,
        uploader: &UserId,
        media_id: &str,
        ready: bool,
    ) -> SuiteResult<()> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        diesel::insert_into(media::table)
            .values((
                media::media_id.eq(media_id),
                media::channel_id.eq(channel.as_str()),
                media::uploader_id.eq(uploader.as_str()),
                media::filename.eq("suite.bin"),
                media::content_type.eq("application/octet-stream"),
                media::size.eq(1_i64),
                media::object_key.eq(format!("suite/{media_id}")),
                media::state.eq(if ready { MEDIA_READY } else { 1 }),
            ))
            .execute(&mut *conn)
            .await
            .map_err(DbError::from)?;
        Ok(())
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __chat_suite {
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

/// The [`sequencer`] suite as tests, on the `Sequencer` that `$make`
/// builds afresh for each test (it may `.await`).
#[macro_export]
macro_rules! sequencer_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; sequencer;
            numbers_are_dense_per_channel,
            released_numbers_are_never_reused,
            a_number_given_back_is_reused_only_while_newest,
            a_lost_counter_starts_a_higher_epoch,
            racing_callers_start_one_epoch,
            a_failed_over_counter_never_repeats,
        );
    };
}

/// The [`idempotency`] suite as tests, on the `IdempotencyStore` `$make` builds.
#[macro_export]
macro_rules! idempotency_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; idempotency;
            a_held_key_resumes_its_first_message,
            a_recorded_key_returns_the_original,
            keys_are_scoped_to_sender_and_channel,
        );
    };
}

/// The [`rate_limiter`] suite as tests, on the `RateLimiter` `$make` builds
/// with `suite_limits()` on a stopped clock.
#[macro_export]
macro_rules! rate_limiter_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; rate_limiter;
            the_user_limit_spans_channels,
            the_channel_limit_spans_users,
        );
    };
}

/// The [`admission`] suite as tests, on the `admission::Admitter` `$make`
/// builds with `suite_limits()` on a stopped clock.
#[macro_export]
macro_rules! admission_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; admission;
            messages_are_numbered_densely,
            a_held_key_resumes_its_message_and_takes_no_number,
            an_acknowledged_key_is_a_duplicate,
            the_channel_limit_spans_senders,
            racing_admissions_get_dense_numbers,
        );
    };
}

/// The [`settlement`] suite as tests, on the `settlement::Settler` `$make`
/// builds.
#[macro_export]
macro_rules! settlement_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; settlement;
            a_settled_key_is_acknowledged_and_the_message_fanned_out,
            an_unkeyed_message_is_only_fanned_out,
        );
    };
}

/// The [`message_log`] suite as tests, on the `MessageLog + LogReader`
/// `$make` builds.
#[macro_export]
macro_rules! message_log_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; message_log;
            appends_read_back_in_order,
            the_traceparent_travels_with_the_record,
        );
    };
}

/// The [`fan_out`] suite as tests, on the `FanOut` `$make` builds to keep
/// `suite_limits().recent_history` messages.
#[macro_export]
macro_rules! fan_out_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; fan_out;
            the_recent_window_keeps_the_newest,
            the_recent_window_is_in_seq_order,
            windows_are_per_channel,
        );
    };
}

/// The [`directory`] suite as tests, on the `MemberDirectory +
/// DirectoryFixture` `$make` builds.
#[macro_export]
macro_rules! directory_suite {
    ($make:expr) => {
        $crate::__chat_suite!($make; directory;
            members_get_the_channel_policy,
            outsiders_and_unknown_channels_are_refused,
            attachments_must_be_ready_uploads_of_the_channel,
        );
    };
}

#[cfg(test)]
mod memory_passes {
    use crate::memory::{
        ManualClock, MemoryDirectory, MemoryFanOut, MemoryIdempotency, MemoryLog,
        MemoryRateLimiter, MemorySequencer,
    };
    use crate::testsuite::suite_limits;

    crate::sequencer_suite!(MemorySequencer::default());
    crate::idempotency_suite!(MemoryIdempotency::default());
    crate::rate_limiter_suite!(MemoryRateLimiter::new(
        &suite_limits(),
        ManualClock::stopped_now()
    ));
    crate::admission_suite!({
        let idempotency = std::sync::Arc::new(MemoryIdempotency::default());
        crate::testsuite::admission::Admitter {
            admission: std::sync::Arc::new(crate::Stepwise {
                limiter: std::sync::Arc::new(MemoryRateLimiter::new(
                    &suite_limits(),
                    ManualClock::stopped_now(),
                )),
                sequencer: std::sync::Arc::new(MemorySequencer::default()),
                idempotency: idempotency.clone(),
            }),
            idempotency,
        }
    });
    crate::settlement_suite!({
        let idempotency = std::sync::Arc::new(MemoryIdempotency::default());
        let fanout = std::sync::Arc::new(MemoryFanOut::new(suite_limits().recent_history));
        crate::testsuite::settlement::Settler {
            settlement: std::sync::Arc::new(crate::StepwiseSettlement {
                idempotency: idempotency.clone(),
                fanout: fanout.clone(),
            }),
            idempotency,
            fanout,
        }
    });
    crate::message_log_suite!(MemoryLog::default());
    crate::fan_out_suite!(MemoryFanOut::new(suite_limits().recent_history));
    crate::directory_suite!(MemoryDirectory::default());
}
