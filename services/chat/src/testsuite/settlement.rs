//! Tests of [`crate::ports::Settlement`], with the idempotency store and
//! the fan-out it settles into.

use std::sync::Arc;

use super::*;
use crate::ports::{Claim, FanOut, IdempotencyKey, IdempotencyStore, Settlement};

const TTL: Duration = Duration::from_secs(3600);

/// A settlement and the stores it writes to.
pub struct Settler {
    /// Under test.
    pub settlement: Arc<dyn Settlement>,
    /// Where keyed messages are held and marked acknowledged.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Where messages are fanned out.
    pub fanout: Arc<dyn FanOut>,
}

impl std::fmt::Debug for Settler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settler").finish_non_exhaustive()
    }
}

/// A held key becomes acknowledged: a retry gets the original as a
/// duplicate, not the held message to resume. The message is in the
/// channel's recent window.
pub async fn a_settled_key_is_acknowledged_and_the_message_fanned_out(
    s: &Settler,
) -> SuiteResult<()> {
    let ids = Snowflake::new(4).expect("4 is a worker ID");
    let (channel, sender) = (unique_channel("settle-keyed"), unique_user("sender"));
    let key = IdempotencyKey {
        channel: channel.clone(),
        sender: sender.clone(),
        key: "k1".into(),
    };
    let sent = message(&ids, &channel, &sender, 1);
    assert_eq!(s.idempotency.claim(&key, &sent, TTL).await?, Claim::New);
    let retry = message(&ids, &channel, &sender, 2);
    assert_eq!(
        s.idempotency.claim(&key, &retry, TTL).await?,
        Claim::Resume(sent.clone()),
        "held before settling"
    );
    s.settlement
        .settle(&sent, Some(&key), TTL, None)
        .await
        .map_err(|u| anyhow::anyhow!("{u:?}"))?;
    assert_eq!(
        s.idempotency.claim(&key, &retry, TTL).await?,
        Claim::Duplicate(sent.clone())
    );
    assert_eq!(s.fanout.recent(&channel).await?, vec![sent]);
    Ok(())
}

/// A message without a key is fanned out and claims no key.
pub async fn an_unkeyed_message_is_only_fanned_out(s: &Settler) -> SuiteResult<()> {
    let ids = Snowflake::new(4).expect("4 is a worker ID");
    let (channel, sender) = (unique_channel("settle-plain"), unique_user("sender"));
    let first = message(&ids, &channel, &sender, 1);
    let second = message(&ids, &channel, &sender, 2);
    for m in [&first, &second] {
        s.settlement
            .settle(m, None, TTL, None)
            .await
            .map_err(|u| anyhow::anyhow!("{u:?}"))?;
    }
    assert_eq!(s.fanout.recent(&channel).await?, vec![first, second]);
    Ok(())
}
