//! The async-handler rows: the consumer crate's `io_handler` example — an async handler that
//! awaits a stand-in I/O call (a precise `--work-ms` timer, see the example's doc) per message —
//! on keyed waves.
//!
//! - The keyed wave: the producer library's bodies ([`producer::wave_body`], the last one the
//!   marker at which `io_handler` stops), each with the application property `key` =
//!   `k{index % 1000}`, published by the raw client ([`raw::publish_messages`]).
//! - Row 1: `io_handler --work-ms 1` at `processing.max_in_flight` = 256 with
//!   `ordering = "key"` (`key = "property:key"`) on a keyed wave of `--messages`. Its rate is
//!   measured against its limit — what the handler allows (256 at once / 1 ms = 256 000 msg/s),
//!   or the raw reference consume rate of the same run if that is lower — with ≥ 0.8 as the
//!   target — the median of three runs of the row; and its peak RSS. The tracker stores every
//!   10 000 messages, as in the consumer rows
//!   that compare rates. (`--io-work-ms`, `--io-max-in-flight` and `--io-ordering` change the
//!   row, to see where the time goes.)
//! - Row 1b: row 1 storing every 10 messages (the tutorial's setting; no target): what ~100
//!   stores a second per 10 000 msg/s cost it, since each store is an entry the broker writes
//!   into the stream being read.
//! - Row 2: the same handler at max_in_flight = 1 (`ordering = "partition"`) on a keyed wave of
//!   [`SERIAL_MESSAGES`] (each message waits its call out: ~1 000 msg/s at 1 ms), for the
//!   speed-up of row 1 over it, and what one message really takes (a 1 ms timer may wait
//!   longer): the rate row 1's slots would give if each were used as well as row 2's one.

use anyhow::Result;
use rabbitmq_stream_client::types::Message;
use rabbitmq_stream_client::Environment;

use crate::cli::{Cli, IoOrdering};
use crate::ours::Ours;
use crate::raw;
use crate::row::{report, Measured};

/// Distinct keys of a keyed wave.
pub(crate) const KEYS: u64 = 1_000;

/// The application property that holds a message's key.
const KEY_PROPERTY: &str = "key";

/// Messages of row 2's wave (max_in_flight = 1 runs near 1 000 msg/s at 1 ms per message).
pub(crate) const SERIAL_MESSAGES: u64 = 3_000;

/// How many times row 1 runs; its median is measured against the limit.
const ROW_1_ROUNDS: usize = 3;

/// `tracker.store_every_messages` of rows 1 and 2, as in the consumer rows that compare rates
/// (row 1b stores every 10, the tutorial's setting).
const STORE_EVERY: u64 = 10_000;

/// The example of the consumer crate the rows run.
pub(crate) const EXAMPLE: &str = "io_handler";

/// How row 1 runs the handler (row 2 runs it at max_in_flight = 1, in partition order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoSettings {
    /// `--work-ms` of the handler.
    pub(crate) work_ms: u64,
    /// `processing.max_in_flight`.
    pub(crate) max_in_flight: u32,
    /// `processing.ordering`.
    pub(crate) ordering: IoOrdering,
    /// `tracker.store_every_messages`.
    pub(crate) store_every: u64,
}

impl IoSettings {
    /// Row 1's settings, from the options.
    pub(crate) fn row_1(cli: &Cli) -> Self {
        Self {
            work_ms: cli.io_work_ms,
            max_in_flight: cli.io_max_in_flight,
            ordering: cli.io_ordering,
            store_every: STORE_EVERY,
        }
    }

    /// Row 1b's: row 1 with the tutorial's store every 10 messages.
    fn storing_every_10(self) -> Self {
        Self {
            store_every: 10,
            ..self
        }
    }

    /// Row 2's: the same handler, one message at a time.
    fn serial(self) -> Self {
        Self {
            max_in_flight: 1,
            ordering: IoOrdering::Partition,
            ..self
        }
    }

    /// Deliveries the handler can work on at once: one in partition order, at most one per key
    /// by key.
    fn concurrency(self) -> u64 {
        let in_flight = u64::from(self.max_in_flight);
        match self.ordering {
            IoOrdering::Partition => 1,
            IoOrdering::Key => in_flight.min(KEYS),
            IoOrdering::Unordered => in_flight,
        }
    }

    /// The rate the handler allows: concurrency / work (no limit without work).
    fn handler_limit(self) -> Option<f64> {
        (self.work_ms > 0).then(|| self.concurrency() as f64 * 1_000.0 / self.work_ms as f64)
    }

    /// The `--work-ms` argument.
    fn args(self) -> Vec<String> {
        vec!["--work-ms".to_owned(), self.work_ms.to_string()]
    }

    /// The `[processing]` settings, as environment variables.
    fn env(self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT",
                self.max_in_flight.to_string(),
            ),
            (
                "OFFSET_TRACKING__PROCESSING__ORDERING",
                self.ordering.as_config().to_owned(),
            ),
            (
                "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                self.store_every.to_string(),
            ),
        ];
        if self.ordering == IoOrdering::Key {
            env.push((
                "OFFSET_TRACKING__PROCESSING__KEY",
                format!("property:{KEY_PROPERTY}"),
            ));
        }
        env
    }

    /// The row's label.
    fn label(self) -> String {
        let keys = if self.ordering == IoOrdering::Key {
            format!(" ({KEYS} keys)")
        } else {
            String::new()
        };
        format!(
            "ours: {EXAMPLE} --work-ms {}, max_in_flight={}, ordering={}{keys}, store every {}",
            self.work_ms,
            self.max_in_flight,
            self.ordering.as_config(),
            self.store_every
        )
    }
}

/// The rows' streams: fresh, empty, created by the run.
pub(crate) struct IoStreams {
    /// For row 1's wave.
    pub(crate) parallel: String,
    /// For row 2's.
    pub(crate) serial: String,
}

/// What the rows found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IoFigures {
    /// Row 1's rate against its limit.
    pub(crate) vs_limit: f64,
    /// Row 1's rate against row 2's.
    pub(crate) speedup: f64,
}

/// Publishes the keyed waves (`count` messages for row 1, up to [`SERIAL_MESSAGES`] for row 2),
/// runs both rows, and prints them and the line of their figures; `raw_consume_rate` is the
/// run's raw reference consume rate.
pub(crate) async fn rows(
    environment: &Environment,
    ours: &Ours,
    streams: &IoStreams,
    settings: IoSettings,
    count: u64,
    raw_consume_rate: f64,
) -> Result<IoFigures> {
    let serial_count = count.min(SERIAL_MESSAGES);
    for (stream, n) in [(&streams.parallel, count), (&streams.serial, serial_count)] {
        let published =
            raw::publish_messages(environment, stream, n, |index| keyed_message(index, n)).await?;
        let label = format!("raw: keyed wave, property {KEY_PROPERTY} = k<index % {KEYS}>");
        report("publish", &label, &published);
    }

    // Row 1 three times, its median against the limit: one 5-second row on a shared machine
    // swings by more than the margin the target leaves.
    let mut parallel_rates = Vec::new();
    for round in 1..=ROW_1_ROUNDS {
        let run = run(
            ours,
            &streams.parallel,
            count,
            settings,
            &format!("parallel-{round}"),
        )
        .await?;
        report("handler", &format!("{} #{round}", settings.label()), &run);
        parallel_rates.push(run.rate);
    }
    let parallel_rate = crate::row::median(&parallel_rates);
    let every_10_settings = settings.storing_every_10();
    let every_10 = run(
        ours,
        &streams.parallel,
        count,
        every_10_settings,
        "parallel-every-10",
    )
    .await?;
    report("handler", &every_10_settings.label(), &every_10);
    let serial_settings = settings.serial();
    let serial = run(
        ours,
        &streams.serial,
        serial_count,
        serial_settings,
        "serial",
    )
    .await?;
    report("handler", &serial_settings.label(), &serial);

    let limit = limit(settings.handler_limit(), raw_consume_rate);
    let figures = IoFigures {
        vs_limit: parallel_rate / limit,
        speedup: parallel_rate / serial.rate,
    };
    println!(
        "async handler: storing every 10 instead of every {}: {:.0} msg/s, {:.2} of the limit \
         (each store is an entry the broker writes into the stream being read)",
        settings.store_every,
        every_10.rate,
        every_10.rate / limit,
    );
    let handler_limit = settings.handler_limit().map_or_else(
        || "none (no work)".to_owned(),
        |rate| format!("{rate:.0} msg/s"),
    );
    println!(
        "async handler: max_in_flight={} ordering={} at {} ms per message: {:.0} msg/s (median \
         of {ROW_1_ROUNDS}) against a limit of {limit:.0} msg/s (handler's {handler_limit}, raw \
         consuming {raw_consume_rate:.0} msg/s): {:.2} of it; {:.1}× max_in_flight=1 ({:.0} msg/s)",
        settings.max_in_flight,
        settings.ordering.as_config(),
        settings.work_ms,
        parallel_rate,
        figures.vs_limit,
        figures.speedup,
        serial.rate,
    );
    // Row 2 measures what one message really takes (a timer may wait longer than asked): the
    // rate row 1's slots would give if each were used as well as row 2's one.
    let slots = settings.concurrency();
    let slots_rate = slots as f64 * serial.rate;
    println!(
        "async handler: one message takes {:.2} ms at max_in_flight=1 ({} ms asked); {slots} at \
         once would give {slots_rate:.0} msg/s: row 1 reaches {:.2} of that",
        1_000.0 / serial.rate.max(1e-9),
        settings.work_ms,
        parallel_rate / slots_rate.max(1e-9),
    );
    Ok(figures)
}

/// One row: the example on `stream`'s `count` messages as `settings` say.
async fn run(
    ours: &Ours,
    stream: &str,
    count: u64,
    settings: IoSettings,
    label: &str,
) -> Result<Measured> {
    ours.consumer_example(
        EXAMPLE,
        &settings.args(),
        stream,
        count,
        label,
        &settings.env(),
    )
    .await
}

/// Message `index` of a keyed wave of `count`: the producer's body, keyed `k{index % KEYS}`.
fn keyed_message(index: u64, count: u64) -> Message {
    Message::builder()
        .application_properties()
        .insert(KEY_PROPERTY, format!("k{}", index % KEYS))
        .message_builder()
        .body(producer::wave_body(index, count))
        .build()
}

/// The rate a row can reach: the handler's limit, or raw consuming if lower.
fn limit(handler_limit: Option<f64>, raw_consume_rate: f64) -> f64 {
    handler_limit.map_or(raw_consume_rate, |rate| rate.min(raw_consume_rate))
}

#[cfg(test)]
mod tests {
    use rabbitmq_stream_client::types::SimpleValue;

    use super::*;

    fn settings(max_in_flight: u32, ordering: IoOrdering, work_ms: u64) -> IoSettings {
        IoSettings {
            work_ms,
            max_in_flight,
            ordering,
            store_every: STORE_EVERY,
        }
    }

    #[test]
    fn the_limit_is_the_handler_s_or_raw_consuming() {
        let row_1 = settings(256, IoOrdering::Key, 1);
        assert_eq!(row_1.handler_limit(), Some(256_000.0));
        assert_eq!(limit(row_1.handler_limit(), 1_500_000.0), 256_000.0);
        assert_eq!(limit(row_1.handler_limit(), 200_000.0), 200_000.0);
        assert_eq!(row_1.serial().handler_limit(), Some(1_000.0));
        assert_eq!(
            settings(5_000, IoOrdering::Key, 2).handler_limit(),
            Some(500_000.0)
        );
        assert_eq!(
            settings(5_000, IoOrdering::Unordered, 2).handler_limit(),
            Some(2_500_000.0)
        );
        assert_eq!(settings(256, IoOrdering::Partition, 1).concurrency(), 1);
        let no_work = settings(256, IoOrdering::Key, 0);
        assert_eq!(no_work.handler_limit(), None);
        assert_eq!(limit(no_work.handler_limit(), 900_000.0), 900_000.0);
    }

    #[test]
    fn the_settings_reach_the_example() {
        let env = settings(256, IoOrdering::Key, 1).env();
        assert_eq!(
            env,
            [
                (
                    "OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT",
                    "256".to_owned()
                ),
                ("OFFSET_TRACKING__PROCESSING__ORDERING", "key".to_owned()),
                (
                    "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                    "10000".to_owned()
                ),
                (
                    "OFFSET_TRACKING__PROCESSING__KEY",
                    "property:key".to_owned()
                ),
            ]
        );
        let serial = settings(256, IoOrdering::Key, 1).serial();
        assert_eq!(serial.env().len(), 3);
        assert_eq!(serial.args(), ["--work-ms", "1"]);
        assert_eq!(
            serial.label(),
            "ours: io_handler --work-ms 1, max_in_flight=1, ordering=partition, store every 10000"
        );
        let every_10 = settings(256, IoOrdering::Key, 1).storing_every_10();
        assert!(every_10.env().contains(&(
            "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
            "10".to_owned()
        )));
    }

    #[test]
    fn a_keyed_message_carries_its_key_and_the_wave_s_body() {
        let message = keyed_message(1_007, 2_000);
        let key = message
            .application_properties()
            .and_then(|properties| properties.get(KEY_PROPERTY));
        assert_eq!(key, Some(&SimpleValue::String("k7".to_owned())));
        let body = producer::wave_body(1_007, 2_000);
        assert_eq!(message.data(), Some(body.as_bytes()));
        let last = keyed_message(1_999, 2_000);
        assert!(last.data().is_some_and(producer::is_marker));
    }
}
