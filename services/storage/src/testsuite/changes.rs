//! The suite's tests of changes: edits, deletes and reactions applied to
//! their target posts once each, and read back in the posts' state.

use chatmesh_ids::{Change, ChannelId, ChatMessage, UserId};

use super::{insert, message, page, seqs, unique_channel};
use crate::store::{MessageStore, Page};

fn user(name: &str) -> UserId {
    UserId::new(name).expect("a valid user ID")
}

/// Event `seq` of `channel`: `change`, sent by `sender`.
fn event(channel: &ChannelId, seq: u64, sender: &str, change: Change) -> ChatMessage {
    ChatMessage {
        sender: user(sender),
        body: String::new(),
        change,
        reply_to: None,
        ..message(channel, seq)
    }
}

fn react(channel: &ChannelId, seq: u64, sender: &str, target: u64, emoji: &str) -> ChatMessage {
    let emoji = emoji.into();
    event(channel, seq, sender, Change::React { target, emoji })
}

fn unreact(channel: &ChannelId, seq: u64, sender: &str, target: u64, emoji: &str) -> ChatMessage {
    let emoji = emoji.into();
    event(channel, seq, sender, Change::Unreact { target, emoji })
}

fn edit(channel: &ChannelId, seq: u64, target: u64, body: &str) -> ChatMessage {
    ChatMessage {
        body: body.into(),
        ..event(channel, seq, "alice", Change::Edit { target })
    }
}

fn delete(channel: &ChannelId, seq: u64, target: u64) -> ChatMessage {
    event(channel, seq, "alice", Change::Delete { target })
}

async fn get<S: MessageStore>(store: &S, channel: &ChannelId, seq: u64) -> Option<ChatMessage> {
    store.get(channel, seq).await.expect("get")
}

/// The post `seq` of `channel`, which must be stored.
async fn post<S: MessageStore>(store: &S, channel: &ChannelId, seq: u64) -> ChatMessage {
    get(store, channel, seq).await.expect("a stored post")
}

/// Reaction counts of `post`, with `me`.
fn counts(post: &ChatMessage) -> Vec<(&str, u32, bool)> {
    let reactions = &post.state.reactions;
    reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.count, r.me))
        .collect()
}

/// Channels that all live on one shard, so that one insert can hold them.
fn channels_on_one_shard<S: MessageStore>(store: &S, label: &str, n: usize) -> Vec<ChannelId> {
    let first = unique_channel(label);
    let shard = store.shard_of(&first);
    let mut channels = vec![first];
    while channels.len() < n {
        let next = unique_channel(label);
        if store.shard_of(&next) == shard {
            channels.push(next);
        }
    }
    channels
}

/// An edit replaces the text, counts itself and clears the reactions the
/// old text had; reactions after it count from zero.
pub async fn an_edit_replaces_the_text_and_clears_reactions<S: MessageStore>(store: S) {
    let c = unique_channel("edit");
    let first = edit(&c, 4, 1, "new text");
    let batch = [
        message(&c, 1),
        react(&c, 2, "bob", 1, "👍"),
        react(&c, 3, "carol", 1, "🎉"),
        first.clone(),
    ];
    assert_eq!(insert(&store, &batch).await, 4);
    let edited = post(&store, &c, 1).await;
    assert_eq!(edited.body, "new text");
    assert_eq!(edited.state.edit_count, 1);
    assert_eq!(edited.state.edited_at_ms, first.created_at_ms);
    assert_eq!((counts(&edited), edited.state.version), (vec![], 4));

    // bob's earlier reaction went with the old text, so his new one counts.
    insert(&store, &[react(&c, 5, "bob", 1, "👍")]).await;
    let second = edit(&c, 6, 1, "newer text");
    insert(&store, std::slice::from_ref(&second)).await;
    let edited = post(&store, &c, 1).await;
    assert_eq!(edited.body, "newer text");
    assert_eq!(edited.state.edit_count, 2);
    assert_eq!(edited.state.edited_at_ms, second.created_at_ms);
    assert_eq!((counts(&edited), edited.state.version), (vec![], 6));
    insert(&store, &[react(&c, 7, "bob", 1, "👍")]).await;
    assert_eq!(counts(&post(&store, &c, 1).await), vec![("👍", 1, false)]);
}

/// A delete empties the post but keeps its row and number; later changes
/// to it do nothing but raise its version.
pub async fn a_delete_leaves_a_tombstone_in_place<S: MessageStore>(store: S) {
    let c = unique_channel("delete");
    let with_media = ChatMessage {
        attachments: vec!["m-1".into()],
        ..message(&c, 1)
    };
    let batch = [
        with_media,
        message(&c, 2),
        react(&c, 3, "bob", 1, "👍"),
        delete(&c, 4, 1),
    ];
    insert(&store, &batch).await;
    let later = [
        react(&c, 5, "carol", 1, "🎉"),
        edit(&c, 6, 1, "resurrected"),
        delete(&c, 7, 1),
    ];
    assert_eq!(insert(&store, &later).await, 3);
    let tombstone = post(&store, &c, 1).await;
    assert!(tombstone.state.deleted);
    assert_eq!(
        (tombstone.body.as_str(), tombstone.attachments.len()),
        ("", 0)
    );
    assert_eq!(tombstone.state.edit_count, 0);
    assert_eq!((counts(&tombstone), tombstone.state.version), (vec![], 7));

    let history = page(&store, &c, Page::Latest, 10).await;
    assert_eq!(seqs(&history), vec![1, 2]);
    assert_eq!(history.messages[0], tombstone);
    let events = store.since(&c, None, 0, 10).await.expect("since");
    assert_eq!(seqs(&events), (1..=7).collect::<Vec<_>>());
}

/// A member's reaction with an emoji counts once however often it is
/// sent; taking it back counts down, and an emoji at zero disappears.
/// Counts keep the order of each emoji's first use.
pub async fn reactions_count_each_member_once<S: MessageStore>(store: S) {
    let c = unique_channel("react");
    let batch = [
        message(&c, 1),
        react(&c, 2, "bob", 1, "👍"),
        react(&c, 3, "bob", 1, "👍"),
        react(&c, 4, "carol", 1, "👍"),
        react(&c, 5, "bob", 1, "🎉"),
        react(&c, 6, "carol", 1, "🔥"),
    ];
    insert(&store, &batch).await;
    let reacted = post(&store, &c, 1).await;
    let expected = vec![("👍", 2, false), ("🎉", 1, false), ("🔥", 1, false)];
    assert_eq!((counts(&reacted), reacted.state.version), (expected, 6));

    let back = [
        unreact(&c, 7, "carol", 1, "👍"),
        unreact(&c, 8, "dave", 1, "👍"),
        unreact(&c, 9, "bob", 1, "🎉"),
        unreact(&c, 10, "bob", 1, "🎉"),
        react(&c, 11, "dave", 1, "🎉"),
    ];
    insert(&store, &back).await;
    let reacted = post(&store, &c, 1).await;
    let expected = vec![("👍", 1, false), ("🔥", 1, false), ("🎉", 1, false)];
    assert_eq!((counts(&reacted), reacted.state.version), (expected, 11));
}

/// The same batch stored twice, and one event listed twice in a batch,
/// apply once: counts stay exact.
pub async fn a_replayed_batch_applies_nothing_twice<S: MessageStore>(store: S) {
    let c = unique_channel("replay-changes");
    let batch = [
        message(&c, 1),
        react(&c, 2, "bob", 1, "👍"),
        react(&c, 3, "carol", 1, "👍"),
        unreact(&c, 4, "bob", 1, "👍"),
        react(&c, 5, "bob", 1, "🎉"),
        edit(&c, 6, 1, "edited"),
        react(&c, 7, "dave", 1, "👍"),
    ];
    assert_eq!(insert(&store, &batch).await, 7);
    let once = post(&store, &c, 1).await;
    assert_eq!((once.body.as_str(), once.state.edit_count), ("edited", 1));
    assert_eq!(counts(&once), vec![("👍", 1, false)]);

    assert_eq!(insert(&store, &batch).await, 0);
    assert_eq!(post(&store, &c, 1).await, once);
    let events = store.since(&c, None, 0, 100).await.expect("since");
    assert_eq!(seqs(&events), (1..=7).collect::<Vec<_>>());

    let twice = react(&c, 8, "erin", 1, "👍");
    assert_eq!(insert(&store, &[twice.clone(), twice]).await, 1);
    assert_eq!(counts(&post(&store, &c, 1).await), vec![("👍", 2, false)]);
}

/// A batch some of whose events were stored before applies only the
/// others.
pub async fn a_partly_stored_batch_applies_only_its_new_changes<S: MessageStore>(store: S) {
    let c = unique_channel("partial");
    let stored = [
        message(&c, 1),
        react(&c, 2, "bob", 1, "👍"),
        react(&c, 3, "carol", 1, "👍"),
    ];
    insert(&store, &stored).await;
    let replay = [
        react(&c, 2, "bob", 1, "👍"),
        react(&c, 3, "carol", 1, "👍"),
        react(&c, 4, "dave", 1, "👍"),
        unreact(&c, 5, "bob", 1, "👍"),
        react(&c, 6, "bob", 1, "🎉"),
    ];
    assert_eq!(insert(&store, &replay).await, 3);
    let reacted = post(&store, &c, 1).await;
    let expected = vec![("👍", 2, false), ("🎉", 1, false)];
    assert_eq!((counts(&reacted), reacted.state.version), (expected, 6));
    // The whole history again, plus one new event.
    let mut all: Vec<_> = stored.into_iter().chain(replay).collect();
    all.push(react(&c, 7, "carol", 1, "🎉"));
    assert_eq!(insert(&store, &all).await, 1);
    let reacted = post(&store, &c, 1).await;
    let expected = vec![("👍", 2, false), ("🎉", 2, false)];
    assert_eq!((counts(&reacted), reacted.state.version), (expected, 7));
}

/// Changes of several channels in one batch apply in each channel's
/// sequence order, whatever order the batch lists them in, and to posts
/// stored by the same batch.
pub async fn changes_apply_in_sequence_order_within_a_batch<S: MessageStore>(store: S) {
    let channels = channels_on_one_shard(&store, "order", 2);
    let (a, b) = (&channels[0], &channels[1]);
    let batch = [
        edit(a, 3, 1, "second"),
        react(b, 3, "bob", 1, "👍"),
        edit(a, 2, 1, "first"),
        message(b, 1),
        unreact(b, 2, "bob", 1, "👍"),
        message(a, 1),
    ];
    assert_eq!(insert(&store, &batch).await, 6);
    let edited = post(&store, a, 1).await;
    assert_eq!(edited.body, "second");
    assert_eq!((edited.state.edit_count, edited.state.version), (2, 3));
    // The take-back came first, when there was nothing to take back.
    let reacted = post(&store, b, 1).await;
    assert_eq!(counts(&reacted), vec![("👍", 1, false)]);
}

/// Changes to one post that reach storage out of order end in the state
/// their sequence numbers imply: an older edit counts but leaves the newer
/// text, a reaction older than a member's take-back stays taken back, and
/// a reaction newer than the last edit stands.
pub async fn changes_out_of_order_end_as_their_numbers_imply<S: MessageStore>(store: S) {
    let c = unique_channel("late");
    let first = [
        message(&c, 1),
        edit(&c, 3, 1, "latest"),
        react(&c, 5, "bob", 1, "👍"),
        unreact(&c, 7, "carol", 1, "👍"),
    ];
    insert(&store, &first).await;
    let late = [
        edit(&c, 2, 1, "older"),
        react(&c, 4, "dave", 1, "👍"),
        react(&c, 6, "carol", 1, "👍"),
    ];
    assert_eq!(insert(&store, &late).await, 3);
    let post = post(&store, &c, 1).await;
    assert_eq!(post.body, "latest");
    assert_eq!((post.state.edit_count, post.state.version), (2, 7));
    assert_eq!(counts(&post), vec![("👍", 2, false)]);
}

/// History pages list posts only, `limit` of them, each in its current
/// state with `me` marking the reader's own reactions.
pub async fn pages_list_posts_in_their_state_for_the_reader<S: MessageStore>(store: S) {
    let c = unique_channel("page-state");
    let batch = [
        message(&c, 1),
        message(&c, 2),
        message(&c, 3),
        react(&c, 4, "bob", 1, "👍"),
        react(&c, 5, "carol", 1, "👍"),
        react(&c, 6, "carol", 1, "🎉"),
        edit(&c, 7, 2, "edited"),
        react(&c, 8, "bob", 3, "🎉"),
    ];
    insert(&store, &batch).await;
    let (bob, carol) = (user("bob"), user("carol"));
    let read = |reader, at, limit| store.page(&c, reader, at, limit);

    let newest = read(Some(&bob), Page::Latest, 2).await.expect("page");
    assert_eq!((seqs(&newest), newest.more), (vec![2, 3], true));
    assert_eq!(newest.messages[0].body, "edited");
    assert_eq!(newest.messages[0].state.version, 7);
    assert_eq!(counts(&newest.messages[1]), vec![("🎉", 1, true)]);
    assert!(newest.messages.iter().all(|m| m.change == Change::Post));

    let older = read(Some(&bob), Page::Before(newest.messages[0].id), 2).await;
    let older = older.expect("page");
    assert_eq!((seqs(&older), older.more), (vec![1], false));
    let for_bob = vec![("👍", 2, true), ("🎉", 1, false)];
    assert_eq!(counts(&older.messages[0]), for_bob);

    let all = read(Some(&carol), Page::After(message(&c, 1).id), 10).await;
    let all = all.expect("page");
    assert_eq!((seqs(&all), all.more), (vec![2, 3], false));
    assert_eq!(counts(&all.messages[1]), vec![("🎉", 1, false)]);
    let first = read(Some(&carol), Page::Latest, 10).await.expect("page");
    assert_eq!(seqs(&first), vec![1, 2, 3]);
    let for_carol = vec![("👍", 2, true), ("🎉", 1, true)];
    assert_eq!(counts(&first.messages[0]), for_carol);

    let anonymous = read(None, Page::Latest, 10).await.expect("page");
    let for_nobody = vec![("👍", 2, false), ("🎉", 1, false)];
    assert_eq!(counts(&anonymous.messages[0]), for_nobody);
}

/// Gap filling lists every event after the cursor: posts in their state
/// (`version` and the reader's `me`), changes as sent.
pub async fn since_lists_changes_and_posts_with_their_version<S: MessageStore>(store: S) {
    let c = unique_channel("since-changes");
    let reaction = react(&c, 3, "bob", 1, "👍");
    let change = edit(&c, 4, 2, "edited");
    let batch = [
        message(&c, 1),
        message(&c, 2),
        reaction.clone(),
        change.clone(),
    ];
    insert(&store, &batch).await;
    let bob = user("bob");
    let events = store.since(&c, Some(&bob), 0, 10).await.expect("since");
    assert_eq!((seqs(&events), events.more), (vec![1, 2, 3, 4], false));
    let [reacted, edited, listed_reaction, listed_edit] = &events.messages[..] else {
        panic!("four events: {events:?}");
    };
    assert_eq!(counts(reacted), vec![("👍", 1, true)]);
    assert_eq!(reacted.state.version, 3);
    assert_eq!((edited.body.as_str(), edited.state.version), ("edited", 4));
    assert_eq!(listed_reaction, &reaction);
    assert_eq!(listed_edit, &change);

    let tail = store.since(&c, Some(&bob), 2, 1).await.expect("since");
    assert_eq!((seqs(&tail), tail.more), (vec![3], true));
    assert_eq!(tail.messages[0].change, reaction.change);
}

/// `get` finds a post by number in its current state, and nothing where
/// a change or no event has the number.
pub async fn get_returns_a_post_in_its_current_state_or_nothing<S: MessageStore>(store: S) {
    let c = unique_channel("get");
    insert(&store, &[message(&c, 1), react(&c, 2, "bob", 1, "👍")]).await;
    let found = post(&store, &c, 1).await;
    assert_eq!(found.body, message(&c, 1).body);
    assert_eq!(
        (counts(&found), found.state.version),
        (vec![("👍", 1, false)], 2)
    );
    assert_eq!(get(&store, &c, 2).await, None);
    assert_eq!(get(&store, &c, 3).await, None);
    assert_eq!(get(&store, &unique_channel("get-none"), 1).await, None);
    assert!(store.get(&c, u64::MAX).await.is_err());
}

/// A change whose target is missing, or is itself a change, is stored
/// and changes nothing.
pub async fn a_change_to_a_missing_target_is_stored_and_harmless<S: MessageStore>(store: S) {
    let c = unique_channel("orphan");
    let batch = [
        message(&c, 1),
        react(&c, 2, "bob", 99, "👍"),
        edit(&c, 3, 2, "not a post"),
        delete(&c, 4, 0),
        unreact(&c, 5, "bob", 99, "👍"),
    ];
    assert_eq!(insert(&store, &batch).await, 5);
    let untouched = post(&store, &c, 1).await;
    assert_eq!(untouched, message(&c, 1));
    let events = store.since(&c, None, 0, 10).await.expect("since");
    assert_eq!(events.messages, batch.to_vec());
    assert_eq!(get(&store, &c, 99).await, None);
    assert_eq!(seqs(&page(&store, &c, Page::Latest, 10).await), vec![1]);
}

/// Two writers storing the same batch at once (a consumer that lost its
/// partitions and one that took them over) apply it once between them.
pub async fn concurrent_copies_of_a_batch_apply_it_once<S: MessageStore>(store: S) {
    let c = unique_channel("concurrent");
    insert(&store, &[message(&c, 1)]).await;
    let batch: Vec<_> = (2..=41)
        .map(|seq| react(&c, seq, &format!("user-{seq}"), 1, "👍"))
        .collect();
    let (first, second) = tokio::join!(insert(&store, &batch), insert(&store, &batch));
    assert_eq!(first + second, 40);
    let reacted = post(&store, &c, 1).await;
    assert_eq!(
        (counts(&reacted), reacted.state.version),
        (vec![("👍", 40, false)], 41)
    );
}

/// Post `seq` of `channel`, a reply in the thread of post `root`.
fn reply(channel: &ChannelId, seq: u64, root: u64) -> ChatMessage {
    ChatMessage {
        reply_to: Some(root),
        ..message(channel, seq)
    }
}

/// Replies count in their thread's first post once each, however often
/// their batch is stored; a thread page lists the replies only, paged like
/// history; history lists them with the other posts.
pub async fn replies_count_once_and_page_as_a_thread<S: MessageStore>(store: S) {
    let c = unique_channel("thread");
    let first = [message(&c, 1), reply(&c, 2, 1), message(&c, 3)];
    insert(&store, &first).await;
    let later = [reply(&c, 4, 1), reply(&c, 5, 3), reply(&c, 6, 1)];
    insert(&store, &later).await;
    // A replay of both, and of a reply alone.
    let all: Vec<_> = first.iter().chain(&later).cloned().collect();
    assert_eq!(insert(&store, &all).await, 0);
    assert_eq!(insert(&store, &[reply(&c, 4, 1)]).await, 0);

    let root = post(&store, &c, 1).await;
    assert_eq!(root.state.reply_count, 3);
    assert_eq!(root.state.last_reply_at_ms, message(&c, 6).created_at_ms);
    assert_eq!(post(&store, &c, 3).await.state.reply_count, 1);
    assert_eq!(post(&store, &c, 2).await.reply_to, Some(1));

    let thread = store
        .thread(&c, None, 1, Page::Latest, 2)
        .await
        .expect("thread");
    assert_eq!((seqs(&thread), thread.more), (vec![4, 6], true));
    let older = Page::Before(thread.messages[0].id);
    let rest = store.thread(&c, None, 1, older, 2).await.expect("thread");
    assert_eq!((seqs(&rest), rest.more), (vec![2], false));
    let none = store
        .thread(&c, None, 2, Page::Latest, 10)
        .await
        .expect("thread");
    assert!(
        none.messages.is_empty(),
        "a reply starts no thread of its own"
    );
    let history = page(&store, &c, Page::Latest, 10).await;
    assert_eq!(seqs(&history), vec![1, 2, 3, 4, 5, 6]);
}
