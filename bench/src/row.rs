//! One row of results: what was measured, the line that shows it, and how long a row may take.

use std::time::Duration;

/// One row's measurement.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Measured {
    /// Messages per second.
    pub(crate) rate: f64,
    /// Seconds timed.
    pub(crate) seconds: f64,
    /// Messages timed.
    pub(crate) messages: u64,
    /// Offset stores sent (consumer rows).
    pub(crate) stores: Option<u64>,
    /// Offset stores that failed (our consumer).
    pub(crate) store_errors: Option<u64>,
    /// Offset of the last message processed (our consumer).
    pub(crate) last_offset: Option<u64>,
    /// Offset the broker holds for the consumer's name after the run (our consumer).
    pub(crate) broker_offset: Option<u64>,
    /// Peak RSS of the process (our binaries).
    pub(crate) peak_rss_kib: Option<u64>,
}

/// The median of some rates (of an even count, the mean of the middle two; of none, 0).
pub(crate) fn median(rates: &[f64]) -> f64 {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

/// Prints one row of results: what was measured, its rate, and what else is known.
pub(crate) fn report(what: &str, label: &str, m: &Measured) {
    println!("{}", line(what, label, m));
}

/// The row's line.
fn line(what: &str, label: &str, m: &Measured) -> String {
    let mut line = format!(
        "{what:<8} {label:<76} {:>9.0} msg/s  {:>9} msgs in {:>7.3} s",
        m.rate, m.messages, m.seconds
    );
    if let Some(stores) = m.stores {
        line.push_str(&format!("  stores={stores}"));
    }
    if let Some(kib) = m.peak_rss_kib {
        line.push_str(&format!("  peak RSS {:.1} MiB", mib(kib)));
    }
    line
}

/// How long a row (a raw consumer, or one of our binaries) may take for a wave of `count`
/// messages: a minute, plus a second per 100 k.
pub(crate) fn deadline(count: u64) -> Duration {
    Duration::from_secs(60 + count / 100_000)
}

/// KiB to MiB.
pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_what_is_known() {
        let m = Measured {
            rate: 1234.4,
            seconds: 2.5,
            messages: 3086,
            stores: Some(7),
            peak_rss_kib: Some(2048),
            ..Measured::default()
        };
        let line = line("consume", "ours", &m);
        assert!(line.starts_with("consume  ours "), "{line}");
        assert!(
            line.ends_with(
                "     1234 msg/s       3086 msgs in   2.500 s  stores=7  peak RSS 2.0 MiB"
            ),
            "{line}"
        );
    }

    #[test]
    fn the_median_is_the_middle_rate_whatever_the_order() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[10.0, 1.0, 2.0, 5.0]), 3.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
    }
}
