//! `subscribe`: membership, limits, redirects and failures.

use super::*;

#[tokio::test]
async fn a_member_subscribes_and_learns_the_latest_sequence() {
    let h = harness();
    h.feed.set_seq(&channel("general"), 41);
    let mut alice = Client::open(&h, 1, "alice");
    let frame = alice.subscribe("general", None).await;
    assert_eq!(frame["type"], "subscribed");
    assert_eq!(frame["request_id"], "s");
    assert_eq!(frame["seq"], 41);
    assert!(h.feed.is_subscribed(&channel("general")));
    assert_eq!(
        h.liveness.events().last(),
        Some(&LivenessEvent::Alive(vec!["general".into()]))
    );
    alice.nothing_more();
}

#[tokio::test]
async fn subscribers_receive_live_messages_in_order() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    let mut bob = Client::open(&h, 2, "bob");
    alice.subscribe("general", None).await;
    bob.subscribe("general", None).await;
    h.hub.accept(&channel("general"), message("general", 2));
    h.hub.accept(&channel("general"), message("general", 1));
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.next()["seq"], 1);
        assert_eq!(client.next()["seq"], 2);
    }
    assert_eq!(h.feed.subscribe_calls(&channel("general")), 1);
}

#[tokio::test]
async fn non_members_unknown_and_malformed_channels_are_refused() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    assert_error(
        &alice.subscribe("private", None).await,
        ErrorKind::NotMember,
    );
    assert_error(
        &alice.subscribe("nowhere", None).await,
        ErrorKind::UnknownChannel,
    );
    assert_error(
        &alice.subscribe("bad channel", None).await,
        ErrorKind::InvalidChannel,
    );
    assert!(!h.feed.is_subscribed(&channel("private")));
}

#[tokio::test]
async fn a_connection_holds_at_most_max_subscriptions() {
    let mut chat = MemoryChat::default();
    for i in 0..3 {
        chat = chat.with_channel(&format!("c{i}"), &["alice"]);
    }
    let limits = GatewayLimits {
        max_subscriptions: 2,
        ..Default::default()
    };
    let h = harness_with(chat, limits, PinMode::Serve);
    let mut alice = Client::open(&h, 1, "alice");
    assert_eq!(alice.subscribe("c0", None).await["type"], "subscribed");
    assert_eq!(alice.subscribe("c1", None).await["type"], "subscribed");
    assert_error(
        &alice.subscribe("c2", None).await,
        ErrorKind::TooManySubscriptions,
    );
}

#[tokio::test]
async fn subscribing_twice_confirms_again_without_a_second_registration() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    h.feed.set_seq(&channel("general"), 9);
    let again = alice.subscribe("general", None).await;
    assert_eq!(again["type"], "subscribed");
    assert_eq!(again["seq"], 9);
    assert_eq!(h.hub.sessions_in(&channel("general")), 1);
    h.hub.accept(&channel("general"), message("general", 1));
    assert_eq!(alice.next()["seq"], 1);
    alice.nothing_more();
}

#[tokio::test]
async fn a_channel_owned_elsewhere_is_redirected() {
    let h = harness_with(
        MemoryChat::default().with_channel("general", &["alice"]),
        GatewayLimits::default(),
        PinMode::Redirect,
    );
    h.routes.send_replace(Arc::new(Routes {
        ring: Ring::new(["gw-1"], 16),
        urls: HashMap::from([("gw-1".to_owned(), "ws://gw-1".to_owned())]),
    }));
    let mut alice = Client::open(&h, 1, "alice");
    let frame = alice.subscribe("general", None).await;
    assert_eq!(frame["type"], "redirect");
    assert_eq!(frame["url"], "ws://gw-1");
    assert_eq!(frame["request_id"], "s");
    assert!(!h.feed.is_subscribed(&channel("general")));
}

#[tokio::test]
async fn a_non_owner_refuses_unknown_channels_and_outsiders_instead_of_redirecting() {
    let h = harness_with(
        MemoryChat::default()
            .with_channel("general", &["alice"])
            .with_channel("private", &["carol"]),
        GatewayLimits::default(),
        PinMode::Redirect,
    );
    h.routes.send_replace(Arc::new(Routes {
        ring: Ring::new(["gw-1"], 16),
        urls: HashMap::from([("gw-1".to_owned(), "ws://gw-1".to_owned())]),
    }));
    let mut alice = Client::open(&h, 1, "alice");
    let unknown = alice.subscribe("nowhere", None).await;
    assert_error(&unknown, ErrorKind::UnknownChannel);
    assert_eq!(unknown["request_id"], "s");
    assert_error(
        &alice.subscribe("private", None).await,
        ErrorKind::NotMember,
    );
    assert_eq!(alice.subscribe("general", None).await["type"], "redirect");
}

#[tokio::test]
async fn chat_or_fan_out_down_is_a_retryable_unavailable() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    h.chat
        .fail_with(Some(ClientError::generic(ErrorKind::Unavailable)));
    assert_error(
        &alice.subscribe("general", None).await,
        ErrorKind::Unavailable,
    );
    h.chat.fail_with(None);
    h.feed.fail_next_subscribes(1);
    assert_error(
        &alice.subscribe("general", None).await,
        ErrorKind::Unavailable,
    );
    assert_eq!(h.hub.sessions_in(&channel("general")), 0);
    // The next try works: nothing was left half-subscribed.
    assert_eq!(alice.subscribe("general", None).await["type"], "subscribed");
}
