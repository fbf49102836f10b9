//! Tests of [`crate::ports::IdempotencyStore`].

use super::*;
use crate::ports::{Claim, IdempotencyKey, IdempotencyStore};

const TTL: Duration = Duration::from_secs(3600);

fn key(prefix: &str) -> IdempotencyKey {
    IdempotencyKey {
        channel: unique_channel(prefix),
        sender: unique_user("sender"),
        key: "retry-1".into(),
    }
}

fn message_for(k: &IdempotencyKey, seq: u64) -> ChatMessage {
    message(
        &Snowflake::new(1).expect("1 is a worker ID"),
        &k.channel,
        &k.sender,
        seq,
    )
}

/// A fresh key is claimed for its message; a second claim, with another
/// candidate, resumes the first message, every field intact.
pub async fn a_held_key_resumes_its_first_message(
    store: &impl IdempotencyStore,
) -> SuiteResult<()> {
    let k = key("idem-held");
    let first = message_for(&k, 7);
    assert_eq!(store.claim(&k, &first, TTL).await?, Claim::New);
    let second = message_for(&k, 8);
    assert_eq!(
        store.claim(&k, &second, TTL).await?,
        Claim::Resume(first.clone())
    );
    assert_eq!(store.claim(&k, &second, TTL).await?, Claim::Resume(first));
    Ok(())
}

/// After a message is recorded, claims return it as a duplicate.
pub async fn a_recorded_key_returns_the_original(store: &impl IdempotencyStore) -> SuiteResult<()> {
    let k = key("idem-sent");
    let original = message_for(&k, 7);
    assert_eq!(store.claim(&k, &original, TTL).await?, Claim::New);
    store.record(&k, &original, TTL).await?;
    let retry = message_for(&k, 9);
    assert_eq!(
        store.claim(&k, &retry, TTL).await?,
        Claim::Duplicate(original.clone())
    );
    assert_eq!(
        store.claim(&k, &retry, TTL).await?,
        Claim::Duplicate(original)
    );
    Ok(())
}

/// The same client key from another sender or channel is another key.
pub async fn keys_are_scoped_to_sender_and_channel(
    store: &impl IdempotencyStore,
) -> SuiteResult<()> {
    let k = key("idem-scope");
    assert_eq!(store.claim(&k, &message_for(&k, 1), TTL).await?, Claim::New);
    let other_sender = IdempotencyKey {
        sender: unique_user("other"),
        ..k.clone()
    };
    let m = message_for(&other_sender, 2);
    assert_eq!(store.claim(&other_sender, &m, TTL).await?, Claim::New);
    let other_channel = IdempotencyKey {
        channel: unique_channel("idem-other"),
        ..k
    };
    let m = message_for(&other_channel, 3);
    assert_eq!(store.claim(&other_channel, &m, TTL).await?, Claim::New);
    Ok(())
}
