//! Progress of long work, on stderr and off the per-message path (the owner ticks it once a
//! second from a timer): a live bar on a terminal; elsewhere (pipes, CI) one plain line every few
//! seconds, never escape codes. Work shorter than a second shows nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Nothing is shown before the work has run this long.
const QUIET_START: Duration = Duration::from_secs(1);

/// Off a terminal, a line this often.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// How often owners should call [`Reporter::tick`].
pub const TICK: Duration = Duration::from_secs(1);

/// See the module documentation.
pub struct Reporter {
    what: &'static str,
    total: Option<u64>,
    started: Instant,
    terminal: bool,
    bar: Option<ProgressBar>,
    last_line: (Instant, u64),
}

impl Reporter {
    /// Progress of `what` (e.g. "confirmed"), out of `total` if known.
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        let now = Instant::now();
        Self {
            what,
            total,
            started: now,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            last_line: (now, 0),
        }
    }

    /// Shows `count` and `details` (e.g. offsets) if it is time to.
    pub fn tick(&mut self, count: u64, details: &str) {
        if self.started.elapsed() < QUIET_START {
            return;
        }
        let (at, before) = self.last_line;
        if !self.terminal && at.elapsed() < LINE_EVERY {
            return;
        }
        let rate = count.saturating_sub(before) as f64 / at.elapsed().as_secs_f64().max(1e-9);
        let details = if details.is_empty() {
            String::new()
        } else {
            format!(", {details}")
        };
        self.last_line = (Instant::now(), count);
        if self.terminal {
            let bar = self
                .bar
                .get_or_insert_with(|| new_bar(self.what, self.total));
            bar.set_position(count);
            bar.set_message(format!("{rate:.0} msg/s{details}"));
        } else {
            let of = self.total.map(|t| format!(" of {t}")).unwrap_or_default();
            tracing::info!(
                "progress: {} {count}{of}, {rate:.0} msg/s{details}",
                self.what
            );
        }
    }

    /// Removes the bar, if one was drawn.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn new_bar(what: &'static str, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            "{bar:30} {pos}/{len} {prefix}, {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {pos} {prefix}, {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(what);
    bar
}
