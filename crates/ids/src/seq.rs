//! Sequence numbers and their epochs.
//!
//! A channel's sequence number carries its epoch in the high bits: seq =
//! epoch × 2³² + n, with n counting from 1 within the epoch. A new epoch
//! starts whenever the live counter may have lost numbers (its Redis master
//! failed over, or restarted without data), and every number of a new epoch
//! is above every number of the old one. So numbers never repeat and never
//! go backwards, they are dense within an epoch, and a reader holding a
//! position from an older epoch knows it cannot prove what lies between.
//!
//! 21 epoch bits keep every number below 2⁵³, exact in JavaScript.

/// Bits of `n` within an epoch.
pub const EPOCH_SHIFT: u32 = 32;

/// The highest epoch: numbers stay below 2⁵³.
pub const MAX_EPOCH: u64 = (1 << (53 - EPOCH_SHIFT)) - 1;

/// The epoch `seq` belongs to.
pub const fn epoch_of(seq: u64) -> u64 {
    seq >> EPOCH_SHIFT
}

/// The number just before the first of `epoch`: its first number is
/// `epoch_base(epoch) + 1`.
pub const fn epoch_base(epoch: u64) -> u64 {
    epoch << EPOCH_SHIFT
}

/// True when every number between `before` and `after` belongs to one
/// epoch, so a reader can tell which numbers it missed between them.
pub const fn same_epoch(before: u64, after: u64) -> bool {
    epoch_of(before) == epoch_of(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_epoch_counts_from_one() {
        assert_eq!(epoch_of(1), 0);
        assert_eq!(epoch_of(u32::MAX as u64), 0);
        assert_eq!(epoch_of(epoch_base(1) + 1), 1);
    }

    #[test]
    fn every_number_stays_exact_in_javascript() {
        assert!(epoch_base(MAX_EPOCH) + u64::from(u32::MAX) < 1 << 53);
    }

    #[test]
    fn positions_in_different_epochs_are_not_comparable() {
        assert!(same_epoch(5, 9));
        assert!(!same_epoch(5, epoch_base(1) + 1));
        assert!(!same_epoch(epoch_base(1) + 3, epoch_base(2) + 1));
    }
}
