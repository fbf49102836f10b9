//! Tests of [`crate::ports::Admission`], with the [`IdempotencyStore`] that
//! marks its keyed messages acknowledged. Built with [`suite_limits`] on a
//! clock that stands still.

use std::sync::Arc;

use super::*;
use crate::ports::{Admission, Admitted, IdempotencyKey, IdempotencyStore};

const TTL: Duration = Duration::from_secs(3600);

/// An admission and the idempotency store on the same keys.
pub struct Admitter {
    /// Under test.
    pub admission: Arc<dyn Admission>,
    /// Where its keyed messages are marked acknowledged.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl std::fmt::Debug for Admitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitter").finish_non_exhaustive()
    }
}

/// A draft with a number the admission must ignore.
fn draft(channel: &ChannelId, sender: &UserId) -> ChatMessage {
    message(
        &Snowflake::new(2).expect("2 is a worker ID"),
        channel,
        sender,
        999,
    )
}

fn key(channel: &ChannelId, sender: &UserId, key: &str) -> IdempotencyKey {
    IdempotencyKey {
        channel: channel.clone(),
        sender: sender.clone(),
        key: key.into(),
    }
}

async fn new(
    a: &Admitter,
    draft: &ChatMessage,
    key: Option<&IdempotencyKey>,
) -> SuiteResult<ChatMessage> {
    match a.admission.admit(draft, key, TTL).await? {
        Admitted::New(message) => Ok(message),
        other => anyhow::bail!("expected a new message, got {other:?}"),
    }
}

/// Each admission numbers its message after the last, the rest of the
/// draft unchanged.
pub async fn messages_are_numbered_densely(a: &Admitter) -> SuiteResult<()> {
    let (channel, sender) = (unique_channel("admit-dense"), unique_user("sender"));
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let d = draft(&channel, &sender);
        let m = new(a, &d, None).await?;
        assert_eq!(
            ChatMessage {
                seq: d.seq,
                ..m.clone()
            },
            d
        );
        seqs.push(m.seq);
    }
    assert_eq!(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2]);
    Ok(())
}

/// A key that holds a message resumes it, every field intact, and the
/// retry takes no number: the next message gets the next one. Both the
/// channel's first admission (which starts its counter) and a later one.
pub async fn a_held_key_resumes_its_message_and_takes_no_number(a: &Admitter) -> SuiteResult<()> {
    let (channel, sender) = (unique_channel("admit-held"), unique_user("sender"));
    let (first_key, later_key) = (key(&channel, &sender, "k1"), key(&channel, &sender, "k2"));
    let first = new(a, &draft(&channel, &sender), Some(&first_key)).await?;
    let later = new(a, &draft(&channel, &sender), Some(&later_key)).await?;
    assert_eq!(later.seq, first.seq + 1);
    for (k, held) in [(&first_key, &first), (&later_key, &later)] {
        let retry = a
            .admission
            .admit(&draft(&channel, &sender), Some(k), TTL)
            .await?;
        assert_eq!(retry, Admitted::Resume(held.clone()));
    }
    let next = new(a, &draft(&channel, &sender), None).await?;
    assert_eq!(next.seq, later.seq + 1);
    Ok(())
}

/// Once its message is marked acknowledged, a key admits duplicates of it.
pub async fn an_acknowledged_key_is_a_duplicate(a: &Admitter) -> SuiteResult<()> {
    let (channel, sender) = (unique_channel("admit-sent"), unique_user("sender"));
    new(a, &draft(&channel, &sender), None).await?;
    let k = key(&channel, &sender, "k");
    let original = new(a, &draft(&channel, &sender), Some(&k)).await?;
    a.idempotency.record(&k, &original, TTL).await?;
    let retry = a
        .admission
        .admit(&draft(&channel, &sender), Some(&k), TTL)
        .await?;
    assert_eq!(retry, Admitted::Duplicate(original));
    Ok(())
}

/// A channel's admissions count together, whoever sends them; another
/// channel is not slowed down.
pub async fn the_channel_limit_spans_senders(a: &Admitter) -> SuiteResult<()> {
    let channel = unique_channel("admit-rate");
    for _ in 0..suite_limits().channel_per_second {
        new(a, &draft(&channel, &unique_user("sender")), None).await?;
    }
    let over = a
        .admission
        .admit(&draft(&channel, &unique_user("sender")), None, TTL)
        .await;
    assert!(
        matches!(over, Err(ChatError::RateLimited { scope: "channel" })),
        "{over:?}"
    );
    let other = unique_channel("admit-rate-other");
    new(a, &draft(&other, &unique_user("sender")), None).await?;
    Ok(())
}

/// Admissions racing into a fresh channel (whose counter one of them
/// starts) get distinct, dense numbers.
pub async fn racing_admissions_get_dense_numbers(a: &Admitter) -> SuiteResult<()> {
    let channel = unique_channel("admit-race");
    let racers = suite_limits().channel_per_second as usize;
    let drafts: Vec<_> = (0..racers)
        .map(|i| {
            let sender = unique_user("sender");
            let k = (i % 2 == 0).then(|| key(&channel, &sender, "k"));
            (draft(&channel, &sender), k)
        })
        .collect();
    let admitted = futures::future::try_join_all(
        drafts
            .iter()
            .map(|(d, k)| a.admission.admit(d, k.as_ref(), TTL)),
    )
    .await?;
    let mut seqs: Vec<u64> = admitted
        .iter()
        .map(|m| match m {
            Admitted::New(m) => Ok(m.seq),
            other => Err(anyhow::anyhow!("expected new messages, got {other:?}")),
        })
        .collect::<SuiteResult<_>>()?;
    seqs.sort();
    let expected: Vec<u64> = (seqs[0]..seqs[0] + racers as u64).collect();
    assert_eq!(seqs, expected);
    Ok(())
}
