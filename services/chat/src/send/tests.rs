//! The send path's rules, on the in-memory stores: no network, no sleeps.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_error::ErrorKind;
use chatmesh_ids::{ChannelId, UserId};

use super::*;
use crate::memory::{
    ManualClock, MemoryDirectory, MemoryFanOut, MemoryIdempotency, MemoryIds, MemoryLog,
    MemoryRateLimiter, MemorySequencer,
};
use crate::ports::{IdempotencyKey, IdempotencyStore as _};

mod changes;
mod replies;

const WORKER: u16 = 42;

/// A send path on in-memory stores, with handles on each of them.
struct Harness {
    path: Arc<SendPath>,
    limits: SendLimits,
    directory: Arc<MemoryDirectory>,
    ids: Arc<MemoryIds>,
    seq: Arc<MemorySequencer>,
    log: Arc<MemoryLog>,
    fanout: Arc<MemoryFanOut>,
    idem: Arc<MemoryIdempotency>,
    limiter: Arc<MemoryRateLimiter>,
    clock: ManualClock,
    /// A reject-policy channel alice and bob belong to.
    room: ChannelId,
    /// A mask-policy channel alice belongs to.
    lenient: ChannelId,
    alice: UserId,
    bob: UserId,
}

fn id<T, E: std::fmt::Debug>(made: Result<T, E>) -> T {
    made.expect("valid test ID")
}

fn harness_with(limits: SendLimits) -> Harness {
    let directory = Arc::new(MemoryDirectory::default());
    let (room, lenient) = (id(ChannelId::new("room")), id(ChannelId::new("lenient")));
    let (alice, bob) = (id(UserId::new("alice")), id(UserId::new("bob")));
    directory.create_channel(&room, &alice, Moderation::Reject);
    directory.join(&room, &bob);
    directory.create_channel(&lenient, &alice, Moderation::Mask);
    let clock = ManualClock::stopped_now();
    let ids = Arc::new(MemoryIds::new(WORKER));
    let seq = Arc::new(MemorySequencer::default());
    let log = Arc::new(MemoryLog::default());
    let fanout = Arc::new(MemoryFanOut::new(limits.recent_history));
    let idem = Arc::new(MemoryIdempotency::default());
    let limiter = Arc::new(MemoryRateLimiter::new(&limits, clock.clone()));
    let admission = Arc::new(Stepwise {
        limiter: limiter.clone(),
        sequencer: seq.clone(),
        idempotency: idem.clone(),
    });
    let backends = Backends {
        directory: directory.clone(),
        ids: ids.clone(),
        admission,
        sequencer: seq.clone(),
        log: log.clone(),
        settlement: Arc::new(StepwiseSettlement {
            idempotency: idem.clone(),
            fanout: fanout.clone(),
        }),
        limiter: limiter.clone(),
        posts: log.clone(),
    };
    let filter = Arc::new(crate::moderation::Filter::new(["badword"]));
    Harness {
        path: Arc::new(SendPath::new(backends, filter, limits.clone())),
        limits,
        directory,
        ids,
        seq,
        log,
        fanout,
        idem,
        limiter,
        clock,
        room,
        lenient,
        alice,
        bob,
    }
}

fn harness() -> Harness {
    harness_with(SendLimits {
        max_body_bytes: 64,
        max_attachments: 2,
        user_per_second: 100,
        channel_per_second: 100,
        ..SendLimits::default()
    })
}

impl Harness {
    fn req(&self, body: &str) -> SendRequest {
        SendRequest {
            channel: self.room.clone(),
            sender: self.alice.clone(),
            change: Change::Post,
            body: body.into(),
            reply_to: None,
            attachments: Vec::new(),
            idempotency_key: None,
            traceparent: None,
        }
    }

    fn keyed(&self, body: &str, key: &str) -> SendRequest {
        SendRequest {
            idempotency_key: Some(key.into()),
            ..self.req(body)
        }
    }

    async fn send(&self, req: SendRequest) -> Result<Sent, ChatError> {
        self.path.send(req).await
    }

    fn seqs_logged(&self) -> Vec<u64> {
        self.log.messages().iter().map(|m| m.seq).collect()
    }

    fn seqs_published(&self) -> Vec<u64> {
        self.fanout.published().iter().map(|m| m.seq).collect()
    }
}

fn invalid_field(result: Result<Sent, ChatError>) -> &'static str {
    match result {
        Err(ChatError::InvalidArgument { field, .. }) => field,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[tokio::test]
async fn a_send_is_logged_then_fanned_out() {
    let h = harness();
    let req = SendRequest {
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..h.req("hello")
    };
    let sent = h.send(req).await.unwrap();
    assert!(!sent.duplicate && !sent.masked);
    let m = &sent.message;
    assert_eq!((m.seq, m.body.as_str()), (1, "hello"));
    assert_eq!((&m.channel, &m.sender), (&h.room, &h.alice));
    assert_eq!(m.id.worker(), WORKER);
    assert_eq!(m.created_at_ms, m.id.unix_ms() as i64);
    let records = h.log.records();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].message, m);
    assert_eq!(
        records[0].traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(h.fanout.published(), vec![m.clone()]);
    assert_eq!(
        h.fanout.published_traceparents(),
        [Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_too_large() {
    let h = harness();
    let body = "x".repeat(h.limits.max_body_bytes + 1);
    let result = h.send(h.req(&body)).await;
    assert!(
        matches!(result, Err(ChatError::TooLarge { limit: 64 })),
        "{result:?}"
    );
    h.send(h.req(&"x".repeat(h.limits.max_body_bytes)))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_empty_body_needs_an_attachment() {
    let h = harness();
    assert_eq!(invalid_field(h.send(h.req("")).await), "body");
    assert_eq!(invalid_field(h.send(h.req(" \n\t ")).await), "body");
    for invisible in ["\u{202e}", "\u{200b}\u{2066}\u{feff}"] {
        assert_eq!(invalid_field(h.send(h.req(invisible)).await), "body");
    }
    h.directory.add_media(&h.room, "m1", true);
    let with_media = SendRequest {
        attachments: vec!["m1".into()],
        ..h.req("")
    };
    let sent = h.send(with_media).await.unwrap();
    assert_eq!(sent.message.attachments, vec!["m1".to_owned()]);
}

#[tokio::test]
async fn control_characters_are_refused_but_newlines_and_tabs_pass() {
    let h = harness();
    for body in ["bell\u{7}", "nul\0", "esc\u{1b}[31m", "del\u{7f}"] {
        assert_eq!(invalid_field(h.send(h.req(body)).await), "body", "{body:?}");
    }
    h.send(h.req("two\nlines\tand a tab")).await.unwrap();
    assert_eq!(h.seqs_logged(), vec![1]);
}

#[tokio::test]
async fn too_many_attachments_are_refused() {
    let h = harness();
    for m in ["m1", "m2", "m3"] {
        h.directory.add_media(&h.room, m, true);
    }
    let req = SendRequest {
        attachments: vec!["m1".into(), "m2".into(), "m3".into()],
        ..h.req("pics")
    };
    assert_eq!(invalid_field(h.send(req).await), "attachments");
}

#[tokio::test]
async fn attachments_must_be_ready_uploads_of_the_channel() {
    let h = harness();
    h.directory.add_media(&h.room, "pending", false);
    h.directory.add_media(&h.lenient, "elsewhere", true);
    for bad in ["pending", "elsewhere", "unknown"] {
        let req = SendRequest {
            attachments: vec![bad.into()],
            ..h.req("look")
        };
        let result = h.send(req).await;
        assert!(
            matches!(&result, Err(ChatError::Attachment(m)) if m == bad),
            "{result:?}"
        );
    }
    assert!(h.log.records().is_empty());
}

#[tokio::test]
async fn malformed_idempotency_keys_are_refused() {
    let h = harness();
    let long = "k".repeat(129);
    for key in ["", "has space", "tab\tkey", "ключ", long.as_str()] {
        let result = h.send(h.keyed("hi", key)).await;
        assert_eq!(invalid_field(result), "idempotency_key", "{key:?}");
    }
    h.send(h.keyed("hi", &"k".repeat(128))).await.unwrap();
}

#[tokio::test]
async fn a_reject_channel_refuses_blocked_words_and_spends_no_seq() {
    let h = harness();
    let result = h.send(h.req("you badword")).await;
    assert!(matches!(result, Err(ChatError::Blocked)), "{result:?}");
    assert!(h.log.records().is_empty());
    assert_eq!(h.send(h.req("sorry")).await.unwrap().message.seq, 1);
}

#[tokio::test]
async fn a_mask_channel_masks_blocked_words() {
    let h = harness();
    let req = SendRequest {
        channel: h.lenient.clone(),
        ..h.req("you badword!")
    };
    let sent = h.send(req).await.unwrap();
    assert!(sent.masked);
    assert_eq!(sent.message.body, "you *******!");
    assert_eq!(h.log.messages()[0].body, "you *******!");
}

#[tokio::test]
async fn a_flag_channel_delivers_blocked_words_unchanged() {
    let h = harness();
    let flagged = id(ChannelId::new("flagged"));
    h.directory
        .create_channel(&flagged, &h.alice, Moderation::Flag);
    let req = SendRequest {
        channel: flagged,
        ..h.req("you badword!")
    };
    let sent = h.send(req).await.unwrap();
    assert!(!sent.masked);
    assert_eq!(h.log.messages()[0].body, "you badword!");
}

#[tokio::test]
async fn a_channel_allow_list_lets_its_phrases_through() {
    let h = harness();
    h.directory
        .set_moderation_allow(&h.room, &["Badword Island"]);
    let sent = h.send(h.req("we sailed to Badword Island")).await.unwrap();
    assert_eq!(sent.message.body, "we sailed to Badword Island");
    let result = h.send(h.req("badword")).await;
    assert!(matches!(result, Err(ChatError::Blocked)), "{result:?}");
}

#[tokio::test]
async fn outsiders_and_unknown_channels_are_refused() {
    let h = harness();
    let outsider = SendRequest {
        sender: id(UserId::new("mallory")),
        ..h.req("let me in")
    };
    let result = h.send(outsider).await;
    assert!(matches!(result, Err(ChatError::NotMember)), "{result:?}");
    let nowhere = SendRequest {
        channel: id(ChannelId::new("nowhere")),
        ..h.req("anyone?")
    };
    let result = h.send(nowhere).await;
    assert!(
        matches!(result, Err(ChatError::ChannelNotFound)),
        "{result:?}"
    );
    assert!(h.log.records().is_empty());
}

#[tokio::test]
async fn the_user_limit_spans_channels_until_the_next_second() {
    let h = harness_with(SendLimits {
        user_per_second: 3,
        ..SendLimits::default()
    });
    for channel in [&h.room, &h.lenient, &h.room] {
        let req = SendRequest {
            channel: channel.clone(),
            ..h.req("hi")
        };
        h.send(req).await.unwrap();
    }
    let result = h.send(h.req("one more")).await;
    assert!(
        matches!(result, Err(ChatError::RateLimited { scope: "user" })),
        "{result:?}"
    );
    // Bob has his own budget.
    let bob = SendRequest {
        sender: h.bob.clone(),
        ..h.req("me too")
    };
    h.send(bob).await.unwrap();
    h.clock.advance(Duration::from_secs(1));
    h.send(h.req("later")).await.unwrap();
}

#[tokio::test]
async fn the_channel_limit_spans_users() {
    let h = harness_with(SendLimits {
        channel_per_second: 4,
        ..SendLimits::default()
    });
    let users: Vec<_> = (0..5)
        .map(|i| id(UserId::new(format!("user-{i}"))))
        .collect();
    for user in &users {
        h.directory.join(&h.room, user);
    }
    for user in &users[..4] {
        let req = SendRequest {
            sender: user.clone(),
            ..h.req("hi")
        };
        h.send(req).await.unwrap();
    }
    let req = SendRequest {
        sender: users[4].clone(),
        ..h.req("hi")
    };
    let result = h.send(req).await;
    assert!(
        matches!(result, Err(ChatError::RateLimited { scope: "channel" })),
        "{result:?}"
    );
    let elsewhere = SendRequest {
        channel: h.lenient.clone(),
        ..h.req("quiet here")
    };
    h.send(elsewhere).await.unwrap();
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_original_and_appends_nothing() {
    let h = harness();
    let first = h.send(h.keyed("once", "retry-1")).await.unwrap();
    assert!(!first.duplicate);
    let again = h.send(h.keyed("once, edited", "retry-1")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(h.seqs_logged(), vec![1]);
    assert_eq!(h.seqs_published(), vec![1]);
    // The number the retry took was given back: no hole, nothing void.
    assert!(h.seq.void(&h.room).is_empty());
    // Bob's key of the same name is his own.
    let bob = SendRequest {
        sender: h.bob.clone(),
        ..h.keyed("bob's", "retry-1")
    };
    let sent = h.send(bob).await.unwrap();
    assert_eq!((sent.duplicate, sent.message.seq), (false, 2));
}

#[tokio::test]
async fn a_retry_while_the_first_is_in_flight_sends_the_same_message() {
    let h = harness();
    let mut held = h.log.hold_next();
    let path = h.path.clone();
    let first = tokio::spawn({
        let req = h.keyed("slow", "k");
        async move { path.send(req).await }
    });
    held.arrived().await;
    let retry = h.send(h.keyed("slow", "k")).await.unwrap();
    held.proceed();
    let first = first.await.unwrap().unwrap();
    assert_eq!(
        retry.message, first.message,
        "one message, one ID, one number"
    );
    assert!(!retry.duplicate && !first.duplicate);
    // Appended twice; storage and the gateways keep it once by ID and number.
    assert_eq!(h.seqs_logged(), vec![1, 1]);
    assert!(h.seq.void(&h.room).is_empty());
    let later = h.send(h.keyed("slow", "k")).await.unwrap();
    assert!(later.duplicate);
    assert_eq!(later.message, first.message);
}

#[tokio::test]
async fn a_retry_after_the_sender_died_resumes_its_message() {
    let h = harness();
    // Another instance took number 1, held the key for its message, and
    // died before its append answered.
    let key = IdempotencyKey {
        channel: h.room.clone(),
        sender: h.alice.clone(),
        key: "orphan".into(),
    };
    let seq = h.seq.next(&h.room).await.unwrap();
    let orphan = ChatMessage {
        seq,
        ..h.send(h.req("unrelated")).await.unwrap().message
    };
    h.idem
        .claim(&key, &orphan, h.limits.idempotency_ttl)
        .await
        .unwrap();
    let sent = h.send(h.keyed("hi", "orphan")).await.unwrap();
    assert_eq!(sent.message, orphan);
    assert_eq!(h.log.messages().last(), Some(&orphan));
    assert_eq!(h.seqs_published().last(), Some(&1));
    assert!(h.send(h.keyed("hi", "orphan")).await.unwrap().duplicate);
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_is_remembered_for_its_ttl() {
    let h = harness();
    h.send(h.keyed("hi", "daily")).await.unwrap();
    tokio::time::advance(h.limits.idempotency_ttl - Duration::from_secs(1)).await;
    assert!(h.send(h.keyed("hi", "daily")).await.unwrap().duplicate);
    tokio::time::advance(Duration::from_secs(1)).await;
    let sent = h.send(h.keyed("hi", "daily")).await.unwrap();
    assert_eq!((sent.duplicate, sent.message.seq), (false, 2));
}

#[tokio::test]
async fn a_log_failure_keeps_a_keyed_message_for_its_retry() {
    let h = harness();
    h.log.failure.set(true);
    let result = h.send(h.keyed("lost", "k")).await;
    assert!(
        matches!(result, Err(ChatError::LogUnavailable)),
        "{result:?}"
    );
    let client = result.unwrap_err().to_client();
    assert!(client.retryable());
    assert!(
        h.fanout.published().is_empty(),
        "nothing fans out unless durable"
    );
    h.log.failure.set(false);
    // The retry sends the held message: its number, its ID, its body.
    let sent = h.send(h.keyed("found", "k")).await.unwrap();
    assert_eq!((sent.duplicate, sent.message.seq), (false, 1));
    assert_eq!(sent.message.body, "lost");
    assert_eq!(h.log.messages(), vec![sent.message.clone()]);
    assert!(
        h.seq.void(&h.room).is_empty(),
        "the retry's spare number went back"
    );
}

#[tokio::test]
async fn an_unkeyed_log_failure_voids_its_seq() {
    let h = harness();
    let mut held = h.log.hold_next();
    let path = h.path.clone();
    let slow = tokio::spawn({
        let req = h.req("slow");
        async move { path.send(req).await }
    });
    held.arrived().await;
    let fast = h.send(h.req("fast")).await.unwrap();
    assert_eq!(fast.message.seq, 2);
    held.fail();
    let result = slow.await.unwrap();
    assert!(
        matches!(result, Err(ChatError::LogUnavailable)),
        "{result:?}"
    );
    assert_eq!(h.seq.void(&h.room), vec![1]);
    // Number 1 is never handed out again.
    assert_eq!(h.send(h.req("next")).await.unwrap().message.seq, 3);
    assert_eq!(h.seqs_published(), vec![2, 3]);
}

#[tokio::test]
async fn a_fan_out_failure_still_acks_a_durable_message() {
    let h = harness();
    h.fanout.failure.set(true);
    let sent = h.send(h.keyed("stored", "k")).await.unwrap();
    assert_eq!(h.log.messages(), vec![sent.message.clone()]);
    assert!(h.fanout.published().is_empty());
    h.fanout.failure.set(false);
    let retry = h.send(h.keyed("stored", "k")).await.unwrap();
    assert!(retry.duplicate, "the key was recorded despite the fan-out");
}

#[tokio::test]
async fn seqs_are_dense_and_follow_send_order() {
    let h = harness();
    for i in 1..=20 {
        let body = format!("m{i}");
        assert_eq!(h.send(h.req(&body)).await.unwrap().message.seq, i);
    }
    assert_eq!(h.seqs_logged(), (1..=20).collect::<Vec<_>>());
    let ids: Vec<_> = h.log.messages().iter().map(|m| m.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "IDs follow seqs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_get_distinct_dense_seqs() {
    let h = harness();
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let path = h.path.clone();
            let req = h.req(&format!("m{i}"));
            tokio::spawn(async move { path.send(req).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for send in sends {
        seqs.push(send.await.unwrap().unwrap().message.seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn without_a_worker_id_nothing_is_sent_or_numbered() {
    let h = harness();
    h.ids.set_held(false);
    let result = h.send(h.keyed("hi", "k")).await;
    assert!(matches!(result, Err(ChatError::NoWorkerId)), "{result:?}");
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
    h.ids.set_held(true);
    let sent = h.send(h.keyed("hi", "k")).await.unwrap();
    assert_eq!((sent.duplicate, sent.message.seq), (false, 1));
}

#[tokio::test]
async fn a_sequencer_failure_frees_the_key_and_appends_nothing() {
    let h = harness();
    h.seq.failure.set(true);
    let result = h.send(h.keyed("hi", "k")).await;
    assert!(matches!(result, Err(ChatError::Redis(_))), "{result:?}");
    assert!(h.log.records().is_empty());
    h.seq.failure.set(false);
    assert!(!h.send(h.keyed("hi", "k")).await.unwrap().duplicate);
}

#[tokio::test]
async fn store_errors_reach_clients_without_their_details() {
    let h = harness();
    h.limiter.failure.set(true);
    let redis = h.send(h.req("hi")).await.unwrap_err();
    h.limiter.failure.set(false);
    h.directory.failure.set(true);
    let database = h.send(h.req("hi")).await.unwrap_err();
    for (err, leak) in [(redis, "10.0.0.7"), (database, "10.0.0.8")] {
        assert!(
            err.to_string().contains(leak),
            "the test error names {leak}"
        );
        let client = err.to_client();
        assert_eq!(client.kind, ErrorKind::Unavailable);
        assert!(!client.message.contains(leak), "{}", client.message);
        let status = tonic::Status::from(err);
        assert!(!status.message().contains(leak), "{}", status.message());
    }
}
