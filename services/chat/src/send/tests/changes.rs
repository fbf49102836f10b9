//! Edits, deletes and reactions on the send path: who may make them, what
//! they are checked against, and that they travel as channel events.

use super::*;

impl Harness {
    fn change(&self, sender: &UserId, change: Change, body: &str) -> SendRequest {
        SendRequest {
            sender: sender.clone(),
            change,
            ..self.req(body)
        }
    }

    /// Posts `body` as `sender` in the room; its sequence number.
    async fn post(&self, sender: &UserId, body: &str) -> u64 {
        let req = SendRequest {
            sender: sender.clone(),
            ..self.req(body)
        };
        self.send(req).await.expect("post").message.seq
    }

    async fn stored(&self, seq: u64) -> ChatMessage {
        self.log
            .post(&self.room, seq)
            .await
            .unwrap()
            .expect("a stored post")
    }
}

fn react(target: u64, emoji: &str) -> Change {
    Change::React {
        target,
        emoji: emoji.into(),
    }
}

#[tokio::test]
async fn an_edit_is_a_channel_event_with_a_number_of_its_own() {
    let h = harness();
    let first = h.post(&h.alice, "hello").await;
    let edit = h
        .send(h.change(&h.alice, Change::Edit { target: first }, "hello again"))
        .await
        .unwrap();
    assert_eq!(edit.message.seq, first + 1);
    assert_eq!(edit.message.change, Change::Edit { target: first });
    assert_eq!(edit.message.body, "hello again");
    assert_eq!(h.seqs_logged(), vec![first, first + 1]);
    assert_eq!(h.seqs_published(), vec![first, first + 1]);
    let stored = h.stored(first).await;
    assert_eq!(
        (stored.body.as_str(), stored.state.edit_count),
        ("hello again", 1)
    );
    assert_eq!(stored.state.version, edit.message.seq);
}

#[tokio::test]
async fn only_the_author_edits() {
    let h = harness();
    let mine = h.post(&h.alice, "alice's").await;
    let refused = h
        .send(h.change(&h.bob, Change::Edit { target: mine }, "bob's now"))
        .await;
    assert!(
        matches!(refused, Err(ChatError::Forbidden(_))),
        "{refused:?}"
    );
    assert_eq!(h.seqs_logged(), vec![mine], "nothing was logged");
}

#[tokio::test]
async fn the_author_or_an_owner_deletes_and_nobody_else() {
    let h = harness();
    // Alice owns the room; Bob is a member.
    let bobs = h.post(&h.bob, "bob's").await;
    let alices = h.post(&h.alice, "alice's").await;
    let refused = h
        .send(h.change(&h.bob, Change::Delete { target: alices }, ""))
        .await;
    assert!(
        matches!(refused, Err(ChatError::Forbidden(_))),
        "{refused:?}"
    );
    h.send(h.change(&h.alice, Change::Delete { target: bobs }, ""))
        .await
        .expect("an owner deletes a member's message");
    h.send(h.change(&h.alice, Change::Delete { target: alices }, ""))
        .await
        .expect("the author deletes her own");
    for seq in [bobs, alices] {
        let stored = h.stored(seq).await;
        assert!(stored.state.deleted && stored.body.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_deleted_message_takes_no_edit_or_reaction_but_a_repeated_delete() {
    let h = harness();
    let seq = h.post(&h.alice, "soon gone").await;
    h.send(h.change(&h.alice, Change::Delete { target: seq }, ""))
        .await
        .unwrap();
    for change in [Change::Edit { target: seq }, react(seq, "👍")] {
        let body = if matches!(change, Change::Edit { .. }) {
            "back"
        } else {
            ""
        };
        let refused = h.send(h.change(&h.alice, change, body)).await;
        assert!(
            matches!(refused, Err(ChatError::MessageNotFound)),
            "{refused:?}"
        );
    }
    h.send(h.change(&h.alice, Change::Delete { target: seq }, ""))
        .await
        .expect("deleting again changes nothing and succeeds");
}

#[tokio::test(start_paused = true)]
async fn a_change_to_a_number_no_post_carries_is_not_found() {
    let h = harness();
    let post = h.post(&h.alice, "one").await;
    let edit = h
        .send(h.change(&h.alice, Change::Edit { target: post }, "uno"))
        .await
        .unwrap();
    for target in [post + 50, edit.message.seq] {
        let refused = h.send(h.change(&h.alice, react(target, "🎉"), "")).await;
        assert!(
            matches!(refused, Err(ChatError::MessageNotFound)),
            "{target}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn members_react_and_outsiders_do_not() {
    let h = harness();
    let seq = h.post(&h.alice, "react to me").await;
    let added = h
        .send(h.change(&h.bob, react(seq, "👍"), ""))
        .await
        .unwrap();
    assert_eq!(added.message.change, react(seq, "👍"));
    assert_eq!(added.message.sender, h.bob);
    let removed = Change::Unreact {
        target: seq,
        emoji: "👍".into(),
    };
    h.send(h.change(&h.bob, removed, "")).await.unwrap();
    let carol = id(UserId::new("carol"));
    let outsider = h.send(h.change(&carol, react(seq, "👍"), "")).await;
    assert!(
        matches!(outsider, Err(ChatError::NotMember)),
        "{outsider:?}"
    );
}

#[tokio::test]
async fn malformed_changes_are_refused_before_anything_is_asked() {
    let h = harness();
    let seq = h.post(&h.alice, "target").await;
    let cases = [
        (h.change(&h.alice, react(seq, ""), ""), "emoji"),
        (h.change(&h.alice, react(seq, "two words"), ""), "emoji"),
        (h.change(&h.alice, react(seq, &"x".repeat(33)), ""), "emoji"),
        (h.change(&h.alice, react(seq, "👍"), "text"), "body"),
        (
            h.change(&h.alice, Change::Delete { target: seq }, "why"),
            "body",
        ),
        (
            h.change(&h.alice, Change::Delete { target: 0 }, ""),
            "target_seq",
        ),
        (
            h.change(&h.alice, Change::Edit { target: seq }, "  "),
            "body",
        ),
        (
            SendRequest {
                attachments: vec!["m1".into()],
                ..h.change(&h.alice, Change::Edit { target: seq }, "with media")
            },
            "attachments",
        ),
    ];
    for (req, field) in cases {
        assert_eq!(invalid_field(h.send(req).await), field);
    }
    assert_eq!(h.seqs_logged(), vec![seq]);
}

#[tokio::test]
async fn edits_are_moderated_as_sends_are() {
    let h = harness();
    let seq = h.post(&h.alice, "clean").await;
    let blocked = h
        .send(h.change(&h.alice, Change::Edit { target: seq }, "a badword"))
        .await;
    assert!(matches!(blocked, Err(ChatError::Blocked)), "{blocked:?}");
    assert_eq!(h.stored(seq).await.body, "clean");

    let lenient = SendRequest {
        channel: h.lenient.clone(),
        ..h.req("fine")
    };
    let post = h.send(lenient.clone()).await.unwrap().message.seq;
    let masked = h
        .send(SendRequest {
            change: Change::Edit { target: post },
            body: "now a badword".into(),
            ..lenient
        })
        .await
        .unwrap();
    assert!(masked.masked);
    assert!(
        !masked.message.body.contains("badword"),
        "{}",
        masked.message.body
    );
}

#[tokio::test]
async fn a_retried_change_is_answered_with_the_original() {
    let h = harness();
    let seq = h.post(&h.alice, "hi").await;
    let edit = SendRequest {
        idempotency_key: Some("edit-1".into()),
        ..h.change(&h.alice, Change::Edit { target: seq }, "hi there")
    };
    let first = h.send(edit.clone()).await.unwrap();
    let again = h.send(edit).await.unwrap();
    assert!(again.duplicate && !first.duplicate);
    assert_eq!(again.message.seq, first.message.seq);
    assert_eq!(h.seqs_logged(), vec![seq, first.message.seq]);
}
