//! The end of the output: one line per target of issues #5 and #9 (met or missed), and the final
//! `bench summary:` line of ratios, stores and peak RSS figures.

use std::fmt;

use crate::row::mib;

/// The targets of issue #5.
const TARGET_PRODUCER_RATIO: f64 = 0.9;
const TARGET_CONSUMER_RATIO: f64 = 0.8;
const TARGET_TUTORIAL_RATIO: f64 = 50.0;
/// Issue #9: the SQLite sink against raw consuming with no stores.
const TARGET_SINK_RATIO: f64 = 0.5;
const TARGET_PEAK_RSS_MIB: f64 = 64.0;

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
}

impl BenchSummary {
    /// One line per target of issue #5: met or missed.
    pub(crate) fn print_targets(&self) {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        println!(
            "target producer/raw >= {TARGET_PRODUCER_RATIO}: {:.2} {}",
            self.producer_vs_raw,
            verdict(self.producer_vs_raw >= TARGET_PRODUCER_RATIO)
        );
        println!(
            "target consumer@10/raw >= {TARGET_CONSUMER_RATIO}: {:.2} {}",
            self.consumer10_vs_raw,
            verdict(self.consumer10_vs_raw >= TARGET_CONSUMER_RATIO)
        );
        println!(
            "target sqlite sink/raw >= {TARGET_SINK_RATIO}: {:.2} {}",
            self.sqlite_sink_vs_raw,
            verdict(self.sqlite_sink_vs_raw >= TARGET_SINK_RATIO)
        );
        println!(
            "target consumer@10/tutorial >= {TARGET_TUTORIAL_RATIO}: {:.0} {}",
            self.consumer10_vs_tutorial,
            verdict(self.consumer10_vs_tutorial >= TARGET_TUTORIAL_RATIO)
        );
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

impl fmt::Display for BenchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rss = |kib: Option<u64>| {
            kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}MiB", mib(k)))
        };
        write!(
            f,
            "bench summary: producer/raw={:.2} consumer@10/raw={:.2} consumer@10/tutorial={:.0} \
             consumer@10000/raw={:.2} sqlite_sink/raw={:.2} stores@10={} stores@10000={} \
             peak_rss_producer={} peak_rss_consumer={} rss_messages={}",
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
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(
            summary.to_string(),
            "bench summary: producer/raw=0.95 consumer@10/raw=0.81 consumer@10/tutorial=62 \
             consumer@10000/raw=0.97 sqlite_sink/raw=0.55 stores@10=9500 stores@10000=101 \
             peak_rss_producer=16.0MiB peak_rss_consumer=n/a rss_messages=10000000"
        );
    }
}
