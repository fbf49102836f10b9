//! The in-memory member directory.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chatmesh_db::DbError;
use chatmesh_ids::{ChannelId, UserId};

use super::{Failure, lock};
use crate::ports::MemberDirectory;
use crate::{ChatError, Moderation};

#[derive(Debug, Default)]
struct ChannelEntry {
    moderation: Moderation,
    moderation_allow: Vec<String>,
    members: HashSet<UserId>,
    owners: HashSet<UserId>,
    // media ID → ready
    media: HashMap<String, bool>,
}

/// Channels, members and uploads in maps.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    channels: Mutex<HashMap<ChannelId, ChannelEntry>>,
    /// Fails every lookup while on.
    pub failure: Failure,
}

impl MemoryDirectory {
    /// Creates `channel` with `owner` as its first member.
    pub fn create_channel(&self, channel: &ChannelId, owner: &UserId, moderation: Moderation) {
        let mut channels = lock(&self.channels);
        let entry = channels.entry(channel.clone()).or_default();
        entry.moderation = moderation;
        entry.members.insert(owner.clone());
        entry.owners.insert(owner.clone());
    }

    /// Adds `user` to an existing `channel`.
    pub fn join(&self, channel: &ChannelId, user: &UserId) {
        if let Some(entry) = lock(&self.channels).get_mut(channel) {
            entry.members.insert(user.clone());
        }
    }

    /// Removes `user` from `channel`.
    pub fn leave(&self, channel: &ChannelId, user: &UserId) {
        if let Some(entry) = lock(&self.channels).get_mut(channel) {
            entry.members.remove(user);
            entry.owners.remove(user);
        }
    }

    /// Sets the phrases an existing `channel` allows past the moderation filter.
    pub fn set_moderation_allow(&self, channel: &ChannelId, phrases: &[&str]) {
        if let Some(entry) = lock(&self.channels).get_mut(channel) {
            entry.moderation_allow = phrases.iter().map(|p| (*p).to_owned()).collect();
        }
    }

    /// Records an upload to an existing `channel`, ready or still pending.
    pub fn add_media(&self, channel: &ChannelId, media_id: &str, ready: bool) {
        if let Some(entry) = lock(&self.channels).get_mut(channel) {
            entry.media.insert(media_id.to_owned(), ready);
        }
    }

    fn check(&self) -> Result<(), ChatError> {
        if self.failure.on() {
            return Err(ChatError::Database(DbError::Connection(
                "connection to 10.0.0.8:5432 refused (injected by a test)".into(),
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl MemberDirectory for MemoryDirectory {
    async fn policy_for_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Moderation, ChatError> {
        self.check()?;
        let channels = lock(&self.channels);
        let entry = channels.get(channel).ok_or(ChatError::ChannelNotFound)?;
        if !entry.members.contains(user) {
            return Err(ChatError::NotMember);
        }
        Ok(entry.moderation)
    }

    async fn is_owner(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        self.check()?;
        let channels = lock(&self.channels);
        Ok(channels
            .get(channel)
            .is_some_and(|entry| entry.owners.contains(user)))
    }

    async fn check_attachments(
        &self,
        channel: &ChannelId,
        ids: &[String],
    ) -> Result<(), ChatError> {
        self.check()?;
        let channels = lock(&self.channels);
        let media = channels.get(channel).map(|e| &e.media);
        match ids.iter().find(|id| {
            !media
                .and_then(|m| m.get(id.as_str()))
                .copied()
                .unwrap_or(false)
        }) {
            Some(missing) => Err(ChatError::Attachment(missing.clone())),
            None => Ok(()),
        }
    }

    async fn moderation_allow(&self, channel: &ChannelId) -> Result<Vec<String>, ChatError> {
        self.check()?;
        let channels = lock(&self.channels);
        Ok(channels
            .get(channel)
            .map(|e| e.moderation_allow.clone())
            .unwrap_or_default())
    }
}
