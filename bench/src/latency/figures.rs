//! What a latency row measures: the send time each message carries (the application property
//! [`SENT_AT_PROPERTY`], microseconds since the Unix epoch), the histogram of `now - sent_at`
//! taken when a handler processes the message ([`Recorder`]), and the figures reported from it
//! ([`Figures`]), which the consumer child prints as one `latency-json: {…}` line for the bench.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use rabbitmq_stream_client::types::{Message, SimpleValue};
use serde::{Deserialize, Serialize};

/// The application property holding when the publisher sent a message: microseconds since the
/// Unix epoch (an AMQP `ulong`), read on the same machine's clock.
pub(crate) const SENT_AT_PROPERTY: &str = "sent_at_us";

/// How the child's figures line starts.
const LINE_PREFIX: &str = "latency-json: ";

/// The largest latency the histogram tells apart (larger ones count as this): one hour.
const HIGHEST_US: u64 = 3_600_000_000;

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// The send time `message` carries, if it carries one.
pub(crate) fn sent_at_us(message: &Message) -> Option<u64> {
    match message.application_properties()?.get(SENT_AT_PROPERTY)? {
        SimpleValue::Ulong(us) => Some(*us),
        SimpleValue::Long(us) => u64::try_from(*us).ok(),
        _ => None,
    }
}

/// The latencies of the messages processed so far.
#[derive(Debug)]
pub(crate) struct Recorder {
    histogram: Histogram<u64>,
    /// Messages without a readable [`SENT_AT_PROPERTY`] (none are expected).
    without_sent_at: u64,
    /// Messages "processed before they were sent": the clock stepped back (counted as 0 µs).
    clock_went_back: u64,
    /// The latency of the last message recorded.
    last_us: u64,
}

impl Recorder {
    /// An empty recorder: 1 µs to one hour, three significant digits.
    pub(crate) fn new() -> Result<Self> {
        let histogram = Histogram::new_with_bounds(1, HIGHEST_US, 3)
            .context("cannot make the latency histogram")?;
        Ok(Self {
            histogram,
            without_sent_at: 0,
            clock_went_back: 0,
            last_us: 0,
        })
    }

    /// Records `message`, processed at `now_us`.
    pub(crate) fn record(&mut self, message: &Message, now_us: u64) {
        let latency = match sent_at_us(message) {
            Some(sent) if sent <= now_us => now_us - sent,
            Some(_) => {
                self.clock_went_back += 1;
                0
            }
            None => {
                self.without_sent_at += 1;
                return;
            }
        };
        self.histogram.saturating_record(latency);
        self.last_us = latency;
    }

    /// The figures of what was recorded.
    pub(crate) fn figures(&self) -> Figures {
        let at = |quantile| self.histogram.value_at_quantile(quantile);
        Figures {
            messages: self.histogram.len() + self.without_sent_at,
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: self.histogram.max(),
            without_sent_at: self.without_sent_at,
            clock_went_back: self.clock_went_back,
            last_us: self.last_us,
        }
    }
}

/// A latency row's figures, in microseconds (values within 0.1 % — the histogram's precision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Figures {
    /// Messages processed.
    pub(crate) messages: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    /// Messages without a send time (not in the percentiles).
    pub(crate) without_sent_at: u64,
    /// Messages with a send time later than their processing (counted as 0 µs).
    pub(crate) clock_went_back: u64,
    /// The last message's latency: far above p50 when the consumer fell behind the rate (its
    /// backlog grew to the end), rather than merely jittered.
    pub(crate) last_us: u64,
}

impl Figures {
    /// The line the consumer child prints on stdout.
    pub(crate) fn line(&self) -> Result<String> {
        let json = serde_json::to_string(self).context("cannot write the latency figures")?;
        Ok(format!("{LINE_PREFIX}{json}"))
    }

    /// The figures of `line`, if it is a figures line.
    pub(crate) fn from_line(line: &str) -> Option<Result<Self>> {
        let json = line.strip_prefix(LINE_PREFIX)?;
        Some(serde_json::from_str(json).context("cannot read the child's latency figures"))
    }
}

/// Microseconds as milliseconds.
pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_at(us: u64) -> Message {
        Message::builder()
            .application_properties()
            .insert(SENT_AT_PROPERTY, SimpleValue::Ulong(us))
            .message_builder()
            .body("hello0")
            .build()
    }

    #[test]
    fn records_the_time_since_each_message_was_sent() {
        let mut recorder = Recorder::new().unwrap();
        for latency in 1..=1_000u64 {
            recorder.record(&sent_at(5_000_000), 5_000_000 + latency);
        }
        let figures = recorder.figures();
        assert_eq!(figures.messages, 1_000);
        assert_eq!(figures.p50_us, 500);
        assert_eq!(figures.p99_us, 990);
        assert_eq!(figures.p999_us, 999);
        assert_eq!(figures.max_us, 1_000);
        assert_eq!(figures.last_us, 1_000);
        assert_eq!((figures.without_sent_at, figures.clock_went_back), (0, 0));
    }

    #[test]
    fn messages_without_a_send_time_or_from_the_future_are_counted_apart() {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(&Message::builder().body("hello0").build(), 10);
        recorder.record(&sent_at(100), 40);
        recorder.record(&sent_at(100), 2_100);
        let figures = recorder.figures();
        assert_eq!(figures.messages, 3);
        assert_eq!(figures.without_sent_at, 1);
        assert_eq!(figures.clock_went_back, 1);
        assert_eq!(figures.max_us, 2_000);
        assert_eq!(figures.p50_us, 0);
        assert_eq!(figures.last_us, 2_000);
    }

    #[test]
    fn the_figures_line_reads_back() {
        let figures = Figures {
            messages: 100_001,
            p50_us: 310,
            p99_us: 1_200,
            p999_us: 4_000,
            max_us: 9_100,
            without_sent_at: 0,
            clock_went_back: 2,
            last_us: 700,
        };
        let line = figures.line().unwrap();
        assert!(line.starts_with("latency-json: {"), "{line}");
        assert_eq!(Figures::from_line(&line).unwrap().unwrap(), figures);
        assert!(Figures::from_line("Started consuming").is_none());
        assert!(Figures::from_line("latency-json: {").unwrap().is_err());
    }
}
