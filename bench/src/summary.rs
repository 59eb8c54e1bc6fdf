//! The end of the output: one line per target of issues #5, #9, #15 and #19 and of the
//! async-handler rows (met or missed), the initial-credit ratios, and the final `bench summary:`
//! line of ratios, stores, latencies and peak RSS figures.

use std::fmt;

use crate::latency::{Latencies, Side, EVERY, RATES};
use crate::row::mib;

/// The targets of issue #5.
const TARGET_PRODUCER_RATIO: f64 = 0.9;
const TARGET_CONSUMER_RATIO: f64 = 0.8;
const TARGET_TUTORIAL_RATIO: f64 = 50.0;
/// Issue #9: the SQLite sink against raw consuming with no stores.
const TARGET_SINK_RATIO: f64 = 0.5;
const TARGET_PEAK_RSS_MIB: f64 = 64.0;
/// Issue #15: our consumer on a wave written as sub-entries against the same on plain entries.
const TARGET_SUB_ENTRY_RATIO: f64 = 0.9;
/// The async handler (1 ms per message, max_in_flight = 256, ordering by key) against its limit:
/// 256 / 1 ms, or raw consuming if lower.
const TARGET_IO_HANDLER_RATIO: f64 = 0.8;
/// Issue #19: p99 end-to-end latency of our consumer (store_every_messages = 10 000) at
/// 10 000 msg/s, in ms…
const TARGET_P99_MS_AT_10K: f64 = 5.0;
/// …and ours against the raw client's p99, at both rates.
const TARGET_P99_VS_RAW: f64 = 1.2;
/// Issue #19: our producer against raw publishing and our consumer at store_every_messages =
/// 10 000 against raw consuming, each the median of its rows.
const TARGET_MEDIAN_RATIO: f64 = 0.95;
/// The store setting of our consumer whose latencies the summary line carries.
const SUMMARY_EVERY: u64 = EVERY[1];

/// The `consumer.initial_credits` values of the flow-control rows (issue #15).
pub(crate) const CREDITS: [u16; 4] = [1, 2, 4, 10];

/// The ratios and figures of the last line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchSummary {
    pub(crate) rss_messages: u64,
    pub(crate) producer_vs_raw: f64,
    pub(crate) consumer10_vs_raw: f64,
    pub(crate) consumer10_vs_tutorial: f64,
    pub(crate) consumer10000_vs_raw: f64,
    pub(crate) sqlite_sink_vs_raw: f64,
    pub(crate) stores_10: u64,
    pub(crate) stores_10000: u64,
    pub(crate) peak_rss_producer_kib: Option<u64>,
    pub(crate) peak_rss_consumer_kib: Option<u64>,
    /// Our consumer at each `consumer.initial_credits` of [`CREDITS`] against the raw reference
    /// consume rate; empty when those rows were skipped.
    pub(crate) credits_vs_raw: Vec<(u16, f64)>,
    /// Our producer at each `producer.batch_size` of the batch-size rows against the raw
    /// reference publish rate; empty when those rows were skipped.
    pub(crate) batch_sizes_vs_raw: Vec<(u32, f64)>,
    /// Our consumer on the uncompressed sub-entry wave against the plain wave (skipped: `None`).
    pub(crate) subentry_none_vs_plain: Option<f64>,
    /// The same on the zstd sub-entry wave.
    pub(crate) subentry_zstd_vs_plain: Option<f64>,
    /// The async-handler row against its limit (skipped: `None`).
    pub(crate) io_handler_vs_limit: Option<f64>,
    /// The latency rows (skipped: `None`).
    pub(crate) latencies: Option<Latencies>,
}

impl BenchSummary {
    /// One line per target of issue #5: met or missed.
    pub(crate) fn print_targets(&self) {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let lines = [
            at_least(
                "producer/raw",
                TARGET_PRODUCER_RATIO,
                Some(self.producer_vs_raw),
                2,
            ),
            at_least(
                "consumer@10/raw",
                TARGET_CONSUMER_RATIO,
                Some(self.consumer10_vs_raw),
                2,
            ),
            at_least(
                "sqlite sink/raw",
                TARGET_SINK_RATIO,
                Some(self.sqlite_sink_vs_raw),
                2,
            ),
            at_least(
                "consumer@10/tutorial",
                TARGET_TUTORIAL_RATIO,
                Some(self.consumer10_vs_tutorial),
                0,
            ),
            at_least(
                "subentry_none/plain",
                TARGET_SUB_ENTRY_RATIO,
                self.subentry_none_vs_plain,
                2,
            ),
            at_least(
                "subentry_zstd/plain",
                TARGET_SUB_ENTRY_RATIO,
                self.subentry_zstd_vs_plain,
                2,
            ),
            at_least(
                "producer/raw (medians)",
                TARGET_MEDIAN_RATIO,
                Some(self.producer_vs_raw),
                2,
            ),
            at_least(
                "consumer@10000/raw (medians)",
                TARGET_MEDIAN_RATIO,
                Some(self.consumer10000_vs_raw),
                2,
            ),
            at_least(
                "io_handler/limit",
                TARGET_IO_HANDLER_RATIO,
                self.io_handler_vs_limit,
                2,
            ),
        ];
        for line in lines {
            println!("{line}");
        }
        self.print_latency_targets();
        if let Some(line) = sweep(
            "initial credits against raw consuming",
            &self.credits_vs_raw,
        ) {
            println!("{line}");
        }
        if let Some(line) = sweep(
            "producer.batch_size against raw publishing",
            &self.batch_sizes_vs_raw,
        ) {
            println!("{line}");
        }
        for (who, kib) in [
            ("producer", self.peak_rss_producer_kib),
            ("consumer", self.peak_rss_consumer_kib),
        ] {
            match kib {
                Some(kib) => println!(
                    "target peak RSS of the {who} on {} messages <= {TARGET_PEAK_RSS_MIB} MiB: \
                     {:.1} MiB {}",
                    self.rss_messages,
                    mib(kib),
                    verdict(mib(kib) <= TARGET_PEAK_RSS_MIB)
                ),
                None => println!("target peak RSS of the {who}: not measured"),
            }
        }
    }
}

/// The line of a target that `measured` must reach: `target <what> >= <target>: <measured>
/// met|MISSED`, or `target <what>: not measured`.
fn at_least(what: &str, target: f64, measured: Option<f64>, decimals: usize) -> String {
    match measured {
        Some(value) => format!(
            "target {what} >= {target}: {value:.decimals$} {}",
            if value >= target { "met" } else { "MISSED" }
        ),
        None => format!("target {what}: not measured"),
    }
}

/// The line of a setting's sweep: each value's ratio and the fastest (`None` when not run).
fn sweep<K: fmt::Display>(what: &str, ratios: &[(K, f64)]) -> Option<String> {
    let (best, _) = ratios.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let each: Vec<String> = ratios
        .iter()
        .map(|(value, ratio)| format!("{value} → {ratio:.2}"))
        .collect();
    Some(format!("{what}: {}; fastest here: {best}", each.join(", ")))
}

impl BenchSummary {
    /// Issue #19's targets: our p99 at 10 000 msg/s, and ours against raw at each rate and store
    /// setting.
    fn print_latency_targets(&self) {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let Some(latencies) = &self.latencies else {
            println!("target latency p99: not measured");
            return;
        };
        let ours = Side::Ours {
            every: SUMMARY_EVERY,
        };
        if let Some(p99) = latencies.p99_ms(RATES[0], ours) {
            println!(
                "target p99 at {} msg/s (ours, store_every_messages={SUMMARY_EVERY}) <= \
                 {TARGET_P99_MS_AT_10K} ms: {p99:.2} ms {}",
                RATES[0],
                verdict(p99 <= TARGET_P99_MS_AT_10K)
            );
        }
        for rate in RATES {
            for every in EVERY {
                if let Some(ratio) = latencies.p99_vs_raw(rate, every) {
                    println!(
                        "target p99 ours/raw at {rate} msg/s (store_every_messages={every}) <= \
                         {TARGET_P99_VS_RAW}: {ratio:.2} {}",
                        verdict(ratio <= TARGET_P99_VS_RAW)
                    );
                }
            }
        }
    }
}

impl fmt::Display for BenchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rss = |kib: Option<u64>| {
            kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}MiB", mib(k)))
        };
        let ratio = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"));
        let credits: Vec<String> = CREDITS
            .iter()
            .map(|c| {
                let found = self.credits_vs_raw.iter().find(|(k, _)| k == c);
                format!("consumer@credits{c}/raw={}", ratio(found.map(|(_, r)| *r)))
            })
            .collect();
        let ours = Side::Ours {
            every: SUMMARY_EVERY,
        };
        let latency = |rate: u64| {
            let p99 = self.latencies.as_ref().and_then(|l| l.p99_ms(rate, ours));
            let vs_raw = self
                .latencies
                .as_ref()
                .and_then(|l| l.p99_vs_raw(rate, SUMMARY_EVERY));
            let label = format!("{}k", rate / 1_000);
            format!(
                "p99_ms@{label}={} p99@{label}/raw={}",
                p99.map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.2}")),
                ratio(vs_raw)
            )
        };
        let latencies: Vec<String> = RATES.iter().map(|rate| latency(*rate)).collect();
        write!(
            f,
            "bench summary: producer/raw={:.2} consumer@10/raw={:.2} consumer@10/tutorial={:.0} \
             consumer@10000/raw={:.2} sqlite_sink/raw={:.2} stores@10={} stores@10000={} \
             peak_rss_producer={} peak_rss_consumer={} rss_messages={} {} subentry_none/plain={} \
             subentry_zstd/plain={} io_handler/limit={} {}",
            self.producer_vs_raw,
            self.consumer10_vs_raw,
            self.consumer10_vs_tutorial,
            self.consumer10000_vs_raw,
            self.sqlite_sink_vs_raw,
            self.stores_10,
            self.stores_10000,
            rss(self.peak_rss_producer_kib),
            rss(self.peak_rss_consumer_kib),
            self.rss_messages,
            credits.join(" "),
            ratio(self.subentry_none_vs_plain),
            ratio(self.subentry_zstd_vs_plain),
            ratio(self.io_handler_vs_limit),
            latencies.join(" "),
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_target_line_says_met_missed_or_not_measured() {
        assert_eq!(
            at_least("producer/raw", 0.9, Some(0.8951), 2),
            "target producer/raw >= 0.9: 0.90 MISSED"
        );
        assert_eq!(
            at_least("consumer@10/tutorial", 50.0, Some(72.4), 0),
            "target consumer@10/tutorial >= 50: 72 met"
        );
        assert_eq!(
            at_least("io_handler/limit", 0.8, None, 2),
            "target io_handler/limit: not measured"
        );
    }

    #[test]
    fn a_sweep_names_each_value_and_the_fastest() {
        assert_eq!(
            sweep("batch", &[(10u32, 0.5), (100, 1.17), (1000, 1.08)]).as_deref(),
            Some("batch: 10 → 0.50, 100 → 1.17, 1000 → 1.08; fastest here: 100")
        );
        assert_eq!(sweep::<u16>("credits", &[]), None);
    }

    use super::*;
    use crate::latency::test_row;

    #[test]
    fn the_summary_line_names_every_figure() {
        let summary = BenchSummary {
            rss_messages: 10_000_000,
            producer_vs_raw: 0.951,
            consumer10_vs_raw: 0.81,
            consumer10_vs_tutorial: 62.3,
            consumer10000_vs_raw: 0.97,
            sqlite_sink_vs_raw: 0.55,
            stores_10: 9500,
            stores_10000: 101,
            peak_rss_producer_kib: Some(16 * 1024),
            peak_rss_consumer_kib: None,
            credits_vs_raw: vec![(1, 0.5), (2, 0.61), (4, 0.7), (10, 0.75)],
            batch_sizes_vs_raw: vec![(10, 0.5), (100, 0.9)],
            subentry_none_vs_plain: Some(0.97),
            subentry_zstd_vs_plain: None,
            io_handler_vs_limit: Some(0.853),
            latencies: Some(Latencies {
                rows: vec![
                    test_row(10_000, Side::Raw, 1_000),
                    test_row(10_000, Side::Ours { every: 10 }, 2_000),
                    test_row(10_000, Side::Ours { every: 10_000 }, 1_150),
                    test_row(100_000, Side::Ours { every: 10_000 }, 2_500),
                ],
            }),
        };
        assert_eq!(
            summary.to_string(),
            "bench summary: producer/raw=0.95 consumer@10/raw=0.81 consumer@10/tutorial=62 \
             consumer@10000/raw=0.97 sqlite_sink/raw=0.55 stores@10=9500 stores@10000=101 \
             peak_rss_producer=16.0MiB peak_rss_consumer=n/a rss_messages=10000000 \
             consumer@credits1/raw=0.50 consumer@credits2/raw=0.61 consumer@credits4/raw=0.70 \
             consumer@credits10/raw=0.75 subentry_none/plain=0.97 subentry_zstd/plain=n/a \
             io_handler/limit=0.85 p99_ms@10k=1.15 p99@10k/raw=1.15 p99_ms@100k=2.50 \
             p99@100k/raw=n/a"
        );
        let skipped = BenchSummary {
            latencies: None,
            ..summary
        };
        assert!(skipped
            .to_string()
            .ends_with("p99_ms@10k=n/a p99@10k/raw=n/a p99_ms@100k=n/a p99@100k/raw=n/a"));
    }
}
