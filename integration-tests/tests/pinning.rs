//! Channel pinning: every node agrees on the owner, a non-owner redirects
//! (307 before the upgrade, or a redirect frame), and a node joining the
//! ring tells clients of the channels it takes over to reconnect.

use std::time::Duration;

use chatmesh_gateway::PinMode;
use chatmesh_gateway::ring::{DEFAULT_VNODES, Ring};
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_integration_tests::{Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

async fn route(gateway: std::net::SocketAddr, channel: &str) -> anyhow::Result<Value> {
    Ok(reqwest::get(format!("http://{gateway}/v1/route/{channel}"))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until `gateway` routes `channel` to `node`.
async fn wait_owner(
    gateway: std::net::SocketAddr,
    channel: &str,
    node: &str,
) -> anyhow::Result<()> {
    wait::until(
        &format!("{channel} routed to {node}"),
        Duration::from_secs(10),
        || async move {
            let r = route(gateway, channel).await?;
            anyhow::ensure!(r["node"] == node, "{r}");
            Ok(())
        },
    )
    .await
}

/// A fresh channel that `ring` assigns to `node`.
fn channel_owned_by(ring: &Ring, node: &str) -> String {
    std::iter::repeat_with(|| channel_id("pin"))
        .find(|c| ring.owner(c) == Some(node))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_owners_redirect_and_nodes_agree() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        pin_mode: PinMode::Redirect,
        ..Options::default()
    })
    .await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    // Both nodes see both nodes before routing is checked.
    let two = Ring::new(["gw-0", "gw-1"], DEFAULT_VNODES);
    let probe = channel_owned_by(&two, "gw-1");
    for gw in [gw0, gw1] {
        wait_owner(gw, &probe, "gw-1").await?;
    }

    let room = channel_owned_by(&two, "gw-1");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    for gw in [gw0, gw1] {
        let r = route(gw, &room).await?;
        assert_eq!(
            (r["node"].as_str(), r["url"].as_str()),
            (Some("gw-1"), Some(format!("http://{gw1}").as_str()))
        );
    }

    // The non-owner answers 307 before the upgrade, pointing at the owner.
    let token = dev_token(gw0, "alice").await?;
    let err = Client::connect(gw0, &token, Some(&room))
        .await
        .expect_err("non-owner upgraded");
    let response = match err.downcast::<tungstenite::Error>()? {
        tungstenite::Error::Http(r) => r,
        other => anyhow::bail!("expected an HTTP answer, got {other}"),
    };
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str()?;
    assert!(
        location.starts_with(&format!("http://{gw1}/v1/ws?")),
        "{location}"
    );
    assert!(location.contains(&format!("channel={room}")), "{location}");

    // The owner serves it; a subscribe on the non-owner gets a redirect frame.
    let mut owner = Client::connect(gw1, &token, Some(&room)).await?;
    owner.expect("subscribed").await?;
    let mut elsewhere = Client::connect(gw0, &token, None).await?;
    elsewhere
        .send(json!({"type": "subscribe", "channel_id": room}))
        .await?;
    let redirect = elsewhere.expect("redirect").await?;
    assert_eq!(redirect["url"], format!("http://{gw1}"));
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_channels_and_clients_are_told() -> anyhow::Result<()> {
    let mut sb = Sandbox::start_ready(Options {
        pin_mode: PinMode::Redirect,
        ..Options::default()
    })
    .await?;
    let gw0 = sb.gateways[0];
    let two = Ring::new(["gw-0", "gw-1"], DEFAULT_VNODES);
    let three = Ring::new(["gw-0", "gw-1", "gw-2"], DEFAULT_VNODES);
    let room = std::iter::repeat_with(|| channel_id("moving"))
        .find(|c| two.owner(c) == Some("gw-0") && three.owner(c) == Some("gw-2"))
        .unwrap();
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    wait_owner(gw0, &room, "gw-0").await?;
    let mut alice = Client::connect(gw0, &dev_token(gw0, "alice").await?, Some(&room)).await?;
    alice.expect("subscribed").await?;

    let gw2 = sb.add_gateway().await?;
    let reconnect = alice.expect("reconnect").await?;
    assert_eq!(reconnect["url"], format!("http://{gw2}"));
    assert_eq!(reconnect["channel_ids"], json!([room]));
    sb.stop().await
}
