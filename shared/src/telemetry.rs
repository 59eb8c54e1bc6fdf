//! Diagnostics: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), so that stdout
//! carries only the tutorial's lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Without `RUST_LOG`: our own `info` lines; the client library only when something is wrong
/// (it warns "Stream closed" on every clean close).
const DEFAULT_FILTER: &str = "info,rabbitmq_stream_client=error";

/// Installs the stderr subscriber; call once at the start of `main`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
