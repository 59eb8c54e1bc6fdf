//! `consumer offsets show|set`: what `kafka-consumer-groups --describe / --reset-offsets` is for
//! Kafka users — read a consumer's stored offset with the stream's bounds, or store a new one.
//! On a super stream (`stream.partitions`), each partition's. With `tracker.store = "sqlite"`,
//! the offset the consumer resumes from is the SQLite database's: that is the one shown and set
//! (and the broker's is kept the same, for other tools).

use std::time::Duration;

use rabbitmq_stream_client::Client;
use shared::config::{OffsetStoreKind, Settings};
use shared::error::{describe_client_error, Error, Result};
use shared::offset_spec::show_offset;
use shared::{connection, OffsetSpec};
use tracker::Database;

use crate::consume::Reader;

/// How long to wait for the broker to deliver from a position before calling the stream empty there.
const READ_WAIT: Duration = Duration::from_secs(2);

/// Where `offsets set --to` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This offset.
    Offset(u64),
    /// The stream's last message: skip the backlog.
    Last,
    /// The offset before the first message the broker delivers for this time (epoch ms).
    Timestamp(i64),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.parse::<OffsetSpec>() {
            Ok(OffsetSpec::Offset(n)) => Ok(Target::Offset(n)),
            Ok(OffsetSpec::Last) => Ok(Target::Last),
            Ok(OffsetSpec::Timestamp(ms)) => Ok(Target::Timestamp(ms)),
            _ => Err(format!(
                "`{text}` is not a target: expected an offset, last, or timestamp:<RFC 3339>"
            )),
        }
    }
}

/// The stream's first and last message offsets (`None`: no message).
struct Bounds {
    first: Option<u64>,
    last: Option<u64>,
}

struct Admin {
    /// Reads the stream's bounds on the consumer's own delivery path.
    reader_broker: shared::config::BrokerSettings,
    reader_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    client: Client,
    /// The plain stream, or the super stream's partitions.
    streams: Vec<String>,
    consumer: String,
    partitioned: bool,
    /// With `tracker.store = "sqlite"`: the database the consumer resumes from.
    sqlite: Option<std::path::PathBuf>,
}

impl Admin {
    async fn connect(settings: &Settings) -> Result<Self> {
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
            reader_broker: settings.broker.clone(),
            reader_tls: connection::rustls_client_config_of(&settings.broker)?,
            client,
            streams,
            consumer: settings.consumer.name.clone(),
            partitioned,
            sqlite: (settings.tracker.store == OffsetStoreKind::Sqlite)
                .then(|| settings.tracker.sqlite_path.clone()),
        })
    }

    async fn delivered_from(
        &self,
        stream: &str,
        position: OffsetSpec,
        to_end: bool,
    ) -> Result<Option<u64>> {
        let reader = Reader {
            broker: &self.reader_broker,
            tls: self.reader_tls.clone(),
            spread: 0,
        };
        reader
            .delivered_offset(stream, position, to_end, READ_WAIT)
            .await
    }

    async fn bounds(&self, stream: &str) -> Result<Bounds> {
        Ok(Bounds {
            first: self
                .delivered_from(stream, OffsetSpec::First, false)
                .await?,
            last: self.delivered_from(stream, OffsetSpec::Last, true).await?,
        })
    }

    /// The offset the consumer resumes after: SQLite's with `tracker.store = "sqlite"`.
    async fn stored(&self, stream: &str) -> Result<Option<u64>> {
        match self.database(stream)? {
            Some(database) => database.stored_offset(),
            None => self.broker_stored(stream).await,
        }
    }

    /// The offset the broker holds for the consumer.
    async fn broker_stored(&self, stream: &str) -> Result<Option<u64>> {
        connection::stored_offset(&self.client, &self.consumer, stream).await
    }

    /// The SQLite database of `stream`'s offset, with `tracker.store = "sqlite"`.
    fn database(&self, stream: &str) -> Result<Option<Database>> {
        self.sqlite
            .as_deref()
            .map(|path| Database::open(path, stream, &self.consumer))
            .transpose()
    }

    /// Where the offset the consumer resumes from is kept, for messages.
    fn kept_in(&self) -> String {
        self.sqlite.as_deref().map_or_else(
            || "on the broker".to_owned(),
            |path| format!("in SQLite {}", path.display()),
        )
    }

    async fn close(self) {
        connection::close_within("the admin connection", self.client.close()).await;
    }
}

/// `consumer offsets show`.
pub async fn show(settings: Settings) -> Result<()> {
    let admin = Admin::connect(&settings).await?;
    if admin.partitioned {
        println!(
            "super stream:   {} ({} partitions)",
            settings.stream.name,
            admin.streams.len()
        );
    }
    println!("consumer:       {}", admin.consumer);
    for stream in &admin.streams {
        let stored = admin.stored(stream).await?;
        let bounds = admin.bounds(stream).await?;
        if admin.partitioned {
            println!();
            println!("partition:      {stream}");
        } else {
            println!("stream:         {stream}");
        }
        if admin.sqlite.is_some() {
            println!(
                "kept:           {} (tracker.store = \"sqlite\"); the broker holds {}",
                admin.kept_in(),
                show_offset(admin.broker_stored(stream).await?)
            );
        }
        match stored {
            Some(offset) => println!(
                "stored offset:  {offset} (the next run starts at {})",
                offset + 1
            ),
            None => println!(
                "stored offset:  none (the next run starts at the configured position: {})",
                settings.consumer.offset
            ),
        }
        println!("first offset:   {}", show_offset(bounds.first));
        println!("last offset:    {}", show_offset(bounds.last));
        // Offsets also count the log's tracking entries: this is an upper bound on messages behind.
        match (stored, bounds.last) {
            (Some(stored), Some(last)) => println!(
                "lag:            {} offsets behind the last message",
                last.saturating_sub(stored)
            ),
            (None, Some(_)) => println!("lag:            unknown (nothing stored)"),
            (_, None) => println!("lag:            0 (the stream is empty)"),
        }
    }
    admin.close().await;
    Ok(())
}

/// `consumer offsets set --to TARGET`: on a super stream, `last` and a timestamp apply to each
/// partition; an offset number means nothing across partitions and is refused.
pub async fn set(settings: Settings, target: Target) -> Result<()> {
    let admin = Admin::connect(&settings).await?;
    if admin.partitioned {
        if let Target::Offset(n) = target {
            return Err(Error::Usage(format!(
                "--to {n}: offsets are per partition; on a super stream use --to last or \
                 --to timestamp:<RFC 3339>"
            )));
        }
    }
    for stream in &admin.streams {
        set_one(&admin, stream, target).await?;
    }
    admin.close().await;
    Ok(())
}

async fn set_one(admin: &Admin, stream: &str, target: Target) -> Result<()> {
    let bounds = admin.bounds(stream).await?;
    let Some(last) = bounds.last else {
        return Err(Error::Usage(format!(
            "stream '{stream}' is empty: there is nothing to skip to"
        )));
    };
    let offset = match target {
        Target::Offset(n) if n > last => {
            return Err(Error::Usage(format!(
                "offset {n} is past the end of stream '{stream}' (its last offset is {last})"
            )))
        }
        Target::Offset(n) => n,
        Target::Last => last,
        Target::Timestamp(ms) => {
            let first = admin
                .delivered_from(stream, OffsetSpec::Timestamp(ms), false)
                .await?
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "no message at or after that time in '{stream}': nothing to store"
                    ))
                })?;
            first.checked_sub(1).ok_or_else(|| {
                Error::Usage(
                    "that time is before the stream's first message, and RabbitMQ cannot store \
                     an offset before 0: run the consumer with --replay to start from the beginning"
                        .into(),
                )
            })?
        }
    };
    admin
        .client
        .store_offset(&admin.consumer, stream, offset)
        .await
        .map_err(|err| Error::StoreOffset {
            consumer: admin.consumer.clone(),
            stream: stream.to_owned(),
            offset,
            reason: describe_client_error(&err),
            source: Some(Box::new(err)),
        })?;
    // The store has no reply: read it back on the same connection to be sure it was taken.
    let on_broker = admin.broker_stored(stream).await?;
    if on_broker != Some(offset) {
        return Err(Error::Internal(format!(
            "stored {offset}, but the broker holds {}",
            show_offset(on_broker)
        )));
    }
    // With SQLite, the consumer resumes from there: that is the store that counts.
    if let Some(database) = admin.database(stream)? {
        database.store_offset(offset)?;
        let stored = database.stored_offset()?;
        if stored != Some(offset) {
            return Err(Error::Internal(format!(
                "stored {offset}, but SQLite holds {}",
                show_offset(stored)
            )));
        }
    }
    println!(
        "stored offset {offset} for consumer '{}' on stream '{stream}' {}: the next run starts \
         at {}",
        admin.consumer,
        admin.kept_in(),
        offset + 1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("17".parse(), Ok(Target::Offset(17)));
        assert_eq!("last".parse(), Ok(Target::Last));
        assert_eq!(
            "timestamp:1970-01-01T00:00:01Z".parse(),
            Ok(Target::Timestamp(1000))
        );
        assert!("first".parse::<Target>().is_err());
        assert!("next".parse::<Target>().is_err());
    }
}
