//! Tests of [`crate::ports::IdempotencyStore`].

use super::*;
use crate::ports::{Claim, IdempotencyKey, IdempotencyStore};

fn key(prefix: &str) -> IdempotencyKey {
    IdempotencyKey {
        channel: unique_channel(prefix),
        sender: unique_user("sender"),
        key: "retry-1".into(),
    }
}

/// A fresh key is claimed once; a second claim finds it in flight.
pub async fn a_new_key_is_claimed_once(store: &impl IdempotencyStore) -> SuiteResult<()> {
    let k = key("idem-new");
    assert_eq!(store.claim(&k).await?, Claim::New);
    assert_eq!(store.claim(&k).await?, Claim::InFlight);
    Ok(())
}

/// After a message is recorded, claims return it, every field intact.
pub async fn a_recorded_key_returns_the_original(store: &impl IdempotencyStore) -> SuiteResult<()> {
    let k = key("idem-sent");
    let original = message(
        &Snowflake::new(1).expect("1 is a worker ID"),
        &k.channel,
        &k.sender,
        7,
    );
    assert_eq!(store.claim(&k).await?, Claim::New);
    store
        .record(&k, &original, Duration::from_secs(3600))
        .await?;
    assert_eq!(store.claim(&k).await?, Claim::Duplicate(original.clone()));
    assert_eq!(store.claim(&k).await?, Claim::Duplicate(original));
    Ok(())
}

/// A forgotten key can be claimed again; forgetting twice is harmless.
pub async fn a_forgotten_key_is_free_again(store: &impl IdempotencyStore) -> SuiteResult<()> {
    let k = key("idem-forget");
    assert_eq!(store.claim(&k).await?, Claim::New);
    store.forget(&k).await?;
    store.forget(&k).await?;
    assert_eq!(store.claim(&k).await?, Claim::New);
    Ok(())
}

/// The same client key from another sender or channel is another key.
pub async fn keys_are_scoped_to_sender_and_channel(
    store: &impl IdempotencyStore,
) -> SuiteResult<()> {
    let k = key("idem-scope");
    assert_eq!(store.claim(&k).await?, Claim::New);
    let other_sender = IdempotencyKey {
        sender: unique_user("other"),
        ..k.clone()
    };
    assert_eq!(store.claim(&other_sender).await?, Claim::New);
    let other_channel = IdempotencyKey {
        channel: unique_channel("idem-other"),
        ..k
    };
    assert_eq!(store.claim(&other_channel).await?, Claim::New);
    Ok(())
}
