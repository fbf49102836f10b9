//! The shared test suite of [`MessageStore`]: every implementation must
//! pass it, the in-memory one in this crate's unit tests and the Postgres
//! one in `integration-tests/tests/storage_suites.rs`. Changes (edits,
//! deletes, reactions) have their tests in `changes`.
//!
//! Each test takes a fresh store and writes only channels of its own,
//! unique to the process, so stores that keep data between runs (real
//! databases) and tests running side by side do not see each other.
//! [`message_store_suite!`](crate::message_store_suite) expands to one
//! `#[tokio::test]` per test.

mod changes;
mod reads;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};

use crate::error::StorageError;
use crate::store::{HistoryPage, MessageStore, Page};

pub use changes::{
    a_change_to_a_missing_target_is_stored_and_harmless, a_delete_leaves_a_tombstone_in_place,
    a_partly_stored_batch_applies_only_its_new_changes, a_replayed_batch_applies_nothing_twice,
    an_edit_replaces_the_text_and_clears_reactions, changes_apply_in_sequence_order_within_a_batch,
    changes_out_of_order_end_as_their_numbers_imply, concurrent_copies_of_a_batch_apply_it_once,
    get_returns_a_post_in_its_current_state_or_nothing,
    pages_list_posts_in_their_state_for_the_reader, reactions_count_each_member_once,
    replies_count_once_and_page_as_a_thread, since_lists_changes_and_posts_with_their_version,
};

pub use reads::{
    a_post_stored_late_is_counted_in_its_place, deleted_posts_leave_the_unread_count,
    mentions_follow_the_text_and_count_until_read,
    posting_reads_the_channel_and_replays_count_once, unread_counts_posts_after_the_read_position,
    unread_spans_shards_and_positions_are_listed,
};

/// Expands to one `#[tokio::test]` per suite test, each running it on the
/// store `$make` evaluates to (evaluated inside the async test, so it may
/// `.await`).
#[macro_export]
macro_rules! message_store_suite {
    ($make:expr) => {
        $crate::message_store_suite!(@tests $make;
            insert_counts_new_messages_and_skips_stored_ones,
            inserting_nothing_is_a_no_op,
            a_replay_keeps_the_first_version,
            the_same_id_in_two_channels_is_two_messages,
            a_message_survives_storage_but_its_idempotency_key,
            a_large_insert_is_stored_whole,
            an_unstorable_message_fails_the_whole_insert,
            the_latest_page_is_the_newest_oldest_first,
            pages_before_walk_back_without_overlap_or_gap,
            pages_after_walk_forward_without_overlap_or_gap,
            an_unknown_channel_has_an_empty_history,
            channels_do_not_see_each_others_messages,
            since_returns_newer_messages_and_flags_truncation,
            since_orders_by_sequence_number,
            cursors_beyond_the_id_range_are_refused,
            an_edit_replaces_the_text_and_clears_reactions,
            a_delete_leaves_a_tombstone_in_place,
            reactions_count_each_member_once,
            a_replayed_batch_applies_nothing_twice,
            a_partly_stored_batch_applies_only_its_new_changes,
            changes_apply_in_sequence_order_within_a_batch,
            changes_out_of_order_end_as_their_numbers_imply,
            pages_list_posts_in_their_state_for_the_reader,
            since_lists_changes_and_posts_with_their_version,
            get_returns_a_post_in_its_current_state_or_nothing,
            a_change_to_a_missing_target_is_stored_and_harmless,
            concurrent_copies_of_a_batch_apply_it_once,
            replies_count_once_and_page_as_a_thread,
            unread_counts_posts_after_the_read_position,
            deleted_posts_leave_the_unread_count,
            a_post_stored_late_is_counted_in_its_place,
            posting_reads_the_channel_and_replays_count_once,
            mentions_follow_the_text_and_count_until_read,
            unread_spans_shards_and_positions_are_listed,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store = $make;
                $crate::testsuite::$name(store).await;
            }
        )*
    };
}

/// Differs between processes, so channels of earlier runs never collide.
static RUN: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A channel no other test or run uses.
pub fn unique_channel(label: &str) -> ChannelId {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ChannelId::new(format!("suite-{label}-{:016x}-{n}", *RUN)).expect("a valid channel ID")
}

/// Message `seq` of `channel`, with an ID that grows with `seq`.
pub fn message(channel: &ChannelId, seq: u64) -> ChatMessage {
    message_with_id(channel, seq, seq * 1_000 + 1)
}

fn message_with_id(channel: &ChannelId, seq: u64, id: u64) -> ChatMessage {
    ChatMessage {
        id: MessageId::from_raw(id),
        channel: channel.clone(),
        sender: UserId::new("alice").expect("a valid user ID"),
        seq,
        body: format!("message {seq}"),
        attachments: Vec::new(),
        created_at_ms: 1_800_000_000_000 + seq as i64,
        idempotency_key: None,
        change: Default::default(),
        reply_to: None,
        state: Default::default(),
    }
}

/// Messages `seqs` of `channel`.
fn messages(channel: &ChannelId, seqs: impl IntoIterator<Item = u64>) -> Vec<ChatMessage> {
    seqs.into_iter().map(|seq| message(channel, seq)).collect()
}

async fn insert<S: MessageStore>(store: &S, messages: &[ChatMessage]) -> usize {
    let shard = store.shard_of(&messages[0].channel);
    store.insert(shard, messages).await.expect("insert")
}

async fn page<S: MessageStore>(
    store: &S,
    channel: &ChannelId,
    at: Page,
    limit: usize,
) -> HistoryPage {
    store.page(channel, None, at, limit).await.expect("page")
}

fn seqs(page: &HistoryPage) -> Vec<u64> {
    page.messages.iter().map(|m| m.seq).collect()
}

/// Every message of `channel`, oldest first.
async fn everything<S: MessageStore>(store: &S, channel: &ChannelId) -> Vec<ChatMessage> {
    page(store, channel, Page::Latest, 100_000).await.messages
}

/// Inserts count new messages only; stored ones are skipped.
pub async fn insert_counts_new_messages_and_skips_stored_ones<S: MessageStore>(store: S) {
    let channel = unique_channel("insert");
    assert_eq!(insert(&store, &messages(&channel, 1..=3)).await, 3);
    assert_eq!(insert(&store, &messages(&channel, 1..=3)).await, 0);
    assert_eq!(insert(&store, &messages(&channel, 2..=5)).await, 2);
    let stored = everything(&store, &channel).await;
    assert_eq!(stored, messages(&channel, 1..=5));
}

/// An empty insert stores nothing and succeeds.
pub async fn inserting_nothing_is_a_no_op<S: MessageStore>(store: S) {
    for shard in 0..store.shard_count() {
        assert_eq!(store.insert(shard, &[]).await.expect("insert"), 0);
    }
}

/// A message stored twice with different contents keeps the first: a
/// replay never rewrites history.
pub async fn a_replay_keeps_the_first_version<S: MessageStore>(store: S) {
    let channel = unique_channel("replay");
    let first = message(&channel, 1);
    let changed = ChatMessage {
        body: "rewritten".into(),
        ..first.clone()
    };
    assert_eq!(insert(&store, std::slice::from_ref(&first)).await, 1);
    assert_eq!(insert(&store, &[changed]).await, 0);
    assert_eq!(everything(&store, &channel).await, vec![first]);
}

/// Idempotency is by (channel, message ID), not by ID alone.
pub async fn the_same_id_in_two_channels_is_two_messages<S: MessageStore>(store: S) {
    let (a, b) = (unique_channel("twin-a"), unique_channel("twin-b"));
    assert_eq!(insert(&store, &[message(&a, 1)]).await, 1);
    assert_eq!(insert(&store, &[message(&b, 1)]).await, 1);
    assert_eq!(everything(&store, &a).await, vec![message(&a, 1)]);
    assert_eq!(everything(&store, &b).await, vec![message(&b, 1)]);
}

/// Every field reads back as written, except the idempotency key, which
/// only matters while a send is retried.
pub async fn a_message_survives_storage_but_its_idempotency_key<S: MessageStore>(store: S) {
    let channel = unique_channel("fields");
    let sent = ChatMessage {
        sender: UserId::new("bob.smith").expect("a valid user ID"),
        body: "héllo, wörld 👋\nsecond line".into(),
        attachments: vec!["m-1".into(), "m-2".into()],
        created_at_ms: 1_812_345_678_901,
        idempotency_key: Some("k-1".into()),
        ..message_with_id(&channel, 42, (1 << 62) + 7)
    };
    assert_eq!(insert(&store, std::slice::from_ref(&sent)).await, 1);
    let expected = ChatMessage {
        idempotency_key: None,
        ..sent
    };
    assert_eq!(everything(&store, &channel).await, vec![expected]);
}

/// An insert larger than one statement holds is still one insert.
pub async fn a_large_insert_is_stored_whole<S: MessageStore>(store: S) {
    let channel = unique_channel("large");
    assert_eq!(insert(&store, &messages(&channel, 1..=4_500)).await, 4_500);
    assert_eq!(
        insert(&store, &messages(&channel, 4_401..=4_600)).await,
        100
    );
    let last = page(&store, &channel, Page::Latest, 1).await;
    assert_eq!((seqs(&last), last.more), (vec![4_600], true));
}

/// A message that does not fit the store fails its insert, and the rest of
/// the insert is not stored either.
pub async fn an_unstorable_message_fails_the_whole_insert<S: MessageStore>(store: S) {
    let channel = unique_channel("unstorable");
    let too_big = message_with_id(&channel, 2, u64::MAX);
    let batch = [message(&channel, 1), too_big];
    let shard = store.shard_of(&channel);
    let refused = store.insert(shard, &batch).await;
    assert!(
        matches!(refused, Err(StorageError::InvalidArgument { .. })),
        "{refused:?}"
    );
    assert_eq!(everything(&store, &channel).await, Vec::new());
}

/// The latest page holds the newest messages, oldest first, and says
/// whether older ones exist.
pub async fn the_latest_page_is_the_newest_oldest_first<S: MessageStore>(store: S) {
    let channel = unique_channel("latest");
    insert(&store, &messages(&channel, 1..=10)).await;
    let newest = page(&store, &channel, Page::Latest, 4).await;
    assert_eq!((seqs(&newest), newest.more), (vec![7, 8, 9, 10], true));
    let exact = page(&store, &channel, Page::Latest, 10).await;
    assert_eq!((seqs(&exact), exact.more), ((1..=10).collect(), false));
    let wide = page(&store, &channel, Page::Latest, 50).await;
    assert_eq!((seqs(&wide), wide.more), ((1..=10).collect(), false));
}

/// Pages before the oldest message seen cover the history once.
pub async fn pages_before_walk_back_without_overlap_or_gap<S: MessageStore>(store: S) {
    let channel = unique_channel("before");
    insert(&store, &messages(&channel, 1..=10)).await;
    let mut seen: Vec<u64> = Vec::new();
    let mut sizes = Vec::new();
    let mut at = Page::Latest;
    loop {
        let p = page(&store, &channel, at, 3).await;
        assert!(
            p.messages.windows(2).all(|w| w[0].id < w[1].id),
            "oldest first"
        );
        sizes.push(p.messages.len());
        seen.splice(0..0, seqs(&p));
        match (p.more, p.messages.first()) {
            (true, Some(oldest)) => at = Page::Before(oldest.id),
            _ => break,
        }
    }
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    let below = page(&store, &channel, Page::Before(message(&channel, 1).id), 3).await;
    assert_eq!((seqs(&below), below.more), (vec![], false));
}

/// Pages after the newest message seen cover the history once, in order.
pub async fn pages_after_walk_forward_without_overlap_or_gap<S: MessageStore>(store: S) {
    let channel = unique_channel("after");
    insert(&store, &messages(&channel, 1..=10)).await;
    let mut seen: Vec<u64> = Vec::new();
    let mut sizes = Vec::new();
    let mut at = Page::After(MessageId::from_raw(0));
    loop {
        let p = page(&store, &channel, at, 4).await;
        sizes.push(p.messages.len());
        seen.extend(seqs(&p));
        match (p.more, p.messages.last()) {
            (true, Some(newest)) => at = Page::After(newest.id),
            _ => break,
        }
    }
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    // A cursor between two IDs starts at the next one.
    let mid = MessageId::from_raw(message(&channel, 5).id.get() + 1);
    let p = page(&store, &channel, Page::After(mid), 2).await;
    assert_eq!((seqs(&p), p.more), (vec![6, 7], true));
}

/// Nothing is known of a channel nobody wrote to.
pub async fn an_unknown_channel_has_an_empty_history<S: MessageStore>(store: S) {
    let channel = unique_channel("unknown");
    let id = MessageId::from_raw(1_000);
    for at in [Page::Latest, Page::Before(id), Page::After(id)] {
        assert_eq!(page(&store, &channel, at, 10).await, HistoryPage::default());
    }
    let since = store.since(&channel, None, 0, 10).await.expect("since");
    assert_eq!(since, HistoryPage::default());
}

/// Reads of one channel return its messages only.
pub async fn channels_do_not_see_each_others_messages<S: MessageStore>(store: S) {
    let (a, b) = (unique_channel("mine"), unique_channel("theirs"));
    insert(&store, &messages(&a, 1..=3)).await;
    insert(&store, &messages(&b, 1..=5)).await;
    let p = page(&store, &a, Page::Latest, 10).await;
    assert!(p.messages.iter().all(|m| m.channel == a));
    assert_eq!((seqs(&p), p.more), (vec![1, 2, 3], false));
    let s = store.since(&a, None, 0, 10).await.expect("since");
    assert_eq!((seqs(&s), s.more), (vec![1, 2, 3], false));
}

/// Gap recovery reads messages after a sequence number, oldest first, and
/// says when there are more than it returned.
pub async fn since_returns_newer_messages_and_flags_truncation<S: MessageStore>(store: S) {
    let channel = unique_channel("since");
    insert(&store, &messages(&channel, 1..=10)).await;
    let since = |after, limit| store.since(&channel, None, after, limit);
    let first = since(3, 4).await.expect("since");
    assert_eq!((seqs(&first), first.more), (vec![4, 5, 6, 7], true));
    let rest = since(7, 10).await.expect("since");
    assert_eq!((seqs(&rest), rest.more), (vec![8, 9, 10], false));
    let exact = since(7, 3).await.expect("since");
    assert_eq!((seqs(&exact), exact.more), (vec![8, 9, 10], false));
    let none = since(10, 10).await.expect("since");
    assert_eq!(none, HistoryPage::default());
}

/// Gap recovery follows sequence numbers even where IDs disagree with them
/// (a message minted on a worker whose clock ran behind).
pub async fn since_orders_by_sequence_number<S: MessageStore>(store: S) {
    let channel = unique_channel("seq-order");
    let stored: Vec<_> = (1..=5)
        .map(|seq| message_with_id(&channel, seq, 10_000 - seq))
        .collect();
    insert(&store, &stored).await;
    let s = store.since(&channel, None, 1, 3).await.expect("since");
    assert_eq!((seqs(&s), s.more), (vec![2, 3, 4], true));
}

/// Cursors no stored message can have are refused, not read as "all".
pub async fn cursors_beyond_the_id_range_are_refused<S: MessageStore>(store: S) {
    let channel = unique_channel("cursor");
    let huge = MessageId::from_raw(u64::MAX);
    for at in [Page::Before(huge), Page::After(huge)] {
        let refused = store.page(&channel, None, at, 10).await;
        assert!(
            matches!(refused, Err(StorageError::InvalidArgument { .. })),
            "{at:?}: {refused:?}"
        );
    }
    let refused = store.since(&channel, None, u64::MAX, 10).await;
    assert!(
        matches!(refused, Err(StorageError::InvalidArgument { .. })),
        "{refused:?}"
    );
}

#[cfg(test)]
mod memory {
    crate::message_store_suite!(crate::store::MemoryStore::with_shards(4));
}
