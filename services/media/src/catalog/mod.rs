//! Media metadata and the channel memberships that decide who sees it. The
//! directory database is the real catalog; an in-memory one stands in for
//! tests. Both pass the suite in [`crate::testsuite::catalog`].

#[cfg(any(test, feature = "testsuite"))]
mod memory;
mod postgres;

use chatmesh_ids::{ChannelId, UserId};

use crate::{Media, MediaError, MediaId};

#[cfg(any(test, feature = "testsuite"))]
pub use memory::MemoryCatalog;
pub use postgres::PostgresCatalog;

/// Where a user stands with a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// There is no such channel.
    NoChannel,
    /// The channel exists; the user is not in it.
    Outsider,
    /// The user belongs to the channel.
    Member,
}

/// The `media` rows and the membership checks around them. Rules (who may
/// do what) live in [`crate::Uploads`]; this only stores and reads.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// Where `user` stands with `channel`.
    async fn membership(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Membership, MediaError>;

    /// Records a new media.
    async fn insert(&self, media: &Media) -> Result<(), MediaError>;

    /// The media with `id`, if there is one.
    async fn get(&self, id: &MediaId) -> Result<Option<Media>, MediaError>;

    /// Marks `id` ready and returns it; none if there is no such media.
    /// Marking a ready media again changes nothing, so a retried completion
    /// succeeds.
    async fn mark_ready(&self, id: &MediaId) -> Result<Option<Media>, MediaError>;
}
