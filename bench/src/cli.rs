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

    /// Skip the rows of our producer at `producer.batch_size` = 10, 100, 1000 and 5000.
    #[arg(long)]
    pub(crate) no_batch_rows: bool,

    /// Skip the sub-entry rows: a wave of `--messages` written as sub-entry batches of 100
    /// (uncompressed and zstd) consumed by our consumer, against the plain wave.
    #[arg(long)]
    pub(crate) no_sub_entry_rows: bool,

    /// Skip the async-handler rows: the consumer crate's `io_handler` example at
    /// `--io-max-in-flight` (256) on a keyed wave of `--messages`, and at max_in_flight = 1 on a
    /// keyed wave of 3 000.
    #[arg(long)]
    pub(crate) no_io_rows: bool,

    /// Skip the end-to-end latency rows (publish → processed by the handler, at 10 000 and
    /// 100 000 msg/s: the raw client's consumer, ours storing every 10 and every 10 000).
    #[arg(long)]
    pub(crate) no_latency_rows: bool,

    /// Seconds each latency row publishes at its rate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) latency_seconds: u64,

    /// Quick latency rows: 2 seconds each instead of `--latency-seconds`.
    #[arg(long, conflicts_with = "latency_seconds")]
    pub(crate) latency_quick: bool,

    /// Milliseconds the `io_handler` example's stand-in I/O call (a sleep) takes per message in
    /// the async-handler rows (0: no sleep; the limit is then raw consuming).
    #[arg(long, default_value_t = 1)]
    pub(crate) io_work_ms: u64,

    /// `processing.max_in_flight` of the first async-handler row.
    #[arg(
        long,
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(shared::config::MAX_IN_FLIGHT))
    )]
    pub(crate) io_max_in_flight: u32,

    /// `processing.ordering` of the first async-handler row (`key`: the wave's 1 000 keys).
    #[arg(long, value_enum, default_value_t = IoOrdering::Key)]
    pub(crate) io_ordering: IoOrdering,

    /// Directory of the `producer` and `consumer` binaries (default: the bench's own directory,
    /// e.g. target/release).
    #[arg(long, value_name = "DIR")]
    pub(crate) bin_dir: Option<PathBuf>,

    /// How peak RSS is measured: GNU time when it is installed, else polling /proc/PID/status.
    #[arg(long, value_enum, default_value_t = RssProbe::Auto)]
    pub(crate) rss_probe: RssProbe,

    #[command(flatten)]
    pub(crate) config: shared::cli::ConfigArgs,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

impl Cli {
    /// Seconds per latency row.
    pub(crate) fn latency_seconds(&self) -> u64 {
        if self.latency_quick {
            crate::latency::QUICK_SECONDS
        } else {
            self.latency_seconds
        }
    }
}

/// The bench's own helpers, run by the bench itself.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The consumer side of a latency row (run by the bench as a child process).
    #[command(hide = true)]
    LatencyConsumer(crate::latency::ChildArgs),
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

/// `processing.ordering` of the first async-handler row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IoOrdering {
    /// By the wave's `key` application property (`processing.key = "property:key"`).
    Key,
    /// In any order.
    Unordered,
    /// In stream order, one at a time.
    Partition,
}

impl IoOrdering {
    /// Its `processing.ordering` value.
    pub(crate) fn as_config(self) -> &'static str {
        match self {
            IoOrdering::Key => "key",
            IoOrdering::Unordered => "unordered",
            IoOrdering::Partition => "partition",
        }
    }
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

    #[test]
    fn latency_rows_last_ten_seconds_two_when_quick() {
        let cli = Cli::try_parse_from(["bench"]).unwrap();
        assert!(!cli.no_latency_rows && cli.command.is_none());
        assert_eq!(cli.latency_seconds(), 10);
        let quick = Cli::try_parse_from(["bench", "--latency-quick"]).unwrap();
        assert_eq!(quick.latency_seconds(), 2);
        assert!(
            Cli::try_parse_from(["bench", "--latency-quick", "--latency-seconds", "5"]).is_err()
        );
        assert!(Cli::try_parse_from(["bench", "--latency-seconds", "0"]).is_err());
        let child = Cli::try_parse_from(["bench", "latency-consumer", "--client", "ours"]).unwrap();
        assert!(matches!(child.command, Some(Command::LatencyConsumer(_))));
        assert!(Cli::try_parse_from(["bench", "latency-consumer", "--client", "mine"]).is_err());
    }

    #[test]
    fn the_async_handler_rows_default_to_the_issue_settings() {
        let cli = Cli::try_parse_from(["bench"]);
        assert!(cli.is_ok_and(|cli| !cli.no_io_rows
            && cli.io_work_ms == 1
            && cli.io_max_in_flight == 256
            && cli.io_ordering == IoOrdering::Key));
        assert!(Cli::try_parse_from(["bench", "--io-max-in-flight", "0"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--io-max-in-flight", "10001"]).is_err());
    }
}
