//! `producer`: makes sure the stream exists, publishes a wave of messages ending with a marker —
//! the tutorial's `hello{i}`, or the lines of a file (`--from-file`) — and exits 0 only when the
//! broker has confirmed every one of them. The work is the library's
//! ([`producer::publish_wave`], [`producer::publish_lines`]); this is the command line and the
//! output.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shared::cli::{push, AboutSelf, CommonArgs};
use shared::config::Settings;
use shared::error::{Error, Result};
use shared::{outln, runtime};

/// Publish a wave of messages to a stream — hello0, hello1, …, the last one marker{n-1}, or the
/// lines of a file — and wait until the broker has confirmed every one of them.
#[derive(Debug, Parser)]
#[command(version, after_help = shared::cli::EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Messages in the wave, the marker included (producer.message_count) [default: 100]
    #[arg(
        long,
        value_name = "N",
        env = "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT",
        conflicts_with = "from_file"
    )]
    count: Option<u64>,

    /// Producer name: turns on deduplication, so a lost connection is survived without writing
    /// a message twice (producer.name) [default: none]
    #[arg(long, value_name = "NAME", env = "OFFSET_TRACKING__PRODUCER__NAME")]
    name: Option<String>,

    /// Publish one message per line of PATH (`-`: standard input), the line as it is without
    /// its line ending, then a marker message (`marker` and the number of lines) that ends the
    /// consumer's run (see --no-marker). The whole input is read first
    #[arg(long, value_name = "PATH")]
    from_file: Option<PathBuf>,

    /// With --from-file: publish the lines only, no marker after them (a consumer reading them
    /// goes on waiting); required on a super stream
    #[arg(long, requires = "from_file")]
    no_marker: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the effective configuration, each value with where it came from (flag, environment
    /// variable, file:line, built-in default), secrets as ***; with --check, then probe the broker
    Config {
        /// Also probe the broker, a line per step with ok/FAIL and a hint: TCP, the stream
        /// protocol, credentials, virtual host, the stream, the management API; exit 1 if a step
        /// fails
        #[arg(long)]
        check: bool,
    },
    #[command(flatten)]
    About(AboutSelf),
}

impl Cli {
    fn settings(&self) -> shared::Result<Settings> {
        Settings::load_with(self.common.file.config.as_deref(), &self.overrides())
    }

    /// The configuration keys the flags set (the common ones, then the producer's).
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut own = self.common.overrides();
        push(&mut own, "producer.message_count", &self.count);
        push(&mut own, "producer.name", &self.name);
        own
    }
}

fn main() -> ExitCode {
    shared::telemetry::init();
    runtime::exit_on_panic(|| false);
    let cli: Cli = shared::cli::parse();
    if let Some(Command::About(about)) = &cli.command {
        // Before the configuration: completions and the man page work whatever it says.
        return match about.print::<Cli>() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => runtime::fail(&err),
        };
    }
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    if let Some(Command::Config { check }) = cli.command {
        let overrides = cli.overrides();
        return runtime::run(async move {
            let file = cli.common.file.config.as_deref();
            let program = shared::config::probe::Program::Producer;
            shared::config::probe::config_command(
                &settings,
                file,
                &overrides,
                program,
                check,
                Vec::new,
            )
            .await
        });
    }
    // Read before connecting: a missing file is a usage error, whatever the broker.
    let lines = match cli.from_file.as_deref().map(read_lines).transpose() {
        Ok(lines) => lines,
        Err(err) => return runtime::fail(&err),
    };
    runtime::run(produce(
        settings,
        lines,
        !cli.no_marker,
        cli.common.summary_json,
    ))
}

/// The lines of `path` (`-`: standard input) as message bodies: split at `\n`, a `\r` before it
/// dropped, the last line kept even without a newline; bytes as they are (not necessarily
/// UTF-8).
fn read_lines(path: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let mut input = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut input)
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut input))
    };
    read.map_err(|err| Error::Usage(format!("--from-file {}: {err}", path.display())))?;
    Ok(split_lines(&input))
}

fn split_lines(input: &[u8]) -> Vec<Vec<u8>> {
    if input.is_empty() {
        return vec![];
    }
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    input
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        .collect()
}

async fn produce(
    settings: Settings,
    lines: Option<Vec<Vec<u8>>>,
    marker: bool,
    summary_json: bool,
) -> Result<()> {
    let target = producer::Target::connect(&settings).await?;
    // The lines are reports, not the work: a closed stdout does not stop the wave.
    let report = match lines {
        None => {
            let count = settings.producer.message_count;
            let _ = outln!("Publishing {count} messages");
            producer::publish_wave(&target, count).await?
        }
        Some(lines) => {
            let count = lines.len() as u64 + u64::from(marker);
            let _ = outln!("Publishing {count} messages");
            producer::publish_lines(&target, lines, marker).await?
        }
    };
    let _ = outln!("Messages confirmed: True");
    tracing::info!(
        "summary: messages={} seconds={:.3} msg_per_s={} confirmed={} reconnects={}",
        report.confirmed,
        report.elapsed.as_secs_f64(),
        shared::summary::rate_field(report.confirmed, report.elapsed.as_secs_f64()),
        report.confirmed,
        report.reconnects,
    );
    // On a terminal, the same figures as a table a person reads.
    shared::progress::show_summary(&report.summary());
    if summary_json {
        report.summary().print_json();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_a_message_without_its_line_ending() {
        assert_eq!(
            split_lines(b"a\nb\r\n\nc"),
            vec![b"a".to_vec(), b"b".to_vec(), vec![], b"c".to_vec()]
        );
        assert_eq!(split_lines(b"a\n"), vec![b"a".to_vec()]);
        assert_eq!(split_lines(b"\n"), vec![Vec::<u8>::new()]);
        assert!(split_lines(b"").is_empty());
        assert_eq!(split_lines(b"\xff\xfe"), vec![b"\xff\xfe".to_vec()]);
    }
}
