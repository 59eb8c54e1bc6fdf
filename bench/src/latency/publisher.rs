//! The latency rows' publisher: the raw client's producer sending at a fixed offered rate, each
//! message stamped with its send time ([`SENT_AT_PROPERTY`]) just before `send`.
//!
//! Pacing: message `i` is due `i / rate` seconds after the start. Every [`TICK`] — a precise
//! timer (`async-io`'s timerfd; tokio's sleep rounds up to whole milliseconds) at `start + k ×
//! TICK` — it sends every message due by then: 10 at 10 000 msg/s, 100 at 100 000. The schedule
//! is computed from the start, never from the previous wake-up, so a late wake-up sends more at
//! once and the rate cannot drift; how late the publisher ever was against the schedule is
//! reported ([`Published::max_behind`]), with the rate it achieved.
//!
//! Its confirm callbacks record `now - sent_at_us` too ([`Published::confirm`]): the publisher's
//! round trip through the broker, the part of the end-to-end latency no consumer can remove.

use std::future::Ready;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use producer::{ConfirmResult, Confirmations, Settled};
use rabbitmq_stream_client::types::{Message, SimpleValue};
use rabbitmq_stream_client::Environment;
use shared::connection;

use super::figures::{now_us, Figures, Recorder, SENT_AT_PROPERTY};

/// How often the publisher wakes up to send what is due.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Give up when no confirmation arrived for this long.
const CONFIRM_STALL: Duration = Duration::from_secs(30);

/// What the publisher did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Published {
    /// Messages sent, all confirmed (the last one the marker).
    pub(crate) messages: u64,
    /// The rate achieved: messages after the first / the time from the first send to the last.
    pub(crate) achieved_rate: f64,
    /// The most the publisher was ever behind its schedule when it sent.
    pub(crate) max_behind: Duration,
    /// From send to the broker's confirm.
    pub(crate) confirm: Figures,
}

/// When message `index` is due at `rate` messages per second, after the start.
fn due_at(index: u64, rate: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many messages of `count` are due `elapsed` after the start at `rate`: message `i` is due
/// at `i / rate`, so the first is due at once.
fn due_by(elapsed: Duration, rate: u64, count: u64) -> u64 {
    let due = elapsed.as_nanos() * u128::from(rate) / 1_000_000_000 + 1;
    u64::try_from(due).unwrap_or(u64::MAX).min(count)
}

/// Message `index` of `count`: the wave's body (the last one the marker), sent at `sent_at_us`.
pub(crate) fn stamped(index: u64, count: u64, sent_at_us: u64) -> Message {
    Message::builder()
        .application_properties()
        .insert(SENT_AT_PROPERTY, SimpleValue::Ulong(sent_at_us))
        .message_builder()
        .body(producer::wave_body(index, count))
        .build()
}

/// Publishes `count` messages to `stream` at `rate` messages per second, each stamped when sent,
/// and waits until every one is confirmed.
pub(crate) async fn publish_paced(
    environment: &Environment,
    stream: &str,
    rate: u64,
    count: u64,
) -> Result<Published> {
    let producer = environment
        .producer()
        .client_provided_name("bench latency publisher")
        .build(stream)
        .await
        .with_context(|| format!("cannot create the latency publisher on '{stream}'"))?;
    let confirmations = Confirmations::new();
    let confirm_latency = Arc::new(Mutex::new(Recorder::new()?));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut max_behind = Duration::ZERO;
    let mut last_send = start;
    let mut tick = 0u32;
    while sent < count {
        let elapsed = start.elapsed();
        let due = due_by(elapsed, rate, count);
        if due > sent {
            max_behind = max_behind.max(elapsed.saturating_sub(due_at(sent, rate)));
            for index in sent..due {
                let message = stamped(index, count, now_us());
                producer
                    .send(message, confirm_callback(&confirmations, &confirm_latency))
                    .await
                    .with_context(|| format!("latency publish to '{stream}' failed"))?;
            }
            last_send = Instant::now();
            sent = due;
        }
        if sent < count {
            // The next tick on the schedule that is still ahead.
            let behind_ticks = start.elapsed().as_nanos() / TICK.as_nanos();
            tick = tick.max(u32::try_from(behind_ticks).unwrap_or(u32::MAX)) + 1;
            async_io::Timer::at(start + TICK * tick).await;
        }
    }
    let settled = confirmations
        .wait_until(count, CONFIRM_STALL, || producer.is_closed())
        .await;
    match settled {
        Settled::Enough => {}
        Settled::Lost => bail!(
            "latency publish: the connection was lost; {} of {count} confirmed",
            confirmations.confirmed()
        ),
        Settled::Stalled => bail!(
            "latency publish: no confirmation for {CONFIRM_STALL:?}; {} of {count} confirmed",
            confirmations.confirmed()
        ),
    }
    let rejected = confirmations.rejected();
    if rejected > 0 {
        bail!("latency publish: the broker did not confirm {rejected} of {count} messages");
    }
    connection::close_within("the latency publisher", producer.close()).await;
    let spread = (last_send - start).as_secs_f64();
    let confirm = confirm_latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .figures();
    Ok(Published {
        messages: count,
        achieved_rate: count.saturating_sub(1) as f64 / spread.max(1e-9),
        max_behind,
        confirm,
    })
}

/// A confirm callback that records the message's send-to-confirm latency in `latency`, then
/// counts it in `confirmations`.
fn confirm_callback(
    confirmations: &Arc<Confirmations>,
    latency: &Arc<Mutex<Recorder>>,
) -> impl FnOnce(ConfirmResult) -> Ready<()> + Send + Sync + 'static {
    let count = confirmations.callback();
    let latency = Arc::clone(latency);
    move |status| {
        if let Ok(status) = &status {
            let now = now_us();
            latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(status.message(), now);
        }
        count(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_follows_the_clock_not_the_wake_ups() {
        assert_eq!(due_by(Duration::ZERO, 10_000, 100), 1);
        assert_eq!(due_by(Duration::from_micros(999), 10_000, 100), 10);
        assert_eq!(due_by(Duration::from_millis(1), 10_000, 100), 11);
        // A wake-up 5 ms late sends the 5 ms due at once: no drift.
        assert_eq!(due_by(Duration::from_millis(6), 10_000, 1_000), 61);
        assert_eq!(due_by(Duration::from_secs(60), 10_000, 100), 100);
        assert_eq!(due_at(100_000, 100_000), Duration::from_secs(1));
    }

    #[test]
    fn each_message_carries_its_send_time_and_the_last_is_the_marker() {
        let message = stamped(3, 10, 1_764_720_000_123_456);
        assert_eq!(
            super::super::figures::sent_at_us(&message),
            Some(1_764_720_000_123_456)
        );
        assert_eq!(message.data(), Some(&b"hello3"[..]));
        assert!(stamped(9, 10, 0).data().is_some_and(producer::is_marker));
    }
}
