//! The publisher actor: publishes a wave of messages — `hello0`, `hello1`, …, and last
//! `marker{n-1}` — and answers only when the broker has confirmed every one of them, or with an
//! error that says how many it did not confirm.
//!
//! At most `max_unconfirmed` messages are in flight at once (a semaphore permit travels with each
//! message and is released by its confirmation), so memory stays flat whatever the wave's size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rabbitmq_stream_client::error::ProducerPublishError;
use rabbitmq_stream_client::types::Message as StreamMessage;
use rabbitmq_stream_client::{NoDedup, Producer};
use shared::error::{Error, Result};
use tokio::sync::{Notify, Semaphore};

/// How often a long wave reports its progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Publish a wave of `count` messages and wait for every confirmation.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<WaveReport>")]
pub struct PublishWave {
    /// Messages in the wave, the marker included.
    pub count: u64,
}

/// What a confirmed wave did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveReport {
    /// Messages the broker confirmed.
    pub confirmed: u64,
    /// How long publishing and confirming took.
    pub elapsed: Duration,
}

/// The body of message `index` of a wave of `count`.
pub fn body(index: u64, count: u64) -> String {
    if index + 1 == count {
        format!("marker{index}")
    } else {
        format!("hello{index}")
    }
}

/// Confirmation counts, shared with the client's confirmation callbacks.
#[derive(Default)]
struct Confirmations {
    confirmed: AtomicU64,
    rejected: AtomicU64,
    changed: Notify,
}

impl Confirmations {
    fn settled(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire) + self.rejected.load(Ordering::Acquire)
    }
}

/// See the module documentation.
pub struct Publisher {
    producer: Producer<NoDedup>,
    stream: String,
    max_unconfirmed: usize,
    confirm_timeout: Duration,
}

impl Publisher {
    /// A publisher over `producer` (attached to `stream`).
    pub fn new(
        producer: Producer<NoDedup>,
        stream: impl Into<String>,
        max_unconfirmed: u32,
        confirm_timeout: Duration,
    ) -> Self {
        Self {
            producer,
            stream: stream.into(),
            max_unconfirmed: max_unconfirmed as usize,
            confirm_timeout,
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;
}

impl Handler<PublishWave> for Publisher {
    type Result = ResponseFuture<Result<WaveReport>>;

    fn handle(&mut self, wave: PublishWave, _: &mut Self::Context) -> Self::Result {
        let producer = self.producer.clone();
        let stream = self.stream.clone();
        let window = self.max_unconfirmed;
        let timeout = self.confirm_timeout;
        Box::pin(publish_wave(producer, stream, wave.count, window, timeout))
    }
}

async fn publish_wave(
    producer: Producer<NoDedup>,
    stream: String,
    count: u64,
    window: usize,
    timeout: Duration,
) -> Result<WaveReport> {
    let started = Instant::now();
    let confirmations = Arc::new(Confirmations::default());
    let in_flight = Arc::new(Semaphore::new(window));
    let not_confirmed = |confirmations: &Confirmations, reason: String| Error::NotConfirmed {
        unconfirmed: count - confirmations.confirmed.load(Ordering::Acquire),
        total: count,
        reason,
    };
    let progress = tokio::spawn(report_progress(confirmations.clone(), count));
    let _stop_progress = AbortOnDrop(progress);

    for index in 0..count {
        let permit = match tokio::time::timeout(timeout, in_flight.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(not_confirmed(
                    &confirmations,
                    format!(
                        "no confirmation for {} (producer.confirm_timeout)",
                        humantime(timeout)
                    ),
                ))
            }
        };
        let message = StreamMessage::builder().body(body(index, count)).build();
        let callback_state = confirmations.clone();
        let sent = producer
            .send(message, move |status| {
                let _permit = permit;
                async move {
                    match status {
                        Ok(status) if status.confirmed() => {
                            callback_state.confirmed.fetch_add(1, Ordering::AcqRel);
                        }
                        Ok(status) => {
                            tracing::warn!(
                                publishing_id = status.publishing_id(),
                                "the broker rejected a message: {:?}",
                                status.status()
                            );
                            callback_state.rejected.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(err) => {
                            tracing::warn!("publishing failed: {err}");
                            callback_state.rejected.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    callback_state.changed.notify_one();
                }
            })
            .await;
        if let Err(err) = sent {
            return Err(not_confirmed(&confirmations, publish_error(&stream, &err)));
        }
    }

    while confirmations.settled() < count {
        if producer.is_closed() {
            return Err(not_confirmed(
                &confirmations,
                "the connection was lost".into(),
            ));
        }
        let before = confirmations.settled();
        let waited = tokio::time::timeout(timeout, confirmations.changed.notified()).await;
        if waited.is_err() && confirmations.settled() == before {
            return Err(not_confirmed(
                &confirmations,
                format!(
                    "no confirmation for {} (producer.confirm_timeout)",
                    humantime(timeout)
                ),
            ));
        }
    }
    let rejected = confirmations.rejected.load(Ordering::Acquire);
    if rejected > 0 {
        return Err(not_confirmed(
            &confirmations,
            format!("the broker rejected {rejected}"),
        ));
    }
    Ok(WaveReport {
        confirmed: confirmations.confirmed.load(Ordering::Acquire),
        elapsed: started.elapsed(),
    })
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn publish_error(stream: &str, err: &ProducerPublishError) -> String {
    match err {
        ProducerPublishError::Closed => {
            format!("the producer on '{stream}' was closed (connection lost?)")
        }
        other => format!("publishing to '{stream}' failed: {other}"),
    }
}

async fn report_progress(confirmations: Arc<Confirmations>, count: u64) {
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let confirmed = confirmations.confirmed.load(Ordering::Acquire);
        tracing::info!(
            "confirmed {confirmed} of {count} ({:.0}%)",
            confirmed as f64 * 100.0 / count as f64
        );
    }
}

/// Stops a background task when the owner goes away, however it leaves.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_message_is_the_marker() {
        assert_eq!(body(0, 100), "hello0");
        assert_eq!(body(98, 100), "hello98");
        assert_eq!(body(99, 100), "marker99");
        assert_eq!(body(0, 1), "marker0");
    }
}
