//! Tests of [`crate::ports::Sequencer`].

use chatmesh_ids::seq::{epoch_base, epoch_of};

use super::*;
use crate::ports::Sequencer;

/// What the suite does to a sequencer's live counter, as the failures of
/// its store would.
#[async_trait]
pub trait CounterFaults {
    /// The counter of `channel` is gone, as after a restart without data
    /// or a flush.
    async fn lose(&self, channel: &ChannelId) -> SuiteResult<()>;

    /// The counter of `channel` fell back by `behind` and now answers from
    /// another node, as a promoted replica that missed increments does.
    async fn fail_over(&self, channel: &ChannelId, behind: u64) -> SuiteResult<()>;
}

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

/// A released number is never handed out again, newest or not.
pub async fn released_numbers_are_never_reused(seq: &impl Sequencer) -> SuiteResult<()> {
    let c = unique_channel("seq-void");
    assert_eq!(seq.next(&c).await?, 1);
    assert_eq!(seq.next(&c).await?, 2);
    seq.release(&c, 2).await?;
    seq.release(&c, 1).await?;
    assert_eq!(seq.next(&c).await?, 3);
    Ok(())
}

/// A number given back while newest is taken again; one given back behind
/// a newer number is skipped.
pub async fn a_number_given_back_is_reused_only_while_newest(
    seq: &impl Sequencer,
) -> SuiteResult<()> {
    let c = unique_channel("seq-give-back");
    assert_eq!(seq.next(&c).await?, 1);
    assert_eq!(seq.next(&c).await?, 2);
    seq.give_back(&c, 2).await?;
    assert_eq!(seq.next(&c).await?, 2);
    assert_eq!(seq.next(&c).await?, 3);
    seq.give_back(&c, 2).await?;
    assert_eq!(seq.next(&c).await?, 4);
    Ok(())
}

/// A lost counter continues in a new epoch, above every number before.
pub async fn a_lost_counter_starts_a_higher_epoch(
    seq: &(impl Sequencer + CounterFaults),
) -> SuiteResult<()> {
    let c = unique_channel("seq-lost");
    for _ in 0..5 {
        seq.next(&c).await?;
    }
    seq.lose(&c).await?;
    let first = seq.next(&c).await?;
    assert_eq!(first, epoch_base(1) + 1, "the first number of epoch 1");
    assert_eq!(seq.next(&c).await?, first + 1, "dense within the epoch");
    seq.lose(&c).await?;
    assert_eq!(seq.next(&c).await?, epoch_base(2) + 1);
    Ok(())
}

/// Callers racing on a counter that is missing (a new channel's) or lost
/// start one epoch between them, not one each: their numbers are one
/// dense run, from the first of the epoch.
pub async fn racing_callers_start_one_epoch(
    seq: &(impl Sequencer + CounterFaults),
) -> SuiteResult<()> {
    const CALLERS: u64 = 16;
    let c = unique_channel("seq-race");
    let race = || futures::future::try_join_all((0..CALLERS).map(|_| seq.next(&c)));
    let mut first = race().await?;
    first.sort_unstable();
    assert_eq!(first, (1..=CALLERS).collect::<Vec<_>>(), "a new channel");
    seq.lose(&c).await?;
    let mut after = race().await?;
    after.sort_unstable();
    let base = epoch_base(1);
    assert_eq!(
        after,
        (base + 1..=base + CALLERS).collect::<Vec<_>>(),
        "after a loss"
    );
    Ok(())
}

/// A counter that fell behind on failover never repeats a number: the
/// channel moves to a new epoch, and so does only that channel.
pub async fn a_failed_over_counter_never_repeats(
    seq: &(impl Sequencer + CounterFaults),
) -> SuiteResult<()> {
    let (c, other) = (unique_channel("seq-failover"), unique_channel("seq-calm"));
    let mut handed = Vec::new();
    for _ in 0..5 {
        handed.push(seq.next(&c).await?);
    }
    assert_eq!(seq.next(&other).await?, 1);
    seq.fail_over(&c, 2).await?;
    let after = seq.next(&c).await?;
    assert!(
        handed.iter().all(|&h| after > h),
        "{after} repeats or precedes {handed:?}"
    );
    assert_eq!(epoch_of(after), 1);
    assert_eq!(seq.next(&c).await?, after + 1);
    assert_eq!(
        seq.next(&other).await?,
        2,
        "an unaffected channel keeps counting"
    );
    Ok(())
}

#[async_trait]
impl CounterFaults for crate::memory::MemorySequencer {
    async fn lose(&self, channel: &ChannelId) -> SuiteResult<()> {
        crate::memory::MemorySequencer::lose(self, channel);
        Ok(())
    }

    async fn fail_over(&self, channel: &ChannelId, behind: u64) -> SuiteResult<()> {
        crate::memory::MemorySequencer::fail_over(self, channel, behind);
        Ok(())
    }
}
