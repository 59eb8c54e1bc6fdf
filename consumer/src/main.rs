//! `consumer`: attaches to the stream as a named consumer — after its stored offset if it has one,
//! else at the configured position — processes messages until the marker, and leaves the tracker
//! to store its progress on the broker.

use std::process::ExitCode;

use clap::Parser;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use consumer::{Handler, Limit, PrintHandler, SqliteSink, TutorialHandler};
use shared::cli::{push, CommonArgs};
use shared::config::{Settings, SinkKind};
use shared::error::{Error, Result};
use shared::offset_spec::show_offset as show;
use shared::{runtime, OffsetSpec};
use tokio_util::sync::CancellationToken;
use tracker::Database;

/// Consume a stream as a named consumer until the marker: from where the last run stopped if
/// the broker holds an offset for the name, else from the configured position.
#[derive(Debug, Parser)]
#[command(version, after_help = shared::cli::EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Where to attach when no offset is stored for the name: first, last, next, an offset, or
    /// timestamp:<RFC 3339> (consumer.offset) [default: first]
    #[arg(long, value_name = "SPEC", env = "OFFSET_TRACKING__CONSUMER__OFFSET")]
    offset: Option<OffsetSpec>,

    /// Consumer name: the broker stores its offset under it (consumer.name) [default: consumer-1]
    #[arg(
        long,
        value_name = "NAME",
        env = "OFFSET_TRACKING__CONSUMER__NAME",
        global = true
    )]
    name: Option<String>,

    /// Ignore the stored offset this once and attach at --offset (e.g. `--replay --offset first`
    /// re-reads the stream from its start); stores then go on from what this run processes
    #[arg(long)]
    replay: bool,

    #[command(subcommand)]
    command: Option<Command>,

    /// Store after this many processed messages; 0 turns it off
    /// (tracker.store_every_messages) [default: 10]
    #[arg(
        long,
        value_name = "N",
        env = "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES"
    )]
    store_every_messages: Option<u64>,

    /// Store when this much time passed with progress, e.g. 5s; 0s turns it off
    /// (tracker.store_every) [default: 5s]
    #[arg(
        long,
        value_name = "DURATION",
        env = "OFFSET_TRACKING__TRACKER__STORE_EVERY"
    )]
    store_every: Option<String>,

    /// Create the stream (or super stream) with the [stream] settings if it does not exist;
    /// without it a missing stream is an error: the producer creates streams
    /// (consumer.create_stream) [default: false]
    #[arg(long)]
    create_stream: bool,

    #[command(flatten)]
    output: consumer::PrintArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Read, move, export or import stored offsets (`--name a,b` selects consumers, `--stream`
    /// the stream): what kafka-consumer-groups is for Kafka users
    Offsets {
        #[command(subcommand)]
        action: consumer::offsets::OffsetsAction,
    },
    /// Print the effective configuration, each value with where it came from (flag, environment
    /// variable, file:line, built-in default), secrets as ***; with --check, then probe the broker
    Config {
        /// Also probe the broker, a line per step with ok/FAIL and a hint: TCP, the stream
        /// protocol, credentials, virtual host, the stream, the stored offset, the management
        /// API; exit 1 if a step fails
        #[arg(long)]
        check: bool,
    },
    #[command(flatten)]
    About(shared::cli::AboutSelf),
}

impl Cli {
    fn settings(&self) -> shared::Result<Settings> {
        Settings::load_with(self.common.file.config.as_deref(), &self.overrides())
    }

    /// The configuration keys the flags set (the common ones, then the consumer's).
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut own = self.common.overrides();
        push(&mut own, "consumer.offset", &self.offset);
        push(&mut own, "consumer.name", &self.name);
        push(
            &mut own,
            "tracker.store_every_messages",
            &self.store_every_messages,
        );
        push(&mut own, "tracker.store_every", &self.store_every);
        if self.create_stream {
            own.push(("consumer.create_stream", "true".into()));
        }
        own
    }
}

fn main() -> ExitCode {
    shared::telemetry::init();
    runtime::exit_on_panic(delivery::panic_is_contained);
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
    let overrides = cli.overrides();
    match cli.command {
        Some(Command::Config { check }) => runtime::run(async move {
            let file = cli.common.file.config.as_deref();
            let program = shared::config::probe::Program::Consumer;
            let local = || {
                consumer::offsets::resume_check(&settings)
                    .into_iter()
                    .collect()
            };
            shared::config::probe::config_command(
                &settings, file, &overrides, program, check, local,
            )
            .await
        }),
        None => runtime::run(consume(
            settings,
            cli.replay,
            cli.common.summary_json,
            cli.output,
        )),
        Some(Command::About(_)) => ExitCode::SUCCESS,
        Some(Command::Offsets { action }) => {
            runtime::run(consumer::offsets::run(settings, action, cli.name))
        }
    }
}

/// The tutorial's run: [`consumer::run`] with the [`TutorialHandler`] (or the SQLite sink, or
/// `--print`'s [`PrintHandler`]), within `--max-messages`, stopped by SIGINT/SIGTERM or a
/// closed stdout, ending with the summary line.
async fn consume(
    settings: Settings,
    replay: bool,
    summary_json: bool,
    output: consumer::PrintArgs,
) -> Result<()> {
    let service = settings.consumer.single_active;
    let shutdown = CancellationToken::new();
    // Without --max-messages, a budget never spent.
    let budget = Arc::new(AtomicU64::new(output.max_messages.unwrap_or(u64::MAX)));
    match (output.printing(), settings.consumer.sink) {
        (Some(_), SinkKind::Sqlite) => Err(Error::Usage(
            "--print and consumer.sink = \"sqlite\" are two ways of processing: choose one".into(),
        )),
        (Some(format), SinkKind::None) => {
            shared::runtime::stdout::records_only();
            let (format, stream) = (Arc::new(format), settings.stream.name.clone());
            let handlers = |partition: Option<&str>| {
                let on = partition.unwrap_or(&stream).to_owned();
                Ok(Limit::new(
                    PrintHandler::new(format.clone(), on, service),
                    budget.clone(),
                    shutdown.clone(),
                ))
            };
            consume_with(settings, handlers, replay, summary_json, shutdown.clone()).await
        }
        (None, SinkKind::None) => {
            let handlers = |partition: Option<&str>| {
                let handler = TutorialHandler::new(partition.map(str::to_owned), service);
                Ok(Limit::new(handler, budget.clone(), shutdown.clone()))
            };
            consume_with(settings, handlers, replay, summary_json, shutdown.clone()).await
        }
        (None, SinkKind::Sqlite) => {
            let (path, stream, name) = (
                settings.tracker.sqlite_path.clone(),
                settings.stream.name.clone(),
                settings.consumer.name.clone(),
            );
            let handlers = |_: Option<&str>| {
                let sink = SqliteSink::new(Database::open(&path, &stream, &name)?)?;
                Ok(Limit::new(sink, budget.clone(), shutdown.clone()))
            };
            consume_with(settings, handlers, replay, summary_json, shutdown.clone()).await
        }
    }
}

async fn consume_with<H, F>(
    settings: Settings,
    handlers: F,
    replay: bool,
    summary_json: bool,
    shutdown: CancellationToken,
) -> Result<()>
where
    H: Handler,
    F: FnMut(Option<&str>) -> Result<H>,
{
    let deadline = consumer::shutdown_deadline(&settings);
    let run = consumer::run(&settings, handlers, replay, shutdown.clone());
    let report = runtime::until_stopped(run, &shutdown, deadline).await?;
    for partition in &report.partitions {
        let outcome = &partition.outcome;
        let seconds = outcome.elapsed.as_secs_f64();
        let on = if report.partitions.len() > 1 {
            format!("partition={} ", partition.stream)
        } else {
            String::new()
        };
        tracing::info!(
            "summary: {on}messages={} seconds={seconds:.3} msg_per_s={} first_offset={} last_offset={} stored_offset={} stores={} store_errors={} reconnects={} failovers={} max_interruption_ms={} marker={} lag_seconds={} max_lag_seconds={}",
            outcome.messages,
            shared::summary::rate_field(outcome.messages, seconds),
            show(outcome.first_offset),
            show(outcome.last_offset),
            show(outcome.stored_offset),
            partition.tracker.stores,
            partition.tracker.store_errors,
            outcome.reconnects,
            outcome.failovers,
            outcome.max_interruption.as_millis(),
            outcome.reached_marker,
            seconds_or_dash(outcome.lag),
            seconds_or_dash(outcome.max_lag),
        );
    }
    // On a terminal, the same figures as a table a person reads.
    shared::progress::show_summary(&report.summary());
    if summary_json {
        report.summary().print_json();
    }
    if report.partitions.len() > 1 {
        tracing::info!(
            "summary: total messages={} partitions={} markers={}",
            report.messages(),
            report.partitions.len(),
            report
                .partitions
                .iter()
                .filter(|p| p.outcome.reached_marker)
                .count()
        );
    }
    Ok(())
}

/// A lag sample for the summary line: seconds, or `-` when none was taken.
fn seconds_or_dash(lag: Option<std::time::Duration>) -> String {
    lag.map_or_else(|| "-".to_owned(), |lag| format!("{:.3}", lag.as_secs_f64()))
}
