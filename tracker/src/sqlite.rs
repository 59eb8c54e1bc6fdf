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
                .prepare_cached("INSERT INTO messages (stream, offset, body) VALUES (?1, ?2, ?3)")
                .map_err(|e| Error::Database(format!("SQLite: {e}")))?;
            for (offset, body) in messages {
                insert
                    .execute(params![self.stream, offset as i64, body])
                    .map_err(|e| {
                        Error::Database(format!("SQLite: cannot insert a message: {e}"))
                    })?;
            }
        }
        upsert_offset(&transaction, &self.stream, &self.consumer, last_offset)
            .map_err(|e| Error::Database(format!("SQLite: cannot store the offset: {e}")))?;
        transaction
            .commit()
            .map_err(|e| Error::Database(format!("SQLite: cannot commit: {e}")))
    }
}

fn upsert_offset(
    connection: &Connection,
    stream: &str,
    consumer: &str,
    offset: u64,
) -> rusqlite::Result<()> {
    connection
        .execute(
            "INSERT INTO offsets (stream, consumer, offset) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream, consumer) DO UPDATE SET offset = excluded.offset",
            params![stream, consumer, offset as i64],
        )
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
}
