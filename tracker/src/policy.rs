//! When to store: the batching policy, as pure logic with no I/O, so it can be tested exhaustively.
//!
//! A store is due when `every_messages` messages were processed since the last store, or when the
//! timer fires with progress since the last store, whichever comes first. A store always carries the
//! newest processed offset and is never at or below the last stored one (only forward).

use std::num::NonZeroU64;

/// The two triggers; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorePolicy {
    /// Store after this many processed messages.
    pub every_messages: Option<NonZeroU64>,
}

/// What the tracker knows about progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    policy_every: Option<u64>,
    newest_processed: Option<u64>,
    processed_since_store: u64,
    reported_total: u64,
    last_stored: Option<u64>,
}

impl Progress {
    /// Starts with what the broker already holds for this consumer (`None`: nothing stored).
    pub fn new(policy: StorePolicy, already_stored: Option<u64>) -> Self {
        Self {
            policy_every: policy.every_messages.map(NonZeroU64::get),
            newest_processed: None,
            processed_since_store: 0,
            reported_total: 0,
            last_stored: already_stored,
        }
    }

    /// Records `count` messages processed up to `offset`; returns the offset to store if the count
    /// trigger is due.
    pub fn record(&mut self, offset: u64, count: u64) -> Option<u64> {
        // Every report counts, so that the crash-bound accounting always moves on. One at or
        // below the newest offset (a late report — the sender kept it while its mailbox was full
        // and a newer one overtook it — or a group member made active again below its own
        // earlier high-water mark) moves nothing.
        let count = count.max(1);
        self.processed_since_store = self.processed_since_store.saturating_add(count);
        self.reported_total = self.reported_total.saturating_add(count);
        if self.newest_processed.is_none_or(|newest| offset > newest) {
            self.newest_processed = Some(offset);
        }
        match self.policy_every {
            Some(every) if self.processed_since_store >= every => self.due(),
            _ => None,
        }
    }

    /// Goes on from `stored`, what the broker holds now (another writer — a group's other member —
    /// may have moved it either way): nothing processed beyond it yet, nothing due.
    pub fn resume_from(&mut self, stored: Option<u64>) {
        self.newest_processed = stored;
        self.last_stored = stored;
        self.processed_since_store = 0;
    }

    /// The timer fired: the offset to store if there was progress since the last store.
    pub fn tick(&self) -> Option<u64> {
        self.due()
    }

    /// A flush: the offset to store if anything newer than the last store was processed.
    pub fn flush(&self) -> Option<u64> {
        self.due()
    }

    /// The newest processed offset, if it is ahead of the last store.
    fn due(&self) -> Option<u64> {
        let newest = self.newest_processed?;
        match self.last_stored {
            Some(stored) if newest <= stored => None,
            _ => Some(newest),
        }
    }

    /// The broker took a store of `offset`.
    pub fn stored(&mut self, offset: u64) {
        if self.last_stored.is_none_or(|stored| offset > stored) {
            self.last_stored = Some(offset);
        }
        // Messages processed after `offset` (reported while the store was under way) still count.
        if self.newest_processed.is_some_and(|newest| newest <= offset) {
            self.processed_since_store = 0;
        }
    }

    /// The newest processed offset.
    pub fn last_processed(&self) -> Option<u64> {
        self.newest_processed
    }

    /// How many messages were reported processed in all (up to and including the newest offset).
    pub fn reported_total(&self) -> u64 {
        self.reported_total
    }

    /// The newest stored offset.
    pub fn last_stored(&self) -> Option<u64> {
        self.last_stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(n: u64) -> StorePolicy {
        StorePolicy {
            every_messages: NonZeroU64::new(n),
        }
    }

    #[test]
    fn count_trigger_fires_every_n_messages_with_the_newest_offset() {
        let mut p = Progress::new(every(10), None);
        let mut stores = vec![];
        // Offsets are not contiguous: skip some, as tracking entries in the log do.
        let mut offset = 0;
        for i in 0..100u64 {
            offset += if i % 7 == 0 { 2 } else { 1 };
            if let Some(o) = p.record(offset, 1) {
                p.stored(o);
                stores.push(o);
            }
        }
        assert_eq!(stores.len(), 10);
        assert_eq!(stores.last(), Some(&offset));
        assert!(stores.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_batch_counts_all_its_messages() {
        let mut p = Progress::new(every(10), None);
        assert_eq!(p.record(4, 5), None);
        assert_eq!(p.record(9, 5), Some(9));
        p.stored(9);
        assert_eq!(p.record(1000, 250), Some(1000));
    }

    #[test]
    fn count_trigger_off_stores_only_on_tick_or_flush() {
        let mut p = Progress::new(every(0), None);
        for o in 0..1000 {
            assert_eq!(p.record(o, 1), None);
        }
        assert_eq!(p.tick(), Some(999));
        p.stored(999);
        assert_eq!(p.tick(), None, "no progress since the last store");
        assert_eq!(p.flush(), None);
    }

    #[test]
    fn a_late_report_counts_but_moves_nothing_back() {
        let mut p = Progress::new(every(3), None);
        assert_eq!(p.record(10, 1), None);
        assert_eq!(p.record(20, 1), None);
        // The report of 15 overtaken by 20's: counted (the third message triggers a store),
        // and the store carries the newest offset.
        assert_eq!(p.record(15, 1), Some(20));
        assert_eq!(p.reported_total(), 3);
        assert_eq!(p.last_processed(), Some(20));
    }

    #[test]
    fn never_stores_at_or_below_what_is_stored() {
        let mut p = Progress::new(every(1), Some(50));
        assert_eq!(p.record(40, 1), None, "below the broker's stored offset");
        assert_eq!(p.record(50, 1), None, "equal to it");
        assert_eq!(p.tick(), None);
        assert_eq!(p.record(51, 1), Some(51));
        p.stored(51);
        p.stored(45); // a late, older acknowledgement does not move it back
        assert_eq!(p.last_stored(), Some(51));
    }

    #[test]
    fn progress_during_a_store_still_counts() {
        let mut p = Progress::new(every(10), None);
        assert_eq!(p.record(9, 10), Some(9));
        assert_eq!(
            p.record(14, 5),
            Some(14),
            "a store is still due: nothing acknowledged yet"
        );
        p.stored(9);
        assert_eq!(p.tick(), Some(14));
        p.stored(14);
        assert_eq!(p.record(19, 5), None);
        assert_eq!(p.record(24, 5), Some(24));
    }

    #[test]
    fn nothing_processed_nothing_to_flush() {
        let p = Progress::new(every(10), Some(3));
        assert_eq!(p.flush(), None);
        assert_eq!(p.tick(), None);
    }
}
