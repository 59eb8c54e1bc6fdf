//! The bench's options.

use std::path::PathBuf;

use clap::Parser;

/// Issue #5's benchmark: our producer and consumer + tracker against the raw client.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// Messages per wave: each publisher publishes this many, each consumer row consumes them.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) messages: u64,

    /// Messages of the wave on which the peak RSS of our producer and consumer is measured
    /// (0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) rss_messages: u64,

    /// Most messages the tutorial-pattern row consumes (it is ~100 × slower than the others).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) tutorial_messages: u64,

    /// Most seconds the tutorial-pattern row consumes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) tutorial_seconds: u64,

    /// Skip the rows of our consumer at `consumer.initial_credits` = 1, 2, 4 and 10.
    #[arg(long)]
    pub(crate) no_credit_rows: bool,

    /// Skip the sub-entry rows: a wave of `--messages` written as sub-entry batches of 100
    /// (uncompressed and zstd) consumed by our consumer, against the plain wave.
    #[arg(long)]
    pub(crate) no_sub_entry_rows: bool,

    /// Directory of the `producer` and `consumer` binaries (default: the bench's own directory,
    /// e.g. target/release).
    #[arg(long, value_name = "DIR")]
    pub(crate) bin_dir: Option<PathBuf>,

    /// How peak RSS is measured: GNU time when it is installed, else polling /proc/PID/status.
    #[arg(long, value_enum, default_value_t = RssProbe::Auto)]
    pub(crate) rss_probe: RssProbe,

    #[command(flatten)]
    pub(crate) config: shared::cli::ConfigArgs,
}

/// How peak RSS is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RssProbe {
    /// `time` if `/usr/bin/time` exists, else `proc`.
    Auto,
    /// `/usr/bin/time -f %M`: the kernel's maximum resident set size of the process.
    Time,
    /// `VmHWM` from `/proc/PID/status`, sampled every 10 ms while the process runs.
    Proc,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_options_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn zero_messages_is_refused() {
        assert!(Cli::try_parse_from(["bench", "--messages", "0"]).is_err());
        let cli = Cli::try_parse_from(["bench", "--rss-messages", "0"]);
        assert!(cli.is_ok_and(|cli| cli.rss_messages == 0 && cli.messages == 1_000_000));
    }
}
