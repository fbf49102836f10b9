//! Replies and threads against the real services: a reply names its
//! thread's first message on every node, history counts each thread's
//! replies, and the thread route pages them.

use std::time::Duration;

use anyhow::Context as _;
use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, HttpUser, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_join_flat_threads_that_history_counts_and_pages() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let room = channel_id("threads");
    let [alice, bob] = ["alice", "bob"].map(channel_id);
    create_channel(&sb, &room, ModerationPolicy::Reject, &[&alice, &bob]).await?;
    let (alice_token, bob_token) = (dev_token(gw0, &alice).await?, dev_token(gw1, &bob).await?);
    let mut a = Client::connect(gw0, &alice_token, None).await?;
    let mut b = Client::connect(gw1, &bob_token, None).await?;
    let mut watcher = Client::connect(gw1, &bob_token, None).await?;
    let (alice_http, bob_http) = (
        HttpUser::new(gw0, &alice).await?,
        HttpUser::new(gw1, &bob).await?,
    );
    watcher.subscribe(&room).await?;

    let send = |id: &str, body: &str, reply_to: Option<u64>| {
        let mut frame = json!({"type": "send", "request_id": id, "channel_id": room, "body": body});
        if let Some(to) = reply_to {
            frame["reply_to"] = to.into();
        }
        frame
    };
    let ok = |answer: Result<u64, Value>| answer.map_err(|e| anyhow::anyhow!("refused: {e}"));
    let root = ok(a.ask(send("1", "lunch?", None)).await?)?;
    let other = ok(a.ask(send("2", "unrelated", None)).await?)?;
    let r1 = ok(b.ask(send("3", "yes", Some(root))).await?)?;
    // A reply to a reply joins the first message's thread.
    let r2 = ok(a.ask(send("4", "where?", Some(r1))).await?)?;
    let r3 = ok(b.ask(send("5", "the usual", Some(root))).await?)?;

    // Live frames on the other node name the thread.
    let mut live = Vec::new();
    while live.len() < 5 {
        let frame = watcher.next().await?;
        if frame["type"] == "message" {
            live.push((
                frame["seq"].as_u64().unwrap_or(0),
                frame["reply_to"].as_u64(),
            ));
        }
    }
    assert_eq!(
        live,
        vec![
            (root, None),
            (other, None),
            (r1, Some(root)),
            (r2, Some(root)),
            (r3, Some(root))
        ]
    );

    // A reply to a deleted message, or to none, is refused. Chat checks
    // replies against what storage holds, so wait for the delete there.
    ok(
        a.ask(json!({"type": "delete", "request_id": "6", "channel_id": room, "seq": other}))
            .await?,
    )?;
    let history = format!("/v1/channels/{room}/messages");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = bob_http.get_ok(&history).await?;
        let deleted = page["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["seq"] == other))
            .is_some_and(|m| m["deleted"] == true);
        if deleted {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never deleted: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, to) in [("7", other), ("8", r3 + 50)] {
        let refused = b.ask(send(id, "hello?", Some(to))).await?;
        let error = refused.err().context("a reply to nothing was accepted")?;
        assert_eq!(error["code"], "not_found", "{error}");
    }

    // History counts the thread's replies on its first message.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let history = loop {
        let page = bob_http.get_ok(&history).await?;
        let counted = page["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["seq"] == root))
            .is_some_and(|m| m["reply_count"] == 3);
        if counted {
            break page;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never counted: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = &history["messages"][0];
    assert_eq!(first["seq"], root);
    assert!(
        first["last_reply_at_ms"].as_i64().unwrap_or(0)
            >= first["created_at_ms"].as_i64().unwrap_or(i64::MAX)
    );
    assert_eq!(
        history["messages"].as_array().map(Vec::len),
        Some(5),
        "replies are in the history too"
    );

    // The thread, two replies a page, from the newest back.
    let thread = format!("/v1/channels/{room}/messages/{root}/thread");
    let newest = alice_http.get_ok(&format!("{thread}?limit=2")).await?;
    let seqs = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["seq"].as_u64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        (seqs(&newest), &newest["has_more"]),
        (vec![r2, r3], &json!(true))
    );
    let oldest_id = newest["messages"][0]["message_id"]
        .as_str()
        .context("id")?
        .to_owned();
    let rest = alice_http
        .get_ok(&format!("{thread}?limit=2&before={oldest_id}"))
        .await?;
    assert_eq!((seqs(&rest), &rest["has_more"]), (vec![r1], &json!(false)));
    let none = alice_http
        .get_ok(&format!("/v1/channels/{room}/messages/{r1}/thread"))
        .await?;
    assert_eq!(seqs(&none), Vec::<u64>::new(), "a reply starts no thread");
    sb.stop().await
}
