//! The offset-tracking tutorial's producer as a library: publish a wave of messages — `hello0`,
//! `hello1`, …, the last one of each stream `marker{n-1}` — and know the broker confirmed every
//! one of them.
//!
//! ```no_run
//! # async fn example(settings: shared::Settings) -> shared::Result<()> {
//! let target = producer::Target::connect(&settings).await?;
//! let report = producer::publish_wave(&target, 1_000).await?;
//! println!("{} confirmed in {:?}", report.confirmed, report.elapsed);
//! report.summary().print_json();
//! # Ok(())
//! # }
//! ```
//!
//! What it promises:
//! - [`publish_wave`] returns only once the broker confirmed every message, or fails with
//!   [`shared::Error::NotConfirmed`] saying how many it did not.
//! - At most `producer.max_unconfirmed` messages are in flight at once: memory stays flat
//!   whatever the wave's size.
//! - With `producer.name` (deduplication) a lost connection is survived: it reconnects and
//!   resends from the broker's last publishing id, and nothing is written twice. Without a name
//!   a lost connection fails the wave. No confirmation for `producer.confirm_timeout` counts as
//!   a lost connection.
//! - On a super stream each partition gets the messages whose routing key hashes to it, from a
//!   producer of its own (`{producer.name}-{partition}`), and its own marker.
//!
//! The body format ([`body`], [`wave_body`], [`is_marker`]) and the confirmation counting
//! ([`Confirmations`]) are public for programs that publish with the raw client and must match
//! (the workspace's benchmark does).
//!
//! # Layout
//!
//! | file | concern |
//! | --- | --- |
//! | `wave.rs` | [`Target`], [`publish_wave`], [`WaveReport`]: plans the lanes, runs one task per lane, sums their reports |
//! | `lane.rs` | lanes: one for a plain stream, one per partition of a super stream (routing, each lane's marker, producer names) |
//! | `resend.rs` | one lane from start to end: reconnecting after a lost connection, resending from the broker's last publishing id (named producers), giving up after `producer.reconnect_timeout` |
//! | `attempt.rs` | one connection's attempt at a lane: the in-flight window, sending, waiting for confirmations under `producer.confirm_timeout` |
//! | `connect.rs` | building a lane's producer (plain or named) and querying the broker's last publishing id |
//! | `confirm.rs` | [`Confirmations`]: counting confirmations and rejections, the lost-connection hook, waiting for them |
//! | `progress.rs` | the progress display on stderr |
//! | `metrics.rs` | the Prometheus metrics (`[metrics] listen`): published, confirmed, in flight per stream, read from the lanes' progress counters |
//! | `body.rs` | the body format: [`body`], [`wave_body`], [`is_marker`] |
//! | `main.rs` | the `producer` program: flags, settings, the tutorial's output, the summary lines |
//!
//! No actor: a wave owns no state between calls, so publishing is plain async functions on the
//! tokio runtime's worker threads.

mod attempt;
mod body;
mod confirm;
mod connect;
mod lane;
mod metrics;
mod progress;
mod resend;
mod wave;

pub use body::{body, is_marker, wave_body, MARKER_PREFIX};
pub use confirm::{ConfirmResult, Confirmations, Settled};
pub use wave::{publish_lines, publish_wave, Target, WaveReport};
