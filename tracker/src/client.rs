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

    /// What the tracker has stored so far.
    pub fn stored(&self) -> StoredProgress {
        *self.stored.borrow()
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
