//! History reads as clients make them: members only, with the page size
//! defaulted and capped.

use chatmesh_ids::{ChannelId, ChatMessage, UserId};

use crate::error::StorageError;
use crate::members::Members;
use crate::store::{HistoryPage, MessageStore, Page, ReadPosition, Unread, column};

/// Page size when the request asks for none.
pub const DEFAULT_PAGE: u32 = 50;

/// A channel's history for its members.
#[derive(Debug, Clone)]
pub struct History<S, M> {
    store: S,
    members: M,
    max_page: u32,
}

impl<S: MessageStore, M: Members> History<S, M> {
    /// Reads of `store` for the members `members` knows, in pages of at
    /// most `max_page` messages.
    pub fn new(store: S, members: M, max_page: u32) -> Self {
        Self {
            store,
            members,
            max_page,
        }
    }

    /// Messages a page of `requested` holds: the default for 0, never more
    /// than the cap.
    pub fn limit(&self, requested: u32) -> usize {
        let wanted = if requested == 0 {
            DEFAULT_PAGE
        } else {
            requested
        };
        wanted.min(self.max_page) as usize
    }

    async fn authorize(&self, channel: &ChannelId, user: &UserId) -> Result<(), StorageError> {
        if self.members.is_member(channel, user).await? {
            Ok(())
        } else {
            Err(StorageError::NotMember)
        }
    }

    /// A page of `channel`'s posts around `page`, for `user`: their
    /// current state, with `user`'s own reactions marked.
    pub async fn page(
        &self,
        channel: &ChannelId,
        user: &UserId,
        page: Page,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        self.authorize(channel, user).await?;
        self.store
            .page(channel, Some(user), page, self.limit(limit))
            .await
    }

    /// A page of the replies in the thread of post `root` of `channel`, for
    /// `user`, like [`History::page`].
    pub async fn thread(
        &self,
        channel: &ChannelId,
        user: &UserId,
        root: u64,
        page: Page,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        column("root_seq", root)?;
        self.authorize(channel, user).await?;
        self.store
            .thread(channel, Some(user), root, page, self.limit(limit))
            .await
    }

    /// `channel`'s events after sequence number `after_seq`, for `user`
    /// filling a gap: posts in their current state, and changes.
    pub async fn since(
        &self,
        channel: &ChannelId,
        user: &UserId,
        after_seq: u64,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        column("after_seq", after_seq)?;
        self.authorize(channel, user).await?;
        self.store
            .since(channel, Some(user), after_seq, self.limit(limit))
            .await
    }

    /// The post of `channel` numbered `seq`, in its current state, for a
    /// service checking a change against it; no reader, so no membership
    /// check and no `me`.
    pub async fn message(
        &self,
        channel: &ChannelId,
        seq: u64,
    ) -> Result<ChatMessage, StorageError> {
        column("seq", seq)?;
        self.store
            .get(channel, seq)
            .await?
            .ok_or(StorageError::MessageNotFound)
    }
}

/// Read state as members see it: positions only for members, counts only
/// for the channels one belongs to.
impl<S: MessageStore, M: Members> History<S, M> {
    /// Moves `user`'s read position in `channel` up to `seq`; returns the
    /// position it holds now.
    pub async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, StorageError> {
        column("seq", seq)?;
        self.authorize(channel, user).await?;
        self.store.mark_read(channel, user, seq).await
    }

    /// Every member's read position in `channel`, for `user`, a member.
    pub async fn read_positions(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Vec<ReadPosition>, StorageError> {
        self.authorize(channel, user).await?;
        self.store.read_positions(channel).await
    }

    /// The channels of `requested` that `user` belongs to, or all of
    /// theirs when `requested` is empty: one directory query either way.
    async fn channels(
        &self,
        user: &UserId,
        requested: &[ChannelId],
    ) -> Result<Vec<ChannelId>, StorageError> {
        let mine = self.members.channels_of(user).await?;
        if requested.is_empty() {
            return Ok(mine);
        }
        let mut wanted: Vec<ChannelId> = requested
            .iter()
            .filter(|c| mine.binary_search(c).is_ok())
            .cloned()
            .collect();
        wanted.sort();
        wanted.dedup();
        Ok(wanted)
    }

    /// `user`'s read state in each channel of `requested` they belong to
    /// (every channel of theirs when empty), by channel ID.
    pub async fn unread(
        &self,
        user: &UserId,
        requested: &[ChannelId],
    ) -> Result<Vec<Unread>, StorageError> {
        let channels = self.channels(user, requested).await?;
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        self.store.unread(user, &channels).await
    }

    /// A page of the posts mentioning `user`, newest first, in `channel`
    /// or every channel of theirs.
    pub async fn mentions(
        &self,
        user: &UserId,
        channel: Option<&ChannelId>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        let before = before
            .map(|raw| column("before", raw).map(|_| chatmesh_ids::MessageId::from_raw(raw)))
            .transpose()?;
        let channels = match channel {
            Some(channel) => {
                self.authorize(channel, user).await?;
                vec![channel.clone()]
            }
            None => self.channels(user, &[]).await?,
        };
        if channels.is_empty() {
            return Ok(HistoryPage::default());
        }
        self.store
            .mentions(user, &channels, before, self.limit(limit))
            .await
    }
}

/// The page a request's cursors name: at most one of them, each a message
/// ID the store can hold.
pub fn page_of(before: Option<u64>, after: Option<u64>) -> Result<Page, StorageError> {
    let id = |field, raw| {
        column(field, raw)
            .map(|_| chatmesh_ids::MessageId::from_raw(raw))
            .map_err(|_| StorageError::InvalidArgument {
                field,
                reason: "not a message ID",
            })
    };
    match (before, after) {
        (Some(_), Some(_)) => Err(StorageError::InvalidArgument {
            field: "before/after",
            reason: "give one cursor, not both",
        }),
        (Some(b), None) => Ok(Page::Before(id("before", b)?)),
        (None, Some(a)) => Ok(Page::After(id("after", a)?)),
        (None, None) => Ok(Page::Latest),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chatmesh_ids::MessageId;

    use super::*;
    use crate::members::MemoryMembers;
    use crate::store::MemoryStore;
    use crate::testsuite::{message, unique_channel};

    fn alice() -> UserId {
        UserId::new("alice").unwrap()
    }

    /// A history over 4 in-memory shards, capped at 20 a page, where alice
    /// is a member of a channel holding 60 messages.
    async fn history() -> (History<Arc<MemoryStore>, MemoryMembers>, ChannelId) {
        let store = Arc::new(MemoryStore::with_shards(4));
        let channel = unique_channel("history");
        let all: Vec<_> = (1..=60).map(|seq| message(&channel, seq)).collect();
        store.insert(store.shard_of(&channel), &all).await.unwrap();
        let members = MemoryMembers::new();
        members.add(&channel, &alice());
        (History::new(store, members, 20), channel)
    }

    #[tokio::test]
    async fn the_page_size_defaults_and_is_capped() {
        let (history, channel) = history().await;
        let wide = history
            .page(&channel, &alice(), Page::Latest, 1_000)
            .await
            .unwrap();
        assert_eq!((wide.messages.len(), wide.more), (20, true));
        let small = history
            .page(&channel, &alice(), Page::Latest, 5)
            .await
            .unwrap();
        assert_eq!(small.messages.len(), 5);
        let unlimited = History::new(MemoryStore::with_shards(1), MemoryMembers::new(), 500);
        assert_eq!(unlimited.limit(0), DEFAULT_PAGE as usize);
        assert_eq!(unlimited.limit(7), 7);
        assert_eq!(unlimited.limit(501), 500);
        let since = history.since(&channel, &alice(), 0, 0).await.unwrap();
        assert_eq!(since.messages.len(), 20);
    }

    #[tokio::test]
    async fn only_members_read_and_a_refusal_reads_nothing() {
        let (history, channel) = history().await;
        let mallory = UserId::new("mallory").unwrap();
        // The store is down: a refusal that came after a read would fail
        // with the store's error instead.
        history
            .store
            .set_down(history.store.shard_of(&channel), true);
        let page = history.page(&channel, &mallory, Page::Latest, 10).await;
        assert!(matches!(page, Err(StorageError::NotMember)), "{page:?}");
        let since = history.since(&channel, &mallory, 0, 10).await;
        assert!(matches!(since, Err(StorageError::NotMember)), "{since:?}");
        let member = history.page(&channel, &alice(), Page::Latest, 10).await;
        assert!(
            matches!(member, Err(StorageError::Database(_))),
            "{member:?}"
        );
    }

    #[tokio::test]
    async fn an_impossible_sequence_number_is_refused_before_membership() {
        let (history, channel) = history().await;
        let stranger = UserId::new("mallory").unwrap();
        let since = history.since(&channel, &stranger, u64::MAX, 10).await;
        assert!(
            matches!(
                since,
                Err(StorageError::InvalidArgument {
                    field: "after_seq",
                    ..
                })
            ),
            "{since:?}"
        );
    }

    #[test]
    fn a_request_names_at_most_one_cursor_and_only_message_ids() {
        assert_eq!(page_of(None, None).unwrap(), Page::Latest);
        assert_eq!(
            page_of(Some(5), None).unwrap(),
            Page::Before(MessageId::from_raw(5))
        );
        assert_eq!(
            page_of(None, Some(5)).unwrap(),
            Page::After(MessageId::from_raw(5))
        );
        assert!(matches!(
            page_of(Some(1), Some(2)),
            Err(StorageError::InvalidArgument { .. })
        ));
        let too_big = page_of(Some(u64::MAX), None).unwrap_err();
        assert_eq!(too_big.to_string(), "before: not a message ID");
    }
}
