//! The suite's tests of read state: read positions, unread counts that
//! count posts (not sequence numbers) and leave deleted posts out, and
//! mentions that follow a post's current text.

use chatmesh_ids::{Change, ChannelId, ChatMessage, UserId};

use super::{insert, message, unique_channel};
use crate::store::{MessageStore, Unread};

fn user(name: &str) -> UserId {
    UserId::new(name).expect("a valid user ID")
}

/// Post `seq` of `channel` by `sender` saying `body`.
fn post(channel: &ChannelId, seq: u64, sender: &str, body: &str) -> ChatMessage {
    ChatMessage {
        sender: user(sender),
        body: body.into(),
        ..message(channel, seq)
    }
}

/// Change `seq` of `channel` by `sender`.
fn change(channel: &ChannelId, seq: u64, sender: &str, change: Change, body: &str) -> ChatMessage {
    ChatMessage {
        change,
        ..post(channel, seq, sender, body)
    }
}

async fn unread<S: MessageStore>(store: &S, reader: &str, channel: &ChannelId) -> Unread {
    let mut all = store
        .unread(&user(reader), std::slice::from_ref(channel))
        .await
        .expect("unread");
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

async fn mark<S: MessageStore>(store: &S, reader: &str, channel: &ChannelId, seq: u64) -> u64 {
    store
        .mark_read(channel, &user(reader), seq)
        .await
        .expect("mark_read")
}

/// (unread, mentions) of `reader` in `channel`.
async fn counts<S: MessageStore>(store: &S, reader: &str, channel: &ChannelId) -> (u64, u64) {
    let u = unread(store, reader, channel).await;
    (u.unread, u.mentions)
}

/// Unread counts posts after the read position, whatever number of
/// changes sits between them; the position only moves forward.
pub async fn unread_counts_posts_after_the_read_position<S: MessageStore>(store: S) {
    let c = unique_channel("unread");
    let react = |seq, target| {
        let emoji = "👍".to_owned();
        change(&c, seq, "bob", Change::React { target, emoji }, "")
    };
    // Posts at 1, 2, 4, 6, 7; reactions at 3 and 5.
    let events = vec![
        post(&c, 1, "bob", "a"),
        post(&c, 2, "bob", "b"),
        react(3, 1),
        post(&c, 4, "bob", "c"),
        react(5, 2),
        post(&c, 6, "bob", "d"),
        post(&c, 7, "bob", "e"),
    ];
    insert(&store, &events).await;

    let fresh = unread(&store, "carol", &c).await;
    assert_eq!((fresh.read_seq, fresh.last_seq, fresh.unread), (0, 7, 5));
    assert_eq!(mark(&store, "carol", &c, 3).await, 3);
    assert_eq!(counts(&store, "carol", &c).await, (3, 0));
    assert_eq!(mark(&store, "carol", &c, 5).await, 5);
    assert_eq!(counts(&store, "carol", &c).await, (2, 0));
    // Never backwards.
    assert_eq!(mark(&store, "carol", &c, 1).await, 5);
    assert_eq!(counts(&store, "carol", &c).await, (2, 0));
    assert_eq!(mark(&store, "carol", &c, 7).await, 7);
    assert_eq!(counts(&store, "carol", &c).await, (0, 0));
    // A position past the newest event reads everything stored after it.
    assert_eq!(mark(&store, "dave", &c, 100).await, 100);
    assert_eq!(counts(&store, "dave", &c).await, (0, 0));
    insert(&store, &[post(&c, 8, "bob", "f")]).await;
    assert_eq!(counts(&store, "carol", &c).await, (1, 0));
}

/// A deleted post after the read position no longer counts; one before it
/// changes nothing.
pub async fn deleted_posts_leave_the_unread_count<S: MessageStore>(store: S) {
    let c = unique_channel("unread-deletes");
    insert(
        &store,
        &(1..=6).map(|s| post(&c, s, "bob", "x")).collect::<Vec<_>>(),
    )
    .await;
    mark(&store, "carol", &c, 2).await;
    assert_eq!(counts(&store, "carol", &c).await, (4, 0));
    let delete = |seq, target| change(&c, seq, "bob", Change::Delete { target }, "");
    insert(&store, &[delete(7, 1), delete(8, 4), delete(9, 5)]).await;
    assert_eq!(counts(&store, "carol", &c).await, (2, 0));
    // A repeated delete, and the batch replayed, change nothing.
    insert(
        &store,
        &[delete(7, 1), delete(8, 4), delete(9, 5), delete(10, 4)],
    )
    .await;
    assert_eq!(counts(&store, "carol", &c).await, (2, 0));
    assert_eq!(unread(&store, "carol", &c).await.last_seq, 10);
}

/// A post that reaches storage after a later one is counted in its place:
/// reading up to it leaves the later one unread.
pub async fn a_post_stored_late_is_counted_in_its_place<S: MessageStore>(store: S) {
    let c = unique_channel("unread-late");
    insert(&store, &[post(&c, 1, "bob", "a"), post(&c, 2, "bob", "b")]).await;
    insert(&store, &[post(&c, 5, "bob", "e"), post(&c, 6, "bob", "f")]).await;
    // 3 and 4 come late, in one batch with a newer post.
    insert(
        &store,
        &[
            post(&c, 4, "bob", "d"),
            post(&c, 3, "bob", "c"),
            post(&c, 7, "bob", "g"),
        ],
    )
    .await;
    for (read, left) in [(0, 7), (2, 5), (3, 4), (4, 3), (6, 1), (7, 0)] {
        mark(&store, &format!("r{read}"), &c, read).await;
        assert_eq!(
            counts(&store, &format!("r{read}"), &c).await,
            (left, 0),
            "read up to {read}"
        );
    }
}

/// A replayed batch counts nothing twice, and posting moves the author's
/// read position to the post.
pub async fn posting_reads_the_channel_and_replays_count_once<S: MessageStore>(store: S) {
    let c = unique_channel("unread-replay");
    let batch: Vec<_> = (1..=4).map(|s| post(&c, s, "bob", "x")).collect();
    insert(&store, &batch).await;
    insert(&store, &batch).await;
    assert_eq!(counts(&store, "carol", &c).await, (4, 0));
    // Carol posts: everything up to her post is read for her.
    insert(&store, &[post(&c, 5, "carol", "hi")]).await;
    assert_eq!(unread(&store, "carol", &c).await.read_seq, 5);
    assert_eq!(counts(&store, "carol", &c).await, (0, 0));
    assert_eq!(counts(&store, "bob", &c).await, (1, 0));
    // Posting never moves a position back.
    mark(&store, "bob", &c, 5).await;
    insert(&store, &[post(&c, 3, "bob", "x")]).await;
    assert_eq!(unread(&store, "bob", &c).await.read_seq, 5);
    // A batch that lists a post twice counts it once, and numbers the
    // posts after it densely: reading up to it leaves exactly the next.
    let twice = post(&c, 6, "dave", "y");
    insert(&store, &[twice.clone(), twice, post(&c, 7, "dave", "z")]).await;
    assert_eq!(counts(&store, "carol", &c).await, (2, 0));
    mark(&store, "carol", &c, 6).await;
    assert_eq!(counts(&store, "carol", &c).await, (1, 0));
}

/// Mentions are counted until read, follow the post's current text (an
/// edit replaces them, a delete removes them), and are listed newest
/// first.
pub async fn mentions_follow_the_text_and_count_until_read<S: MessageStore>(store: S) {
    let c = unique_channel("mentions");
    insert(
        &store,
        &[
            post(&c, 1, "bob", "hi @carol"),
            post(&c, 2, "bob", "@dave and @carol, look"),
            post(&c, 3, "bob", "nobody"),
            post(&c, 4, "carol", "me: @carol"),
        ],
    )
    .await;
    // Carol's own post read the channel for her.
    assert_eq!(counts(&store, "dave", &c).await, (4, 1));
    mark(&store, "carol", &c, 1).await;
    let listed = store
        .mentions(&user("carol"), std::slice::from_ref(&c), None, 10)
        .await
        .expect("mentions");
    assert_eq!(
        listed.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(!listed.more);
    let first = store
        .mentions(&user("carol"), std::slice::from_ref(&c), None, 1)
        .await
        .expect("mentions");
    assert_eq!((first.messages[0].seq, first.more), (2, true));
    let older = store
        .mentions(
            &user("carol"),
            std::slice::from_ref(&c),
            Some(first.messages[0].id),
            1,
        )
        .await
        .expect("mentions");
    assert_eq!((older.messages[0].seq, older.more), (1, false));

    // An edit takes dave's mention away and gives erin one.
    let edit = change(&c, 5, "bob", Change::Edit { target: 2 }, "now @erin");
    insert(&store, &[edit]).await;
    assert_eq!(counts(&store, "dave", &c).await, (4, 0));
    assert_eq!(counts(&store, "erin", &c).await, (4, 1));
    // A delete takes every mention of the post away.
    insert(
        &store,
        &[change(&c, 6, "bob", Change::Delete { target: 2 }, "")],
    )
    .await;
    assert_eq!(counts(&store, "erin", &c).await, (3, 0));
    let listed = store
        .mentions(&user("erin"), std::slice::from_ref(&c), None, 10)
        .await
        .expect("mentions");
    assert!(listed.messages.is_empty());
}

/// One call answers channels on every shard, in the order asked; a channel
/// with nothing stored answers zeros; receipts list every position kept.
pub async fn unread_spans_shards_and_positions_are_listed<S: MessageStore>(store: S) {
    let mut channels: Vec<ChannelId> = Vec::new();
    while channels.len() < 6 {
        channels.push(unique_channel("unread-shards"));
    }
    for (i, c) in channels.iter().enumerate() {
        let posts: Vec<_> = (1..=i as u64).map(|s| post(c, s, "bob", "x")).collect();
        if !posts.is_empty() {
            insert(&store, &posts).await;
        }
    }
    let all = store
        .unread(&user("carol"), &channels)
        .await
        .expect("unread");
    let got: Vec<(ChannelId, u64)> = all.iter().map(|u| (u.channel.clone(), u.unread)).collect();
    let want: Vec<(ChannelId, u64)> = channels
        .iter()
        .cloned()
        .zip(0..channels.len() as u64)
        .collect();
    assert_eq!(got, want);

    let c = &channels[5];
    mark(&store, "carol", c, 2).await;
    let positions = store.read_positions(c).await.expect("positions");
    let seen: Vec<(&str, u64)> = positions.iter().map(|p| (p.user.as_str(), p.seq)).collect();
    assert_eq!(seen, [("bob", 5), ("carol", 2)]);
    assert!(
        positions
            .iter()
            .all(|p| p.updated_at_ms > 1_700_000_000_000)
    );
}
