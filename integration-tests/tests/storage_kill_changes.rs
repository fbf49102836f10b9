//! Crash safety of applying message changes: a storage process SIGKILLed
//! twice while edits, deletes and reactions stream in ends with every post
//! in exactly the state the acknowledged events imply. A kill lands after
//! some of a batch's shard writes and before its offsets are committed;
//! the restarted process replays the batch, and no change in it is applied
//! twice (a reaction counted twice would show here as a wrong count).
//! Changes are produced many at a time, so changes to one post also reach
//! storage out of order, as they can from several gateways. The unread
//! counters (posts per channel, each post's number) come out exact too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chatmesh_integration_tests::messages::{MessageLog, Shards};
use chatmesh_integration_tests::storage_process::{self, StorageProcess};
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_proto::common::v1::{Message, MessageKind};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text};
use diesel_async::RunQueryDsl as _;
use futures::StreamExt as _;
use rand::{Rng as _, SeedableRng as _};

const CHANNELS: usize = 100;
const POSTS: u64 = 20;
const CHANGES: u64 = 60;
const KILLS: usize = 2;
const IN_FLIGHT: usize = 500;
const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
const EMOJI: [&str; 3] = ["👍", "🎉", "❤️"];

/// A post as its events imply it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Post {
    body: String,
    edit_count: i32,
    deleted: bool,
    /// emoji → count, zero counts left out.
    reactions: BTreeMap<String, i64>,
    version: i64,
}

/// Folds a channel's events in sequence order: the state storage must end
/// in, whatever order they arrive in.
fn expected(events: &[Message]) -> BTreeMap<u64, Post> {
    let mut posts: BTreeMap<u64, Post> = BTreeMap::new();
    let mut reacted: BTreeMap<(u64, String), BTreeSet<String>> = BTreeMap::new();
    for e in events {
        if e.kind == MessageKind::Post as i32 {
            posts.insert(
                e.seq,
                Post {
                    body: e.body.clone(),
                    ..Post::default()
                },
            );
            continue;
        }
        let target = e.target_seq;
        let post = posts.get_mut(&target).expect("changes follow their posts");
        post.version = post.version.max(e.seq as i64);
        if post.deleted {
            continue;
        }
        match MessageKind::try_from(e.kind) {
            Ok(MessageKind::Edit) => {
                post.body.clone_from(&e.body);
                post.edit_count += 1;
                post.reactions.clear();
                reacted.retain(|(t, _), _| *t != target);
            }
            Ok(MessageKind::Delete) => {
                post.body.clear();
                post.deleted = true;
                post.reactions.clear();
                reacted.retain(|(t, _), _| *t != target);
            }
            Ok(MessageKind::ReactionAdd) => {
                let who = reacted.entry((target, e.emoji.clone())).or_default();
                if who.insert(e.sender_id.clone()) {
                    *post.reactions.entry(e.emoji.clone()).or_default() += 1;
                }
            }
            Ok(MessageKind::ReactionRemove) => {
                let who = reacted.entry((target, e.emoji.clone())).or_default();
                if who.remove(&e.sender_id) {
                    let n = post.reactions.entry(e.emoji.clone()).or_default();
                    *n -= 1;
                    if *n == 0 {
                        post.reactions.remove(&e.emoji);
                    }
                }
            }
            _ => unreachable!("only the four changes are made"),
        }
    }
    posts
}

/// `CHANGES` random changes to the posts of `channel`, numbered after them.
fn changes(log: &MessageLog, channel: &str, rng: &mut impl rand::Rng) -> Vec<Message> {
    (0..CHANGES)
        .map(|i| {
            let mut m = log.message(channel, POSTS + 1 + i);
            m.target_seq = rng.random_range(1..=POSTS);
            m.sender_id = USERS[rng.random_range(0..USERS.len())].into();
            let roll = rng.random_range(0..100);
            let (kind, emoji) = match roll {
                0..50 => (MessageKind::ReactionAdd, true),
                50..70 => (MessageKind::ReactionRemove, true),
                70..93 => (MessageKind::Edit, false),
                _ => (MessageKind::Delete, false),
            };
            m.kind = kind as i32;
            m.body = match kind {
                MessageKind::Edit => format!("edit {i} of {channel}"),
                _ => String::new(),
            };
            if emoji {
                m.emoji = EMOJI[rng.random_range(0..EMOJI.len())].into();
            }
            m
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct StoredPost {
    #[diesel(sql_type = Text)]
    channel_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Integer)]
    edit_count: i32,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    reactions: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// Every stored post of `channels`, by (channel, seq).
async fn stored_posts(
    shards: &Shards,
    channels: &[String],
) -> anyhow::Result<HashMap<(String, u64), Post>> {
    let mut out = HashMap::new();
    for shard in shards.map().shards() {
        let mut conn = shard.pool.get().await?;
        let rows: Vec<StoredPost> = diesel::sql_query(
            "SELECT channel_id, seq, body, edit_count, deleted, reactions::text AS reactions, \
             version FROM messages WHERE kind = 0 AND channel_id = ANY($1)",
        )
        .bind::<Array<Text>, _>(channels)
        .load(&mut *conn)
        .await?;
        for row in rows {
            let counted: Vec<serde_json::Value> = serde_json::from_str(&row.reactions)?;
            let reactions = counted
                .iter()
                .map(|r| {
                    (
                        r["emoji"].as_str().unwrap_or_default().to_owned(),
                        r["count"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            let post = Post {
                body: row.body,
                edit_count: row.edit_count,
                deleted: row.deleted,
                reactions,
                version: row.version,
            };
            out.insert((row.channel_id, row.seq as u64), post);
        }
    }
    Ok(out)
}

#[derive(diesel::QueryableByName)]
struct Numbered {
    #[diesel(sql_type = Text)]
    channel_id: String,
    #[diesel(sql_type = BigInt)]
    posts: i64,
    #[diesel(sql_type = Array<BigInt>)]
    numbers: Vec<i64>,
}

/// The read-state bookkeeping of `channels`: each must count `POSTS`
/// posts, numbered 1 to `POSTS` in seq order. A replay that counted or
/// numbered a post twice shows here.
async fn check_counters(shards: &Shards, channels: &[String]) -> anyhow::Result<()> {
    let mut seen = 0;
    for shard in shards.map().shards() {
        let mut conn = shard.pool.get().await?;
        let rows: Vec<Numbered> = diesel::sql_query(
            "SELECT c.channel_id, c.posts, \
               (SELECT array_agg(m.post_no ORDER BY m.seq) FROM messages m \
                WHERE m.channel_id = c.channel_id AND m.kind = 0) AS numbers \
             FROM channel_counts c WHERE c.channel_id = ANY($1)",
        )
        .bind::<Array<Text>, _>(channels)
        .load(&mut *conn)
        .await?;
        let dense: Vec<i64> = (1..=POSTS as i64).collect();
        for row in rows {
            anyhow::ensure!(
                row.posts == POSTS as i64 && row.numbers == dense,
                "{}: {} posts counted, numbered {:?}",
                row.channel_id,
                row.posts,
                row.numbers
            );
            seen += 1;
        }
    }
    anyhow::ensure!(seen == channels.len(), "{seen} channels counted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_killed_while_changes_flow_applies_each_exactly_once() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh.test.kill-changes-{run}");
    infra.create_topic(&topic).await?;
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("kchg-{run}-{i}")).collect();
    let shards = Shards::new(&infra)?;
    let log = Arc::new(MessageLog::new(&infra, &topic)?);
    let config = storage_process::config(
        &infra,
        &topic,
        &format!("chatmesh-storage-kill-changes-{run}"),
        "1s",
        "",
    );
    let mut storage = StorageProcess::start(&config).await?;

    // The posts first: the chat service accepts a change only once its
    // post is stored.
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
    let mut events: BTreeMap<&str, Vec<Message>> = BTreeMap::new();
    for channel in &channels {
        let posts = (1..=POSTS).map(|seq| log.message(channel, seq)).collect();
        events.insert(channel, posts);
    }
    let posts: Vec<Message> = events.values().flatten().cloned().collect();
    for sent in futures::stream::iter(posts.iter().map(|m| log.send(m)))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
    {
        sent?;
    }
    let post_rows = (CHANNELS as u64 * POSTS) as i64;
    shards
        .wait_for(&channels, post_rows, Duration::from_secs(120))
        .await?;

    // Then the changes, many in flight at once, while storage is killed.
    let mut all_changes = Vec::new();
    for channel in &channels {
        let made = changes(&log, channel, &mut rng);
        events
            .get_mut(channel.as_str())
            .expect("made above")
            .extend(made.clone());
        all_changes.extend(made);
    }
    // Paced at about 500 a second, so the kills land while they flow;
    // each tick's changes are in flight together.
    let producing = {
        let log = log.clone();
        let changes = all_changes.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut results = Vec::new();
            for chunk in changes.chunks(50) {
                tick.tick().await;
                let sends = chunk.iter().map(|m| log.send(m));
                results.extend(futures::future::join_all(sends).await);
            }
            results
        })
    };
    let total = post_rows + all_changes.len() as i64;
    let part = all_changes.len() as i64 / (KILLS as i64 + 1);
    for kill in 1..=KILLS as i64 {
        let point = post_rows + part * kill + rng.random_range(-part / 3..part / 3);
        wait::until(
            &format!("{point} rows stored before kill {kill}"),
            Duration::from_secs(120),
            || {
                let (shards, channels) = (&shards, &channels);
                async move {
                    let n = shards.count(channels).await?;
                    anyhow::ensure!(n >= point, "{n} stored");
                    Ok(n)
                }
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        storage.kill().await?;
        let at_kill = shards.count(&channels).await?;
        eprintln!("kill {kill}: SIGKILL at {at_kill} of {total} rows stored");
        anyhow::ensure!(
            at_kill < total,
            "kill {kill} came after ingestion had finished"
        );
        storage.restart().await?;
    }
    for sent in producing.await? {
        sent?;
    }
    shards
        .wait_for(&channels, total, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nstorage log:\n{}", storage.log()))?;
    anyhow::ensure!(storage.is_running(), "storage exited:\n{}", storage.log());
    anyhow::ensure!(
        shards.count(&channels).await? == total,
        "an event was stored twice"
    );

    let read = storage
        .metric("chatmesh_storage_batch_size_sum")
        .await?
        .unwrap_or(0.0);
    let inserted = storage
        .metric("chatmesh_storage_rows_inserted_total")
        .await?
        .unwrap_or(0.0);
    eprintln!("after the last kill: {read} records read, {inserted} new");
    let after_kills = stored_posts(&shards, &channels).await?;
    check(&events, &after_kills, all_changes.len())?;
    check_counters(&shards, &channels).await?;

    // Every event read again by a consumer of a new group, as a lost group
    // or an operator's reset would: all of it is a replay, and applies
    // nothing.
    storage.kill().await?;
    let again = storage_process::config(
        &infra,
        &topic,
        &format!("chatmesh-storage-replay-{run}"),
        "1s",
        "",
    );
    let replayer = StorageProcess::start(&again).await?;
    wait::until(
        "the whole topic read again",
        Duration::from_secs(120),
        || {
            let replayer = &replayer;
            async move {
                let read = replayer
                    .metric("chatmesh_storage_batch_size_sum")
                    .await?
                    .unwrap_or(0.0);
                anyhow::ensure!(read >= total as f64, "{read} of {total} read");
                Ok(())
            }
        },
    )
    .await?;
    let new = replayer
        .metric("chatmesh_storage_rows_inserted_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(new, 0.0, "a replayed event was stored again");
    let after_replay = stored_posts(&shards, &channels).await?;
    assert!(
        after_replay == after_kills,
        "the replay changed stored posts"
    );
    check_counters(&shards, &channels).await?;
    check(&events, &after_replay, all_changes.len())
}

/// Compares `stored` with the state `events` imply, post by post.
fn check(
    events: &BTreeMap<&str, Vec<Message>>,
    stored: &HashMap<(String, u64), Post>,
    changes: usize,
) -> anyhow::Result<()> {
    let (mut checked, mut reactions, mut wrong) = (0, 0, Vec::new());
    for (channel, events) in events {
        for (seq, want) in expected(events) {
            let got = stored.get(&((*channel).to_owned(), seq));
            reactions += want.reactions.values().sum::<i64>();
            if got != Some(&want) {
                wrong.push(format!(
                    "{channel} #{seq}: stored {got:?}, implied {want:?}"
                ));
            }
            checked += 1;
        }
    }
    eprintln!(
        "{checked} posts checked, {changes} changes applied, {reactions} reactions standing, {} wrong",
        wrong.len()
    );
    anyhow::ensure!(
        wrong.is_empty(),
        "{}",
        wrong[..wrong.len().min(5)].join("\n")
    );
    Ok(())
}
