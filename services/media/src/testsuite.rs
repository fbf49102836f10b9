//! The media service's storage contracts as suites of generic async tests,
//! run against every implementation (after quickwit's metastore suite):
//!
//! - [`blobs`]: the [`Blobs`](crate::store::Blobs) contract, through
//!   [`blob_store_suite!`](crate::blob_store_suite). The unit tests run it
//!   on [`MemoryBlobs`](crate::store::MemoryBlobs) and on the local store
//!   over HTTP; `integration-tests/tests/media_suites.rs` on the real S3
//!   server and on the local store as `store::open` serves it.
//! - [`catalog`]: the [`Catalog`](crate::Catalog) contract, through
//!   [`catalog_suite!`](crate::catalog_suite), on
//!   [`MemoryCatalog`](crate::catalog::MemoryCatalog) here and on the
//!   directory database there.
//!
//! Every test names its own channels, users and media with a random
//! suffix, so it may share a bucket or database with other tests and
//! earlier runs.

pub mod blobs;
pub mod catalog;
pub mod harness;

use chatmesh_ids::{ChannelId, UserId};

/// A random suffix for names no other test or run uses.
fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A channel no other test or run uses; `tag` is at most 25 bytes.
pub fn unique_channel(tag: &str) -> ChannelId {
    ChannelId::new(format!("suite-{tag}-{}", suffix())).expect("a valid channel ID")
}

/// A user no other test or run uses.
pub fn unique_user(tag: &str) -> UserId {
    UserId::new(format!("suite-{tag}-{}", suffix())).expect("a valid user ID")
}
