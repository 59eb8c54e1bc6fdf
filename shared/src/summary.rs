//! The run summary both programs end with: a human `summary:` log line, and — with
//! `--summary-json` (or `OFFSET_TRACKING_SUMMARY_JSON=1`) — the same figures as one JSON line on
//! stderr, the one machine-readable form that tests and the benchmark parse.
//!
//! The JSON line is the last line a successful run writes to stderr and starts with
//! [`JSON_PREFIX`]; [`RunSummary::find`] reads it back.

use serde::{Deserialize, Serialize};

/// What starts the JSON summary line on stderr (then a JSON object, then the end of the line).
pub const JSON_PREFIX: &str = "summary-json: ";

/// The environment variable that asks for the JSON line (any value but empty, `0` or `false`).
pub const JSON_ENV: &str = "OFFSET_TRACKING_SUMMARY_JSON";

/// Runs shorter than this show no rate to a person (`-`): a few messages delivered or confirmed
/// at once would make one of millions a second.
pub const MIN_RATE_SECONDS: f64 = 0.01;

/// `messages / seconds` for a person to read: `None` for a run under [`MIN_RATE_SECONDS`].
pub fn rate(messages: u64, seconds: f64) -> Option<f64> {
    (seconds >= MIN_RATE_SECONDS).then(|| messages as f64 / seconds)
}

/// [`rate`] as the `summary:` line's `msg_per_s=` field: whole messages a second, or `-`.
pub fn rate_field(messages: u64, seconds: f64) -> String {
    rate(messages, seconds).map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `producer` or `consumer`.
    pub program: String,
    /// Messages published and confirmed (producer) or processed (consumer), over all partitions.
    pub messages: u64,
    /// From the first publish or delivery to the last confirm or the marker.
    pub seconds: f64,
    /// `messages / seconds`.
    pub msg_per_s: f64,
    /// Connections lost and made again (producer) or subscriptions made again (consumer).
    pub reconnects: u64,
    /// The consumer's partitions (one for a plain stream); empty for the producer.
    #[serde(default)]
    pub partitions: Vec<PartitionSummary>,
}

/// What the consumer did on one stream (a plain stream, or one partition of a super stream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionSummary {
    /// The stream or partition.
    pub stream: String,
    /// Messages processed.
    pub messages: u64,
    /// From the first delivery to the end.
    pub seconds: f64,
    /// Offset of the first message processed.
    pub first_offset: Option<u64>,
    /// Offset of the last message processed.
    pub last_offset: Option<u64>,
    /// The offset the tracker last stored (confirmed by reading it back on the final flush).
    pub stored_offset: Option<u64>,
    /// Offset stores sent.
    pub stores: u64,
    /// Offset stores that failed.
    pub store_errors: u64,
    /// Subscriptions made again after a lost connection or a moved stream.
    pub reconnects: u64,
    /// Of those, the ones made on another node than before.
    #[serde(default)]
    pub failovers: u64,
    /// The longest time consumption was interrupted (from losing the subscription to having it
    /// again), in milliseconds.
    #[serde(default)]
    pub max_interruption_ms: u64,
    /// How far behind the stream's end it was, in seconds, as last sampled (every 5 s): 0 when
    /// nothing followed the last processed message; `None` without a sample.
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    /// The most it was behind, in seconds, over the samples.
    #[serde(default)]
    pub max_lag_seconds: Option<f64>,
    /// Whether the marker was processed.
    pub marker: bool,
}

impl RunSummary {
    /// Whether the JSON line was asked for through the environment.
    pub fn json_requested_by_env() -> bool {
        std::env::var(JSON_ENV).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
    }

    /// The JSON line (without its newline).
    pub fn json_line(&self) -> String {
        // Serialising plain numbers, strings and options cannot fail.
        let json = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        format!("{JSON_PREFIX}{json}")
    }

    /// Writes the JSON line to stderr.
    pub fn print_json(&self) {
        eprintln!("{}", self.json_line());
    }

    /// The last JSON summary line in `stderr` (what a run printed), if any parses.
    pub fn find(stderr: &str) -> Option<RunSummary> {
        stderr
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(JSON_PREFIX))
            .and_then(|json| serde_json::from_str(json.trim()).ok())
    }

    /// Markers processed over every partition.
    pub fn markers(&self) -> usize {
        self.partitions.iter().filter(|p| p.marker).count()
    }

    /// The summary of partition `stream`.
    pub fn partition(&self, stream: &str) -> Option<&PartitionSummary> {
        self.partitions.iter().find(|p| p.stream == stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_too_short_to_time_shows_no_rate() {
        assert_eq!(rate(10, 0.000_3), None);
        assert_eq!(rate_field(10, 0.000_3), "-");
        assert_eq!(rate(1_000, 0.5), Some(2_000.0));
        assert_eq!(rate_field(1_000, 0.5), "2000");
    }

    #[test]
    fn the_json_line_reads_back_from_a_log() {
        let summary = RunSummary {
            program: "consumer".into(),
            messages: 3,
            seconds: 0.5,
            msg_per_s: 6.0,
            reconnects: 1,
            partitions: vec![PartitionSummary {
                stream: "s".into(),
                messages: 3,
                first_offset: Some(0),
                last_offset: Some(2),
                lag_seconds: Some(0.0),
                max_lag_seconds: Some(4.25),
                marker: true,
                ..PartitionSummary::default()
            }],
        };
        let log = format!("INFO something\n{}\nINFO after\n", summary.json_line());
        assert_eq!(RunSummary::find(&log), Some(summary));
        assert_eq!(RunSummary::find("summary: messages=3"), None);
    }

    #[test]
    fn a_line_without_the_lag_reads_back_without_it() {
        let older = r#"summary-json: {"program":"consumer","messages":1,"seconds":1.0,"msg_per_s":1.0,"reconnects":0,"partitions":[{"stream":"s","messages":1,"seconds":1.0,"first_offset":0,"last_offset":0,"stored_offset":0,"stores":1,"store_errors":0,"reconnects":0,"marker":true}]}"#;
        let summary = RunSummary::find(older).unwrap();
        assert_eq!(summary.partitions[0].lag_seconds, None);
        assert_eq!(summary.partitions[0].max_lag_seconds, None);
    }
}
