//! Progress of long work, on stderr and off the per-message path (the owner ticks it once a
//! second from a timer): a live `indicatif` bar on a terminal — with percent and ETA when the
//! work left is known (a wave's size, a consumer's backlog), a spinner when it is not (a consumer
//! tailing the stream); elsewhere (pipes, CI) a plain `progress:` line every few seconds, never
//! escape codes, and never the same line twice in a row (an idle consumer says so once).
//!
//! Rates are the current rate (over the last few seconds), not the average since the start;
//! counts have thousands separators. Work shorter than a second shows nothing. [`table`] lays
//! out a run's final summary for a terminal.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Nothing is shown before the work has run this long.
const QUIET_START: Duration = Duration::from_secs(1);

/// Off a terminal, a line at most this often (and only when it says something new).
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The current rate is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// How often owners should call [`Reporter::tick`].
pub const TICK: Duration = Duration::from_secs(1);

/// Whether stderr, where progress goes, is a terminal.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// The bars drawn now, lifted by [`suspend`] while another line is written.
static DRAWN: Mutex<Vec<(u64, ProgressBar)>> = Mutex::new(Vec::new());

/// Tells the bars of [`DRAWN`] apart.
static NEXT_BAR: AtomicU64 = AtomicU64::new(0);

fn drawn() -> std::sync::MutexGuard<'static, Vec<(u64, ProgressBar)>> {
    DRAWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `write` (a line to stdout or stderr) with the bar lifted and drawn again after it, so
/// that no stale copy of the bar is left above the line. Without a bar, just runs it.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    let bar = drawn().first().map(|(_, bar)| bar.clone());
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Stderr for the log (`tracing_subscriber`'s `with_writer(shared::progress::stderr)`): each
/// write lifts the bar first ([`suspend`]).
pub fn stderr() -> Stderr {
    Stderr
}

/// See [`stderr`].
#[derive(Debug, Clone, Copy)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// What the bar looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The work left is known: a bar with percent and ETA.
    Bar,
    /// It is not (or there is none: tailing): a spinner and the count.
    Spinner,
}

/// See the module documentation.
pub struct Reporter {
    what: &'static str,
    total: Option<u64>,
    started: Instant,
    terminal: bool,
    bar: Option<(ProgressBar, Shape)>,
    /// This reporter's bar in [`DRAWN`].
    id: u64,
    /// Recent `(when, count)` samples, oldest first, for the current rate.
    samples: VecDeque<(Instant, u64)>,
    /// Off a terminal: when the last line was considered, and what it said.
    last_line: Option<(Instant, String)>,
}

impl Reporter {
    /// Progress of `what` (e.g. "confirmed"), out of `total` if known.
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        Self::with_terminal(what, total, on_terminal())
    }

    /// Like [`Reporter::new`], saying whether stderr is a terminal (for tests).
    fn with_terminal(what: &'static str, total: Option<u64>, terminal: bool) -> Self {
        let now = Instant::now();
        Self {
            what,
            total,
            started: now,
            terminal,
            bar: None,
            id: NEXT_BAR.fetch_add(1, Ordering::Relaxed),
            samples: VecDeque::from([(now, 0)]),
            last_line: None,
        }
    }

    /// Shows `count` and `details` (e.g. offsets) if it is time to, against the total given to
    /// [`Reporter::new`].
    pub fn tick(&mut self, count: u64, details: &str) {
        self.tick_behind(count, None, details);
    }

    /// Shows `count`, with `behind` more known to be left (a consumer's backlog: a bar with
    /// percent and ETA; `Some(0)` or `None` without a total: a spinner), and `details`.
    pub fn tick_behind(&mut self, count: u64, behind: Option<u64>, details: &str) {
        let now = Instant::now();
        let rate = self.sample(now, count);
        if now.duration_since(self.started) < QUIET_START {
            return;
        }
        let length = match (self.total, behind) {
            (Some(total), _) => Some(total.max(count)),
            (None, Some(left)) if left > 0 => Some(count.saturating_add(left)),
            _ => None,
        };
        let left = length.map(|length| length.saturating_sub(count));
        let eta = match left {
            Some(left) if rate >= 1.0 => format!(", ETA {}", HumanDuration(eta(left, rate))),
            _ => String::new(),
        };
        let details = if details.is_empty() {
            String::new()
        } else {
            format!(", {details}")
        };
        let rate = HumanCount(rate.round() as u64);
        if self.terminal {
            let bar = self.bar(length);
            bar.set_position(count);
            bar.set_message(format!("{rate} msg/s{eta}{details}"));
            bar.tick();
            return;
        }
        let of = match length {
            Some(length) if length > 0 => format!(
                " of {} ({}%)",
                HumanCount(length),
                count.saturating_mul(100) / length
            ),
            _ => String::new(),
        };
        let line = format!(
            "progress: {} {}{of}, {rate} msg/s{eta}{details}",
            self.what,
            HumanCount(count)
        );
        let due = match &self.last_line {
            None => true,
            // An identical line is not repeated: an idle consumer says so once, and the next
            // change shows at the next tick.
            Some((at, said)) => now.duration_since(*at) >= LINE_EVERY && *said != line,
        };
        if due {
            tracing::info!("{line}");
            self.last_line = Some((now, line));
        }
    }

    /// Records a sample and returns the current rate (per second, over [`RATE_WINDOW`]).
    fn sample(&mut self, now: Instant, count: u64) -> f64 {
        self.samples.push_back((now, count));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let Some(&(since, before)) = self.samples.front() else {
            return 0.0;
        };
        let seconds = now.duration_since(since).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        count.saturating_sub(before) as f64 / seconds
    }

    /// The bar, made or reshaped for `length` (`None`: a spinner).
    fn bar(&mut self, length: Option<u64>) -> &ProgressBar {
        let shape = if length.is_some() {
            Shape::Bar
        } else {
            Shape::Spinner
        };
        let fresh = self.bar.is_none();
        let (bar, drawn) = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
            bar.set_prefix(self.what);
            drawn().push((self.id, bar.clone()));
            (bar, shape)
        });
        if bar.length() != length {
            match length {
                Some(length) => bar.set_length(length),
                None => bar.unset_length(),
            }
        }
        if fresh || *drawn != shape {
            let template = match shape {
                Shape::Bar => "{bar:30} {percent:>3}% {human_pos}/{human_len} {prefix}, {msg}",
                Shape::Spinner => "{spinner} {human_pos} {prefix}, {msg}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            *drawn = shape;
        }
        bar
    }

    /// Removes the bar, if one was drawn.
    pub fn finish(&mut self) {
        if let Some((bar, _)) = self.bar.take() {
            drawn().retain(|(id, _)| *id != self.id);
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Time to do `left` more at `rate` per second.
fn eta(left: u64, rate: f64) -> Duration {
    Duration::from_secs_f64((left as f64 / rate).min(365.0 * 24.0 * 3600.0))
}

/// `rows` under `header`, each column as wide as its widest cell, numbers right-aligned: a
/// run's summary as a person reads it on a terminal.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let numeric = |column: usize| {
        rows.iter().all(|row| {
            row.get(column).is_none_or(|cell| {
                cell.chars()
                    .all(|c| c.is_ascii_digit() || ",.-".contains(c))
            })
        })
    };
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (column, cell) in cells.iter().enumerate().take(columns) {
            let width = widths[column];
            if column > 0 {
                out.push_str("  ");
            }
            if numeric(column) {
                out.push_str(&format!("{cell:>width$}"));
            } else {
                out.push_str(&format!("{cell:<width$}"));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The run's summary as a short table on stderr, when stderr is a terminal (the `summary:` line
/// and `--summary-json` are printed as ever, for scripts).
pub fn show_summary(summary: &crate::summary::RunSummary) {
    if on_terminal() {
        eprintln!("{}", summary_table(summary));
    }
}

/// [`show_summary`]'s table: one row per partition for the consumer, one row for the producer.
pub fn summary_table(summary: &crate::summary::RunSummary) -> String {
    let offset = |o: Option<u64>| o.map_or_else(|| "-".to_owned(), count);
    let seconds = |s: f64| format!("{s:.1}");
    let rate = |messages: u64, s: f64| {
        crate::summary::rate(messages, s)
            .map_or_else(|| "-".to_owned(), |r| count(r.round() as u64))
    };
    if summary.partitions.is_empty() {
        return table(
            &["messages", "seconds", "msg/s", "reconnects"],
            &[vec![
                count(summary.messages),
                seconds(summary.seconds),
                rate(summary.messages, summary.seconds),
                count(summary.reconnects),
            ]],
        );
    }
    let mut rows: Vec<Vec<String>> = summary
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.stream.clone(),
                count(p.messages),
                seconds(p.seconds),
                rate(p.messages, p.seconds),
                offset(p.first_offset),
                offset(p.last_offset),
                offset(p.stored_offset),
                count(p.stores),
                count(p.reconnects),
            ]
        })
        .collect();
    if rows.len() > 1 {
        rows.push(vec![
            "total".into(),
            count(summary.messages),
            seconds(summary.seconds),
            rate(summary.messages, summary.seconds),
            "-".into(),
            "-".into(),
            "-".into(),
            count(summary.partitions.iter().map(|p| p.stores).sum()),
            count(summary.reconnects),
        ]);
    }
    table(
        &[
            "stream",
            "messages",
            "seconds",
            "msg/s",
            "first",
            "last",
            "stored",
            "stores",
            "reconnects",
        ],
        &rows,
    )
}

/// `n` with thousands separators (`1,234,567`).
pub fn count(n: u64) -> String {
    HumanCount(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_recent_one_not_the_average() {
        let mut reporter = Reporter::with_terminal("processed", None, false);
        let start = reporter.started;
        // 1,000 a second for 10 s, then nothing for 6 s.
        for second in 1..=10u64 {
            reporter.sample(start + Duration::from_secs(second), second * 1000);
        }
        let busy = reporter.sample(start + Duration::from_secs(11), 11_000);
        assert!((busy - 1000.0).abs() < 1.0, "{busy}");
        let mut idle = 0.0;
        for second in 12..=17u64 {
            idle = reporter.sample(start + Duration::from_secs(second), 11_000);
        }
        assert!(idle < 1.0, "the rate once idle: {idle}");
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let shown = table(
            &["stream", "messages", "msg/s"],
            &[
                vec!["orders-0".into(), count(1_234_567), "98,765".into()],
                vec!["o-1".into(), count(5), "1".into()],
            ],
        );
        assert_eq!(
            shown,
            "stream     messages   msg/s\n\
             orders-0  1,234,567  98,765\n\
             o-1               5       1"
        );
    }
}
