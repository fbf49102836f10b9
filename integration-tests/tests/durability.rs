//! Durability comes first: with the broker down, a send fails with a
//! retryable error and nothing is fanned out; with it back, sends work and
//! readers skip the failed send's number. Runs alone in its binary because it stops the
//! shared broker.

use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_integration_tests::{Infra, Sandbox};
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::json;

/// Restarts the broker even when the test fails half-way.
struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        if let Err(e) = Infra::script(&["up"]) {
            eprintln!("could not restart the infrastructure: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_fans_out_unless_durable() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options::default()).await?;
    let gw = sb.gateways[0];
    let room = channel_id("durable");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    let mut alice = Client::connect(gw, &dev_token(gw, "alice").await?, None).await?;
    let mut bob = Client::connect(gw, &dev_token(gw, "bob").await?, None).await?;
    bob.subscribe(&room).await?;

    alice
        .send(json!({"type": "send", "channel_id": room, "body": "before"}))
        .await?;
    let before = alice.expect("ack").await?["seq"].as_u64().unwrap();
    assert_eq!(bob.expect("message").await?["seq"].as_u64(), Some(before));

    let pid: i32 = Infra::state_value("TANSU_PID")?.parse()?;
    let guard = BrokerGuard;
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "could not stop the broker");

    alice
        .send(json!({"type": "send", "request_id": "during", "channel_id": room, "body": "during"}))
        .await?;
    let err = alice.expect_error().await?;
    assert_eq!(err["code"], "unavailable", "{err}");
    assert_eq!(err["retryable"], true, "{err}");
    assert_eq!(err["request_id"], "during");

    drop(guard);
    // The producer reconnects on its own; retry until the broker answers.
    let after = loop {
        alice.send(json!({"type": "send", "channel_id": room, "body": "after", "idempotency_key": "after-1"})).await?;
        let frame = alice.next().await?;
        match frame["type"].as_str() {
            Some("ack") => break frame["seq"].as_u64().unwrap(),
            Some("error") if frame["retryable"] == true => continue,
            _ => anyhow::bail!("unexpected {frame}"),
        }
    };
    // The failed send's number was voided, never to be handed out again
    // (its append may yet have landed): the message after the outage has
    // the next number after it, and bob, skipping the void one, sees that
    // message next.
    assert_eq!(after, before + 2);
    let m = bob.expect("message").await?;
    assert_eq!(
        (m["seq"].as_u64(), m["body"].as_str()),
        (Some(after), Some("after"))
    );
    sb.stop().await
}
