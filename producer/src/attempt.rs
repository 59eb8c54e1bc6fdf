//! One connection's attempt at a lane: publishes the lane's messages from a position on, keeps
//! at most `producer.max_unconfirmed` (plus one block of [`CHECK_EVERY`]) in flight so memory
//! stays flat whatever the wave's size, and waits for every confirmation. It ends done, or lost
//! (the connection dropped, or nothing was confirmed for `producer.confirm_timeout`), which the
//! caller may resend after ([`crate::resend`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rabbitmq_stream_client::types::Message as StreamMessage;
use shared::error::{Error, Result};

use crate::confirm::{Confirmations, Settled};
use crate::connect::{LaneTarget, StreamProducer};
use crate::progress::LaneProgress;

/// The in-flight window and the connection are checked once per this many messages.
const CHECK_EVERY: u64 = 256;

/// How one connection's attempt at a lane ended.
pub(crate) enum Attempt {
    /// Every message from the attempt's start is confirmed.
    Done,
    /// The connection was lost, or confirmations stopped; a named producer may go on.
    Lost(String),
}

/// Where an attempt starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    /// The publishing id of the lane's first message (named producers).
    pub(crate) base: u64,
    /// The lane position the attempt starts at.
    pub(crate) first: u64,
}

/// Publishes the lane's messages from position `start.first` on one connection and waits for
/// their confirmations; a rejected message fails the wave.
pub(crate) async fn publish_range(
    target: &LaneTarget,
    producer: &mut StreamProducer,
    confirmations: &Arc<Confirmations>,
    progress: &LaneProgress,
    start: Start,
) -> Result<Attempt> {
    let Start { base, first } = start;
    let count = target.lane.messages();
    let window = u64::from(target.settings.max_unconfirmed);
    let named = target.name.is_some();
    let confirmed_now = |c: &Confirmations| first + c.confirmed();
    for (position, index) in (first..count).zip(target.lane.indices(first)) {
        let sent = position - first;
        // Checked once per block, not per message: reading counters the confirmation callbacks
        // write on another thread costs a cache-line transfer each time.
        if sent.is_multiple_of(CHECK_EVERY) {
            let settled = sent.saturating_sub(window);
            if let Some(lost) = settle(target, producer, confirmations, settled).await {
                return Ok(lost);
            }
            progress
                .confirmed
                .store(confirmed_now(confirmations), Ordering::Relaxed);
            progress.published.store(position, Ordering::Relaxed);
            progress.first_sent.get_or_init(std::time::Instant::now);
        }
        let mut message =
            StreamMessage::builder().body(target.bodies.body(index, position + 1 == count));
        if named {
            message = message.publishing_id(base + position);
        }
        if let Err(err) = producer.send(message.build(), confirmations).await {
            return Ok(Attempt::Lost(format!("publishing failed: {err}")));
        }
    }
    progress.published.store(count, Ordering::Relaxed);
    if let Some(lost) = settle(target, producer, confirmations, count - first).await {
        return Ok(lost);
    }
    progress
        .confirmed
        .store(confirmed_now(confirmations), Ordering::Relaxed);
    let rejected = confirmations.rejected();
    if rejected > 0 {
        return Err(not_confirmed(
            count,
            confirmed_now(confirmations),
            format!("{}the broker rejected {rejected}", target.lane.label()),
        ));
    }
    Ok(Attempt::Done)
}

/// Waits until at least `settled` messages of this connection are confirmed or rejected; says
/// why not if the connection is lost or no confirmation arrives within `confirm_timeout`.
async fn settle(
    target: &LaneTarget,
    producer: &StreamProducer,
    confirmations: &Confirmations,
    settled: u64,
) -> Option<Attempt> {
    let timeout = target.settings.confirm_timeout;
    match confirmations
        .wait_until(settled, timeout, || producer.is_closed())
        .await
    {
        Settled::Enough => None,
        Settled::Lost => Some(Attempt::Lost("the connection was lost".into())),
        Settled::Stalled => Some(Attempt::Lost(format!(
            "no confirmation for {} (producer.confirm_timeout): the stream's leader may be \
             down, or most of its nodes (lost quorum)",
            humantime::format_duration(timeout)
        ))),
    }
}

/// The error for a lane of `total` messages of which `confirmed` are confirmed.
pub(crate) fn not_confirmed(total: u64, confirmed: u64, reason: String) -> Error {
    Error::NotConfirmed {
        unconfirmed: total - confirmed.min(total),
        total,
        reason,
    }
}
