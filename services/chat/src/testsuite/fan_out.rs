//! Tests of [`crate::ports::FanOut`]. The fan-out must keep
//! `suite_limits().recent_history` messages.

use super::*;
use crate::ports::FanOut;

/// The window keeps the newest messages, oldest first.
pub async fn the_recent_window_keeps_the_newest(fanout: &impl FanOut) -> SuiteResult<()> {
    let ids = Snowflake::new(3).expect("3 is a worker ID");
    let (channel, sender) = (unique_channel("recent"), unique_user("sender"));
    let sent: Vec<_> = (1..=6)
        .map(|seq| message(&ids, &channel, &sender, seq))
        .collect();
    for m in &sent {
        fanout.publish(m, None).await?;
    }
    let keep = suite_limits().recent_history;
    assert_eq!(fanout.recent(&channel).await?, sent[sent.len() - keep..]);
    Ok(())
}

/// The window is ordered by sequence number, not by publish order.
pub async fn the_recent_window_is_in_seq_order(fanout: &impl FanOut) -> SuiteResult<()> {
    let ids = Snowflake::new(3).expect("3 is a worker ID");
    let (channel, sender) = (unique_channel("recent-order"), unique_user("sender"));
    let sent: Vec<_> = (1..=3)
        .map(|seq| message(&ids, &channel, &sender, seq))
        .collect();
    for i in [2, 0, 1] {
        fanout.publish(&sent[i], None).await?;
    }
    assert_eq!(fanout.recent(&channel).await?, sent);
    Ok(())
}

/// Each channel has its own window; an unknown channel's is empty.
pub async fn windows_are_per_channel(fanout: &impl FanOut) -> SuiteResult<()> {
    let ids = Snowflake::new(3).expect("3 is a worker ID");
    let sender = unique_user("sender");
    let (a, b) = (unique_channel("recent-a"), unique_channel("recent-b"));
    let in_a = message(&ids, &a, &sender, 1);
    let in_b = message(&ids, &b, &sender, 1);
    fanout.publish(&in_a, None).await?;
    fanout.publish(&in_b, None).await?;
    assert_eq!(fanout.recent(&a).await?, vec![in_a]);
    assert_eq!(fanout.recent(&b).await?, vec![in_b]);
    assert!(
        fanout
            .recent(&unique_channel("recent-none"))
            .await?
            .is_empty()
    );
    Ok(())
}
