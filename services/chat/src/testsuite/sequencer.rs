//! Tests of [`crate::ports::Sequencer`].

use super::*;
use crate::ports::{Released, Sequencer};

/// Numbers start at 1 and have no holes, separately per channel.
pub async fn numbers_are_dense_per_channel(seq: &impl Sequencer) -> SuiteResult<()> {
    let (a, b) = (unique_channel("seq-a"), unique_channel("seq-b"));
    for want in 1..=3 {
        assert_eq!(seq.next(&a).await?, want);
    }
    assert_eq!(seq.next(&b).await?, 1);
    assert_eq!(seq.next(&a).await?, 4);
    Ok(())
}

/// Releasing the newest number lets the next send reuse it.
pub async fn releasing_the_newest_rolls_it_back(seq: &impl Sequencer) -> SuiteResult<()> {
    let c = unique_channel("seq-roll");
    assert_eq!(seq.next(&c).await?, 1);
    assert_eq!(seq.next(&c).await?, 2);
    assert_eq!(seq.release(&c, 2).await?, Released::RolledBack);
    assert_eq!(seq.next(&c).await?, 2);
    Ok(())
}

/// Releasing a number behind a newer one voids it; it is never reused.
pub async fn releasing_an_older_number_voids_it(seq: &impl Sequencer) -> SuiteResult<()> {
    let c = unique_channel("seq-void");
    assert_eq!(seq.next(&c).await?, 1);
    assert_eq!(seq.next(&c).await?, 2);
    assert_eq!(seq.release(&c, 1).await?, Released::Voided);
    assert_eq!(seq.next(&c).await?, 3);
    Ok(())
}
