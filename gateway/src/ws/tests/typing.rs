//! Typing: the frame's checks and rate limit, the stop a leaving session
//! owes, and the sets sessions see as typers start, stop and expire. The
//! in-memory feed records what is published; `relay` plays Redis and
//! hands it back to the hub.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::ports::TypingEvent;
use crate::ws::hub::TYPING_TTL;

/// Hands the typing events published so far back to the hub, as the
/// channel's subscription would.
fn relay(h: &Harness) -> Vec<TypingEvent> {
    let events = h.feed.take_typing();
    for event in &events {
        h.hub.on_typing(event);
    }
    events
}

fn event(user: &str, stop: bool) -> TypingEvent {
    TypingEvent {
        channel: channel("general"),
        user: chatmesh_ids::UserId::new(user).unwrap(),
        stop,
    }
}

fn typers(users: &[&str]) -> Value {
    json!({"type": "typing", "channel_id": "general", "user_ids": users})
}

async fn typing(client: &mut Client, stop: bool) {
    client
        .text(json!({"type": "typing", "channel_id": "general", "stop": stop}))
        .await;
}

/// Alice and Bob subscribed to `general`, their confirmations read.
async fn two_in_general(h: &Harness) -> (Client, Client) {
    let mut alice = Client::open(h, 1, "alice");
    let mut bob = Client::open(h, 2, "bob");
    alice.subscribe("general", None).await;
    bob.subscribe("general", None).await;
    (alice, bob)
}

#[tokio::test(start_paused = true)]
async fn a_typer_is_published_and_every_session_gets_the_set() {
    let h = harness();
    let (mut alice, mut bob) = two_in_general(&h).await;
    typing(&mut alice, false).await;
    alice.nothing_more();
    assert_eq!(relay(&h), [event("alice", false)]);
    assert_eq!(bob.next(), typers(&["alice"]));
    assert_eq!(
        alice.next(),
        typers(&["alice"]),
        "the typer is in the set too"
    );

    bob.text(json!({"type": "typing", "request_id": "t", "channel_id": "general"}))
        .await;
    relay(&h);
    assert_eq!(bob.next(), typers(&["alice", "bob"]), "sorted");
    assert_eq!(alice.next(), typers(&["alice", "bob"]));

    // A renewal changes nothing anyone sees.
    tokio::time::advance(Duration::from_secs(3)).await;
    typing(&mut alice, false).await;
    assert_eq!(relay(&h), [event("alice", false)]);
    alice.nothing_more();
    bob.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn a_stop_removes_the_typer_at_once() {
    let h = harness();
    let (mut alice, mut bob) = two_in_general(&h).await;
    typing(&mut alice, false).await;
    relay(&h);
    bob.next();
    alice.next();
    // Right after the start: stops are never rate limited.
    typing(&mut alice, true).await;
    assert_eq!(relay(&h), [event("alice", true)]);
    assert_eq!(bob.next(), typers(&[]));
    assert_eq!(alice.next(), typers(&[]));
    // A second stop has nothing to take back and publishes nothing.
    typing(&mut alice, true).await;
    assert!(relay(&h).is_empty());
    alice.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn typers_expire_after_the_ttl_on_the_timer() {
    let h = harness();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(h.hub.clone().expire_typers(shutdown.clone()));
    let (mut alice, mut bob) = two_in_general(&h).await;
    typing(&mut alice, false).await;
    relay(&h);
    assert_eq!(bob.next(), typers(&["alice"]));

    tokio::time::sleep(TYPING_TTL - Duration::from_millis(100)).await;
    bob.nothing_more();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(bob.next(), typers(&[]));

    // A typer who keeps typing stays.
    typing(&mut alice, false).await;
    relay(&h);
    assert_eq!(bob.next(), typers(&["alice"]));
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        typing(&mut alice, false).await;
        relay(&h);
    }
    bob.nothing_more();
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn more_than_one_start_a_second_is_rate_limited() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    alice.subscribe("random", None).await;
    typing(&mut alice, false).await;
    alice
        .text(json!({"type": "typing", "request_id": "t2", "channel_id": "general"}))
        .await;
    let refused = alice.next();
    assert_error(&refused, ErrorKind::RateLimited);
    assert_eq!(refused["request_id"], "t2");
    // The limit is per channel.
    alice
        .text(json!({"type": "typing", "channel_id": "random"}))
        .await;
    alice.nothing_more();
    assert_eq!(relay(&h).len(), 2);
    assert_eq!(alice.next()["channel_id"], "general");
    assert_eq!(alice.next()["channel_id"], "random");

    tokio::time::advance(Duration::from_secs(1)).await;
    typing(&mut alice, false).await;
    alice.nothing_more();
    assert_eq!(relay(&h), [event("alice", false)]);
}

#[tokio::test(start_paused = true)]
async fn typing_needs_a_subscription_and_a_valid_channel() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice
        .text(json!({"type": "typing", "request_id": "t", "channel_id": "general"}))
        .await;
    let refused = alice.next();
    assert_error(&refused, ErrorKind::FailedPrecondition);
    assert_eq!(refused["request_id"], "t");
    alice
        .text(json!({"type": "typing", "channel_id": "no/such"}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidChannel);
    alice
        .text(json!({"type": "typing", "channel_id": "general", "stop": "yes"}))
        .await;
    assert_error(&alice.next(), ErrorKind::InvalidFrame);
    assert!(relay(&h).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_publish_is_answered_retryable() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    h.feed.typing_down(true);
    alice
        .text(json!({"type": "typing", "request_id": "t", "channel_id": "general"}))
        .await;
    let refused = alice.next();
    assert_error(&refused, ErrorKind::Unavailable);
    assert_eq!(refused["request_id"], "t");
}

#[tokio::test(start_paused = true)]
async fn a_closing_typer_publishes_a_stop() {
    let h = harness();
    let (mut alice, mut bob) = two_in_general(&h).await;
    typing(&mut alice, false).await;
    relay(&h);
    bob.next();
    alice.session.close().await;
    assert_eq!(relay(&h), [event("alice", true)]);
    assert_eq!(bob.next(), typers(&[]));

    // A session that stopped, or whose typing ran out, owes nothing.
    let mut carol = Client::open(&h, 3, "alice");
    carol.subscribe("general", None).await;
    typing(&mut carol, false).await;
    tokio::time::advance(TYPING_TTL).await;
    carol.session.close().await;
    assert_eq!(relay(&h), [event("alice", false)]);
}

#[tokio::test(start_paused = true)]
async fn unsubscribing_typer_publishes_a_stop() {
    let h = harness();
    let (mut alice, mut bob) = two_in_general(&h).await;
    typing(&mut alice, false).await;
    relay(&h);
    bob.next();
    alice
        .text(json!({"type": "unsubscribe", "channel_id": "general"}))
        .await;
    assert_eq!(relay(&h), [event("alice", true)]);
    assert_eq!(bob.next(), typers(&[]));
    // Subscribed again, the rate limit starts afresh.
    alice.subscribe("general", None).await;
    typing(&mut alice, false).await;
    assert_eq!(relay(&h), [event("alice", false)]);
}

#[tokio::test(start_paused = true)]
async fn a_new_subscriber_sees_who_is_typing() {
    let h = harness();
    let mut alice = Client::open(&h, 1, "alice");
    alice.subscribe("general", None).await;
    typing(&mut alice, false).await;
    relay(&h);
    alice.next();
    let mut bob = Client::open(&h, 2, "bob");
    assert_eq!(bob.subscribe("general", None).await["type"], "subscribed");
    assert_eq!(bob.next(), typers(&["alice"]));
    // Nobody typing: nothing but the confirmation.
    let mut other = Client::open(&h, 3, "alice");
    other.subscribe("random", None).await;
    other.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn events_of_channels_the_node_does_not_serve_are_ignored() {
    let h = harness();
    h.hub.on_typing(&event("alice", false));
    let mut bob = Client::open(&h, 2, "bob");
    bob.subscribe("general", None).await;
    bob.nothing_more();
}
