//! The message log the consumer reads: records with their place in the log,
//! and commits of how far the log has been stored. [`KafkaSource`] is the
//! real one; an in-memory one scripts it in tests, and both pass the suite
//! in `testsuite`.

mod kafka;
#[cfg(any(test, feature = "testsuite"))]
mod memory;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StorageError;

pub use kafka::KafkaSource;
#[cfg(any(test, feature = "testsuite"))]
pub use memory::{Commit, MemorySource};

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The encoded message, if the record has a payload.
    pub payload: Option<Vec<u8>>,
    /// The W3C `traceparent` header of the send that produced it, if any.
    pub traceparent: Option<String>,
}

/// Next offsets to read, by partition: one past the last stored record.
pub type Offsets = BTreeMap<i32, i64>;

/// A partitioned log read in a consumer group that commits by hand.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// The next record. Cancel-safe: a receive dropped before it completes
    /// loses no record.
    async fn recv(&self) -> Result<Record, StorageError>;

    /// Records that everything before `next` is stored, partition by
    /// partition, so the group resumes there after a restart or rebalance.
    async fn commit(&self, next: &Offsets) -> Result<(), StorageError>;
}

#[async_trait]
impl<T: LogSource + ?Sized> LogSource for Arc<T> {
    async fn recv(&self) -> Result<Record, StorageError> {
        (**self).recv().await
    }

    async fn commit(&self, next: &Offsets) -> Result<(), StorageError> {
        (**self).commit(next).await
    }
}
