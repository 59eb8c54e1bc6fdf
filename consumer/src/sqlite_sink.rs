//! The SQLite sink (`[consumer] sink = "sqlite"`): the tutorial's processing, plus each processed
//! batch inserted into the table `messages` with the batch's last offset into `offsets`, in one
//! transaction. A crash either keeps both or neither, and the next run resumes from the offset in
//! the same database: every message lands exactly once.

use shared::error::Result;
use tracker::Database;

use crate::handler::{Delivery, Handled, Handler, TutorialHandler};

/// See the module documentation.
pub struct SqliteSink {
    database: Database,
    tutorial: TutorialHandler,
}

impl SqliteSink {
    /// A sink writing to `database`.
    pub fn new(database: Database) -> Self {
        Self {
            database,
            tutorial: TutorialHandler::default(),
        }
    }
}

impl Handler for SqliteSink {
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
        let handled = self.tutorial.handle(deliveries)?;
        let processed = &deliveries[..handled.processed.min(deliveries.len())];
        if let Some(last) = processed.last() {
            let rows = processed
                .iter()
                .map(|delivery| (delivery.offset(), delivery.message().data()));
            self.database.write_batch(rows, last.offset())?;
        }
        Ok(handled)
    }

    fn stopped(&mut self) {
        self.tutorial.stopped();
    }
}
