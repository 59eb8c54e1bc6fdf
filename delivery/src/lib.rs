//! The consumer's own delivery path for RabbitMQ Streams.
//!
//! `rabbitmq-stream-client` 0.11 panics in its frame decoder on chunks holding sub-entry batches
//! (what the Java, Go, .NET and Python clients write with sub-entry batching, compressed or not)
//! and then hangs; it also drops the broker's `MetadataUpdate`, fixes credits at 1 and hides the
//! chunk timestamp. This crate is a subscription on a connection of its own that does none of
//! that: it decodes every chunk itself — plain entries and sub-entries, uncompressed, gzip,
//! snappy, lz4 or zstd — and reports every way a subscription can end instead of hanging.
//!
//! It still uses `rabbitmq-stream-protocol` 0.11 for every request it sends (PeerProperties,
//! SASL, Tune, Open, Subscribe, Credit, Unsubscribe, Close, Heartbeat, the ConsumerUpdate answer),
//! for the responses whose fields it exposes, and for the AMQP 1.0 message decoder.
//!
//! ```no_run
//! use delivery::{ConnectOptions, Event, StartAt, SubscribeOptions, Subscription};
//! # async fn run() -> Result<(), delivery::DeliveryError> {
//! let mut options = SubscribeOptions::new("my-stream");
//! options.offset = StartAt::First;
//! let mut sub = Subscription::open(&ConnectOptions::default(), options).await?;
//! while let Some(event) = sub.next().await {
//!     match event? {
//!         Event::Chunk(chunk) => {
//!             for record in &chunk.records {
//!                 println!("{} {:?}", record.offset, record.message.data());
//!             }
//!         }
//!         Event::ConsumerUpdate { reply, .. } => { let _ = reply.send(StartAt::Next); }
//!         Event::MetadataUpdate { .. } | Event::Closed { .. } => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `chunk` — [`decode_chunk`]: the osiris chunk format (header, CRC, plain entries, sub-entry
//!   batches) into [`Chunk`]s of [`Record`]s with their offsets; [`ChunkError`] for what does not
//!   decode.
//! - `compression` — the sub-entry codecs and the wire format each one uses ([`Compression`]).
//! - `frame` — protocol framing: bounded frame reading, request encoding with
//!   `rabbitmq-stream-protocol`, sorting of incoming frames.
//! - `connection` — [`ConnectOptions`]; TCP/TLS connect and the handshake.
//! - `subscription` — [`Subscription`] and its task: Subscribe, credits, heartbeats, single
//!   active consumer, metadata updates, closing; [`Event`], [`StartAt`], [`SubscribeOptions`].
//! - `query` — [`QueryConnection`]: a long-lived connection shared by many callers for Metadata,
//!   StreamStats and a peek at a stream's last chunk, each under a deadline.
//! - `error` — [`DeliveryError`].
//! - `contain` — the protocol crate's decoders can panic on malformed input: contained, reported
//!   as errors, and [`panic_is_contained`] tells a process-wide panic hook to let them pass.
//!
//! # Wire facts this relies on (checked against osiris, the Java and Go clients)
//!
//! - Chunk header: magic 5 and version 0 in the first byte (`0x50`); offsets count records, a
//!   sub-entry's records one by one. To consumers the broker sends the data without the bloom
//!   filter, and user chunks without the trailer.
//! - Sub-entry: 1 type bit, 3 codec bits (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), record count
//!   u16, uncompressed length u32, length u32, then the (compressed) `size u32 | message` records.
//!   gzip is the gzip file format, snappy the *framing* format, lz4 the *frame* format, zstd zstd
//!   frames — what Java's `CompressionUtils` and Go's `aggregation.go` write. Python `rstream`
//!   writes none and gzip only.
//! - `rabbitmq-stream-protocol` 0.11 keeps the fields of MetadataUpdate, the server's Close and
//!   ConsumerUpdate's subscription id private: `frame.rs` reads those few frames itself.
//! - Deliver version 2 (with the committed offset) is not negotiated; the broker sends version 1.
#![forbid(unsafe_code)]

mod chunk;
mod compression;
mod connection;
mod contain;
mod error;
mod frame;
mod query;
mod subscription;

pub use chunk::{
    decode_chunk, Chunk, ChunkError, ChunkKind, ChunkProblem, Record, MAX_UNCOMPRESSED_PER_CHUNK,
};
pub use compression::Compression;
pub use connection::ConnectOptions;
pub use contain::{panic_is_contained, panic_message};
pub use error::DeliveryError;
pub use query::{QueryConnection, StreamMetadata};
pub use rabbitmq_stream_protocol::message::Message;
pub use rabbitmq_stream_protocol::ResponseCode;
pub use subscription::{CloseReason, Closer, Event, StartAt, SubscribeOptions, Subscription};
