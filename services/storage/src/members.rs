//! Channel membership, checked before history is read. The directory
//! database is the real source; an in-memory one stands in for tests.

use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_db::Pool;
use chatmesh_ids::{ChannelId, UserId};

use crate::error::StorageError;

/// Who may read which channel.
#[async_trait]
pub trait Members: Send + Sync {
    /// True if `user` is a member of `channel`.
    async fn is_member(&self, channel: &ChannelId, user: &UserId) -> Result<bool, StorageError>;

    /// The channels `user` belongs to, by ID.
    async fn channels_of(&self, user: &UserId) -> Result<Vec<ChannelId>, StorageError>;
}

#[async_trait]
impl<T: Members + ?Sized> Members for Arc<T> {
    async fn is_member(&self, channel: &ChannelId, user: &UserId) -> Result<bool, StorageError> {
        (**self).is_member(channel, user).await
    }

    async fn channels_of(&self, user: &UserId) -> Result<Vec<ChannelId>, StorageError> {
        (**self).channels_of(user).await
    }
}

/// Memberships in the directory database.
#[derive(Debug, Clone)]
pub struct DirectoryMembers {
    directory: Pool,
}

impl DirectoryMembers {
    /// Memberships read through `directory`, a pool on the directory database.
    pub fn new(directory: Pool) -> Self {
        Self { directory }
    }
}

#[async_trait]
impl Members for DirectoryMembers {
    async fn is_member(&self, channel: &ChannelId, user: &UserId) -> Result<bool, StorageError> {
        Ok(
            chatmesh_db::directory::is_member(&self.directory, channel.as_str(), user.as_str())
                .await?,
        )
    }

    async fn channels_of(&self, user: &UserId) -> Result<Vec<ChannelId>, StorageError> {
        let ids = chatmesh_db::directory::channels_of(&self.directory, user.as_str()).await?;
        // The directory only holds channel IDs that were checked on the way
        // in; one that no longer parses is left out rather than failing all.
        Ok(ids
            .into_iter()
            .filter_map(|id| ChannelId::new(id).ok())
            .collect())
    }
}

#[cfg(any(test, feature = "testsuite"))]
pub use memory::MemoryMembers;

#[cfg(any(test, feature = "testsuite"))]
mod memory {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    /// Memberships in memory, for tests.
    #[derive(Debug, Default)]
    pub struct MemoryMembers {
        // A std mutex: lookups never await.
        members: Mutex<HashSet<(ChannelId, UserId)>>,
    }

    impl MemoryMembers {
        /// Nobody is a member of anything.
        pub fn new() -> Self {
            Self::default()
        }

        /// Makes `user` a member of `channel`.
        pub fn add(&self, channel: &ChannelId, user: &UserId) {
            self.members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((channel.clone(), user.clone()));
        }
    }

    #[async_trait]
    impl Members for MemoryMembers {
        async fn is_member(
            &self,
            channel: &ChannelId,
            user: &UserId,
        ) -> Result<bool, StorageError> {
            Ok(self
                .members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&(channel.clone(), user.clone())))
        }

        async fn channels_of(&self, user: &UserId) -> Result<Vec<ChannelId>, StorageError> {
            let mut channels: Vec<ChannelId> = self
                .members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, u)| u == user)
                .map(|(c, _)| c.clone())
                .collect();
            channels.sort();
            Ok(channels)
        }
    }
}
