//! What the programs write on stdout, written so that a reader who leaves early
//! (`consumer | head -1`) ends the run quietly and cleanly instead of a panic.
//!
//! `println!` panics when the pipe's reader is gone (EPIPE: Rust ignores SIGPIPE). Every line
//! here goes through [`write`] instead: the first EPIPE marks stdout closed, wakes [`closed`]
//! (which [`super::until_stopped`] treats like SIGTERM: stop, store what was processed, exit 0),
//! and every later write is skipped. Exit status 0 on a closed pipe, as `ripgrep` and `fd` do:
//! the reader stopping is a normal end of the run, not a failure.
//!
//! Two kinds of lines: the program's output proper ([`write`], [`outln!`](crate::outln)) and
//! the tutorial's status lines ([`status`], `Started consuming`, …), which move to the log
//! (stderr) when stdout carries records only ([`records_only`], `consumer --print`).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Cancelled on the first write that finds stdout's reader gone.
fn closed_token() -> &'static CancellationToken {
    static CLOSED: OnceLock<CancellationToken> = OnceLock::new();
    CLOSED.get_or_init(CancellationToken::new)
}

static RECORDS_ONLY: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` (whole lines) to stdout under its lock and flushes. A reader gone (EPIPE)
/// marks stdout closed and is returned as [`io::ErrorKind::BrokenPipe`]; once closed, nothing
/// more is written and every call returns that error.
pub fn write(bytes: &[u8]) -> io::Result<()> {
    if is_closed() {
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    // A progress bar drawn on the terminal is lifted while the line is written, so no stale
    // copy of it stays above the line.
    let written = crate::progress::suspend(|| {
        let mut out = io::stdout().lock();
        out.write_all(bytes).and_then(|()| out.flush())
    });
    if let Err(err) = &written {
        if err.kind() == io::ErrorKind::BrokenPipe {
            mark_closed();
        }
    }
    written
}

/// Writes one line (`args` and a newline); see [`write`].
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut text = args.to_string();
    text.push('\n');
    write(text.as_bytes())
}

/// A status line of the tutorial's (`Started consuming`): on stdout, or in the log when stdout
/// carries records only. A closed stdout is not an error here (it stops the run through
/// [`closed`]); another write error is logged once per line, not fatal: these lines report,
/// they are not the work.
pub fn status(args: fmt::Arguments<'_>) {
    if RECORDS_ONLY.load(Ordering::Relaxed) {
        tracing::info!("{args}");
        return;
    }
    if let Err(err) = line(args) {
        if err.kind() != io::ErrorKind::BrokenPipe {
            tracing::warn!("cannot write to stdout: {err}");
        }
    }
}

/// From now on stdout carries records only: [`status`] lines go to the log.
pub fn records_only() {
    RECORDS_ONLY.store(true, Ordering::Relaxed);
}

/// Whether a write found stdout's reader gone.
pub fn is_closed() -> bool {
    closed_token().is_cancelled()
}

/// Resolves once a write found stdout's reader gone.
pub fn closed() -> WaitForCancellationFuture<'static> {
    closed_token().cancelled()
}

fn mark_closed() {
    if !is_closed() {
        tracing::info!(
            "stdout was closed by its reader (the pipe ended): nothing more is written there"
        );
        closed_token().cancel();
    }
}

/// `println!` that never panics: writes a line to stdout through
/// [`shared::runtime::stdout::line`](crate::runtime::stdout::line), returning its
/// `io::Result` (a reader gone is `BrokenPipe`, and stops a run waiting in
/// [`until_stopped`](crate::runtime::until_stopped)).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::runtime::stdout::line(::std::format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_is_written_whole() {
        // The test harness captures nothing written to the real stdout lock; this checks that
        // a plain write works and that nothing marked stdout closed.
        assert!(crate::outln!("stdout test line {}", 1).is_ok());
        assert!(!super::is_closed());
    }
}
