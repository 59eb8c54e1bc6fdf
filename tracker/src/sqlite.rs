//! Offsets (and, with the SQLite sink, processed messages) kept in the application's own SQLite
//! database, so that an effect and its offset commit in one transaction.
//!
//! Tables: `owner` (the one stream and consumer this database belongs to), `offsets` (`stream`,
//! `consumer`, `offset`: the last processed offset), `messages` (`stream`, `offset`, `body`: what
//! the SQLite sink wrote; no uniqueness constraint on `offset`, so a duplicate would be visible).
//! WAL journal with `synchronous = NORMAL`: a commit survives a crash of the process (it is in the
//! WAL before `commit` returns), not necessarily a power cut.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use rusqlite::{params, Connection, OptionalExtension};
use shared::error::{Error, Result};

use crate::store::OffsetStore;

/// How long a write waits for a lock another process holds before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates `path` readable and writable by its owner only (0600) when it does not exist yet: it
/// holds message bodies. SQLite gives its WAL and shared-memory files the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// An open offsets database for one stream and consumer.
pub struct Database {
    connection: Connection,
    path: PathBuf,
    stream: String,
    consumer: String,
}

impl Database {
    /// Opens (creating if needed) the database at `path` for `consumer` on `stream`. A file that
    /// is not a database, or one that belongs to another stream or consumer, is an error.
    pub fn open(path: &Path, stream: &str, consumer: &str) -> Result<Self> {
        let fail = |what: &str, err: rusqlite::Error| {
            Error::Config(format!(
                "tracker.sqlite_path: cannot {what} {}: {err}",
                path.display()
            ))
        };
        create_private(path).map_err(|e| {
            Error::Config(format!(
                "tracker.sqlite_path: cannot create {}: {e}",
                path.display()
            ))
        })?;
        let connection = Connection::open(path).map_err(|e| fail("open", e))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail("configure", e))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 10000;
                 PRAGMA cache_size = -16384;
                 CREATE TABLE IF NOT EXISTS owner (stream TEXT NOT NULL, consumer TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS offsets (
                     stream TEXT NOT NULL, consumer TEXT NOT NULL, offset INTEGER NOT NULL,
                     PRIMARY KEY (stream, consumer));
                 CREATE TABLE IF NOT EXISTS messages (
                     stream TEXT NOT NULL, offset INTEGER NOT NULL, body BLOB);",
            )
            .map_err(|e| fail("use", e))?;
        let owner: Option<(String, String)> = connection
            .query_row("SELECT stream, consumer FROM owner", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| fail("read", e))?;
        match owner {
            None => {
                connection
                    .execute(
                        "INSERT INTO owner (stream, consumer) VALUES (?1, ?2)",
                        params![stream, consumer],
                    )
                    .map_err(|e| fail("write", e))?;
            }
            Some((s, c)) if s == stream && c == consumer => {}
            Some((s, c)) => {
                return Err(Error::Config(format!(
                    "tracker.sqlite_path: {} belongs to consumer '{c}' on stream '{s}', not '{consumer}' on '{stream}'",
                    path.display()
                )))
            }
        }
        Ok(Self {
            connection,
            path: path.to_path_buf(),
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
        })
    }

    fn runtime_error(&self, what: &str, err: rusqlite::Error) -> Error {
        Error::Database(format!(
            "SQLite database {}: cannot {what}: {err}",
            self.path.display()
        ))
    }

    /// The last processed offset stored here, if any.
    pub fn stored_offset(&self) -> Result<Option<u64>> {
        self.connection
            .query_row(
                "SELECT offset FROM offsets WHERE stream = ?1 AND consumer = ?2",
                params![self.stream, self.consumer],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|offset| offset.map(|o| o as u64))
            .map_err(|e| self.runtime_error("read the stored offset", e))
    }

    /// Stores `offset` as the last processed one.
    pub fn store_offset(&self, offset: u64) -> Result<()> {
        upsert_offset(&self.connection, &self.stream, &self.consumer, offset)
            .map_err(|e| self.runtime_error("store the offset", e))
    }

    /// Removes the stored offset, so that the next run starts at `consumer.offset` (how "before
    /// the first message" is said when that message is at 0: no store holds an offset below 0).
    pub fn forget_offset(&self) -> Result<()> {
        self.connection
            .execute(
                "DELETE FROM offsets WHERE stream = ?1 AND consumer = ?2",
                params![self.stream, self.consumer],
            )
            .map(|_| ())
            .map_err(|e| self.runtime_error("remove the offset", e))
    }

    /// Inserts processed messages (offset, body) and the batch's last offset in one transaction:
    /// both or neither.
    pub fn write_batch<'a>(
        &mut self,
        messages: impl Iterator<Item = (u64, Option<&'a [u8]>)>,
        last_offset: u64,
    ) -> Result<()> {
        let transaction = self
            .connection
            .transaction()
            .map_err(|e| Error::Database(format!("SQLite: cannot begin a transaction: {e}")))?;
        {
            let mut insert = transaction
                .prepare_cached(INSERT_MESSAGE)
                .map_err(|e| Error::Database(format!("SQLite: {e}")))?;
            let insert_error = |e: rusqlite::Error| {
                Error::Database(format!("SQLite: cannot insert a message: {e}"))
            };
            // The stream is the same for every row: bound once per transaction (SQLite keeps a
            // binding across executions), so each row binds only its offset and body.
            insert
                .raw_bind_parameter(1, &self.stream)
                .map_err(insert_error)?;
            for (offset, body) in messages {
                insert
                    .raw_bind_parameter(2, offset as i64)
                    .map_err(insert_error)?;
                insert.raw_bind_parameter(3, body).map_err(insert_error)?;
                insert.raw_execute().map_err(insert_error)?;
            }
        }
        upsert_offset(&transaction, &self.stream, &self.consumer, last_offset)
            .map_err(|e| Error::Database(format!("SQLite: cannot store the offset: {e}")))?;
        transaction
            .commit()
            .map_err(|e| Error::Database(format!("SQLite: cannot commit: {e}")))
    }

    /// Where this database is (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

const INSERT_MESSAGE: &str = "INSERT INTO messages (stream, offset, body) VALUES (?1, ?2, ?3)";

fn upsert_offset(
    connection: &Connection,
    stream: &str,
    consumer: &str,
    offset: u64,
) -> rusqlite::Result<()> {
    // Cached: parsed once per connection, not once per transaction.
    connection
        .prepare_cached(
            "INSERT INTO offsets (stream, consumer, offset) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream, consumer) DO UPDATE SET offset = excluded.offset",
        )?
        .execute(params![stream, consumer, offset as i64])
        .map(|_| ())
}

/// The tracker's store for `store = "sqlite"` with the tutorial's handler: writes the offset to
/// SQLite, then to the broker (so that admin tools see progress; resuming reads SQLite only).
pub struct SqliteThenBroker<B: OffsetStore> {
    database: Rc<RefCell<Database>>,
    broker: B,
}

impl<B: OffsetStore> SqliteThenBroker<B> {
    /// Stores in `database`, then in `broker`.
    pub fn new(database: Database, broker: B) -> Self {
        Self {
            database: Rc::new(RefCell::new(database)),
            broker,
        }
    }
}

impl<B: OffsetStore> OffsetStore for SqliteThenBroker<B> {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        if let Err(err) = self.database.borrow().store_offset(offset) {
            return Box::pin(async move { Err(err) });
        }
        self.broker.store(offset)
    }

    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
        let stored = self.database.borrow().stored_offset();
        Box::pin(async move { stored })
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        self.broker.close()
    }
}

/// The tracker's store for the SQLite sink: the sink commits rows and offset in its own
/// transactions (on a writer thread, a little behind what the consumer reports processed), and
/// this stores on the broker (for admin tools) the offset asked for or, if SQLite has not
/// committed that far yet, what SQLite holds: the broker never shows progress the database has
/// not committed. It never waits for the writer: the consumer's crash bound waits on stores, and
/// a writer that failed must not hold the consumer up before it sees the failure. A flush
/// confirms by reading the broker back, so it retries until SQLite caught up. Queries read the
/// broker's offset.
pub struct CommittedThenBroker<B: OffsetStore> {
    database: Database,
    broker: B,
}

impl<B: OffsetStore> CommittedThenBroker<B> {
    /// Stores on `broker` what `database` (a connection of its own to the sink's database) holds.
    pub fn new(database: Database, broker: B) -> Self {
        Self { database, broker }
    }
}

impl<B: OffsetStore> OffsetStore for CommittedThenBroker<B> {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        let committed = match self.database.stored_offset() {
            Ok(committed) => committed,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        match committed.map(|committed| committed.min(offset)) {
            Some(offset) => self.broker.store(offset),
            // Nothing committed yet: nothing to show.
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
        self.broker.query()
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        self.broker.close()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_database_and_its_wal_are_private_to_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.sqlite");
        let database = Database::open(&path, "s", "c").unwrap();
        database.store_offset(41).unwrap();
        for file in [path.clone(), dir.path().join("offsets.sqlite-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
        }
        assert_eq!(database.stored_offset().unwrap(), Some(41));
    }

    #[test]
    fn a_forgotten_offset_is_gone_for_its_owner_and_a_stranger_cannot_forget_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.sqlite");
        let database = Database::open(&path, "s", "c").unwrap();
        database.store_offset(7).unwrap();
        let stranger = Database::open(&path, "s", "other");
        assert!(stranger.is_err(), "another consumer opened c's database");
        assert_eq!(database.stored_offset().unwrap(), Some(7));
        database.forget_offset().unwrap();
        assert_eq!(database.stored_offset().unwrap(), None);
        drop(database);
        let reopened = Database::open(&path, "s", "c").unwrap();
        assert_eq!(reopened.stored_offset().unwrap(), None);
    }

    /// Records what reaches the broker.
    #[derive(Default)]
    struct Recording(Rc<RefCell<Vec<u64>>>);

    impl OffsetStore for Recording {
        fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
            self.0.borrow_mut().push(offset);
            Box::pin(async { Ok(()) })
        }
        fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
            let last = self.0.borrow().last().copied();
            Box::pin(async move { Ok(last) })
        }
        fn close(&self) -> LocalBoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn the_broker_never_gets_ahead_of_what_sqlite_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.sqlite");
        let mut sink = Database::open(&path, "s", "c").unwrap();
        let broker = Recording::default();
        let stored = broker.0.clone();
        let gate = CommittedThenBroker::new(Database::open(&path, "s", "c").unwrap(), broker);
        // Nothing committed: nothing stored.
        gate.store(10).await.unwrap();
        assert!(stored.borrow().is_empty());
        sink.write_batch([(3, Some(&b"a"[..])), (7, None)].into_iter(), 7)
            .unwrap();
        // Reported 10, committed 7: the broker gets 7; then all of it once committed.
        gate.store(10).await.unwrap();
        sink.write_batch([(10, Some(&b"b"[..]))].into_iter(), 10)
            .unwrap();
        gate.store(10).await.unwrap();
        assert_eq!(*stored.borrow(), vec![7, 10]);
        assert_eq!(gate.query().await.unwrap(), Some(10));
    }
}
