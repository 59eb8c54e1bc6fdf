//! The consumer actor: takes the client's deliveries a batch at a time (`StreamHandler` over
//! `ready_chunks`), processes them — the tutorial's work: count, first and last offset, stop at
//! the marker — and reports each processed batch to the tracker with one message.
//!
//! Reports go out with `try_send`: when the tracker's bounded mailbox is full, the report is kept
//! and merged into the next one, so the tracker can neither slow consumption nor grow memory.

use actix::prelude::*;
use futures::StreamExt;
use rabbitmq_stream_client::error::ConsumerDeliveryError;
use rabbitmq_stream_client::types::Delivery;
use rabbitmq_stream_client::{Consumer, ConsumerHandle};
use shared::error::{Error, Result};
use shared::messages::{Flush, Processed};
use tokio::sync::oneshot;

/// Most deliveries handled as one batch (and reported with one [`Processed`]).
const MAX_BATCH: usize = 512;

/// How long closing the subscription may take before we stop waiting for the broker.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Stop consuming: flush the tracker and close the subscription (SIGINT, SIGTERM).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What a run did, sent once when the actor stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Offset of the first message processed.
    pub first_offset: Option<u64>,
    /// Offset of the last message processed (the marker's, if it arrived).
    pub last_offset: Option<u64>,
    /// Messages processed.
    pub messages: u64,
    /// Whether the run ended on the marker (otherwise on a shutdown request).
    pub reached_marker: bool,
    /// The offset the broker holds for this consumer after the final flush.
    pub stored_offset: Option<u64>,
    /// From the first message received to the last one processed.
    pub elapsed: std::time::Duration,
}

/// The tracker, as the consumer sees it: two recipients, no concrete type.
#[derive(Clone)]
pub struct TrackerLink {
    /// Where processed batches go.
    pub processed: Recipient<Processed>,
    /// Where flush requests go.
    pub flush: Recipient<Flush>,
}

type Batch = Vec<std::result::Result<Delivery, ConsumerDeliveryError>>;

enum Phase {
    Consuming,
    Finishing,
}

/// See the module documentation.
pub struct ConsumerActor {
    stream: String,
    subscription: Option<Consumer>,
    handle: Option<ConsumerHandle>,
    tracker: TrackerLink,
    outcome: Outcome,
    unreported: Option<Processed>,
    phase: Phase,
    first_received_at: Option<std::time::Instant>,
    done: Option<oneshot::Sender<Result<Outcome>>>,
}

impl ConsumerActor {
    /// An actor consuming `subscription` (already attached to `stream`), reporting to `tracker`,
    /// and answering on `done` when it stops.
    pub fn new(
        stream: impl Into<String>,
        subscription: Consumer,
        tracker: TrackerLink,
        done: oneshot::Sender<Result<Outcome>>,
    ) -> Self {
        Self {
            stream: stream.into(),
            handle: Some(subscription.handle()),
            subscription: Some(subscription),
            tracker,
            outcome: Outcome::default(),
            unreported: None,
            phase: Phase::Consuming,
            first_received_at: None,
            done: Some(done),
        }
    }

    /// The tutorial's processing of one message; returns whether it is the marker.
    fn process(&mut self, delivery: &Delivery) -> bool {
        let offset = delivery.offset();
        if self.outcome.first_offset.is_none() {
            println!("First message received");
            self.outcome.first_offset = Some(offset);
            self.first_received_at = Some(std::time::Instant::now());
        }
        self.outcome.last_offset = Some(offset);
        self.outcome.messages += 1;
        // A message with no body, or a body that is not UTF-8, is processed like any other.
        delivery
            .message()
            .data()
            .is_some_and(|body| body.starts_with(b"marker"))
    }

    /// Hands the processed batch to the tracker without ever waiting for it.
    fn report(&mut self, offset: u64, count: u64) -> Result<()> {
        let report = match self.unreported.take() {
            Some(earlier) => Processed {
                offset,
                count: earlier.count + count,
            },
            None => Processed { offset, count },
        };
        match self.tracker.processed.try_send(report) {
            Ok(()) => Ok(()),
            Err(SendError::Full(report)) => {
                self.unreported = Some(report);
                Ok(())
            }
            Err(SendError::Closed(_)) => Err(Error::Internal("the tracker stopped".into())),
        }
    }

    /// Stops consuming: flushes the tracker (which confirms the store), closes the subscription,
    /// and answers `done` with `failure` or the outcome.
    fn finish(&mut self, failure: Option<Error>, ctx: &mut Context<Self>) {
        if matches!(self.phase, Phase::Finishing) {
            return;
        }
        self.phase = Phase::Finishing;
        let pending = self.unreported.take();
        let tracker = self.tracker.clone();
        let handle = self.handle.take();
        let work = async move {
            // The last report may still sit here if the mailbox was full: deliver it first.
            if let Some(report) = pending {
                tracker
                    .processed
                    .send(report)
                    .await
                    .map_err(|_| Error::Internal("the tracker stopped".into()))?;
            }
            let stored = tracker
                .flush
                .send(Flush)
                .await
                .map_err(|_| Error::Internal("the tracker stopped".into()))?;
            if let Some(handle) = handle {
                // A dead connection cannot be closed cleanly; that does not undo the flush.
                match tokio::time::timeout(CLOSE_TIMEOUT, handle.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::debug!("closing the subscription: {err}"),
                    Err(_) => tracing::warn!("the broker did not confirm closing the subscription"),
                }
            }
            stored
        };
        ctx.wait(work.into_actor(self).map(move |stored, actor, ctx| {
            let result = match (failure, stored) {
                (Some(err), _) => Err(err),
                (None, Err(err)) => Err(err),
                (None, Ok(stored)) => {
                    actor.outcome.stored_offset = stored;
                    Ok(actor.outcome.clone())
                }
            };
            if let Some(done) = actor.done.take() {
                let _ = done.send(result);
            }
            ctx.stop();
        }));
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(subscription) = self.subscription.take() {
            ctx.add_stream(subscription.ready_chunks(MAX_BATCH));
        }
    }
}

impl StreamHandler<Batch> for ConsumerActor {
    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        if !matches!(self.phase, Phase::Consuming) {
            // Deliveries after the marker or a shutdown are not processed, so not stored.
            return;
        }
        let mut processed = 0u64;
        let mut marker = false;
        let mut failure = None;
        for item in &batch {
            match item {
                Ok(delivery) => {
                    processed += 1;
                    if self.process(delivery) {
                        marker = true;
                        break;
                    }
                }
                Err(err) => {
                    failure = Some(Error::ConsumeStopped {
                        stream: self.stream.clone(),
                        reason: format!("delivery failed: {err}"),
                    });
                    break;
                }
            }
        }
        if processed > 0 {
            if let Some(started) = self.first_received_at {
                self.outcome.elapsed = started.elapsed();
            }
            if let Some(last) = self.outcome.last_offset {
                if let Err(err) = self.report(last, processed) {
                    failure = failure.or(Some(err));
                }
            }
        }
        if marker {
            println!(
                "Done consuming first_offset: {} last_offset: {}",
                self.outcome.first_offset.unwrap_or_default(),
                self.outcome.last_offset.unwrap_or_default()
            );
            self.outcome.reached_marker = true;
            self.finish(failure, ctx);
        } else if failure.is_some() {
            self.finish(failure, ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if matches!(self.phase, Phase::Consuming) {
            let failure = Error::ConsumeStopped {
                stream: self.stream.clone(),
                reason: "the broker connection ended".into(),
            };
            self.finish(Some(failure), ctx);
        }
    }
}

impl Handler<Shutdown> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        tracing::info!("shutdown requested: storing the last processed offset");
        self.finish(None, ctx);
    }
}
