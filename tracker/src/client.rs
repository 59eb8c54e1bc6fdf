//! The tracker as the code that processes messages sees it: a [`TrackerClient`] that reports
//! processed work without ever waiting (coalescing what the bounded mailbox cannot take), keeps the
//! crash bound (how far processing may run ahead of the last store), and flushes. The bookkeeping
//! lives here, beside the actor it talks to, so that whoever processes — the consumer actor
//! inline, or the parallel processing stage — does none of it.

use actix::prelude::*;
use shared::error::{Error, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[cfg(doc)]
use crate::actor::Tracker;
use crate::actor::{Flush, Processed, StoredProgress};

/// Reports, waits and flushes on behalf of one processor of one stream. Not `Clone`: reports are
/// coalesced in it, so there is one per stream; [`TrackerClient::flusher`] hands out what a second
/// party (a shutdown path) needs.
pub struct TrackerClient {
    processed: Recipient<Processed>,
    flush: Recipient<Flush>,
    stored: watch::Receiver<StoredProgress>,
    /// A report the full mailbox did not take, merged into the next.
    unreported: Option<Processed>,
    /// Messages reported processed in all (whether delivered to the tracker yet or not).
    reported: u64,
    /// Processed messages allowed beyond the last store (`None`: no count trigger, no bound).
    bound: Option<u64>,
}

/// What a second party needs to flush the tracker: cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    flush: Recipient<Flush>,
}

impl Flusher {
    /// Stores the newest processed offset and confirms it (see [`Flush`]).
    pub async fn flush(&self) -> Result<Option<u64>> {
        self.flush
            .send(Flush)
            .await
            .map_err(|_| Error::Internal("the tracker stopped".into()))?
    }
}

impl TrackerClient {
    /// A client of the tracker behind `processed` and `flush` (a [`Tracker`]'s address, or test
    /// doubles), reading its progress from `stored` ([`Tracker::stored_progress`]) and keeping
    /// processed-but-unstored messages within `bound` (`store_every_messages` plus one batch;
    /// `None` when the count trigger is off).
    pub fn new(
        processed: Recipient<Processed>,
        flush: Recipient<Flush>,
        stored: watch::Receiver<StoredProgress>,
        bound: Option<u64>,
    ) -> Self {
        Self {
            processed,
            flush,
            stored,
            unreported: None,
            reported: 0,
            bound,
        }
    }

    /// A handle that can flush this tracker from elsewhere.
    pub fn flusher(&self) -> Flusher {
        Flusher {
            flush: self.flush.clone(),
        }
    }

    /// `count` messages up to `offset` are processed: hands that to the tracker without waiting.
    /// A full mailbox keeps the report here, merged into the next one.
    pub fn report(&mut self, offset: u64, count: u64) -> Result<()> {
        self.reported += count;
        let count = count + self.unreported.take().map_or(0, |earlier| earlier.count);
        match self.processed.try_send(Processed { offset, count }) {
            Ok(()) => Ok(()),
            Err(SendError::Full(report)) => {
                self.unreported = Some(report);
                Ok(())
            }
            Err(SendError::Closed(_)) => Err(Error::Internal("the tracker stopped".into())),
        }
    }

    /// Processed messages not yet covered by a store.
    pub fn ahead_of_store(&self) -> u64 {
        self.reported.saturating_sub(self.stored.borrow().processed)
    }

    /// Whether `more` messages may be processed now without exceeding the crash bound.
    pub fn has_room_for(&self, more: u64) -> bool {
        self.bound
            .is_none_or(|bound| self.ahead_of_store().saturating_add(more) <= bound)
    }

    /// Resolves once `more` messages fit within the crash bound (`true`), or when `shutdown` is
    /// cancelled first (`false`). Hands the kept report over first, so the tracker can store it.
    pub fn room_for(
        &mut self,
        more: u64,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = bool> + 'static {
        let pending = self.unreported.take();
        let processed = self.processed.clone();
        let mut stored = self.stored.clone();
        let reported = self.reported;
        let bound = self.bound;
        async move {
            if let Some(report) = pending {
                let _ = processed.send(report).await;
            }
            let Some(bound) = bound else {
                return true;
            };
            tokio::select! {
                fits = stored.wait_for(|s| reported.saturating_sub(s.processed).saturating_add(more) <= bound) => fits.is_ok(),
                _ = shutdown.cancelled() => false,
            }
        }
    }

    /// Delivers the kept report, if any, waiting for room in the mailbox.
    pub fn deliver_pending(&mut self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let pending = self.unreported.take();
        let processed = self.processed.clone();
        async move {
            if let Some(report) = pending {
                processed
                    .send(report)
                    .await
                    .map_err(|_| Error::Internal("the tracker stopped".into()))?;
            }
            Ok(())
        }
    }

    /// Delivers the kept report, then stores the newest processed offset and confirms it.
    pub fn flush(&mut self) -> impl std::future::Future<Output = Result<Option<u64>>> + 'static {
        let pending = self.deliver_pending();
        let flusher = self.flusher();
        async move {
            pending.await?;
            flusher.flush().await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// A tracker double with a one-message mailbox that sits on each report for a while, so
    /// that reports pile up; it records what reaches it.
    struct SlowTracker {
        seen: Arc<Mutex<Vec<Processed>>>,
    }

    impl Actor for SlowTracker {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(1);
        }
    }

    impl Handler<Processed> for SlowTracker {
        type Result = ();
        fn handle(&mut self, report: Processed, ctx: &mut Context<Self>) {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(report);
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(
                Duration::from_millis(50),
            )));
        }
    }

    impl Handler<Flush> for SlowTracker {
        type Result = Result<Option<u64>>;
        fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            Ok(seen.last().map(|r| r.offset))
        }
    }

    fn client(
        bound: Option<u64>,
    ) -> (
        TrackerClient,
        Arc<Mutex<Vec<Processed>>>,
        watch::Sender<StoredProgress>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tracker = SlowTracker { seen: seen.clone() }.start();
        let (stored_tx, stored) = watch::channel(StoredProgress::default());
        let client = TrackerClient::new(
            tracker.clone().recipient(),
            tracker.recipient(),
            stored,
            bound,
        );
        (client, seen, stored_tx)
    }

    #[actix_rt::test]
    async fn reports_a_full_mailbox_refuses_are_merged_never_lost_and_never_waited_for() {
        let (mut client, seen, _stored) = client(None);
        let began = std::time::Instant::now();
        for offset in 0..20u64 {
            client.report(offset * 2, 1).unwrap();
        }
        assert!(
            began.elapsed() < Duration::from_millis(40),
            "report must not wait"
        );
        let flushed = client.flush().await.unwrap();
        assert_eq!(flushed, Some(38), "the newest offset reaches the tracker");
        let seen = seen.lock().unwrap().clone();
        assert!(seen.len() < 20, "some reports were merged: {seen:?}");
        assert_eq!(
            seen.iter().map(|r| r.count).sum::<u64>(),
            20,
            "no message uncounted"
        );
        assert!(seen.windows(2).all(|w| w[0].offset < w[1].offset));
    }

    #[actix_rt::test]
    async fn the_crash_bound_waits_for_a_store_and_gives_way_to_shutdown() {
        let (mut client, _seen, stored) = client(Some(10));
        client.report(9, 8).unwrap();
        assert!(client.has_room_for(2));
        assert!(!client.has_room_for(3));
        let shutdown = CancellationToken::new();
        let room = tokio::spawn(client.room_for(3, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!room.is_finished(), "must wait while over the bound");
        stored.send_replace(StoredProgress {
            offset: Some(9),
            processed: 8,
        });
        assert!(room.await.unwrap(), "a store makes room");
        client.report(20, 10).unwrap();
        let waiting = tokio::spawn(client.room_for(1, shutdown.clone()));
        shutdown.cancel();
        assert!(!waiting.await.unwrap(), "shutdown ends the wait");
    }
}
