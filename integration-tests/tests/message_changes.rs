//! Edits, deletes and reactions against the real services, over the
//! WebSocket and HTTP APIs of two gateway nodes: who may make them, every
//! subscriber on both nodes seeing them in order, history showing each
//! message's current state, and a client that was away catching up to the
//! same state as one that stayed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, HttpUser, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_proto::common::v1::ModerationPolicy;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A message as a client shows it, after every change it has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shown {
    body: String,
    edit_count: u64,
    deleted: bool,
    /// emoji → count.
    reactions: BTreeMap<String, u64>,
    /// The last change folded in.
    version: u64,
}

/// A channel as a client shows it: posts by sequence number.
#[derive(Debug, Default, PartialEq, Eq)]
struct View {
    posts: BTreeMap<u64, Shown>,
    /// Who reacted with what, by post: to fold reaction events exactly.
    reacted: BTreeMap<(u64, String), std::collections::BTreeSet<String>>,
}

impl View {
    /// Folds one `message` frame (live, replayed or from storage) in, as
    /// the protocol says: a post in its stored state, then each change
    /// whose `seq` is above its target's `version`.
    fn apply(&mut self, frame: &Value) {
        let seq = frame["seq"].as_u64().expect("seq");
        let kind = frame["kind"].as_str().unwrap_or("post");
        if kind == "post" {
            let reactions = frame["reactions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    (
                        r["emoji"].as_str().unwrap_or_default().to_owned(),
                        r["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            self.posts.insert(
                seq,
                Shown {
                    body: frame["body"].as_str().unwrap_or_default().to_owned(),
                    edit_count: frame["edit_count"].as_u64().unwrap_or(0),
                    deleted: frame["deleted"].as_bool().unwrap_or(false),
                    reactions,
                    version: frame["version"].as_u64().unwrap_or(0),
                },
            );
            return;
        }
        let target = frame["target_seq"]
            .as_u64()
            .expect("a change names its target");
        let sender = frame["sender_id"].as_str().unwrap_or_default().to_owned();
        let emoji = frame["emoji"].as_str().unwrap_or_default().to_owned();
        let Some(post) = self.posts.get_mut(&target) else {
            return;
        };
        if seq <= post.version {
            return;
        }
        post.version = seq;
        match kind {
            "edit" if !post.deleted => {
                post.body = frame["body"].as_str().unwrap_or_default().to_owned();
                post.edit_count += 1;
                post.reactions.clear();
                self.reacted.retain(|(t, _), _| *t != target);
            }
            "delete" => {
                post.body.clear();
                post.deleted = true;
                post.reactions.clear();
                self.reacted.retain(|(t, _), _| *t != target);
            }
            "reaction_add" if !post.deleted => {
                let who = self.reacted.entry((target, emoji.clone())).or_default();
                let added = who.insert(sender);
                *post.reactions.entry(emoji).or_default() += u64::from(added);
            }
            "reaction_remove" => {
                let removed = self
                    .reacted
                    .get_mut(&(target, emoji.clone()))
                    .is_some_and(|who| who.remove(&sender));
                if removed && let Some(n) = post.reactions.get_mut(&emoji) {
                    *n -= 1;
                    if *n == 0 {
                        post.reactions.remove(&emoji);
                    }
                }
            }
            _ => {}
        }
    }

    /// What two views must agree on: the posts' text, edits, tombstones
    /// and reaction counts (versions differ between a folded live view and
    /// a stored one).
    fn shown(&self) -> BTreeMap<u64, (String, u64, bool, BTreeMap<String, u64>)> {
        self.posts
            .iter()
            .map(|(seq, p)| {
                (
                    *seq,
                    (p.body.clone(), p.edit_count, p.deleted, p.reactions.clone()),
                )
            })
            .collect()
    }
}

/// The channel's history as `user` reads it, oldest first.
async fn history(user: &HttpUser, channel: &str) -> anyhow::Result<Vec<Value>> {
    let page = user
        .get_ok(&format!("/v1/channels/{channel}/messages?limit=100"))
        .await?;
    Ok(page["messages"].as_array().cloned().unwrap_or_default())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// Reads `message` frames of `channel` until one numbered `upto` arrives,
/// folding each into `view`; fails on a number out of order or repeated.
async fn follow(
    client: &mut Client,
    channel: &str,
    view: &mut View,
    last: &mut u64,
    upto: u64,
) -> anyhow::Result<()> {
    while *last < upto {
        let frame = client.next().await?;
        if frame["type"] != "message" || frame["channel_id"] != channel {
            continue;
        }
        let seq = frame["seq"].as_u64().context("seq")?;
        anyhow::ensure!(seq > *last, "seq {seq} after {last}: {frame}");
        *last = seq;
        view.apply(&frame);
    }
    Ok(())
}

/// Polls history until `done` holds for it, for storage to catch up.
async fn history_until(
    http: &HttpUser,
    channel: &str,
    done: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = history(http, channel).await?;
        if done(&page) {
            return Ok(page);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "history never caught up: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn by_seq(page: &[Value], seq: u64) -> &Value {
    page.iter()
        .find(|m| m["seq"] == seq)
        .unwrap_or_else(|| panic!("no post {seq} in {page:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_follow_the_rules_reach_both_nodes_and_show_in_history() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let room = channel_id("changes");
    let [alice, bob, carol, dave, mallory] =
        ["alice", "bob", "carol", "dave", "mallory"].map(channel_id);
    create_channel(
        &sb,
        &room,
        ModerationPolicy::Reject,
        &[&alice, &bob, &carol, &dave],
    )
    .await?;

    // Alice acts on one node and Bob on the other; Dave and Carol only
    // watch, one on each node.
    let mut a = Client::connect(gw0, &dev_token(gw0, &alice).await?, None).await?;
    let mut b = Client::connect(gw1, &dev_token(gw1, &bob).await?, None).await?;
    let mut c = Client::connect(gw1, &dev_token(gw1, &carol).await?, None).await?;
    let mut d = Client::connect(gw0, &dev_token(gw0, &dave).await?, None).await?;
    let mut m = Client::connect(gw0, &dev_token(gw0, &mallory).await?, None).await?;
    for client in [&mut c, &mut d] {
        client.subscribe(&room).await?;
    }
    let mut posts = Vec::new();
    for (i, body) in ["first", "second", "third"].iter().enumerate() {
        let frame = json!({"type": "send", "request_id": format!("p{i}"), "channel_id": room, "body": body});
        posts.push(a.ask(frame).await?.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let [first, second, third] = [posts[0], posts[1], posts[2]];

    // Refused: Bob edits or deletes Alice's message; Mallory, no member,
    // reacts; a reaction to a number no post carries.
    let refusals = [
        (
            false,
            json!({"type": "edit", "request_id": "r1", "channel_id": room, "seq": first, "body": "mine now"}),
            "forbidden",
        ),
        (
            false,
            json!({"type": "delete", "request_id": "r2", "channel_id": room, "seq": first}),
            "forbidden",
        ),
        (
            true,
            json!({"type": "react", "request_id": "r3", "channel_id": room, "seq": first, "emoji": "👍"}),
            "not_member",
        ),
        (
            false,
            json!({"type": "react", "request_id": "r4", "channel_id": room, "seq": third + 100, "emoji": "👍"}),
            "not_found",
        ),
    ];
    for (outsider, frame, expected) in refusals {
        let client = if outsider { &mut m } else { &mut b };
        let answer = client.ask(frame.clone()).await?;
        let error = answer
            .err()
            .with_context(|| format!("{frame} was accepted"))?;
        assert_eq!(error["code"], expected, "{frame}: {error}");
    }

    // Accepted, over both APIs and both nodes.
    let bob_http = HttpUser::new(gw1, &bob).await?;
    let carol_http = HttpUser::new(gw1, &carol).await?;
    let alice_http = HttpUser::new(gw0, &alice).await?;
    let mut acked = Vec::new();
    let ok = |answer: Result<u64, Value>| answer.map_err(|e| anyhow::anyhow!("refused: {e}"));
    acked.push(ok(a.ask(json!({"type": "edit", "request_id": "e1", "channel_id": room, "seq": first, "body": "first, edited"})).await?)?);
    acked.push(ok(b.ask(json!({"type": "react", "request_id": "x1", "channel_id": room, "seq": second, "emoji": "👍"})).await?)?);
    let (status, body) = carol_http
        .call(
            Method::PUT,
            &format!("/v1/channels/{room}/messages/{second}/reactions/%F0%9F%91%8D"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    acked.push(body["event"]["seq"].as_u64().context("event seq")?);
    let (status, body) = alice_http
        .call(
            Method::DELETE,
            &format!("/v1/channels/{room}/messages/{third}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    acked.push(body["event"]["seq"].as_u64().context("event seq")?);
    let (status, body) = alice_http
        .call(
            Method::PATCH,
            &format!("/v1/channels/{room}/messages/{first}"),
            Some(json!({"body": "first, twice"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["kind"], "edit");
    acked.push(body["event"]["seq"].as_u64().context("event seq")?);
    // Over HTTP too, only the author edits.
    let (status, body) = bob_http
        .call(
            Method::PATCH,
            &format!("/v1/channels/{room}/messages/{first}"),
            Some(json!({"body": "no"})),
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{body}"
    );
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "changes numbered in order: {acked:?}"
    );
    let last = *acked.last().unwrap();

    // The subscribers on both nodes see the same channel.
    let mut views = Vec::new();
    for client in [&mut c, &mut d] {
        let (mut view, mut seen) = (View::default(), 0);
        follow(client, &room, &mut view, &mut seen, last).await?;
        views.push(view);
    }
    assert_eq!(views[0].shown(), views[1].shown());
    let shown = views[0].shown();
    assert_eq!(shown[&first].0, "first, twice");
    assert_eq!(shown[&first].1, 2);
    assert!(shown[&third].2, "third deleted");
    assert_eq!(shown[&second].3, BTreeMap::from([("👍".to_owned(), 2)]));

    // History holds posts only, each in its current state, with `me` for
    // the reader.
    let page = history_until(&bob_http, &room, |page| {
        page.iter()
            .any(|m| m["seq"] == first && m["edit_count"] == 2)
            && page
                .iter()
                .any(|m| m["seq"] == third && m["deleted"] == true)
            && page
                .iter()
                .any(|m| m["seq"] == second && m["reactions"][0]["count"] == 2)
    })
    .await?;
    assert_eq!(
        page.iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![first, second, third],
        "changes are not listed as messages"
    );
    assert_eq!(by_seq(&page, first)["body"], "first, twice");
    assert_eq!(by_seq(&page, third)["body"], "");
    assert_eq!(
        by_seq(&page, second)["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}])
    );
    let for_alice = history(&alice_http, &room).await?;
    assert_eq!(by_seq(&for_alice, second)["reactions"][0]["me"], false);
    let mut stored = View::default();
    page.iter().for_each(|m| stored.apply(m));
    assert_eq!(stored.shown(), shown, "history and live agree");

    // Bob takes his reaction back; then Alice's edit clears the rest.
    let (status, body) = bob_http
        .call(
            Method::DELETE,
            &format!("/v1/channels/{room}/messages/{second}/reactions/%F0%9F%91%8D"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = history_until(&bob_http, &room, |page| {
        by_seq(page, second)["reactions"] == json!([{"emoji": "👍", "count": 1, "me": false}])
    })
    .await?;
    assert_eq!(by_seq(&page, second)["edit_count"].as_u64().unwrap_or(0), 0);
    ok(a.ask(json!({"type": "edit", "request_id": "e2", "channel_id": room, "seq": second, "body": "second, reworded"})).await?)?;
    history_until(&bob_http, &room, |page| {
        let m = by_seq(page, second);
        m["body"] == "second, reworded" && m["reactions"].as_array().is_none_or(Vec::is_empty)
    })
    .await?;
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_away_while_messages_change_catches_up_with_last_seq() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let room = channel_id("away");
    let [alice, wendy, otto] = ["alice", "wendy", "otto"].map(channel_id);
    create_channel(
        &sb,
        &room,
        ModerationPolicy::Reject,
        &[&alice, &wendy, &otto],
    )
    .await?;
    let mut sender = Client::connect(gw0, &dev_token(gw0, &alice).await?, None).await?;
    let mut watcher = Client::connect(gw1, &dev_token(gw1, &wendy).await?, None).await?;
    let otto_token = dev_token(gw0, &otto).await?;
    let mut away = Client::connect(gw0, &otto_token, None).await?;
    watcher.subscribe(&room).await?;
    away.subscribe(&room).await?;
    let (mut stayed, mut stayed_seen) = (View::default(), 0);
    let (mut returned, mut returned_seen) = (View::default(), 0);

    let mut n = 0;
    let mut ask_ok = async |client: &mut Client, frame: Value| -> anyhow::Result<u64> {
        n += 1;
        let mut frame = frame;
        frame["request_id"] = json!(format!("q{n}"));
        frame["channel_id"] = json!(room);
        frame["idempotency_key"] = json!(format!("k{n}"));
        client
            .ask(frame)
            .await?
            .map_err(|e| anyhow::anyhow!("refused: {e}"))
    };
    // Ten messages both see.
    let mut posts = Vec::new();
    for i in 0..10 {
        posts.push(
            ask_ok(
                &mut sender,
                json!({"type": "send", "body": format!("m{i}")}),
            )
            .await?,
        );
    }
    follow(
        &mut away,
        &room,
        &mut returned,
        &mut returned_seen,
        posts[9],
    )
    .await?;
    drop(away);

    // While Otto is away: ten more, five edits, three deletes, ten
    // reactions, on old and new messages alike.
    for i in 10..20 {
        posts.push(
            ask_ok(
                &mut sender,
                json!({"type": "send", "body": format!("m{i}")}),
            )
            .await?,
        );
    }
    for i in [0, 3, 9, 12, 19] {
        ask_ok(
            &mut sender,
            json!({"type": "edit", "seq": posts[i], "body": format!("m{i}, edited")}),
        )
        .await?;
    }
    for i in [1, 12, 15] {
        ask_ok(&mut sender, json!({"type": "delete", "seq": posts[i]})).await?;
    }
    let mut reactor = Client::connect(gw1, &dev_token(gw1, &wendy).await?, None).await?;
    let mut last = 0;
    for (i, emoji) in [
        (0, "👍"),
        (0, "🎉"),
        (2, "👍"),
        (4, "❤️"),
        (9, "👍"),
        (13, "😂"),
        (17, "👍"),
        (18, "👍"),
        (19, "🎉"),
        (5, "👍"),
    ] {
        last = ask_ok(
            &mut reactor,
            json!({"type": "react", "seq": posts[i], "emoji": emoji}),
        )
        .await?;
    }
    // One of them taken back.
    last = last.max(
        ask_ok(
            &mut reactor,
            json!({"type": "react", "seq": posts[5], "emoji": "👍", "remove": true}),
        )
        .await?,
    );
    follow(&mut watcher, &room, &mut stayed, &mut stayed_seen, last).await?;

    // Otto comes back with the last number he saw.
    let mut back = Client::connect(gw1, &otto_token, None).await?;
    back.send(json!({"type": "subscribe", "channel_id": room, "last_seq": returned_seen}))
        .await?;
    back.expect("subscribed").await?;
    follow(&mut back, &room, &mut returned, &mut returned_seen, last).await?;
    assert_eq!(
        returned.shown(),
        stayed.shown(),
        "the returning client shows what the one that stayed shows"
    );
    let shown = stayed.shown();
    assert_eq!(shown.len(), 20);
    assert_eq!(shown.values().filter(|s| s.2).count(), 3, "three deleted");
    assert_eq!(
        shown.values().filter(|s| s.1 == 1).count(),
        5,
        "a delete keeps the edit count"
    );
    assert_eq!(
        shown[&posts[0]].3,
        BTreeMap::from([("👍".to_owned(), 1), ("🎉".to_owned(), 1)])
    );
    assert!(shown[&posts[5]].3.is_empty(), "the reaction taken back");

    // History ends in the same state.
    let http = HttpUser::new(gw0, &otto).await?;
    let page = history_until(&http, &room, |page| {
        page.iter().filter(|m| m["deleted"] == true).count() == 3
            && by_seq(page, posts[5])["reactions"]
                .as_array()
                .is_none_or(Vec::is_empty)
            && page
                .iter()
                .filter(|m| m["reactions"].as_array().is_some_and(|r| !r.is_empty()))
                .count()
                == 8
    })
    .await?;
    let mut stored = View::default();
    page.iter().for_each(|m| stored.apply(m));
    assert_eq!(stored.shown(), shown);
    sb.stop().await
}
