//! Per-key FIFO queues for `ordering = "key"`: at most one item of a key runs at a time, and the
//! items of a key run in admission order; items of different keys run at the same time.
//!
//! A key has an entry while one of its items is running, holding the items queued behind it;
//! the entry goes when the key's last item finishes, so memory follows the keys running now, not
//! every key ever seen.
//!
//! Keys are held as 64-bit hashes ([`hash_key`]): no key kept per item, and no comparing
//! of key bytes. Two keys of one hash (for a thousand keys running at once, a chance of about
//! 3·10⁻¹⁴) would share a queue: they would run one after the other, never out of order.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;

/// A key's bytes, hashed: what [`KeyQueues`] is keyed by.
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(key);
    hasher.finish()
}

/// Items waiting for their key, per key with an item running.
#[derive(Debug)]
pub(crate) struct KeyQueues<T> {
    /// Key with an item running -> the items queued behind it, oldest first.
    queues: HashMap<u64, VecDeque<T>>,
    /// Items queued in all the queues (not running).
    waiting: usize,
}

impl<T> Default for KeyQueues<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> KeyQueues<T> {
    /// No key running, nothing queued.
    pub(crate) fn new() -> Self {
        Self {
            queues: HashMap::new(),
            waiting: 0,
        }
    }

    /// Admits `item` of `key`. Returns it back if `key` has nothing running: the caller starts
    /// it now, and `key` is running from now on. Otherwise queues it behind the key's earlier
    /// items and returns `None`: [`KeyQueues::finish`] hands it out in its turn.
    pub(crate) fn admit(&mut self, key: u64, item: T) -> Option<T> {
        match self.queues.entry(key) {
            Entry::Occupied(mut queue) => {
                queue.get_mut().push_back(item);
                self.waiting += 1;
                None
            }
            Entry::Vacant(vacant) => {
                vacant.insert(VecDeque::new());
                Some(item)
            }
        }
    }

    /// The running item of `key` finished. Returns the next queued item of `key`, which is
    /// running from now on, or `None`: then `key` no longer runs and its entry is removed.
    /// A `key` with nothing running (a logic error of the caller) gives `None`.
    pub(crate) fn finish(&mut self, key: u64) -> Option<T> {
        let queue = self.queues.get_mut(&key)?;
        match queue.pop_front() {
            Some(next) => {
                self.waiting -= 1;
                Some(next)
            }
            None => {
                self.queues.remove(&key);
                None
            }
        }
    }

    /// How many items are queued behind a running item of their key.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    /// How many keys have an item running.
    #[cfg(test)]
    pub(crate) fn running_keys(&self) -> usize {
        self.queues.len()
    }

    /// Forgets every key and drops every queued item (abandoned work).
    pub(crate) fn clear(&mut self) {
        self.queues.clear();
        self.waiting = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    fn key(text: &str) -> u64 {
        hash_key(text.as_bytes())
    }

    #[test]
    fn a_new_queue_set_is_empty() {
        let queues: KeyQueues<u32> = KeyQueues::new();
        assert_eq!(queues.waiting(), 0);
        assert_eq!(queues.running_keys(), 0);
        let default: KeyQueues<u32> = KeyQueues::default();
        assert_eq!(default.running_keys(), 0);
    }

    #[test]
    fn items_of_one_key_run_one_after_another_in_order() {
        let mut queues = KeyQueues::new();
        assert_eq!(queues.admit(key("a"), 1), Some(1));
        assert_eq!(queues.admit(key("a"), 2), None);
        assert_eq!(queues.admit(key("a"), 3), None);
        assert_eq!(queues.waiting(), 2);
        assert_eq!(queues.running_keys(), 1);

        assert_eq!(queues.finish(key("a")), Some(2));
        assert_eq!(queues.waiting(), 1);
        assert_eq!(queues.admit(key("a"), 4), None);
        assert_eq!(queues.finish(key("a")), Some(3));
        assert_eq!(queues.finish(key("a")), Some(4));
        assert_eq!(queues.waiting(), 0);
        assert_eq!(queues.running_keys(), 1, "4 is still running");
        assert_eq!(queues.finish(key("a")), None);
        assert_eq!(queues.running_keys(), 0);
    }

    #[test]
    fn different_keys_run_at_once() {
        let mut queues = KeyQueues::new();
        assert_eq!(queues.admit(key("a"), 1), Some(1));
        assert_eq!(queues.admit(key("b"), 2), Some(2));
        assert_eq!(
            queues.admit(hash_key(&[]), 3),
            Some(3),
            "the empty key is a key"
        );
        assert_eq!(queues.admit(hash_key(&[0xff, 0x00]), 4), Some(4));
        assert_eq!(queues.running_keys(), 4);
        assert_eq!(queues.waiting(), 0);
    }

    #[test]
    fn a_key_runs_again_at_once_after_its_last_item_finished() {
        let mut queues = KeyQueues::new();
        assert_eq!(queues.admit(key("a"), 1), Some(1));
        assert_eq!(queues.finish(key("a")), None);
        assert_eq!(queues.admit(key("a"), 2), Some(2));
        assert_eq!(queues.finish(key("a")), None);
        assert_eq!(queues.running_keys(), 0);
    }

    #[test]
    fn the_map_shrinks_back_to_empty() {
        let mut queues = KeyQueues::new();
        for round in 0..3 {
            for k in 0..1_000u32 {
                assert_eq!(queues.admit(hash_key(&k.to_be_bytes()), k), Some(k));
                assert_eq!(queues.admit(hash_key(&k.to_be_bytes()), k + 1), None);
            }
            assert_eq!(queues.running_keys(), 1_000, "round {round}");
            assert_eq!(queues.waiting(), 1_000, "round {round}");
            for k in 0..1_000u32 {
                assert_eq!(queues.finish(hash_key(&k.to_be_bytes())), Some(k + 1));
                assert_eq!(queues.finish(hash_key(&k.to_be_bytes())), None);
            }
            assert_eq!(queues.running_keys(), 0, "round {round}");
            assert_eq!(queues.waiting(), 0, "round {round}");
            assert!(queues.queues.is_empty());
        }
    }

    #[test]
    fn finishing_a_key_with_nothing_running_gives_nothing() {
        let mut queues: KeyQueues<u32> = KeyQueues::new();
        assert_eq!(queues.finish(key("nobody")), None);
        assert_eq!(queues.admit(key("a"), 1), Some(1));
        assert_eq!(queues.finish(key("b")), None);
        assert_eq!(queues.running_keys(), 1);
    }

    #[test]
    fn several_keys_interleaved_keep_each_keys_order() {
        let mut queues = KeyQueues::new();
        // (key, item) in admission order.
        let admitted = [
            ("a", 1),
            ("b", 2),
            ("a", 3),
            ("c", 4),
            ("b", 5),
            ("a", 6),
            ("c", 7),
            ("b", 8),
        ];
        let mut running: Vec<(&str, u32)> = Vec::new();
        for (k, item) in admitted {
            if let Some(started) = queues.admit(key(k), item) {
                running.push((k, started));
            }
        }
        assert_eq!(running, [("a", 1), ("b", 2), ("c", 4)]);
        assert_eq!(queues.waiting(), 5);
        assert_eq!(queues.running_keys(), 3);

        // Finish in an order unrelated to admission; record what each key ran.
        let mut ran: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut turn = 0;
        while !running.is_empty() {
            let (k, item) = running.remove((turn * 7) % running.len());
            turn += 1;
            ran.entry(k).or_default().push(item);
            if let Some(next) = queues.finish(key(k)) {
                assert!(
                    running.iter().all(|&(other, _)| other != k),
                    "one item of {k} at a time"
                );
                running.push((k, next));
            }
        }
        assert_eq!(ran["a"], [1, 3, 6]);
        assert_eq!(ran["b"], [2, 5, 8]);
        assert_eq!(ran["c"], [4, 7]);
        assert_eq!(queues.waiting(), 0);
        assert_eq!(queues.running_keys(), 0);
    }

    /// An item counting its drops.
    struct Item(Rc<Cell<usize>>);

    impl Drop for Item {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn clear_forgets_every_key_and_drops_the_queued_items() {
        let drops = Rc::new(Cell::new(0));
        let mut queues = KeyQueues::new();
        let running_a = queues.admit(key("a"), Item(drops.clone()));
        let running_b = queues.admit(key("b"), Item(drops.clone()));
        assert!(running_a.is_some() && running_b.is_some());
        assert!(queues.admit(key("a"), Item(drops.clone())).is_none());
        assert!(queues.admit(key("a"), Item(drops.clone())).is_none());
        assert!(queues.admit(key("b"), Item(drops.clone())).is_none());
        assert_eq!(drops.get(), 0);

        queues.clear();
        assert_eq!(drops.get(), 3, "the queued items, not the running ones");
        assert_eq!(queues.waiting(), 0);
        assert_eq!(queues.running_keys(), 0);
        assert!(queues.finish(key("a")).is_none());
        let again = queues.admit(key("a"), Item(drops.clone()));
        assert!(again.is_some(), "a runs again at once");
        drop((running_a, running_b, again));
        assert_eq!(drops.get(), 6);
    }
}
