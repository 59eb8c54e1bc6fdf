//! The connection `consumer offsets` works over, and the offsets it reads and writes: in the store
//! the consumer resumes from (`tracker.store`: the broker, or the SQLite database), for each
//! consumer name asked and each stream (the plain stream, or a super stream's partitions).

use std::path::PathBuf;
use std::sync::Arc;

use rabbitmq_stream_client::Client;
use shared::config::{OffsetStoreKind, Settings};
use shared::connection;
use shared::error::{describe_client_error, Error, Result};
use shared::offset_spec::show_offset;
use tracker::Database;

use super::scan::Scanner;
use crate::consume::Reader;

pub(super) struct Admin {
    pub(super) settings: Settings,
    client: Client,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The plain stream, or the super stream's partitions.
    pub(super) streams: Vec<String>,
    /// Whether `stream.name` is a super stream.
    pub(super) partitioned: bool,
    /// With `tracker.store = "sqlite"`: the database the consumer resumes from.
    sqlite: Option<PathBuf>,
}

impl Admin {
    /// Connects and finds the streams; an unknown stream is a usage error (exit 2).
    pub(super) async fn connect(settings: Settings) -> Result<Self> {
        let name = settings.stream.name.clone();
        let client = connection::client(&settings.broker, "consumer offsets").await?;
        let partitioned = settings.stream.partitions > 0;
        let streams = if partitioned {
            connection::partitions(&client, &name)
                .await?
                .ok_or_else(|| Error::Usage(format!("super stream '{name}' does not exist")))?
        } else {
            if !connection::stream_exists(&client, &name).await? {
                return Err(Error::Usage(format!("stream '{name}' does not exist")));
            }
            vec![name]
        };
        Ok(Self {
            tls: connection::rustls_client_config_of(&settings.broker)?,
            sqlite: (settings.tracker.store == OffsetStoreKind::Sqlite)
                .then(|| settings.tracker.sqlite_path.clone()),
            settings,
            client,
            streams,
            partitioned,
        })
    }

    /// Reads streams on the delivery path.
    pub(super) fn scanner(&self) -> Scanner<'_> {
        Scanner {
            broker: &self.settings.broker,
            tls: self.tls.clone(),
        }
    }

    /// Opens subscriptions as the consumer does (its node choice), for the broker's answer to a
    /// position such as a timestamp.
    pub(super) fn reader(&self) -> Reader<'_> {
        Reader {
            broker: &self.settings.broker,
            tls: self.tls.clone(),
            spread: 0,
        }
    }

    /// Whether the consumer resumes from SQLite (`tracker.store = "sqlite"`).
    pub(super) fn uses_sqlite(&self) -> bool {
        self.sqlite.is_some()
    }

    /// `"broker"` or `"sqlite"`: where the consumer resumes from, for output.
    pub(super) fn store_kind(&self) -> &'static str {
        if self.uses_sqlite() {
            "sqlite"
        } else {
            "broker"
        }
    }

    /// Where the offset the consumer resumes from is kept, in words.
    pub(super) fn kept_in(&self) -> String {
        self.sqlite.as_deref().map_or_else(
            || "on the broker".to_owned(),
            |path| format!("in SQLite {}", path.display()),
        )
    }

    /// The offset `name` resumes after on `stream`, from the store it resumes from.
    pub(super) async fn stored(&self, name: &str, stream: &str) -> Result<Option<u64>> {
        match &self.sqlite {
            Some(path) if !path.exists() => Ok(None),
            Some(path) => Database::open(path, stream, name)?.stored_offset(),
            None => self.broker_stored(name, stream).await,
        }
    }

    /// The offset the broker holds for `name` on `stream`.
    pub(super) async fn broker_stored(&self, name: &str, stream: &str) -> Result<Option<u64>> {
        connection::stored_offset(&self.client, name, stream).await
    }

    /// Stores `offset` for `name` on `stream` and reads it back: on the broker always (other
    /// tools read it there), and in SQLite with `tracker.store = "sqlite"` (what the consumer
    /// resumes from).
    pub(super) async fn store(&self, name: &str, stream: &str, offset: u64) -> Result<()> {
        self.client
            .store_offset(name, stream, offset)
            .await
            .map_err(|err| Error::StoreOffset {
                consumer: name.to_owned(),
                stream: stream.to_owned(),
                offset,
                reason: describe_client_error(&err),
                source: Some(Box::new(err)),
            })?;
        // The store has no reply: read it back on the same connection to be sure it was taken.
        let on_broker = self.broker_stored(name, stream).await?;
        if on_broker != Some(offset) {
            return Err(Error::Internal(format!(
                "stored {offset} for '{name}' on '{stream}', but the broker holds {}",
                show_offset(on_broker)
            )));
        }
        if let Some(path) = &self.sqlite {
            let database = Database::open(path, stream, name)?;
            database.store_offset(offset)?;
            let stored = database.stored_offset()?;
            if stored != Some(offset) {
                return Err(Error::Internal(format!(
                    "stored {offset}, but SQLite holds {}",
                    show_offset(stored)
                )));
            }
        }
        Ok(())
    }

    /// With the SQLite store: removes `name`'s offset on `stream`, so that its next run starts
    /// at `consumer.offset` — how "before the first message" is said when that message is at 0
    /// (no store can hold an offset below 0). `false` with the broker store: it cannot forget.
    pub(super) fn forget(&self, name: &str, stream: &str) -> Result<bool> {
        let Some(path) = &self.sqlite else {
            return Ok(false);
        };
        // Opening through the tracker checks that the database belongs to this name and stream.
        Database::open(path, stream, name)?.forget_offset()?;
        Ok(true)
    }

    pub(super) async fn close(self) {
        connection::close_within("the admin connection", self.client.close()).await;
    }
}
