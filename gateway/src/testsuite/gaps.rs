//! Tests of [`GapSource`]: the recent window and void numbers a send
//! leaves behind, and the pages storage answers for older messages.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, UserId};

use super::{SuiteResult, message, unique_channel, unique_user};
use crate::ports::GapSource;

/// Sets up what a gap source reads, as the chat and storage services do.
#[async_trait]
pub trait GapWriter: Send + Sync {
    /// Puts `message` in its channel's recent window, as a send's fan-out
    /// does.
    async fn add_recent(&self, message: &ChatMessage) -> SuiteResult<()>;
    /// Marks `seq` of `channel` as a number never made durable, as a
    /// failed send does.
    async fn add_void(&self, channel: &ChannelId, seq: u64) -> SuiteResult<()>;
    /// Creates `channel` with `member` in it and stores `count` messages,
    /// numbered from 1, as sends the storage service has consumed. Returns
    /// them, once storage serves every one.
    async fn store(
        &self,
        channel: &ChannelId,
        member: &UserId,
        count: u64,
    ) -> SuiteResult<Vec<ChatMessage>>;
    /// The most messages one stored page holds.
    fn page_size(&self) -> usize;
}

/// A gap source and the writer that sets up what it reads.
pub struct GapsUnderTest {
    gaps: Arc<dyn GapSource>,
    writer: Arc<dyn GapWriter>,
}

impl std::fmt::Debug for GapsUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GapsUnderTest").finish_non_exhaustive()
    }
}

impl GapsUnderTest {
    /// The node's gap source: the recent window on `redis`, older
    /// messages from the storage service at `storage`.
    pub fn stored(
        redis: chatmesh_redis::Cluster,
        storage: tonic::transport::Channel,
        writer: impl GapWriter + 'static,
    ) -> Self {
        Self {
            gaps: Arc::new(crate::upstream::gaps::StoredGaps::new(
                redis,
                chatmesh_upstream::balance::single(storage),
                chatmesh_upstream::retry::Retries::new(
                    "storage",
                    &chatmesh_upstream::UpstreamSettings::default(),
                ),
            )),
            writer: Arc::new(writer),
        }
    }

    /// The in-memory gap source, answering small pages.
    #[cfg(test)]
    pub(crate) fn memory() -> Self {
        let gaps = Arc::new(crate::memory::MemoryGaps::default());
        gaps.page_size(4);
        Self {
            gaps: gaps.clone(),
            writer: gaps,
        }
    }
}

#[cfg(test)]
#[async_trait]
impl GapWriter for crate::memory::MemoryGaps {
    async fn add_recent(&self, message: &ChatMessage) -> SuiteResult<()> {
        self.recent(message.clone());
        Ok(())
    }

    async fn add_void(&self, channel: &ChannelId, seq: u64) -> SuiteResult<()> {
        self.void(channel, seq);
        Ok(())
    }

    async fn store(
        &self,
        channel: &ChannelId,
        member: &UserId,
        count: u64,
    ) -> SuiteResult<Vec<ChatMessage>> {
        let stored: Vec<_> = (1..=count)
            .map(|seq| message(channel, member, seq))
            .collect();
        for m in &stored {
            crate::memory::MemoryGaps::store(self, m.clone());
        }
        Ok(stored)
    }

    fn page_size(&self) -> usize {
        self.page()
            .expect("the memory gap source is built with a page size")
    }
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Puts messages `seqs` of `channel` in its recent window and returns them.
async fn window(
    t: &GapsUnderTest,
    channel: &ChannelId,
    seqs: impl IntoIterator<Item = u64>,
) -> SuiteResult<Vec<ChatMessage>> {
    let sender = unique_user("sender");
    let mut added = Vec::new();
    for seq in seqs {
        let m = message(channel, &sender, seq);
        t.writer.add_recent(&m).await?;
        added.push(m);
    }
    Ok(added)
}

/// A channel with no sends has nothing in its window and no void numbers.
pub async fn a_fresh_channel_has_an_empty_window(t: &GapsUnderTest) -> SuiteResult<()> {
    let (messages, voids) = t.gaps.recent(&unique_channel("fresh"), 0, 100).await?;
    assert!(messages.is_empty(), "{messages:?}");
    assert!(voids.is_empty(), "{voids:?}");
    Ok(())
}

/// The window answers the messages with `after < seq <= upto`, in order,
/// as they were written.
pub async fn the_window_is_read_after_exclusive_upto_inclusive(
    t: &GapsUnderTest,
) -> SuiteResult<()> {
    let channel = unique_channel("window");
    // Written out of order, as concurrent sends may land.
    let mut added = window(t, &channel, [2, 1, 3, 5, 4, 6]).await?;
    added.sort_by_key(|m| m.seq);
    let read = |after, upto| {
        let gaps = t.gaps.clone();
        let channel = channel.clone();
        async move { gaps.recent(&channel, after, upto).await.map(|(m, _)| m) }
    };
    assert_eq!(read(2, 5).await?, added[2..5]);
    assert_eq!(read(0, 6).await?, added);
    assert_eq!(read(0, 100).await?, added);
    assert_eq!(seqs(&read(5, 6).await?), [6]);
    assert!(read(6, 10).await?.is_empty());
    assert!(read(3, 3).await?.is_empty());
    Ok(())
}

/// The channel's void numbers come with every read of its window.
pub async fn void_numbers_come_with_the_window(t: &GapsUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("voids");
    let added = window(t, &channel, [1, 2, 4]).await?;
    t.writer.add_void(&channel, 3).await?;
    t.writer.add_void(&channel, 5).await?;
    let (messages, voids) = t.gaps.recent(&channel, 0, 5).await?;
    assert_eq!(messages, added);
    assert_eq!(voids, HashSet::from([3, 5]));
    Ok(())
}

/// A channel's window and void numbers are its own.
pub async fn windows_are_per_channel(t: &GapsUnderTest) -> SuiteResult<()> {
    let (a, b) = (unique_channel("window-a"), unique_channel("window-b"));
    let in_a = window(t, &a, 1..=2).await?;
    let in_b = window(t, &b, 1..=1).await?;
    t.writer.add_void(&b, 2).await?;
    assert_eq!(t.gaps.recent(&a, 0, 10).await?, (in_a, HashSet::new()));
    assert_eq!(t.gaps.recent(&b, 0, 10).await?, (in_b, HashSet::from([2])));
    Ok(())
}

/// Stored messages after a number come oldest first, a page at a time;
/// a full page says more follow.
pub async fn stored_messages_come_in_pages_flagged_truncated(t: &GapsUnderTest) -> SuiteResult<()> {
    let (channel, member) = (unique_channel("stored"), unique_user("member"));
    let page = t.writer.page_size();
    let count = page as u64 + 3;
    let stored = t.writer.store(&channel, &member, count).await?;
    assert_eq!(seqs(&stored), (1..=count).collect::<Vec<_>>());
    let since = |after| {
        let (gaps, channel, member) = (t.gaps.clone(), channel.clone(), member.clone());
        async move { gaps.stored_since(&channel, &member, after).await }
    };

    let (first, truncated) = since(0).await?;
    assert_eq!((first.as_slice(), truncated), (&stored[..page], true));
    let (rest, truncated) = since(page as u64).await?;
    assert_eq!((rest.as_slice(), truncated), (&stored[page..], false));
    let (from_two, truncated) = since(2).await?;
    assert_eq!(
        (from_two.as_slice(), truncated),
        (&stored[2..page + 2], true)
    );
    let (last, truncated) = since(count - 1).await?;
    assert_eq!((seqs(&last), truncated), (vec![count], false));
    let (none, truncated) = since(count).await?;
    assert_eq!((none.len(), truncated), (0, false));
    Ok(())
}
