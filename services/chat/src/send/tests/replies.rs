//! Replies: a post answering another joins its thread.

use super::*;

impl Harness {
    async fn reply(&self, to: u64, body: &str) -> Result<Sent, ChatError> {
        self.send(SendRequest {
            reply_to: Some(to),
            ..self.req(body)
        })
        .await
    }
}

#[tokio::test]
async fn a_reply_names_its_threads_first_post_even_when_it_answers_a_reply() {
    let h = harness();
    let root = h.send(h.req("question")).await.unwrap().message;
    assert_eq!(root.reply_to, None);
    let first = h.reply(root.seq, "answer").await.unwrap().message;
    assert_eq!(first.reply_to, Some(root.seq));
    let second = h
        .reply(first.seq, "answer to the answer")
        .await
        .unwrap()
        .message;
    assert_eq!(second.reply_to, Some(root.seq), "threads are flat");
    let published: Vec<_> = h.fanout.published().iter().map(|m| m.reply_to).collect();
    assert_eq!(published, vec![None, Some(root.seq), Some(root.seq)]);
}

#[tokio::test(start_paused = true)]
async fn a_reply_to_nothing_or_to_a_deleted_post_is_refused() {
    let h = harness();
    let gone = h.send(h.req("soon deleted")).await.unwrap().message.seq;
    let delete = SendRequest {
        change: Change::Delete { target: gone },
        body: String::new(),
        ..h.req("")
    };
    h.send(delete).await.unwrap();
    for to in [gone, gone + 40] {
        let refused = h.reply(to, "hello?").await;
        assert!(
            matches!(refused, Err(ChatError::MessageNotFound)),
            "{to}: {refused:?}"
        );
    }
    assert_eq!(invalid_field(h.reply(0, "to nothing").await), "reply_to");
    let change_with_reply = SendRequest {
        change: Change::Edit { target: gone },
        reply_to: Some(gone),
        ..h.req("edited")
    };
    assert_eq!(invalid_field(h.send(change_with_reply).await), "reply_to");
}
