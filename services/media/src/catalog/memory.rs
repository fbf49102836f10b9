//! An in-memory [`Catalog`] for tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use chatmesh_ids::{ChannelId, UserId};

use super::{Catalog, Membership};
use crate::{Media, MediaError, MediaId, MediaState};

#[derive(Debug, Default)]
struct State {
    /// Each channel and its members.
    channels: HashMap<ChannelId, HashSet<UserId>>,
    media: HashMap<MediaId, Media>,
}

/// Channels, memberships and media in memory.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    // A std mutex: no critical section awaits.
    state: Mutex<State>,
}

impl MemoryCatalog {
    /// No channels and no media.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `channel`, if needed, and adds `members` to it.
    pub fn add_channel(&self, channel: &ChannelId, members: &[&UserId]) {
        self.lock()
            .channels
            .entry(channel.clone())
            .or_default()
            .extend(members.iter().map(|&m| m.clone()));
    }

    /// How many media were inserted.
    pub fn media_count(&self) -> usize {
        self.lock().media.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Catalog for MemoryCatalog {
    async fn membership(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Membership, MediaError> {
        Ok(match self.lock().channels.get(channel) {
            None => Membership::NoChannel,
            Some(members) if members.contains(user) => Membership::Member,
            Some(_) => Membership::Outsider,
        })
    }

    async fn insert(&self, media: &Media) -> Result<(), MediaError> {
        self.lock().media.insert(media.id.clone(), media.clone());
        Ok(())
    }

    async fn get(&self, id: &MediaId) -> Result<Option<Media>, MediaError> {
        Ok(self.lock().media.get(id).cloned())
    }

    async fn mark_ready(&self, id: &MediaId) -> Result<Option<Media>, MediaError> {
        Ok(self.lock().media.get_mut(id).map(|m| {
            m.state = MediaState::Ready;
            m.clone()
        }))
    }
}
