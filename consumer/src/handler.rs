//! What the consumer does with messages: the [`Handler`] trait, and [`TutorialHandler`], the
//! tutorial's behaviour (print the first message, stop at the marker, print the offsets).
//!
//! A handler gets deliveries a batch at a time, in stream order. What it reports as processed is
//! what the tracker stores (never more), so after a crash the consumer resumes right after the
//! last stored message: a handler sees every message at least once, and the ones it processed
//! since the last store again. Make effects idempotent, or keep them and the offset in one
//! transaction of your own.
//!
//! A [`Handler`] runs on the consumer's actor thread, a batch at a time: it must not block for
//! long. Work that waits (a database, an HTTP call) belongs in an [`AsyncHandler`], which the
//! consumer runs many at once, storing only what finished.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use delivery::Message;
use shared::error::Result;

/// One message as the broker delivered it: its offset in the stream, the AMQP 1.0 message, and
/// when the broker wrote the chunk that holds it.
#[derive(Debug, Clone)]
pub struct Delivery {
    offset: u64,
    chunk_timestamp_ms: i64,
    message: Message,
}

impl Delivery {
    /// A delivery (the consumer makes them; public for handler tests).
    pub fn new(offset: u64, chunk_timestamp_ms: i64, message: Message) -> Self {
        Self {
            offset,
            chunk_timestamp_ms,
            message,
        }
    }

    /// The message's offset. Offsets grow but are not contiguous: the stream also holds
    /// offset-tracking entries.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// When the broker wrote the chunk holding this message (its clock; chunk granularity).
    pub fn chunk_timestamp(&self) -> SystemTime {
        let millis = u64::try_from(self.chunk_timestamp_ms).unwrap_or_default();
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// [`Delivery::chunk_timestamp`] in milliseconds since the Unix epoch.
    pub fn chunk_timestamp_ms(&self) -> i64 {
        self.chunk_timestamp_ms
    }
}

/// What a handler did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// How many deliveries, from the start of the batch, are processed. Fewer than the batch only
    /// together with `stop`: the rest are neither processed nor stored.
    pub processed: usize,
    /// Stop consuming after these: the tracker stores the last processed offset, the run ends.
    pub stop: bool,
}

impl Handled {
    /// Every delivery of a batch of `len` processed; go on.
    pub fn all(len: usize) -> Self {
        Self {
            processed: len,
            stop: false,
        }
    }
}

/// Processes deliveries. See the module documentation for the guarantees.
pub trait Handler: Unpin + 'static {
    /// Processes `deliveries` (at least one, in stream order). An error ends the run with it;
    /// nothing of this batch counts as processed.
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled>;

    /// Called once after [`Handler::handle`] asked to stop, before the final store.
    fn stopped(&mut self) {}
}

/// What an [`AsyncHandler`] says after a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop consuming after this delivery: what comes before it in the stream still runs, nothing
    /// after it starts; what runs finishes (within `processing.drain_timeout`), the finished
    /// prefix is stored, the run ends.
    Stop,
}

/// Processes one delivery; the consumer runs up to `processing.max_in_flight` of them at once,
/// in the order `processing.ordering` asks (see the README's "Processing in parallel").
///
/// A delivery counts as processed when — and only when — the future `handle` returned finishes
/// with `Ok`: there is no other way to mark it done. The tracker stores only the finished
/// prefix: the newest offset below which every delivery finished, whatever order they finished
/// in. An `Err` or a panic ends the run with that error, and nothing from that delivery on is
/// stored; after a crash, the consumer resumes right after the stored prefix, so work that
/// finished beyond it runs again: make effects idempotent.
///
/// For CPU-only work, the synchronous [`Handler`] is simpler and processes whole batches.
pub trait AsyncHandler: Send + Sync + 'static {
    /// Processes `delivery`.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<Flow>> + Send;
}

/// The tutorial's consumer: prints `First message received` on the first message and, when a
/// message whose body starts with `marker` arrives, stops and prints
/// `Done consuming first_offset: X last_offset: Y`. A message with no body or a body that is not
/// UTF-8 is processed like any other.
///
/// On a super stream each partition has its own, and its lines name the partition. In a consumer
/// group (`consumer.single_active`) it is a service: it prints `Marker received … offset: N` for
/// each marker and goes on.
#[derive(Debug, Default)]
pub struct TutorialHandler {
    partition: Option<String>,
    service: bool,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

impl TutorialHandler {
    /// The handler of `partition` (`None`: a plain stream); `service`: never stop at a marker.
    pub fn new(partition: Option<String>, service: bool) -> Self {
        Self {
            partition,
            service,
            ..Self::default()
        }
    }

    /// " partition s-0" or nothing, for the tutorial's lines.
    fn on(&self) -> String {
        self.partition
            .as_deref()
            .map_or_else(String::new, |p| format!(" partition {p}"))
    }
}

impl Handler for TutorialHandler {
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
        if self.first_offset.is_none() {
            shared::runtime::stdout::status(format_args!("First message received{}", self.on()));
            self.first_offset = deliveries.first().map(Delivery::offset);
        }
        let is_marker = |delivery: &Delivery| {
            delivery
                .message()
                .data()
                .is_some_and(shared::marker::is_marker)
        };
        if self.service {
            for marker in deliveries.iter().filter(|d| is_marker(d)) {
                shared::runtime::stdout::status(format_args!(
                    "Marker received{} offset: {}",
                    self.on(),
                    marker.offset()
                ));
            }
            self.last_offset = deliveries.last().map(Delivery::offset);
            return Ok(Handled::all(deliveries.len()));
        }
        let marker = deliveries.iter().position(is_marker);
        let processed = marker.map_or(deliveries.len(), |at| at + 1);
        self.last_offset = deliveries[..processed].last().map(Delivery::offset);
        Ok(Handled {
            processed,
            stop: marker.is_some(),
        })
    }

    fn stopped(&mut self) {
        shared::runtime::stdout::status(format_args!(
            "Done consuming{} first_offset: {} last_offset: {}",
            self.on(),
            self.first_offset.unwrap_or_default(),
            self.last_offset.unwrap_or_default()
        ));
    }
}
