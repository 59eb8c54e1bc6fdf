//! Before and while attaching: the streams to consume must exist — the consumer creates them
//! only when asked (`consumer.create_stream`, `--create-stream`), so a mistyped name is an error
//! rather than a new stream waited on for ever — and where the consumer attaches is said in
//! words when it waits at the end of the stream or on an empty one.

use std::time::Duration;

use rabbitmq_stream_client::{Client, Environment};
use shared::config::{Settings, StreamSettings};
use shared::connection;
use shared::error::{Error, Result};
use shared::OffsetSpec;

use crate::consume::Queries;

/// How long the end-of-stream probe waits for the last chunk of messages: it comes at once when
/// the stream holds any.
const END_PROBE_WAIT: Duration = Duration::from_millis(500);

/// The streams to consume (the plain stream, or the super stream's partitions in order): made
/// sure of as [`connection::ensure_stream`] does, which creates what is missing — but only with
/// `consumer.create_stream`; without it a missing stream or partition is an error (exit 2)
/// naming it and saying who creates it.
pub(crate) async fn streams_to_consume(
    environment: &Environment,
    settings: &Settings,
) -> Result<Vec<String>> {
    if !settings.consumer.create_stream {
        let admin = connection::client(&settings.broker, "stream check").await?;
        let missing = missing(&admin, &settings.stream).await;
        connection::close_within("a stream check connection", admin.close()).await;
        if let Some(what) = missing? {
            return Err(Error::Usage(not_there(&what, &settings.stream.name)));
        }
    }
    let ensured = connection::ensure_stream(environment, &settings.broker, &settings.stream).await;
    match ensured {
        // A partition of an existing super stream is missing (nothing was created).
        Err(Error::StreamNotFound { stream }) if !settings.consumer.create_stream => {
            Err(Error::Usage(not_there(
                &format!(
                    "the partition {stream} of super stream '{}' does not exist",
                    settings.stream.name
                ),
                &settings.stream.name,
            )))
        }
        other => other,
    }
}

/// What is missing of the configured stream, in words (`None`: nothing). A plain stream where a
/// super stream is configured, or the reverse, is left to [`connection::ensure_stream`], which
/// says so.
async fn missing(admin: &Client, stream: &StreamSettings) -> Result<Option<String>> {
    let name = stream.name.as_str();
    match connection::partitions(admin, name).await? {
        // Its partitions are checked by `ensure_stream`, a few per connection (the client panics
        // on one connection asked about many); a missing one is `StreamNotFound`.
        Some(_) => Ok(None),
        None if connection::stream_exists(admin, name).await? => Ok(None),
        None if stream.partitions > 0 => Ok(Some(format!("super stream '{name}' does not exist"))),
        None => Ok(Some(format!("stream '{name}' does not exist"))),
    }
}

/// The error message for a missing stream.
fn not_there(what: &str, name: &str) -> String {
    format!(
        "{what} on the broker (a typo?). The producer creates it (`producer --stream {name}`); \
         to create it from the consumer, pass --create-stream (consumer.create_stream = true)"
    )
}

/// Logs one line when the consumer attaches where it will wait rather than read: an empty
/// stream, or an offset at or past the end of the stream (`--offset 99999999`, or resuming
/// after the last message). Nothing when messages are there to read, or when the probe cannot
/// tell (it only informs: its failures are debug lines).
pub(crate) async fn say_where(queries: &Queries<'_>, stream: &str, position: OffsetSpec, on: &str) {
    let committed = match queries.committed_chunk_id(stream).await {
        Ok(committed) => committed,
        Err(err) => return tracing::debug!("{on}end-of-stream probe: {err}"),
    };
    if committed.is_none() {
        return tracing::info!("{on}the stream is empty; waiting for its first message");
    }
    let OffsetSpec::Offset(start) = position else {
        return;
    };
    // The last chunk may be a tracking entry (a stored offset): the last message decides.
    let last = match queries.last_offset(stream, END_PROBE_WAIT).await {
        Ok(last) => last,
        Err(err) => return tracing::debug!("{on}end-of-stream probe: {err}"),
    };
    if let Some(line) = notice(last, start) {
        if last.is_some_and(|last| start > last.saturating_add(1)) {
            tracing::warn!("{on}{line}");
        } else {
            tracing::info!("{on}{line}");
        }
    }
}

/// What to say when attaching at offset `start` of a stream whose last message is `last`
/// (`None`: it holds none).
fn notice(last: Option<u64>, start: u64) -> Option<String> {
    let Some(last) = last else {
        // Only tracking entries (stored offsets): no message.
        return Some("the stream is empty; waiting for its first message".into());
    };
    if start <= last {
        None
    } else if start == last + 1 {
        Some(format!(
            "the stream ends at offset {last}; waiting for new messages after it"
        ))
    } else {
        Some(format!(
            "the stream ends at offset {last}; attaching at {start}, past its end: waiting for \
             a new message at offset {start} or later (the ones before it are skipped)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_says_where_the_consumer_waits() {
        assert_eq!(notice(Some(99), 42), None);
        assert_eq!(notice(Some(99), 99), None);
        assert_eq!(
            notice(Some(99), 100).as_deref(),
            Some("the stream ends at offset 99; waiting for new messages after it")
        );
        let past = notice(Some(203), 99_999_999).unwrap_or_default();
        assert!(
            past.starts_with("the stream ends at offset 203;") && past.contains("99999999"),
            "{past}"
        );
        assert_eq!(
            notice(None, 0).as_deref(),
            Some("the stream is empty; waiting for its first message")
        );
    }

    #[test]
    fn a_missing_stream_says_who_creates_it() {
        let message = not_there("stream 'strem' does not exist", "strem");
        assert!(
            message.contains("stream 'strem' does not exist"),
            "{message}"
        );
        assert!(message.contains("producer --stream strem"), "{message}");
        assert!(message.contains("--create-stream"), "{message}");
    }
}
