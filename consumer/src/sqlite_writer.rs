//! The SQLite sink's writer: a thread of its own that owns the database and commits the batches
//! the consumer hands it, so that SQLite's work (about half the consumer's CPU with the sink)
//! overlaps with taking the next deliveries instead of running inline on the consumer's actor.
//!
//! - Each transaction holds whole batches, in stream order, and the offset of the last one: rows
//!   and offset commit together or not at all, as before. Batches that queued up while a
//!   transaction ran go into the next one together (up to [`MAX_ROWS_PER_TRANSACTION`]), so a
//!   busy writer commits less often.
//! - The queue is bounded ([`QUEUE_BATCHES`]): a consumer that outruns the writer blocks on it.
//! - What is committed is published ([`Writer::wait_committed`]); the tracker's store for the
//!   sink ([`tracker::CommittedThenBroker`]) reads the committed offset from the database and
//!   never stores more on the broker. A failure (or a panic) stops the writer; the next call
//!   fails with its error.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use shared::error::{Error, Result};
use tracker::Database;

use crate::handler::Delivery;

/// Batches waiting for the writer before the consumer blocks (each at most the consumer's
/// `MAX_BATCH` of 512 messages).
const QUEUE_BATCHES: usize = 16;

/// Most rows one transaction takes from the queue.
const MAX_ROWS_PER_TRANSACTION: usize = 16_384;

/// One batch, in stream order: each row's offset and where its body is in `bodies` (`None`: no
/// body). The bodies are copied out of the deliveries on the consumer's side, so that the
/// decoded messages are freed there and the writer only writes.
#[derive(Default)]
pub(crate) struct Rows {
    rows: Vec<(u64, Option<Range<usize>>)>,
    bodies: Vec<u8>,
}

impl Rows {
    /// The rows of `deliveries`.
    pub(crate) fn of(deliveries: &[Delivery]) -> Self {
        let mut batch = Self {
            rows: Vec::with_capacity(deliveries.len()),
            bodies: Vec::new(),
        };
        for delivery in deliveries {
            let body = delivery.message().data().map(|body| {
                let start = batch.bodies.len();
                batch.bodies.extend_from_slice(body);
                start..batch.bodies.len()
            });
            batch.rows.push((delivery.offset(), body));
        }
        batch
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn last_offset(&self) -> Option<u64> {
        self.rows.last().map(|(offset, _)| *offset)
    }

    fn iter(&self) -> impl Iterator<Item = (u64, Option<&[u8]>)> {
        self.rows.iter().map(|(offset, body)| {
            let body = body
                .as_ref()
                .and_then(|range| self.bodies.get(range.clone()));
            (*offset, body)
        })
    }
}

/// What the writer has done, shared with the consumer's side.
#[derive(Default)]
struct Progress {
    /// The offset of the last committed batch.
    committed: Option<u64>,
    /// Why the writer stopped, if it failed (taken by the first caller that sees it).
    failure: Option<Error>,
    /// The writer stopped (failed, or its queue closed).
    stopped: bool,
}

type Shared = Arc<(Mutex<Progress>, Condvar)>;

/// The consumer's side of the writer thread.
pub(crate) struct Writer {
    queue: Option<SyncSender<Rows>>,
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `database`.
    pub(crate) fn start(database: Database) -> Result<Self> {
        let (queue, batches) = sync_channel(QUEUE_BATCHES);
        let shared: Shared = Arc::default();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write(database, &batches, &shared)
            })
            .map_err(|e| Error::Internal(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(Self {
            queue: Some(queue),
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `rows` (not empty) for the next transaction; blocks while the queue is full.
    pub(crate) fn submit(&mut self, rows: Rows) -> Result<()> {
        self.check()?;
        let sent = match &self.queue {
            Some(queue) => queue.send(rows).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The writer hung up: it failed.
            Err(self.failure())
        }
    }

    /// Waits until the writer committed `offset` (or later), or failed.
    pub(crate) fn wait_committed(&mut self, offset: u64) -> Result<()> {
        let (lock, changed) = &*self.shared;
        let mut progress = lock_progress(lock);
        while progress.committed.is_none_or(|c| c < offset) && !progress.stopped {
            progress = changed
                .wait(progress)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if progress.committed.is_some_and(|c| c >= offset) {
            return Ok(());
        }
        drop(progress);
        Err(self.failure())
    }

    /// The writer's failure, if it failed.
    fn check(&mut self) -> Result<()> {
        let (lock, _) = &*self.shared;
        if lock_progress(lock).stopped {
            return Err(self.failure());
        }
        Ok(())
    }

    fn failure(&mut self) -> Error {
        let (lock, _) = &*self.shared;
        lock_progress(lock).failure.take().unwrap_or_else(|| {
            Error::Database("SQLite: the writer stopped after an earlier error".into())
        })
    }
}

impl Drop for Writer {
    /// Lets the writer commit what is queued, then waits for it: a clean stop leaves nothing
    /// processed uncommitted.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock_progress(lock: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    // A panic on the writer thread cannot leave the progress half-updated: use it as it is.
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks the writer stopped when its thread ends, however it ends (a panic too), so that no one
/// waits for it for ever.
struct StopsOnExit<'a>(&'a Shared);

impl Drop for StopsOnExit<'_> {
    fn drop(&mut self) {
        let (lock, changed) = &**self.0;
        lock_progress(lock).stopped = true;
        changed.notify_all();
    }
}

/// The writer thread: a transaction per queued batch, or per run of batches that queued up.
fn write(mut database: Database, batches: &Receiver<Rows>, shared: &Shared) {
    let _stops = StopsOnExit(shared);
    let (lock, changed) = &**shared;
    let mut pending: Vec<Rows> = Vec::new();
    while let Ok(first) = batches.recv() {
        let mut rows = first.len();
        pending.push(first);
        while rows < MAX_ROWS_PER_TRANSACTION {
            match batches.try_recv() {
                Ok(batch) => {
                    rows += batch.len();
                    pending.push(batch);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let last = pending.iter().rev().find_map(Rows::last_offset);
        let Some(last) = last else {
            pending.clear();
            continue;
        };
        let written = database.write_batch(pending.iter().flat_map(Rows::iter), last);
        pending.clear();
        let mut progress = lock_progress(lock);
        match written {
            Ok(()) => progress.committed = Some(last),
            Err(err) => {
                // `_stops` marks the writer stopped and wakes the waiters.
                progress.failure = Some(err);
                return;
            }
        }
        drop(progress);
        changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::handler::Message;

    fn delivery(offset: u64, body: Option<&str>) -> Delivery {
        let message = match body {
            Some(body) => Message::builder().body(body).build(),
            None => Message::builder().build(),
        };
        Delivery::new(offset, 0, message)
    }

    #[test]
    fn every_submitted_row_is_committed_once_with_the_last_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.sqlite");
        let mut writer = Writer::start(Database::open(&path, "s", "c").unwrap()).unwrap();
        // Offsets with gaps, as in a stream; some bodies missing.
        let mut offset = 0;
        for batch in 0..100 {
            let deliveries: Vec<Delivery> = (0..50)
                .map(|i| {
                    offset += 1 + i % 3;
                    let body = format!("b{offset}");
                    delivery(offset, (batch % 7 != 0).then_some(body.as_str()))
                })
                .collect();
            writer.submit(Rows::of(&deliveries)).unwrap();
        }
        writer.wait_committed(offset).unwrap();
        drop(writer);
        let db = rusqlite::Connection::open(&path).unwrap();
        let (rows, distinct, nulls): (i64, i64, i64) = db
            .query_row(
                "SELECT count(*), count(DISTINCT offset), count(*) - count(body) FROM messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((rows, distinct, nulls), (5000, 5000, 15 * 50));
        let body: Vec<u8> = db
            .query_row(
                "SELECT body FROM messages WHERE offset = ?1",
                [offset as i64],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(body, format!("b{offset}").into_bytes());
        let stored: i64 = db
            .query_row("SELECT offset FROM offsets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored as u64, offset);
    }
}
