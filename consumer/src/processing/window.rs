//! The window of deliveries admitted and not yet covered by the finished prefix.
//!
//! Deliveries are admitted in stream order and may finish in any order; only the longest prefix
//! of finished deliveries may be stored as the consumer's offset, so a delivery stays in the
//! window — with its payload (the caller's semaphore permit) — until every delivery admitted
//! before it has finished too. [`Window::finish`] reports how far that prefix moved.
//!
//! Offsets increase strictly in admission order but are not contiguous (filtered or compacted
//! streams, sub-entry batches, the caller skipping records): nothing here assumes `offset + 1`
//! is the next one.

use std::collections::VecDeque;

/// How far the finished prefix moved in one [`Window::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    /// The newest offset the finished prefix now covers.
    pub(crate) last: u64,
    /// How many deliveries the prefix newly covers.
    pub(crate) count: u64,
}

/// One admitted delivery.
#[derive(Debug)]
struct Entry<P> {
    offset: u64,
    finished: bool,
    /// Dropped when the entry leaves the window.
    /// Held only to be dropped when the delivery leaves the window.
    _payload: P,
}

/// The deliveries admitted and not yet covered by the finished prefix, in admission (= stream)
/// order, each with a payload dropped exactly when its delivery leaves the window.
///
/// Invariant: the front entry, if any, is unfinished (every [`Window::finish`] pops the finished
/// prefix), so the window always starts at the oldest delivery still being worked on.
#[derive(Debug)]
pub(crate) struct Window<P> {
    entries: VecDeque<Entry<P>>,
    /// Entries in the window already finished (waiting behind an unfinished one).
    finished: usize,
    /// The newest offset ever admitted since creation or the last [`Window::clear`].
    last_admitted: Option<u64>,
}

impl<P> Default for Window<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Window<P> {
    /// An empty window.
    pub(crate) fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            finished: 0,
            last_admitted: None,
        }
    }

    /// Admits the delivery at `offset`, which must be above every offset admitted before (since
    /// creation or the last [`Window::clear`]). An offset that is not is a logic error: it fails
    /// a debug assertion, and in release builds is ignored (its payload dropped at once).
    pub(crate) fn admit(&mut self, offset: u64, payload: P) {
        if let Some(last) = self.last_admitted {
            if offset <= last {
                debug_assert!(
                    offset > last,
                    "window: offset {offset} admitted after {last}: offsets must increase"
                );
                return;
            }
        }
        self.last_admitted = Some(offset);
        self.entries.push_back(Entry {
            offset,
            finished: false,
            _payload: payload,
        });
    }

    /// Marks the delivery at `offset` finished, then drops every finished delivery from the
    /// front of the window (with its payload).
    ///
    /// Returns how far the finished prefix moved, or `None` if it did not (an earlier delivery
    /// is still unfinished) or if `offset` is not an unfinished delivery of the window.
    pub(crate) fn finish(&mut self, offset: u64) -> Option<Advance> {
        let index = self
            .entries
            .binary_search_by_key(&offset, |entry| entry.offset)
            .ok()?;
        let entry = self.entries.get_mut(index)?;
        if entry.finished {
            return None;
        }
        entry.finished = true;
        self.finished += 1;
        if index != 0 {
            return None;
        }
        let mut last = offset;
        let mut count = 0;
        while self.entries.front().is_some_and(|entry| entry.finished) {
            if let Some(entry) = self.entries.pop_front() {
                last = entry.offset;
                count += 1;
                self.finished -= 1;
                // `entry` and its payload are dropped here, as the delivery leaves the window.
            }
        }
        (count > 0).then_some(Advance { last, count })
    }

    /// How many deliveries are in the window, finished or not.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the window holds no delivery.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many deliveries of the window are not finished.
    pub(crate) fn unfinished(&self) -> usize {
        self.entries.len() - self.finished
    }

    /// The offset of the oldest unfinished delivery, where the finished prefix stops.
    pub(crate) fn first_unfinished(&self) -> Option<u64> {
        // The front entry is always unfinished (see the type's invariant).
        self.entries.front().map(|entry| entry.offset)
    }

    /// Drops every delivery (abandoned work) with its payload, and forgets the offsets admitted
    /// so far (a later subscription may start again below them). Returns how many of the
    /// dropped deliveries were not finished.
    pub(crate) fn clear(&mut self) -> usize {
        let unfinished = self.unfinished();
        self.entries.clear();
        self.finished = 0;
        self.last_admitted = None;
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    fn advance(last: u64, count: u64) -> Option<Advance> {
        Some(Advance { last, count })
    }

    fn window_of(offsets: &[u64]) -> Window<()> {
        let mut window = Window::new();
        for &offset in offsets {
            window.admit(offset, ());
        }
        window
    }

    /// A payload counting its drops.
    struct Permit(Rc<Cell<usize>>);

    impl Drop for Permit {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn a_new_window_is_empty() {
        let window: Window<()> = Window::new();
        assert!(window.is_empty());
        assert_eq!(window.len(), 0);
        assert_eq!(window.unfinished(), 0);
        assert_eq!(window.first_unfinished(), None);
        let default: Window<()> = Window::default();
        assert!(default.is_empty());
    }

    #[test]
    fn in_order_finishes_move_the_prefix_one_by_one() {
        let mut window = window_of(&[1, 2, 3]);
        assert_eq!(window.len(), 3);
        assert_eq!(window.unfinished(), 3);
        assert_eq!(window.first_unfinished(), Some(1));

        assert_eq!(window.finish(1), advance(1, 1));
        assert_eq!(window.first_unfinished(), Some(2));
        assert_eq!(window.finish(2), advance(2, 1));
        assert_eq!(window.finish(3), advance(3, 1));
        assert!(window.is_empty());
        assert_eq!(window.unfinished(), 0);
        assert_eq!(window.first_unfinished(), None);
    }

    #[test]
    fn reverse_order_finishes_move_the_prefix_only_with_the_first() {
        let mut window = window_of(&[1, 2, 3, 4]);
        assert_eq!(window.finish(4), None);
        assert_eq!(window.finish(3), None);
        assert_eq!(window.finish(2), None);
        assert_eq!(window.len(), 4);
        assert_eq!(window.unfinished(), 1);
        assert_eq!(window.first_unfinished(), Some(1));

        assert_eq!(window.finish(1), advance(4, 4));
        assert!(window.is_empty());
        assert_eq!(window.unfinished(), 0);
    }

    #[test]
    fn a_hole_holds_the_prefix_until_it_finishes() {
        let mut window = window_of(&[1, 2, 3]);
        assert_eq!(window.finish(1), advance(1, 1));
        assert_eq!(window.finish(3), None);
        assert_eq!(window.first_unfinished(), Some(2));
        assert_eq!(window.len(), 2);
        assert_eq!(window.unfinished(), 1);

        assert_eq!(window.finish(2), advance(3, 2));
        assert!(window.is_empty());
    }

    #[test]
    fn non_contiguous_offsets() {
        let mut window = window_of(&[10, 11, 15, 104]);
        // Offsets that lie in the gaps were never admitted.
        assert_eq!(window.finish(12), None);
        assert_eq!(window.finish(103), None);
        assert_eq!(window.finish(0), None);
        assert_eq!(window.finish(105), None);
        assert_eq!(window.unfinished(), 4);

        assert_eq!(window.finish(15), None);
        assert_eq!(window.finish(10), advance(10, 1));
        assert_eq!(window.first_unfinished(), Some(11));
        assert_eq!(window.finish(11), advance(15, 2));
        assert_eq!(window.first_unfinished(), Some(104));

        window.admit(1_000, ());
        window.admit(u64::MAX, ());
        assert_eq!(window.finish(u64::MAX), None);
        assert_eq!(window.finish(104), advance(104, 1));
        assert_eq!(window.finish(1_000), advance(u64::MAX, 2));
        assert!(window.is_empty());
    }

    #[test]
    fn finishing_twice_or_an_unknown_offset_changes_nothing() {
        let mut window = window_of(&[5, 6, 7]);
        assert_eq!(window.finish(6), None);
        assert_eq!(window.finish(6), None);
        assert_eq!(window.unfinished(), 2);
        assert_eq!(window.finish(5), advance(6, 2));
        // 5 and 6 have left the window.
        assert_eq!(window.finish(5), None);
        assert_eq!(window.finish(6), None);
        assert_eq!(window.finish(8), None);
        assert_eq!(window.len(), 1);
        assert_eq!(window.unfinished(), 1);
        assert_eq!(window.finish(7), advance(7, 1));
    }

    #[test]
    fn admitting_after_the_window_emptied_continues() {
        let mut window = window_of(&[1]);
        assert_eq!(window.finish(1), advance(1, 1));
        window.admit(9, ());
        assert_eq!(window.first_unfinished(), Some(9));
        assert_eq!(window.finish(9), advance(9, 1));
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "offsets must increase")]
    fn admitting_a_lower_offset_fails_a_debug_assertion() {
        let mut window = window_of(&[5]);
        window.admit(5, ());
    }

    #[cfg(not(debug_assertions))]
    #[test]
    fn admitting_a_lower_offset_is_ignored() {
        let drops = Rc::new(Cell::new(0));
        let mut window = Window::new();
        window.admit(5, Permit(drops.clone()));
        window.admit(5, Permit(drops.clone()));
        window.admit(3, Permit(drops.clone()));
        assert_eq!(drops.get(), 2, "the ignored payloads are dropped at once");
        assert_eq!(window.len(), 1);
        // Even after 5 left the window.
        assert_eq!(window.finish(5), advance(5, 1));
        window.admit(4, Permit(drops.clone()));
        assert!(window.is_empty());
    }

    #[test]
    fn payloads_are_dropped_only_when_covered_by_the_prefix() {
        let drops = Rc::new(Cell::new(0));
        let mut window = Window::new();
        for offset in [10, 20, 30, 40] {
            window.admit(offset, Permit(drops.clone()));
        }
        assert_eq!(drops.get(), 0);

        assert_eq!(window.finish(30), None);
        assert_eq!(drops.get(), 0, "finished but not covered: kept");
        assert_eq!(window.finish(20), None);
        assert_eq!(drops.get(), 0);
        assert_eq!(window.finish(10), advance(30, 3));
        assert_eq!(drops.get(), 3);
        assert_eq!(window.finish(10), None);
        assert_eq!(drops.get(), 3);
        assert_eq!(window.finish(40), advance(40, 1));
        assert_eq!(drops.get(), 4);
    }

    #[test]
    fn clear_drops_every_payload_and_counts_the_unfinished() {
        let drops = Rc::new(Cell::new(0));
        let mut window = Window::new();
        for offset in [1, 2, 3, 4, 5] {
            window.admit(offset, Permit(drops.clone()));
        }
        assert_eq!(window.finish(1), advance(1, 1));
        assert_eq!(window.finish(3), None);
        assert_eq!(drops.get(), 1);

        assert_eq!(window.clear(), 3, "2, 4 and 5 were not finished");
        assert_eq!(drops.get(), 5);
        assert!(window.is_empty());
        assert_eq!(window.unfinished(), 0);
        assert_eq!(window.first_unfinished(), None);
        assert_eq!(window.clear(), 0);

        // A new subscription may start again below the offsets admitted before.
        window.admit(2, Permit(drops.clone()));
        assert_eq!(window.finish(2), advance(2, 1));
        assert_eq!(drops.get(), 6);
    }

    #[test]
    fn dropping_the_window_drops_its_payloads() {
        let drops = Rc::new(Cell::new(0));
        let mut window = Window::new();
        window.admit(1, Permit(drops.clone()));
        window.admit(2, Permit(drops.clone()));
        assert_eq!(window.finish(2), None);
        drop(window);
        assert_eq!(drops.get(), 2);
    }

    /// xorshift64*: enough randomness for a test, no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap()
        }
    }

    #[test]
    fn random_finish_order_matches_the_naive_longest_finished_prefix() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..200 {
            let drops = Rc::new(Cell::new(0));
            let mut window = Window::new();
            let n = 1 + rng.below(60);

            // Non-contiguous increasing offsets.
            let mut offsets = Vec::with_capacity(n);
            let mut offset = rng.next() % 1_000;
            for _ in 0..n {
                offset += 1 + rng.next() % 5;
                offsets.push(offset);
            }
            let mut finished = vec![false; n];
            // How many deliveries the prefix covers so far (naive model).
            let mut covered = 0;

            // Admit some up front, the rest interleaved with the finishes.
            let mut admitted = rng.below(n + 1);
            for &offset in &offsets[..admitted] {
                window.admit(offset, Permit(drops.clone()));
            }
            let mut pending: Vec<usize> = (0..admitted).collect();

            while covered < n {
                if admitted < n && (pending.is_empty() || rng.below(3) == 0) {
                    window.admit(offsets[admitted], Permit(drops.clone()));
                    pending.push(admitted);
                    admitted += 1;
                    continue;
                }
                let index = pending.swap_remove(rng.below(pending.len()));
                finished[index] = true;

                let before = covered;
                while covered < admitted && finished[covered] {
                    covered += 1;
                }
                let expected = (covered > before).then(|| Advance {
                    last: offsets[covered - 1],
                    count: (covered - before) as u64,
                });
                assert_eq!(window.finish(offsets[index]), expected, "round {round}");
                assert_eq!(window.finish(offsets[index]), None, "round {round}: twice");

                assert_eq!(drops.get(), covered, "round {round}: payloads dropped");
                assert_eq!(window.len(), admitted - covered, "round {round}");
                assert_eq!(window.unfinished(), pending.len(), "round {round}");
                assert_eq!(
                    window.first_unfinished(),
                    (covered < admitted).then(|| offsets[covered]),
                    "round {round}"
                );
            }
            assert!(window.is_empty(), "round {round}");
            assert_eq!(window.clear(), 0);
        }
    }
}
