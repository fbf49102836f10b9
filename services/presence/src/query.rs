//! Who is online: the rules behind `GetPresence` and `ListOnline`. Reads
//! never depend on cleanup, since the store counts only entries whose
//! expiry is after now.

use std::sync::Arc;

use chatmesh_ids::{ChannelId, Clock, UserId};

use crate::PresenceError;
use crate::store::{PresenceStore, UserStatus};

/// Most users `ListOnline` returns for one channel.
pub(crate) const MAX_ONLINE: usize = 10_000;

/// Answers presence queries from a store.
#[derive(Clone)]
pub(crate) struct Queries {
    store: Arc<dyn PresenceStore>,
    clock: Arc<dyn Clock>,
    max_batch_users: usize,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries")
            .field("max_batch_users", &self.max_batch_users)
            .finish_non_exhaustive()
    }
}

impl Queries {
    pub(crate) fn new(
        store: Arc<dyn PresenceStore>,
        clock: Arc<dyn Clock>,
        max_batch_users: usize,
    ) -> Self {
        Self {
            store,
            clock,
            max_batch_users,
        }
    }

    /// Online status and last-seen time of each user, in order.
    pub(crate) async fn presence(
        &self,
        users: &[UserId],
    ) -> Result<Vec<UserStatus>, PresenceError> {
        if users.len() > self.max_batch_users {
            return Err(PresenceError::TooManyUsers {
                max: self.max_batch_users,
                got: users.len(),
            });
        }
        self.store.user_status(users, self.clock.now_ms()).await
    }

    /// Users online in `channel`, sorted, at most [`MAX_ONLINE`].
    pub(crate) async fn online(&self, channel: &ChannelId) -> Result<Vec<UserId>, PresenceError> {
        let mut users = self
            .store
            .online_users(channel, self.clock.now_ms(), MAX_ONLINE)
            .await?;
        users.sort_unstable();
        Ok(users)
    }
}
