//! What the consumer's progress display says ([`shared::progress`] draws it): how far behind the
//! stream's end it is — the backlog, which makes a bar with percent and ETA while catching up and
//! a spinner once tailing — and the offsets beside the count.
//!
//! The stream's end is sampled (the first offset of its last committed chunk, see
//! `consume/health.rs`), so the backlog is a gauge off by up to a chunk, and it counts offsets,
//! which include the log's tracking entries: an upper bound on messages left.

use shared::offset_spec::show_offset;
use shared::progress::count;
use shared::OffsetSpec;

/// Offsets between where the consumer is and the stream's sampled `end`: after the last
/// processed offset, else after the stored one, else from where it attached (`start`). `None`
/// while the end is not sampled yet, or the start is a time (not an offset).
pub(crate) fn behind(
    end: Option<u64>,
    last_processed: Option<u64>,
    stored: Option<u64>,
    start: OffsetSpec,
) -> Option<u64> {
    let end = end?;
    if let Some(at) = last_processed.or(stored) {
        return Some(end.saturating_sub(at));
    }
    match start {
        // Nothing taken yet: everything from `n` on is left (`end` itself included).
        OffsetSpec::Offset(n) => Some((end + 1).saturating_sub(n)),
        OffsetSpec::First => Some(end + 1),
        OffsetSpec::Last | OffsetSpec::Next => Some(0),
        OffsetSpec::Timestamp(_) => None,
    }
}

/// The offsets shown after the count and rate.
pub(crate) fn details(
    last_processed: Option<u64>,
    stored: Option<u64>,
    behind: Option<u64>,
) -> String {
    let offset = |o: Option<u64>| o.map_or_else(|| show_offset(None), count);
    let lag = behind.map_or_else(|| "?".to_owned(), count);
    format!(
        "last processed {}, last stored {}, lag {lag}",
        offset(last_processed),
        offset(stored)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_known_before_anything_is_processed() {
        assert_eq!(behind(None, Some(5), None, OffsetSpec::First), None);
        assert_eq!(
            behind(Some(1_000), None, None, OffsetSpec::First),
            Some(1_001)
        );
        assert_eq!(
            behind(Some(1_000), None, None, OffsetSpec::Offset(900)),
            Some(101)
        );
        assert_eq!(behind(Some(1_000), None, None, OffsetSpec::Next), Some(0));
        assert_eq!(
            behind(Some(1_000), None, Some(400), OffsetSpec::Offset(401)),
            Some(600)
        );
        assert_eq!(
            behind(Some(1_000), Some(990), Some(400), OffsetSpec::First),
            Some(10)
        );
        // The sampled end is a chunk's first offset: past it is not "ahead".
        assert_eq!(
            behind(Some(1_000), Some(1_003), None, OffsetSpec::First),
            Some(0)
        );
    }

    #[test]
    fn offsets_have_thousands_separators() {
        assert_eq!(
            details(Some(1_234_567), None, Some(12_000)),
            format!(
                "last processed 1,234,567, last stored {}, lag 12,000",
                show_offset(None)
            )
        );
    }
}
