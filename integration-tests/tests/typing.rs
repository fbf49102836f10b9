//! Typing indicators across two gateway nodes: a typer on one node is seen
//! by watchers on both, drops out within the expiry after going quiet, at
//! once after a stop or a closed connection; fast or misplaced typing
//! frames are refused.

use std::time::{Duration, Instant};

use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::{Value, json};

/// A typer who goes quiet is gone from every node by then: the 5 s expiry
/// plus the expiry timer's tick and some slack.
const QUIET_GONE_WITHIN: Duration = Duration::from_secs(6);
/// A stop, or a closed connection, reaches the watchers well before the
/// expiry could have removed the typer.
const STOP_GONE_WITHIN: Duration = Duration::from_secs(2);

/// The user IDs of the next `typing` frame of `channel`, skipping presence
/// and other frames; an error frame fails the test.
async fn next_typers(client: &mut Client, channel: &str) -> anyhow::Result<Vec<String>> {
    loop {
        let frame = client.next().await?;
        match frame["type"].as_str() {
            Some("typing") if frame["channel_id"] == channel => {
                let users = frame["user_ids"]
                    .as_array()
                    .ok_or_else(|| anyhow::anyhow!("typing frame without user_ids: {frame}"))?;
                return Ok(users
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect());
            }
            Some("error") => anyhow::bail!("expected typing, got {frame}"),
            _ => {}
        }
    }
}

/// Reads frames until the typing set of `channel` is `want`.
async fn until_typers(client: &mut Client, channel: &str, want: &[&str]) -> anyhow::Result<()> {
    loop {
        if next_typers(client, channel).await? == want {
            return Ok(());
        }
    }
}

async fn typing(client: &mut Client, channel: &str, stop: bool) -> anyhow::Result<()> {
    client
        .send(json!({"type": "typing", "channel_id": channel, "stop": stop}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typing_reaches_both_nodes_and_ends_by_expiry_stop_or_close() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let room = channel_id("typing");
    create_channel(
        &sb,
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob", "carol"],
    )
    .await?;
    let mut alice = Client::connect(gw0, &dev_token(gw0, "alice").await?, None).await?;
    let mut bob = Client::connect(gw0, &dev_token(gw0, "bob").await?, None).await?;
    let mut carol = Client::connect(gw1, &dev_token(gw1, "carol").await?, None).await?;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.subscribe(&room).await?;
    }

    // A start reaches the watchers on both nodes, and the typer too.
    typing(&mut alice, &room, false).await?;
    let quiet_since = Instant::now();
    assert_eq!(next_typers(&mut bob, &room).await?, ["alice"]);
    assert_eq!(next_typers(&mut carol, &room).await?, ["alice"]);
    assert_eq!(next_typers(&mut alice, &room).await?, ["alice"]);

    // Gone quiet, the typer expires on both nodes.
    for (name, watcher) in [("bob", &mut bob), ("carol", &mut carol)] {
        assert_eq!(next_typers(watcher, &room).await?, Vec::<String>::new());
        let gone_after = quiet_since.elapsed();
        assert!(
            gone_after < QUIET_GONE_WITHIN,
            "{name} saw the quiet typer go after {gone_after:?}"
        );
        assert!(
            gone_after >= Duration::from_secs(4),
            "{name} saw the typer go after only {gone_after:?}, before the expiry"
        );
    }
    until_typers(&mut alice, &room, &[]).await?;

    // A stop removes the typer at once.
    typing(&mut alice, &room, false).await?;
    assert_eq!(next_typers(&mut bob, &room).await?, ["alice"]);
    assert_eq!(next_typers(&mut carol, &room).await?, ["alice"]);
    let stopped = Instant::now();
    typing(&mut alice, &room, true).await?;
    assert_eq!(next_typers(&mut bob, &room).await?, Vec::<String>::new());
    assert_eq!(next_typers(&mut carol, &room).await?, Vec::<String>::new());
    assert!(
        stopped.elapsed() < STOP_GONE_WITHIN,
        "a stop took {:?}",
        stopped.elapsed()
    );

    // A typer whose connection closes disappears for the others.
    let mut dave = Client::connect(gw1, &dev_token(gw1, "bob").await?, None).await?;
    dave.subscribe(&room).await?;
    typing(&mut dave, &room, false).await?;
    assert_eq!(next_typers(&mut carol, &room).await?, ["bob"]);
    assert_eq!(next_typers(&mut bob, &room).await?, ["bob"]);
    let closed = Instant::now();
    drop(dave);
    assert_eq!(next_typers(&mut carol, &room).await?, Vec::<String>::new());
    assert_eq!(next_typers(&mut bob, &room).await?, Vec::<String>::new());
    assert!(
        closed.elapsed() < STOP_GONE_WITHIN,
        "a closed typer took {:?} to go",
        closed.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fast_or_misplaced_typing_frames_are_refused() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let gw = sb.gateways[0];
    let room = channel_id("typing-limits");
    let other = channel_id("typing-other");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    create_channel(&sb, &other, ModerationPolicy::Reject, &["alice"]).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    alice.subscribe(&room).await?;

    // More than one start a second in a channel.
    alice
        .send(json!({"type": "typing", "request_id": "t1", "channel_id": room}))
        .await?;
    alice
        .send(json!({"type": "typing", "request_id": "t2", "channel_id": room}))
        .await?;
    let refused = alice.expect_error().await?;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["retryable"], true, "{refused}");
    assert_eq!(refused["request_id"], "t2", "{refused}");
    // A stop is still taken at once.
    typing(&mut alice, &room, true).await?;
    until_typers(&mut alice, &room, &[]).await?;

    // A channel the connection is not subscribed to, member or not.
    alice
        .send(json!({"type": "typing", "request_id": "t3", "channel_id": other}))
        .await?;
    let refused = alice.expect_error().await?;
    assert_eq!(refused["code"], "failed_precondition", "{refused}");
    assert_eq!(refused["request_id"], "t3", "{refused}");
    Ok(())
}
