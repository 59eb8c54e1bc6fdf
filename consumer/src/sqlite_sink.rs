//! The SQLite sink (`[consumer] sink = "sqlite"`): the tutorial's processing, plus each processed
//! batch inserted into the table `messages` with the batch's last offset into `offsets`, in one
//! transaction. A crash either keeps both or neither, and the next run resumes from the offset in
//! the same database: every message lands exactly once.
//!
//! The transactions run on a writer thread of their own (`sqlite_writer.rs`), a few batches
//! behind the consumer; nothing relies on them before they commit: the broker's copy of the
//! offset waits for SQLite (`tracker::CommittedThenBroker`), and the batch with the marker — the
//! end of the run — returns only once everything before it is committed.

use shared::error::Result;
use tracker::Database;

use crate::handler::{Delivery, Handled, Handler, TutorialHandler};
use crate::sqlite_writer::{Rows, Writer};

/// See the module documentation.
pub struct SqliteSink {
    writer: Writer,
    tutorial: TutorialHandler,
    /// The offset of the last batch handed to the writer.
    last_submitted: Option<u64>,
}

impl SqliteSink {
    /// A sink writing to `database` (from a thread of its own, started here).
    pub fn new(database: Database) -> Result<Self> {
        Ok(Self {
            writer: Writer::start(database)?,
            tutorial: TutorialHandler::default(),
            last_submitted: None,
        })
    }
}

impl Handler for SqliteSink {
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
        let handled = self.tutorial.handle(deliveries)?;
        let processed = &deliveries[..handled.processed.min(deliveries.len())];
        if let Some(last) = processed.last() {
            self.writer.submit(Rows::of(processed))?;
            self.last_submitted = Some(last.offset());
        }
        if handled.stop {
            // The run ends here: it succeeds only if everything is in the database.
            if let Some(last) = self.last_submitted {
                self.writer.wait_committed(last)?;
            }
        }
        Ok(handled)
    }

    fn stopped(&mut self) {
        if let Some(last) = self.last_submitted {
            if let Err(err) = self.writer.wait_committed(last) {
                tracing::error!("{err}");
            }
        }
        self.tutorial.stopped();
    }
}
