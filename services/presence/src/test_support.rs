//! Doubles for unit tests: a store and a publisher whose backend is down.

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, UserId};

use crate::PresenceError;
use crate::events::{EventPublisher, PresenceEvent};
use crate::store::{
    ChannelJoin, Joined, Left, PresenceStore, Refreshed, SessionRefresh, Swept, UserStatus,
};

/// A Redis error as the cluster client reports an unreachable node: its
/// text names the node, which clients must never see.
pub(crate) fn unreachable_node() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "tcp connect to 10.0.0.7:6379 refused",
    ))
}

fn down<T>() -> Result<T, PresenceError> {
    Err(PresenceError::Redis(unreachable_node()))
}

/// A store whose every call fails as if Redis were unreachable.
#[derive(Debug, Default)]
pub(crate) struct DownStore;

#[async_trait]
impl PresenceStore for DownStore {
    async fn refresh_session(&self, _: SessionRefresh<'_>) -> Result<Refreshed, PresenceError> {
        down()
    }

    async fn end_session(
        &self,
        _: &UserId,
        _: &str,
        _: u64,
    ) -> Result<Vec<ChannelId>, PresenceError> {
        down()
    }

    async fn join_channel(&self, _: ChannelJoin<'_>) -> Result<Joined, PresenceError> {
        down()
    }

    async fn leave_channel(
        &self,
        _: &ChannelId,
        _: &UserId,
        _: &str,
        _: u64,
    ) -> Result<Left, PresenceError> {
        down()
    }

    async fn sweep_channel(&self, _: &ChannelId, _: u64) -> Result<Swept, PresenceError> {
        down()
    }

    async fn user_status(&self, _: &[UserId], _: u64) -> Result<Vec<UserStatus>, PresenceError> {
        down()
    }

    async fn online_users(
        &self,
        _: &ChannelId,
        _: u64,
        _: usize,
    ) -> Result<Vec<UserId>, PresenceError> {
        down()
    }
}

/// A publisher whose every publish fails as if Redis were unreachable.
#[derive(Debug, Default)]
pub(crate) struct DownPublisher;

#[async_trait]
impl EventPublisher for DownPublisher {
    async fn publish(&self, _: &PresenceEvent) -> Result<(), PresenceError> {
        down()
    }
}
