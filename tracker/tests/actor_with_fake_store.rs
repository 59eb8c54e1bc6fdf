//! The tracker actor's batching, flushing and only-forward rule, with a fake store that records
//! every store (the broker-backed behaviour is tested in the consumer's integration tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix::Actor;
use futures::future::LocalBoxFuture;
use shared::config::TrackerSettings;
use shared::error::Result;
use tracker::{Activate, Deactivate, Flush, GetStats, Processed};
use tracker::{OffsetStore, Tracker};

#[derive(Clone, Default)]
struct FakeStore {
    stored: Rc<RefCell<Vec<u64>>>,
}

impl OffsetStore for FakeStore {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        self.stored.borrow_mut().push(offset);
        Box::pin(async { Ok(()) })
    }

    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
        let last = self.stored.borrow().last().copied();
        Box::pin(async move { Ok(last) })
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

fn settings(every_messages: u64, every: Duration) -> TrackerSettings {
    TrackerSettings {
        store_every_messages: every_messages,
        store_every: every,
        ..TrackerSettings::default()
    }
}

#[actix::test]
async fn stores_every_n_messages_and_flushes_the_rest() {
    let store = FakeStore::default();
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(10, Duration::ZERO),
        None,
    )
    .start();
    for offset in 0..95u64 {
        tracker.send(Processed { offset, count: 1 }).await.unwrap();
    }
    assert_eq!(
        *store.stored.borrow(),
        vec![9, 19, 29, 39, 49, 59, 69, 79, 89]
    );
    assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), Some(94));
    assert_eq!(store.stored.borrow().last(), Some(&94));
    // A second flush with no progress stores nothing more.
    assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), Some(94));
    assert_eq!(store.stored.borrow().len(), 10);
    let stats = tracker.send(GetStats).await.unwrap();
    assert_eq!(
        (stats.stores, stats.last_stored, stats.last_processed),
        (10, Some(94), Some(94))
    );
}

#[actix::test]
async fn the_timer_stores_progress_and_only_progress() {
    let store = FakeStore::default();
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(0, Duration::from_millis(50)),
        None,
    )
    .start();
    tracker
        .send(Processed {
            offset: 7,
            count: 8,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        *store.stored.borrow(),
        vec![7],
        "one store, then nothing: no progress"
    );
    tracker
        .send(Processed {
            offset: 12,
            count: 5,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*store.stored.borrow(), vec![7, 12]);
}

#[actix::test]
async fn never_stores_at_or_below_what_the_broker_holds() {
    let store = FakeStore::default();
    store.stored.borrow_mut().push(100);
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(1, Duration::ZERO),
        Some(100),
    )
    .start();
    tracker
        .send(Processed {
            offset: 100,
            count: 1,
        })
        .await
        .unwrap();
    assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), Some(100));
    assert_eq!(*store.stored.borrow(), vec![100], "nothing stored at 100");
    tracker
        .send(Processed {
            offset: 101,
            count: 1,
        })
        .await
        .unwrap();
    assert_eq!(*store.stored.borrow(), vec![100, 101]);
}

#[actix::test]
async fn a_flush_with_nothing_processed_stores_nothing() {
    let store = FakeStore::default();
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(10, Duration::ZERO),
        None,
    )
    .start();
    assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), None);
    assert!(store.stored.borrow().is_empty());
}

#[actix::test]
async fn made_active_again_below_its_own_high_water_mark_it_stores_forward_from_the_group() {
    let store = FakeStore::default();
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(2, Duration::ZERO),
        None,
    );
    let stored = tracker.stored_progress();
    let tracker = tracker.start();
    for offset in [1000, 1001] {
        tracker.send(Processed { offset, count: 1 }).await.unwrap();
    }
    assert_eq!(*store.stored.borrow(), vec![1001]);
    // Handed over, the group went on elsewhere from an older offset (this member's last flush
    // had failed); now this member is active again at 900.
    tracker.send(Deactivate).await.unwrap();
    tracker.send(Activate { stored: Some(899) }).await.unwrap();
    let before = stored.borrow().processed;
    for offset in [900, 901] {
        tracker.send(Processed { offset, count: 1 }).await.unwrap();
    }
    assert_eq!(
        *store.stored.borrow(),
        vec![1001, 901],
        "stores go on from the group's offset"
    );
    assert_eq!(
        stored.borrow().processed,
        before + 2,
        "the crash-bound accounting moves on"
    );
}

#[actix::test]
async fn an_inactive_member_stores_nothing_not_even_on_its_timer_or_a_flush() {
    let store = FakeStore::default();
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(0, Duration::from_millis(20)),
        None,
    )
    .start();
    tracker
        .send(Processed {
            offset: 5,
            count: 1,
        })
        .await
        .unwrap();
    tracker.send(Deactivate).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), None);
    assert!(
        store.stored.borrow().is_empty(),
        "{:?}",
        store.stored.borrow()
    );
}

/// Fails its first `failures` stores, then works.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: FakeStore,
    failures: Rc<RefCell<u32>>,
}

impl OffsetStore for FlakyStore {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        let mut left = self.failures.borrow_mut();
        if *left > 0 {
            *left -= 1;
            return Box::pin(async { Err(shared::Error::Local("store refused (test)".into())) });
        }
        self.inner.store(offset)
    }

    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
        self.inner.query()
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        self.inner.close()
    }
}

#[actix::test]
async fn the_final_flush_tries_again_after_a_transient_failure() {
    let store = FlakyStore::default();
    let tracker = Tracker::new(
        "test-stream",
        store.clone(),
        &settings(0, Duration::ZERO),
        None,
    )
    .start();
    tracker
        .send(Processed {
            offset: 41,
            count: 1,
        })
        .await
        .unwrap();
    *store.failures.borrow_mut() = 2;
    assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), Some(41));
    assert_eq!(*store.inner.stored.borrow(), vec![41]);
    assert_eq!(tracker.send(GetStats).await.unwrap().store_errors, 2);
}
