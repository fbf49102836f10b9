//! Read state against the real services: read positions set over the
//! WebSocket and HTTP, unread counts and unread mentions per channel that
//! count posts (not changes), leave deleted posts out and agree between
//! two sessions of one user on two gateway nodes; receipts, live and
//! listed, and the mentions list.

use std::time::Duration;

use anyhow::Context as _;
use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, HttpUser, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::{Value, json};

/// Alice's (unread, mentions) per channel of `rooms`, and the totals.
fn counts(answer: &Value, rooms: &[String]) -> (Vec<(u64, u64)>, u64, u64) {
    let of = |room: &String| {
        answer["channels"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["channel_id"] == room.as_str()))
            .map_or((u64::MAX, u64::MAX), |c| {
                (
                    c["unread"].as_u64().unwrap_or(u64::MAX),
                    c["mentions"].as_u64().unwrap_or(u64::MAX),
                )
            })
    };
    (
        rooms.iter().map(of).collect(),
        answer["total"].as_u64().unwrap_or(u64::MAX),
        answer["mentions"].as_u64().unwrap_or(u64::MAX),
    )
}

/// Polls alice's unread counts over HTTP until they are `want` (storage
/// stores a few milliseconds behind the acks).
async fn wait_for(
    http: &HttpUser,
    rooms: &[String],
    want: (Vec<(u64, u64)>, u64, u64),
) -> anyhow::Result<Value> {
    let path = format!("/v1/unread?channel_ids={}", rooms.join(","));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http.get_ok(&path).await?;
        if counts(&answer, rooms) == want {
            return Ok(answer);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "unread never became {want:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_counts_follow_reads_deletes_and_both_sessions() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(channel_id);
    let rooms: Vec<String> = (0..3).map(|i| channel_id(&format!("unread{i}"))).collect();
    for room in &rooms {
        create_channel(&sb, room, ModerationPolicy::Reject, &[&alice, &bob]).await?;
    }
    create_channel(
        &sb,
        &channel_id("other"),
        ModerationPolicy::Reject,
        &[&carol],
    )
    .await?;
    let bob_token = dev_token(gw0, &bob).await?;
    let mut b = Client::connect(gw0, &bob_token, None).await?;
    let alice_http = HttpUser::new(gw1, &alice).await?;
    let bob_http = HttpUser::new(gw0, &bob).await?;
    // Alice's two sessions, one on each node.
    let mut a1 = Client::connect(gw0, alice_http.token(), None).await?;
    let mut a2 = Client::connect(gw1, alice_http.token(), None).await?;

    let mut n = 0;
    let mut ask = async |client: &mut Client, mut frame: Value| -> anyhow::Result<u64> {
        n += 1;
        frame["request_id"] = n.to_string().into();
        client
            .ask(frame)
            .await?
            .map_err(|e| anyhow::anyhow!("refused: {e}"))
    };
    let post = |room: &str, body: &str| json!({"type": "send", "channel_id": room, "body": body});
    // Room 0: five posts, the second mentions alice, and reactions between
    // them (changes take numbers but are not unread posts).
    let mut seqs0 = Vec::new();
    for i in 0..5 {
        let body = if i == 1 {
            format!("look @{alice}")
        } else {
            format!("m{i}")
        };
        let seq = ask(&mut b, post(&rooms[0], &body)).await?;
        seqs0.push(seq);
        let react = json!({"type": "react", "channel_id": rooms[0], "seq": seq, "emoji": "👍"});
        ask(&mut b, react).await?;
    }
    // Room 1: three posts, one deleted.
    let mut seqs1 = Vec::new();
    for i in 0..3 {
        seqs1.push(ask(&mut b, post(&rooms[1], &format!("n{i}"))).await?);
    }
    let delete = json!({"type": "delete", "channel_id": rooms[1], "seq": seqs1[0]});
    ask(&mut b, delete).await?;
    // Room 2: four posts, the last mentioning alice.
    let mut seqs2 = Vec::new();
    for i in 0..4 {
        let body = if i == 3 {
            format!("@{alice}: done")
        } else {
            format!("o{i}")
        };
        seqs2.push(ask(&mut b, post(&rooms[2], &body)).await?);
    }
    wait_for(&alice_http, &rooms, (vec![(5, 1), (2, 0), (4, 1)], 11, 2)).await?;

    // Session 1 reads room 0 up to its third post over the WebSocket;
    // bob, watching the room on the other node, gets the receipt.
    let mut watcher = Client::connect(gw1, &bob_token, None).await?;
    watcher.subscribe(&rooms[0]).await?;
    let ack = json!({"type": "ack", "request_id": "r1", "channel_id": rooms[0], "seq": seqs0[2]});
    a1.send(ack).await?;
    let read = a1.expect("read").await?;
    assert_eq!(
        (&read["request_id"], &read["seq"]),
        (&json!("r1"), &json!(seqs0[2]))
    );
    let receipt = watcher.expect("read").await?;
    assert_eq!(
        receipt,
        json!({"type": "read", "channel_id": rooms[0], "user_id": alice, "seq": seqs0[2]})
    );
    // Session 2, on the other node, sees it at once, over the WebSocket.
    a2.send(json!({"type": "unread", "request_id": "u1", "channel_ids": rooms}))
        .await?;
    let unread = a2.expect("unread").await?;
    assert_eq!(
        counts(&unread, &rooms),
        (vec![(2, 0), (2, 0), (4, 1)], 8, 1),
        "{unread}"
    );
    // An older ack never moves the position back.
    a2.send(json!({"type": "ack", "request_id": "r2", "channel_id": rooms[0], "seq": seqs0[0]}))
        .await?;
    assert_eq!(a2.expect("read").await?["seq"], seqs0[2]);

    // Over HTTP: room 2 read to the end.
    let (status, body) = alice_http
        .call(
            reqwest::Method::PUT,
            &format!("/v1/channels/{}/read", rooms[2]),
            Some(json!({"seq": seqs2[3]})),
        )
        .await?;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(body["seq"], seqs2[3]);
    wait_for(&alice_http, &rooms, (vec![(2, 0), (2, 0), (0, 0)], 4, 0)).await?;

    // A delete after the read position takes a post off the count; one
    // before it changes nothing.
    ask(
        &mut b,
        json!({"type": "delete", "channel_id": rooms[0], "seq": seqs0[4]}),
    )
    .await?;
    ask(
        &mut b,
        json!({"type": "delete", "channel_id": rooms[0], "seq": seqs0[0]}),
    )
    .await?;
    wait_for(&alice_http, &rooms, (vec![(1, 0), (2, 0), (0, 0)], 3, 0)).await?;

    // Posting reads the channel for its author.
    ask(&mut a1, post(&rooms[1], "caught up")).await?;
    let all = wait_for(&alice_http, &rooms, (vec![(1, 0), (0, 0), (0, 0)], 1, 0)).await?;
    // Without channel_ids: every channel of alice's, and only hers.
    let mine = alice_http.get_ok("/v1/unread").await?;
    assert_eq!(mine["total"], all["total"], "{mine}");
    let listed: Vec<&str> = mine["channels"]
        .as_array()
        .context("channels")?
        .iter()
        .filter_map(|c| c["channel_id"].as_str())
        .collect();
    for room in &rooms {
        assert!(listed.contains(&room.as_str()), "{mine}");
    }
    assert!(!listed.iter().any(|c| c.starts_with("other")), "{mine}");

    // Receipts: bob sees how far alice has read.
    let receipts = bob_http
        .get_ok(&format!("/v1/channels/{}/reads", rooms[0]))
        .await?;
    let alice_read = receipts["positions"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["user_id"] == alice.as_str()))
        .context("alice's receipt")?;
    assert_eq!(alice_read["seq"], seqs0[2], "{receipts}");

    // Mentions, newest first, in their current state.
    let mentions = alice_http.get_ok("/v1/mentions").await?;
    let seqs: Vec<u64> = mentions["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [seqs2[3], seqs0[1]], "{mentions}");
    assert_eq!(mentions["messages"][0]["mentions"], json!([alice]));
    let one = alice_http
        .get_ok(&format!("/v1/mentions?channel_id={}&limit=1", rooms[0]))
        .await?;
    assert_eq!(one["messages"][0]["seq"], seqs0[1], "{one}");

    // Outsiders get clear refusals.
    let carol_http = HttpUser::new(gw0, &carol).await?;
    let mut refusals = Vec::new();
    for (method, path, body) in [
        (
            reqwest::Method::PUT,
            format!("/v1/channels/{}/read", rooms[0]),
            Some(json!({"seq": 1})),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/channels/{}/reads", rooms[0]),
            None,
        ),
        (
            reqwest::Method::PUT,
            "/v1/channels/nowhere-x/read".to_owned(),
            Some(json!({"seq": 1})),
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/channels/{}/read", rooms[0]),
            Some(json!({"seq": 0})),
        ),
    ] {
        let (status, body) = carol_http.call(method, &path, body).await?;
        refusals.push((
            status.as_u16(),
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        ));
    }
    assert_eq!(
        refusals,
        [
            (403, "not_member".to_owned()),
            (403, "not_member".to_owned()),
            (404, "unknown_channel".to_owned()),
            (400, "invalid_request".to_owned()),
        ]
    );
    let mut c = Client::connect(gw1, carol_http.token(), None).await?;
    c.send(json!({"type": "ack", "request_id": "x", "channel_id": rooms[0], "seq": 3}))
        .await?;
    assert_eq!(c.expect_error().await?["code"], "not_member");
    Ok(())
}
