//! Reading a stream on the consumer's own delivery path (the `delivery` crate) for
//! `consumer offsets`: where its messages start and end, when their chunks were written, and how
//! many messages lie between two offsets. The delivery path drops tracking chunks (the stream's
//! stored offsets), so everything counted here is a message, never a bare offset.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery::{ConnectOptions, DeliveryError, Event, ResponseCode, StartAt, SubscribeOptions};
use shared::config::{BrokerSettings, Endpoint};
use shared::connection;
use shared::error::{Error, Result};
use shared::progress::{count, Reporter};

/// Chunks the broker may send ahead of a scan: it reads as fast as it can.
const SCAN_CREDITS: u16 = 10;

/// How long a read waits for a chunk before calling the stream quiet there (nothing more).
const QUIET: Duration = Duration::from_secs(1);

/// The longest one count may read before it gives up and says it is incomplete.
pub(super) const COUNT_BUDGET: Duration = Duration::from_secs(10);

/// How often a count updates its progress bar.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// Streams (partitions) read at once: each read is a short subscription of its own.
pub(super) const READ_AT_ONCE: usize = 8;

/// A message and when the broker wrote its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// The message's offset.
    pub(super) offset: u64,
    /// The chunk's timestamp (ms since the Unix epoch), as the broker stamped it when writing.
    pub(super) timestamp_ms: i64,
}

/// Messages counted in an offset range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Count {
    /// Messages seen in the range.
    pub(super) messages: u64,
    /// Whether the whole range was read ([`COUNT_BUDGET`] not exhausted).
    pub(super) complete: bool,
}

/// What a visitor tells [`Scanner::walk`] after a chunk.
enum Walk {
    More,
    Stop,
}

/// Reads streams as an anonymous subscriber (no consumer name: never mistaken for one).
pub(super) struct Scanner<'a> {
    pub(super) broker: &'a BrokerSettings,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Scanner<'_> {
    /// The stream's first message (`None`: the stream holds none).
    pub(super) async fn first(&self, stream: &str) -> Result<Option<Seen>> {
        self.first_from(stream, StartAt::First).await
    }

    /// The stream's last message: the last one of its last chunk (`None`: no message).
    pub(super) async fn last(&self, stream: &str) -> Result<Option<Seen>> {
        let mut last = None;
        self.walk(stream, StartAt::Last, |chunk| {
            last = chunk.records.last().map(|record| Seen {
                offset: record.offset,
                timestamp_ms: chunk.timestamp_ms,
            });
            Walk::Stop
        })
        .await?;
        Ok(last)
    }

    /// The first message at or after `offset` (`None`: there is none).
    pub(super) async fn at(&self, stream: &str, offset: u64) -> Result<Option<Seen>> {
        self.first_from(stream, StartAt::Offset(offset)).await
    }

    /// The first message the broker delivers for `start`.
    pub(super) async fn first_from(&self, stream: &str, start: StartAt) -> Result<Option<Seen>> {
        let mut first = None;
        self.walk(stream, start, |chunk| {
            first = chunk.records.first().map(|record| Seen {
                offset: record.offset,
                timestamp_ms: chunk.timestamp_ms,
            });
            Walk::Stop
        })
        .await?;
        Ok(first)
    }

    /// Messages with `after < offset <= up_to`.
    pub(super) async fn count(&self, stream: &str, after: u64, up_to: u64) -> Result<Count> {
        if up_to <= after {
            return Ok(Count {
                messages: 0,
                complete: true,
            });
        }
        let mut messages = 0;
        let deadline = Instant::now() + COUNT_BUDGET;
        let mut late = false;
        // A count can read for up to COUNT_BUDGET: past a second, a bar of the offsets read.
        let mut progress = Reporter::new("offsets read", Some(up_to - after));
        let mut next_tick = Instant::now();
        self.walk(stream, StartAt::Offset(after + 1), |chunk| {
            for record in &chunk.records {
                if record.offset > up_to {
                    return Walk::Stop;
                }
                messages += 1;
                if record.offset == up_to {
                    return Walk::Stop;
                }
            }
            let now = Instant::now();
            if now > deadline {
                late = true;
                return Walk::Stop;
            }
            if now >= next_tick {
                next_tick = now + PROGRESS_TICK;
                let read = chunk
                    .records
                    .last()
                    .map_or(0, |r| r.offset.saturating_sub(after));
                progress.tick(read, &format!("{} messages in {stream}", count(messages)));
            }
            Walk::More
        })
        .await?;
        progress.finish();
        // Quiet before `up_to` means nothing more exists there: the count is whole.
        Ok(Count {
            messages,
            complete: !late,
        })
    }

    /// The `n`-th message after `after` (or the stream's last one, if fewer follow) and how many
    /// messages that moves over; `None` when no message follows `after`.
    pub(super) async fn forward(
        &self,
        stream: &str,
        after: u64,
        n: u64,
    ) -> Result<Option<(u64, u64)>> {
        let mut found = None;
        let mut moved = 0;
        let deadline = Instant::now() + COUNT_BUDGET;
        let mut late = false;
        self.walk(stream, StartAt::Offset(after.saturating_add(1)), |chunk| {
            for record in &chunk.records {
                moved += 1;
                found = Some(record.offset);
                if moved == n {
                    return Walk::Stop;
                }
            }
            if Instant::now() > deadline {
                late = true;
                return Walk::Stop;
            }
            Walk::More
        })
        .await?;
        if late {
            return Err(too_long(stream, n));
        }
        Ok(found.map(|offset| (offset, moved)))
    }

    /// The offset to store so that the next run replays the `n` messages up to and including
    /// `stored`: `Some(m)` with `m` the message before them; `None` when fewer than `n + 1`
    /// messages are at or below `stored` (then the replay starts at the stream's first message),
    /// with how many messages that replays.
    pub(super) async fn backward(
        &self,
        stream: &str,
        stored: u64,
        n: u64,
        first: u64,
    ) -> Result<(Option<u64>, u64)> {
        let started = Instant::now();
        // Offsets count tracking entries too, so [stored - w, stored] holds at most w + 1
        // messages: widen the window until it holds n + 1, or reaches the stream's start.
        let mut width = n.max(1);
        loop {
            let from = stored.saturating_sub(width).max(first);
            let mut ring: VecDeque<u64> = VecDeque::new();
            let keep = usize::try_from(n.saturating_add(1)).unwrap_or(usize::MAX);
            let mut total: u64 = 0;
            self.walk(stream, StartAt::Offset(from), |chunk| {
                for record in &chunk.records {
                    if record.offset > stored {
                        return Walk::Stop;
                    }
                    total += 1;
                    if ring.len() == keep {
                        ring.pop_front();
                    }
                    ring.push_back(record.offset);
                }
                if chunk.records.last().is_some_and(|r| r.offset >= stored) {
                    Walk::Stop
                } else {
                    Walk::More
                }
            })
            .await?;
            if ring.len() == keep {
                return Ok((ring.front().copied(), n));
            }
            if from <= first {
                return Ok((None, total));
            }
            if started.elapsed() > COUNT_BUDGET {
                return Err(too_long(stream, n));
            }
            width = width.saturating_mul(4);
        }
    }

    /// Subscribes at `start` and hands each chunk to `visit` until it says stop, the stream is
    /// quiet for [`QUIET`], or the subscription ends.
    async fn walk(
        &self,
        stream: &str,
        start: StartAt,
        mut visit: impl FnMut(&delivery::Chunk) -> Walk,
    ) -> Result<()> {
        let mut events = self.open(stream, start).await?;
        let mut failure = None;
        while let Ok(Some(event)) = tokio::time::timeout(QUIET, events.next()).await {
            match event {
                Ok(Event::Chunk(chunk)) => {
                    if let Walk::Stop = visit(&chunk) {
                        break;
                    }
                }
                Ok(Event::Closed { .. }) => break,
                Ok(_) => {}
                Err(err) => {
                    failure = Some(read_error(stream, &err));
                    break;
                }
            }
        }
        if let Err(err) = events.close(connection::CLOSE_TIMEOUT).await {
            tracing::debug!("closing an offsets read of {stream}: {err}");
        }
        failure.map_or(Ok(()), Err)
    }

    /// A subscription to `stream` at `start`, on its leader (else a replica).
    async fn open(&self, stream: &str, start: StartAt) -> Result<delivery::Subscription> {
        let options = SubscribeOptions {
            offset: start,
            initial_credits: SCAN_CREDITS,
            ..SubscribeOptions::new(stream)
        };
        let mut failure = None;
        for node in self.nodes(stream).await? {
            match delivery::Subscription::open(&self.connect_options(&node), options.clone()).await
            {
                Ok(events) => return Ok(events),
                Err(err) => {
                    let err = read_error(stream, &err);
                    if matches!(err, Error::StreamNotFound { .. }) {
                        return Err(err);
                    }
                    tracing::debug!("reading {stream} on {node}: {err}");
                    failure = Some(err);
                }
            }
        }
        Err(failure.unwrap_or(Error::Unavailable {
            what: "cannot read the stream",
            stream: stream.to_owned(),
        }))
    }

    /// The leader first (it has every committed chunk), then the replicas; behind a load
    /// balancer, the configured nodes (the advertised ones cannot be reached).
    async fn nodes(&self, stream: &str) -> Result<Vec<Endpoint>> {
        if self.broker.load_balancer_mode {
            return Ok(self.broker.endpoints());
        }
        // On the node's kept query connection, which reads responses of any size (the client's
        // admin connection panics when asked about many partitions).
        let queries = crate::consume::Queries {
            broker: self.broker,
            tls: self.tls.clone(),
        };
        let members = queries.members(stream, "cannot read the stream").await?;
        let mut nodes = vec![members.leader];
        nodes.extend(members.replicas);
        Ok(nodes)
    }

    fn connect_options(&self, node: &Endpoint) -> ConnectOptions {
        connection::delivery_options(self.broker, self.tls.clone(), node, "consumer offsets")
    }
}

fn too_long(stream: &str, n: u64) -> Error {
    Error::Usage(format!(
        "counting {n} messages in '{stream}' took longer than {}s: shift by fewer, or use \
         --to <offset> or --to timestamp:<RFC 3339>",
        COUNT_BUDGET.as_secs()
    ))
}

/// The workspace's error for a read that failed.
fn read_error(stream: &str, err: &DeliveryError) -> Error {
    if err.response_code() == Some(&ResponseCode::StreamDoesNotExist) {
        return Error::StreamNotFound {
            stream: stream.to_owned(),
        };
    }
    let reason = shared::error::with_sources(err);
    Error::Broker {
        what: "cannot read the stream",
        stream: stream.to_owned(),
        reason,
        source: None,
    }
}
