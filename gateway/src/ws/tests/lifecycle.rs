//! Unsubscribe, going away, closing and ring changes.

use super::*;

#[tokio::test]
async fn unsubscribe_is_confirmed_and_leaves_the_hub() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice
        .text(
            serde_json::json!({"type": "unsubscribe", "request_id": "u", "channel_id": "general"}),
        )
        .await;
    let done = alice.next();
    assert_eq!(done["type"], "unsubscribed");
    assert_eq!(done["request_id"], "u");
    assert_eq!(h.hub.sessions_in(&channel("general")), 0);
    assert!(!h.feed.is_subscribed(&channel("general")));
    // Leaving a channel never joined is confirmed too.
    alice
        .text(serde_json::json!({"type": "unsubscribe", "channel_id": "random"}))
        .await;
    assert_eq!(alice.next()["type"], "unsubscribed");
}

#[tokio::test]
async fn a_node_going_away_asks_the_client_to_resubscribe_its_channels() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.subscribe("random", None).await;
    alice.session.going_away().await;
    let frame = alice.next();
    assert_eq!(frame["type"], "reconnect");
    assert_eq!(
        frame["channel_ids"],
        serde_json::json!(["general", "random"])
    );
    assert!(frame.get("url").is_none());
}

#[tokio::test]
async fn closing_a_session_leaves_presence_and_fan_out() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.session.close().await;
    assert_eq!(
        h.liveness.events().last(),
        Some(&LivenessEvent::Close(vec!["general".into()]))
    );
    assert_eq!(h.hub.sessions_in(&channel("general")), 0);
}

#[tokio::test]
async fn a_ring_change_sends_one_reconnect_per_destination() {
    let chat = MemoryChat::default()
        .with_channel("general", &["alice"])
        .with_channel("random", &["alice"]);
    let h = harness_with(chat, GatewayLimits::default(), PinMode::Redirect);
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.subscribe("random", None).await;
    let urls = HashMap::from([("gw-1".to_owned(), "ws://gw-1".to_owned())]);
    h.routes.send_replace(Arc::new(Routes {
        ring: Ring::new(["gw-1"], 16),
        urls,
    }));
    alice.session.on_ring_change().await;
    let frame = alice.next();
    assert_eq!(frame["type"], "reconnect");
    assert_eq!(frame["url"], "ws://gw-1");
    assert_eq!(
        frame["channel_ids"],
        serde_json::json!(["general", "random"])
    );
    alice.nothing_more();
}
